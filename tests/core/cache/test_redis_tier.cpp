// The shared Redis tier of the feature cache against a real redis-server started by the test on
// a free loopback port (and stopped by it): never any other address.
#include <ATen/ATen.h>

#include <QtTest>

#include <chrono>
#include <memory>
#include <string>

#include "core/cache/feature_cache.h"
#include "core/cache/redis_url.h"
#include "core/cache/remote_feature_tier.h"
#include "core/runtime/engine.h"
#include "core/util/error.h"
#include "tests/support/redis_server.h"

#ifndef MGD_DEMO_MODEL_DIR
#define MGD_DEMO_MODEL_DIR MGD_TEST_DATA "/../../resources/demo-model"
#endif

using mgd_test::RedisServer;

namespace {

using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

const char *kKey = "0123456789abcdef0123456789abcdef";

mgd::RemoteTierSettings tierSettings(const std::string &url, const std::string &model = "00000000000000aa") {
    mgd::RemoteTierSettings s;
    s.url = url;
    s.modelId = model;
    return s;
}

mgd::EngineSettings engineSettings(const std::string &url) {
    mgd::EngineSettings s;
    s.threads = 1;
    s.featureDiskBytes = 0; // no disk tier: only Redis can share
    s.responseCache = false;
    s.redisUrl = url;
    return s;
}

mgd::TurnResult ask(mgd::Engine &e, const std::string &image) {
    mgd::TurnRequest r;
    r.text = "What shape is at the top left?";
    r.images.push_back(mgd::ImageInput::fromFile(image));
    r.sampling.greedy = true;
    r.sampling.maxNewTokens = 16;
    return e.submitTurn(e.newConversation(), r);
}

} // namespace

class TestRedisTier : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QVERIFY2(!QStandardPaths::findExecutable("redis-server").isEmpty(),
                 "redis-server is not installed (Debian package 'redis-server'; packaging/install-deps.sh)");
    }

    void urlsAreParsedAndBadOnesNamed() {
        mgd::RedisEndpoint e = mgd::parseRedisUrl("redis://:s3cret@example.org:6380/2");
        QCOMPARE(e.host, std::string("example.org"));
        QCOMPARE(e.port, 6380);
        QCOMPARE(e.password, std::string("s3cret"));
        QCOMPARE(e.db, 2);
        QVERIFY(e.display().find("s3cret") == std::string::npos);
        e = mgd::parseRedisUrl("redis://alice:p%40ss@[::1]");
        QCOMPARE(e.user, std::string("alice"));
        QCOMPARE(e.password, std::string("p@ss"));
        QCOMPARE(e.host, std::string("::1"));
        QCOMPARE(e.port, 6379);
        e = mgd::parseRedisUrl("unix:///run/redis/redis.sock?db=3");
        QVERIFY(e.unixSocket);
        QCOMPARE(e.path, std::string("/run/redis/redis.sock"));
        QCOMPARE(e.db, 3);
        for (const char *bad :
             {"http://host", "redis://", "redis://host:99999", "redis://host:x", "redis://host/abc",
              "unix://relative.sock", "redis://:@host", "redis://:pw%4@host"}) {
            try {
                mgd::parseRedisUrl(bad);
                QFAIL(bad);
            } catch (const mgd::Error &err) {
                QVERIFY2(QString(err.what()).contains("Redis URL"), err.what());
                QVERIFY2(!QString(err.what()).contains("pw"), err.what()); // the password never shows
            }
        }
    }

    void blobsCheckKeyVersionAndBytes() {
        const at::Tensor v = at::randn({1, 9, 16});
        const std::string blob = mgd::encodeFeatureBlob(kKey, v);
        const auto *p = reinterpret_cast<const uint8_t *>(blob.data());
        at::Tensor out;
        QCOMPARE(mgd::decodeFeatureBlob(p, blob.size(), kKey, out), mgd::FeatureFileStatus::Ok);
        QVERIFY(at::equal(out, v));
        QCOMPARE(mgd::decodeFeatureBlob(p, blob.size(), "fedcba9876543210fedcba9876543210", out),
                 mgd::FeatureFileStatus::Corrupt);
        QCOMPARE(mgd::decodeFeatureBlob(p, blob.size() - 1, kKey, out), mgd::FeatureFileStatus::Corrupt);
        std::string flipped = blob;
        flipped[flipped.size() - 3] ^= 1;
        QCOMPARE(mgd::decodeFeatureBlob(reinterpret_cast<const uint8_t *>(flipped.data()), flipped.size(),
                                        kKey, out),
                 mgd::FeatureFileStatus::Corrupt);
        const std::string v2 = mgd::encodeFeatureBlob(kKey, v, mgd::kFeatureFileVersion + 1);
        QCOMPARE(mgd::decodeFeatureBlob(reinterpret_cast<const uint8_t *>(v2.data()), v2.size(), kKey, out),
                 mgd::FeatureFileStatus::Corrupt);
    }

    // Another model's keys (and another format version's values) are never used.
    void roundTripAndNamespaces() {
        RedisServer server;
        QVERIFY(server.start());
        const at::Tensor v = at::randn({1, 9, 16});
        mgd::RemoteFeatureTier a(tierSettings(server.url(), "00000000000000aa"));
        mgd::RemoteFeatureTier b(tierSettings(server.url(), "00000000000000bb"));
        QVERIFY(a.redisKey(kKey).rfind("mgd:v1:feat:00000000000000aa:", 0) == 0);
        a.put(kKey, v);
        QVERIFY(a.flush(5000));
        double rtt = -1;
        const at::Tensor got = a.get(kKey, &rtt);
        QVERIFY(got.defined() && at::equal(got, v));
        QVERIFY(rtt >= 0 && rtt < 200);
        QVERIFY(!b.get(kKey).defined()); // another model: another key
        // A newer format's value planted under our key is rejected, not read.
        QVERIFY(server.set(a.redisKey(kKey), mgd::encodeFeatureBlob(kKey, v, mgd::kFeatureFileVersion + 1)));
        QVERIFY(!a.get(kKey).defined());
        const mgd::RemoteTierStats st = a.stats();
        QCOMPARE(st.hits, 1u);
        QCOMPARE(st.rejected, 1u);
        QCOMPARE(st.writes, 1u);
        QVERIFY(st.reachable);
        QCOMPARE(st.errors, 0u);
    }

    void passwordUrlWorks() {
        RedisServer server;
        QVERIFY(server.start("pa ss:w@rd"));
        const std::string url = "redis://:pa%20ss%3Aw%40rd@127.0.0.1:" + std::to_string(server.port());
        mgd::RemoteFeatureTier ok(tierSettings(url));
        ok.put(kKey, at::ones({2, 3}));
        QVERIFY(ok.flush(5000));
        QVERIFY(ok.get(kKey).defined());
        mgd::RemoteFeatureTier wrong(
            tierSettings("redis://:nope@127.0.0.1:" + std::to_string(server.port())));
        QVERIFY(!wrong.get(kKey).defined());
        QVERIFY(wrong.stats().errors >= 1);
        QVERIFY(QString::fromStdString(wrong.stats().lastError).contains("AUTH"));
        QVERIFY(wrong.stats().lastError.find("nope") == std::string::npos);
    }

    // A stopped server is a miss within the connect timeout and then costs nothing (back-off);
    // a frozen one is a miss within the operation timeout; a restarted one is used again.
    void deadOrSlowServerIsAMissWithinTheTimeouts() {
        RedisServer server;
        QVERIFY(server.start());
        mgd::RemoteFeatureTier t(tierSettings(server.url()));
        t.put(kKey, at::ones({4}));
        QVERIFY(t.flush(5000));
        QVERIFY(t.get(kKey).defined());
        server.pause(); // SIGSTOP: connected, but no answer
        auto t0 = Clock::now();
        QVERIFY(!t.get(kKey).defined());
        const double frozenMs = msSince(t0);
        QVERIFY2(frozenMs < 600, qPrintable(QString::number(frozenMs)));
        QCOMPARE(t.stats().reachable, false);
        t0 = Clock::now();
        double rtt = 0;
        QVERIFY(!t.get(kKey, &rtt).defined()); // in back-off: nothing sent
        QVERIFY(msSince(t0) < 50);
        QCOMPARE(rtt, -1.0);
        const int port = server.port();
        server.stop();
        QThread::msleep(600);
        t0 = Clock::now();
        QVERIFY(!t.get(kKey).defined()); // refused
        QVERIFY(msSince(t0) < 1200);
        RedisServer again;
        QVERIFY(again.start({}, port));
        bool back = false;
        for (int i = 0; i < 80 && !back; ++i) { // back-off doubles from 0.5 s
            QThread::msleep(100);
            t.put(kKey, at::ones({4}));
            t.flush(2000);
            back = t.get(kKey).defined();
        }
        QVERIFY(back);
        QVERIFY(t.stats().reachable);
        QVERIFY(t.stats().errors >= 2);
    }

    // Two engines in two processes: the second one's first turn on the image encodes nothing.
    void secondProcessEncodesNothing() {
        RedisServer server;
        QVERIFY(server.start());
        QTemporaryDir d1, d2;
        const QString image = MGD_TEST_DATA "/drawings/hand1.png";
        auto run = [&](const QTemporaryDir &dir) {
            QProcess p;
            p.start(MGD_CLI, {"ask", "--model", MGD_DEMO_MODEL_DIR, "--image", image, "--greedy", "--stats",
                              "--feature-cache-dir", dir.path(), "--redis",
                              QString::fromStdString(server.url()), "What shape is at the top left?"});
            p.waitForFinished(60000);
            return QString::fromUtf8(p.readAllStandardOutput()) + "\n" +
                   QString::fromUtf8(p.readAllStandardError());
        };
        const QString first = run(d1), second = run(d2);
        QVERIFY2(first.contains("images encoded 1"), qPrintable(first));
        QVERIFY2(second.contains("images encoded 0"), qPrintable(second));
        // The same answer either way.
        QCOMPARE(first.section('\n', 0, 0), second.section('\n', 0, 0));
    }

    // In one engine: a planted corrupt value is rejected and the image encoded; with the server
    // gone mid-run answers still come and the errors are counted.
    void engineSurvivesCorruptValuesAndAStoppedServer() {
        RedisServer server;
        QVERIFY(server.start());
        mgd::Engine e(engineSettings(server.url()));
        e.loadModel(MGD_DEMO_MODEL_DIR);
        mgd::TurnResult r = ask(e, MGD_TEST_DATA "/drawings/hand2.png");
        QCOMPARE(r.stats.imagesEncoded, 1);
        mgd::MetricsSnapshot m = e.metricsSnapshot();
        QCOMPARE(m.gauges["remote_enabled"], 1.0);
        QCOMPARE(m.counters["remote_misses"], 1u);
        // Another engine (fresh local tiers) with every value under our prefix corrupted.
        {
            redisContext *c = redisConnect("127.0.0.1", server.port());
            QVERIFY(c && !c->err);
            // Wait for the first engine's write, then overwrite it.
            redisReply *keys = nullptr;
            for (int i = 0; i < 50; ++i) {
                keys = static_cast<redisReply *>(redisCommand(c, "KEYS mgd:v1:feat:*"));
                if (keys && keys->elements == 1) break;
                if (keys) freeReplyObject(keys);
                keys = nullptr;
                QThread::msleep(100);
            }
            QVERIFY(keys);
            const std::string key(keys->element[0]->str, keys->element[0]->len);
            freeReplyObject(keys);
            redisFree(c);
            QVERIFY(server.set(key, "not a feature entry"));
        }
        mgd::Engine e2(engineSettings(server.url()));
        e2.loadModel(MGD_DEMO_MODEL_DIR);
        r = ask(e2, MGD_TEST_DATA "/drawings/hand2.png");
        QCOMPARE(r.stats.imagesEncoded, 1);
        m = e2.metricsSnapshot();
        QCOMPARE(m.counters["remote_rejected"], 1u);
        QCOMPARE(m.counters["remote_hits"], 0u);
        server.stop();
        const auto t0 = Clock::now();
        r = ask(e2, MGD_TEST_DATA "/drawings/hand3.png");
        QVERIFY(!r.answer.empty());
        QCOMPARE(r.stats.imagesEncoded, 1);
        QVERIFY(msSince(t0) < 5000);
        m = e2.metricsSnapshot();
        QVERIFY(m.counters["remote_errors"] >= 1);
        QCOMPARE(m.gauges["remote_reachable"], 0.0);
        QVERIFY(!e2.remoteStatus().empty());
    }
};

QTEST_GUILESS_MAIN(TestRedisTier)
#include "test_redis_tier.moc"
