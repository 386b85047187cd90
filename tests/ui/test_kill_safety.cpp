// Kill-safety: kill_safety_writer saves conversations and writes feature-cache entries in a
// loop; it is SIGKILLed at a random moment 100 times. After every kill the store is reopened:
// every conversation must load, whole, at the version it last confirmed or the one it was
// writing (never older, never torn, never lost), with its image; every feature entry the
// cache serves and every saved conversation state must be exactly what was written; nothing
// corrupt may be used.
#include <ATen/ATen.h>

#include <QDir>
#include <QProcess>
#include <QRandomGenerator>
#include <QTemporaryDir>
#include <QtTest>

#include "core/cache/conversation_kv_store.h"
#include "core/cache/feature_cache.h"
#include "tests/ui/kill_safety_content.h"
#include "ui/conversation_store.h"

class TestKillSafety : public QObject {
    Q_OBJECT

private slots:
    void hundredKillsLoseNothing();
};

void TestKillSafety::hundredKillsLoseNothing() {
    QTemporaryDir tmp;
    const QString dataDir = tmp.filePath("data"), featureDir = tmp.filePath("features");
    QDir().mkpath(featureDir);
    const int kills =
        qEnvironmentVariableIntValue("MGD_KILLS") > 0 ? qEnvironmentVariableIntValue("MGD_KILLS") : 100;
    QRandomGenerator rng(20261129);
    int confirmed[killsafety::kConversations] = {};
    int totalSaves = 0, featureEntriesChecked = 0, featureHits = 0, statesLoaded = 0;
    for (int k = 0; k < kills; ++k) {
        QProcess writer;
        writer.start(KILL_SAFETY_WRITER, {dataDir, featureDir});
        QVERIFY2(writer.waitForStarted(10000), qPrintable(writer.errorString()));
        QVERIFY2(writer.waitForReadyRead(30000), "the writer never said ready");
        // Kill somewhere in its loop: 0-150 ms after it is ready (a save takes a few ms).
        QThread::usleep(rng.bounded(150000));
        writer.kill();
        QVERIFY(writer.waitForFinished(10000));
        QCOMPARE(writer.exitStatus(), QProcess::CrashExit);
        for (const QByteArray &line : writer.readAllStandardOutput().split('\n')) {
            const QList<QByteArray> f = line.split(' ');
            if (f.size() != 3 || f[0] != "saved") continue;
            for (int c = 0; c < killsafety::kConversations; ++c)
                if (f[1] == killsafety::conversationId(c).toUtf8()) confirmed[c] = f[2].toInt();
            ++totalSaves;
        }

        ConversationStore store(dataDir);
        for (int c = 0; c < killsafety::kConversations; ++c) {
            if (confirmed[c] == 0) continue;
            QString error;
            const auto conv = store.load(killsafety::conversationId(c), &error);
            QVERIFY2(conv, qPrintable(QString("kill %1: conversation %2 lost: %3").arg(k).arg(c).arg(error)));
            const int v = killsafety::versionOfTitle(conv->title);
            // The confirmed version, or the next one that was being written when killed.
            QVERIFY2(v == confirmed[c] || v == confirmed[c] + 1,
                     qPrintable(QString("kill %1: conversation %2 at version %3, confirmed %4")
                                    .arg(k)
                                    .arg(c)
                                    .arg(v)
                                    .arg(confirmed[c])));
            QCOMPARE(conv->title, killsafety::title(c, v));
            QCOMPARE(conv->messages.size(), killsafety::messageCount(v));
            for (int m = 0; m < conv->messages.size(); ++m)
                QCOMPARE(conv->messages[m].text, killsafety::messageText(c, v, m));
            QCOMPARE(conv->messages[0].images.size(), 1);
            QCOMPARE(conv->messages[0].images[0].size, QSize(48, 32));
            confirmed[c] = v;
        }
        // Every entry file in the folder: served exactly as written, or not served at all.
        mgd::FeatureCacheSettings fs;
        fs.diskBytes = killsafety::kFeatureDiskBytes;
        fs.diskDir = featureDir.toStdString();
        mgd::FeatureCache cache(fs);
        for (const QString &name : QDir(featureDir).entryList({"*.mgdf"}, QDir::Files)) {
            const std::string key = name.chopped(5).toStdString();
            ++featureEntriesChecked;
            const auto h = cache.lookup(key);
            if (!h) continue;
            ++featureHits;
            QVERIFY2(at::equal(h.tensor(), killsafety::featureValue(killsafety::entryOfKey(key))),
                     qPrintable(QString("kill %1: feature entry %2 differs").arg(k).arg(name)));
        }
        QCOMPARE(cache.stats().disk.rejectedCorrupt, uint64_t(0));
        // Saved conversation states: each one whole (some version) or absent, never torn.
        mgd::ConversationKvStore states((tmp.filePath("state")).toStdString(), 64 << 20,
                                        killsafety::kvExpectation());
        for (int c = 0; c < killsafety::kConversations; ++c) {
            if (confirmed[c] == 0) continue;
            const auto e = states.load(killsafety::conversationId(c).toStdString());
            if (!e) continue;
            int v = 0;
            QVERIFY2(killsafety::kvEntryIsWhole(*e, c, &v),
                     qPrintable(QString("kill %1: state %2 torn").arg(k).arg(c)));
            ++statesLoaded;
        }
        QCOMPARE(states.stats().rejectedCorrupt, uint64_t(0));
    }
    // The temporary files of interrupted writes are not conversations and not entries.
    const QStringList convFiles = QDir(dataDir + "/conversations").entryList(QDir::Files);
    qInfo("%d kills, %d confirmed saves, %d feature entries checked (%d served), %d saved states "
          "loaded whole, files left in conversations/: %lld",
          kills, totalSaves, featureEntriesChecked, featureHits, statesLoaded, qint64(convFiles.size()));
    QVERIFY(totalSaves > kills); // the kills landed in the middle of real work
    QVERIFY(featureHits > 0);
    QVERIFY(statesLoaded > 0);
}

QTEST_GUILESS_MAIN(TestKillSafety)
#include "test_kill_safety.moc"
