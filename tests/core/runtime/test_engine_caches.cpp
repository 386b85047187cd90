// The engine's caches through the facade: features (incl. the disk tier across a restart),
// cross-conversation prefix KV, responses, and KV in the memory pool (incl. exhaustion).
#include <QTemporaryDir>
#include <QtTest>

#include "core/runtime/engine.h"
#include "core/util/error.h"

namespace {

const std::string kV1 = MGD_TEST_DATA "/minigpt4-tiny-hi";
const std::string kV2 = MGD_TEST_DATA "/minigptv2-tiny-hi";

mgd::TurnRequest ask(const std::string &text, bool withImage, int maxNew = 8) {
    mgd::TurnRequest r;
    r.text = text;
    if (withImage) r.images.push_back(mgd::ImageInput::fromFile(kV1 + "/image.png"));
    r.sampling.greedy = true;
    r.sampling.repetitionPenalty = 1.0f;
    r.sampling.maxNewTokens = maxNew;
    return r;
}

mgd::EngineSettings settingsIn(const QTemporaryDir &dir) {
    mgd::EngineSettings s;
    s.featureDiskDir = dir.path().toStdString() + "/features";
    return s;
}

double hitRate(const mgd::Engine &e, const char *cache) {
    const auto snap = e.metricsSnapshot();
    auto it = snap.hitRates.find(cache);
    return it == snap.hitRates.end() ? -1 : it->second.lifetime();
}

} // namespace

class TestEngineCaches : public QObject {
    Q_OBJECT

private slots:
    void secondConversationOnSameImageSkipsVisionAndPrefix() {
        QTemporaryDir tmp;
        mgd::Engine e(settingsIn(tmp));
        e.loadModel(kV1);
        auto first = e.submitTurn(e.newConversation(), ask("What is in this image?", true));
        QCOMPARE(first.stats.imagesEncoded, 1);
        auto second = e.submitTurn(e.newConversation(), ask("Describe the colors.", true));
        QCOMPARE(second.stats.imagesEncoded, 0);
        QVERIFY(second.stats.prefixFromOtherConversation);
        // System prompt + image + "</Img>" prefix come from the first conversation's KV.
        QVERIFY2(second.stats.reusedTokens >= 102, qPrintable(QString::number(second.stats.reusedTokens)));

        // The same answer as with every cache off: prefix reuse does not change the math.
        mgd::EngineSettings off = settingsIn(tmp);
        off.featureCache = off.prefixCache = off.responseCache = off.memoryPool = false;
        mgd::Engine plain(off);
        plain.loadModel(kV1);
        auto ref = plain.submitTurn(plain.newConversation(), ask("Describe the colors.", true));
        QCOMPARE(second.tokens, ref.tokens);
        QCOMPARE(ref.stats.reusedTokens, int64_t{0});
    }

    // Shared KV blocks through the engine: two conversations on one image hold one copy of
    // its prefix; one regenerates, the other edits, and each gets what an engine with every
    // cache off gives; deleted, every reference returns and the pool is whole.
    void conversationsSharePrefixBlocksAndKeepTheirTailsApart() {
        QTemporaryDir tmp;
        mgd::EngineSettings s = settingsIn(tmp);
        s.responseCache = false;
        mgd::Engine e(s);
        e.loadModel(kV1);
        mgd::EngineSettings off = settingsIn(tmp);
        off.featureCache = off.prefixCache = off.responseCache = off.memoryPool = false;
        mgd::Engine plain(off);
        plain.loadModel(kV1);

        const int c1 = e.newConversation(), p1 = plain.newConversation();
        QCOMPARE(e.submitTurn(c1, ask("What is in this image?", true)).tokens,
                 plain.submitTurn(p1, ask("What is in this image?", true)).tokens);
        const uint64_t kvAlone = e.metricsSnapshot().memory.poolKvBytes;
        const int c2 = e.newConversation(), p2 = plain.newConversation();
        auto second = e.submitTurn(c2, ask("Describe the colors.", true));
        QVERIFY(second.stats.prefixFromOtherConversation);
        QVERIFY2(second.stats.reusedTokens >= 102, qPrintable(QString::number(second.stats.reusedTokens)));
        QCOMPARE(second.tokens, plain.submitTurn(p2, ask("Describe the colors.", true)).tokens);
        const mgd::PrefixBlockStats shared = e.sharedKvStats();
        QVERIFY(shared.referenced >= 6); // system prompt + image: >= 6 blocks of 16
        QVERIFY(shared.references >= 2 * 6);
        // The second conversation added its own tail, not a second prefix.
        const uint64_t kvBoth = e.metricsSnapshot().memory.poolKvBytes;
        QVERIFY2(kvBoth < 2 * kvAlone - kvAlone / 2,
                 qPrintable(QString("%1 vs %2").arg(kvBoth).arg(kvAlone)));

        mgd::SamplingParams sampled;
        sampled.greedy = true;
        sampled.repetitionPenalty = 1.0f;
        sampled.maxNewTokens = 12;
        QCOMPARE(e.regenerate(c1, sampled).tokens, plain.regenerate(p1, sampled).tokens);
        QCOMPARE(e.editLast(c2, ask("Which shapes are there?", false)).tokens,
                 plain.editLast(p2, ask("Which shapes are there?", false)).tokens);
        QCOMPARE(e.submitTurn(c1, ask("And the background?", false)).tokens,
                 plain.submitTurn(p1, ask("And the background?", false)).tokens);
        QCOMPARE(e.submitTurn(c2, ask("How many?", false)).tokens,
                 plain.submitTurn(p2, ask("How many?", false)).tokens);

        e.deleteConversation(c1);
        QVERIFY(e.sharedKvStats().references > 0); // c2 still holds them
        e.deleteConversation(c2);
        const mgd::PrefixBlockStats gone = e.sharedKvStats();
        QCOMPARE(gone.references, uint64_t{0});
        QCOMPARE(gone.referenced, uint64_t{0});
        QVERIFY(gone.blocks > 0);                            // cached until the pool needs the room
        QVERIFY(e.metricsSnapshot().memory.poolKvBytes > 0); // only those (cleared below)

        // A new conversation on the image finds the cached blocks though nobody holds them.
        const int c3 = e.newConversation();
        auto third = e.submitTurn(c3, ask("Describe the colors.", true));
        QVERIFY(third.stats.prefixFromOtherConversation);
        QVERIFY(third.stats.reusedTokens >= 96);
        QCOMPARE(third.tokens, second.tokens);
        e.deleteConversation(c3);
        e.clearCaches();
        QCOMPARE(e.sharedKvStats().blocks, uint64_t{0});
        QCOMPARE(e.metricsSnapshot().memory.poolKvBytes, uint64_t{0});
    }

    void featureCacheHitEqualsRecomputationAndSurvivesRestart() {
        QTemporaryDir tmp;
        std::vector<int32_t> firstTokens;
        {
            mgd::EngineSettings s = settingsIn(tmp);
            s.prefixCache = false; // force the image to be needed again
            mgd::Engine e(s);
            e.loadModel(kV1);
            firstTokens = e.submitTurn(e.newConversation(), ask("What is in this image?", true)).tokens;
            auto again = e.submitTurn(e.newConversation(), ask("What is in this image?", true));
            QCOMPARE(again.stats.imagesEncoded, 0);
            QVERIFY(again.stats.responseCacheHit);
            QCOMPARE(again.tokens, firstTokens);
            auto other = e.submitTurn(e.newConversation(), ask("Colors?", true));
            QCOMPARE(other.stats.imagesEncoded, 0); // a feature-cache hit
            QVERIFY(hitRate(e, "feature") > 0);
        }
        // A new engine (an app restart) finds the features on disk.
        mgd::Engine e(settingsIn(tmp));
        e.loadModel(kV1);
        auto r = e.submitTurn(e.newConversation(), ask("What is in this image?", true));
        QCOMPARE(r.stats.imagesEncoded, 0);
        QCOMPARE(r.tokens, firstTokens);
        QCOMPARE(e.preloadImages({kV1 + "/image.png"}), 0); // already cached
        // Another vision model: the same pixels are a different key, so they are computed.
        mgd::Engine v2(settingsIn(tmp));
        v2.loadModel(kV2);
        QCOMPARE(v2.preloadImages({kV1 + "/image.png"}), 1);
        QCOMPARE(v2.submitTurn(v2.newConversation(), ask("Hi", true)).stats.imagesEncoded, 0);
    }

    void responseCacheOnlyForGreedyRequests() {
        QTemporaryDir tmp;
        mgd::Engine e(settingsIn(tmp));
        e.loadModel(kV2);
        auto sampled = [&] {
            mgd::TurnRequest r = ask("Tell me a story.", true, 12);
            r.sampling.greedy = false;
            r.sampling.temperature = 1.0f;
            r.sampling.seed = 3;
            return e.submitTurn(e.newConversation(), r);
        };
        auto a = sampled(), b = sampled();
        QVERIFY(!a.stats.responseCacheHit && !b.stats.responseCacheHit);
        QCOMPARE(b.stats.generatedTokens, 12); // really decoded again
        auto g1 = e.submitTurn(e.newConversation(), ask("Tell me a story.", true, 12));
        auto g2 = e.submitTurn(e.newConversation(), ask("Tell me a story.", true, 12));
        QVERIFY(!g1.stats.responseCacheHit);
        QVERIFY(g2.stats.responseCacheHit);
        QCOMPARE(g2.tokens, g1.tokens);
        QCOMPARE(QString::fromStdString(g2.answer), QString::fromStdString(g1.answer));
        QVERIFY(hitRate(e, "response") > 0);
    }

    void pooledKvGivesSameTokensAsContiguousKv() {
        QTemporaryDir tmp;
        mgd::EngineSettings pooled = settingsIn(tmp), plain = settingsIn(tmp);
        plain.memoryPool = false;
        pooled.responseCache = plain.responseCache = false;
        pooled.kvBlockPositions = 64; // several blocks per layer within the 256-position context
        mgd::Engine a(pooled), b(plain);
        a.loadModel(kV2);
        b.loadModel(kV2);
        const int ca = a.newConversation(), cb = b.newConversation();
        // Turns long enough to span several 64-position blocks.
        const char *qs[] = {"What is in this image?", "What color is the background?", "And the disc?"};
        for (int i = 0; i < 3; ++i) {
            auto ra = a.submitTurn(ca, ask(qs[i], i == 0, 60));
            auto rb = b.submitTurn(cb, ask(qs[i], i == 0, 60));
            QCOMPARE(ra.tokens, rb.tokens);
        }
        const auto snap = a.metricsSnapshot();
        QVERIFY(snap.memory.poolCapacityBytes > 0);
        QVERIFY(snap.memory.poolKvBytes > 0);
        QVERIFY(snap.memory.poolUsedBytes <= snap.memory.poolCapacityBytes);
    }

    void exhaustedPoolEvictsIdleConversationsThenRefusesClearly() {
        QTemporaryDir tmp;
        mgd::EngineSettings s = settingsIn(tmp);
        s.responseCache = false;
        s.prefixCache = false;
        // v2 tiny with 128-position blocks: a block is 2 (K,V) x 4 heads x 128 x 16 x 4 B =
        // 64 KiB; a conversation of <= 128 positions needs 2 blocks (one per layer), its image 1.
        s.kvBlockPositions = 128;
        s.memoryPoolBytes = 3 * 65536;
        mgd::Engine e(s);
        e.loadModel(kV2);
        const int c1 = e.newConversation();
        e.submitTurn(c1, ask("What is in this image?", true));
        const int c2 = e.newConversation();
        e.submitTurn(c2, ask("What is in this image?", true)); // evicts c1's KV
        auto back = e.submitTurn(c1, ask("And now?", false));  // c1 re-prefills: nothing lost
        QCOMPARE(back.stats.reusedTokens, int64_t{0});
        QCOMPARE(static_cast<int>(e.messages(c1).size()), 4);
        // One conversation longer than the whole pool: a clear refusal, the chat kept.
        try {
            e.submitTurn(c2, ask("Tell me more and more.", false, 200));
            QFAIL("expected the pool to be exhausted");
        } catch (const mgd::Error &err) {
            QVERIFY2(std::string(err.what()).find("memory pool exhausted") != std::string::npos, err.what());
        }
        QCOMPARE(static_cast<int>(e.messages(c2).size()), 2);
        const auto snap = e.metricsSnapshot();
        QVERIFY(snap.memory.poolAllocFailures > 0);
        QVERIFY(snap.memory.poolHighWaterBytes <= snap.memory.poolCapacityBytes);
    }

    void settingsChangeMidConversationKeepsItWorking() {
        QTemporaryDir tmp;
        mgd::EngineSettings s = settingsIn(tmp);
        s.responseCache = false;
        mgd::Engine e(s), ref(s);
        e.loadModel(kV1);
        ref.loadModel(kV1);
        const int c = e.newConversation(), r = ref.newConversation();
        QCOMPARE(e.submitTurn(c, ask("What is in this image?", true)).tokens,
                 ref.submitTurn(r, ask("What is in this image?", true)).tokens);
        for (bool pool : {false, true}) {
            s.memoryPool = pool;
            s.memoryPoolBytes = pool ? (8u << 20) : 0;
            e.applySettings(s); // the KV storage changes under the conversation
            auto a = e.submitTurn(c, ask(pool ? "And now?" : "Colors?", false));
            auto b = ref.submitTurn(r, ask(pool ? "And now?" : "Colors?", false));
            QCOMPARE(a.tokens, b.tokens);
            QCOMPARE(a.stats.reusedTokens, int64_t{0}); // re-prefilled into the new storage
        }
        QCOMPARE(e.metricsSnapshot().memory.poolCapacityBytes, uint64_t{8u << 20});
    }

    // Handing the heap's free memory back between turns changes nothing a conversation holds:
    // the follow-up reuses the KV and answers as without it.
    void idleMemoryReleaseKeepsTheConversation() {
        QTemporaryDir tmp;
        mgd::Engine a(settingsIn(tmp)), b(settingsIn(tmp));
        a.loadModel(kV1), b.loadModel(kV1);
        const int ca = a.newConversation(), cb = b.newConversation();
        a.submitTurn(ca, ask("What is in this image?", true));
        b.submitTurn(cb, ask("What is in this image?", true));
        a.releaseIdleMemory();
        const auto ra = a.submitTurn(ca, ask("Describe the colors.", false));
        const auto rb = b.submitTurn(cb, ask("Describe the colors.", false));
        QCOMPARE(ra.tokens, rb.tokens);
        QCOMPARE(ra.stats.reusedTokens, rb.stats.reusedTokens);
        QVERIFY(ra.stats.reusedTokens > 100);
    }

    void everyCacheCanBeTurnedOff() {
        QTemporaryDir tmp;
        mgd::EngineSettings s = settingsIn(tmp);
        s.featureCache = s.prefixCache = s.responseCache = s.memoryPool = s.kvReuse = false;
        mgd::Engine e(s);
        e.loadModel(kV1);
        auto a = e.submitTurn(e.newConversation(), ask("What is in this image?", true));
        auto b = e.submitTurn(e.newConversation(), ask("What is in this image?", true));
        QCOMPARE(b.stats.imagesEncoded, 1);
        QVERIFY(!b.stats.responseCacheHit);
        QCOMPARE(b.stats.reusedTokens, int64_t{0});
        QCOMPARE(a.tokens, b.tokens);
        QCOMPARE(e.metricsSnapshot().memory.poolCapacityBytes, uint64_t{0});
    }
};

QTEST_APPLESS_MAIN(TestEngineCaches)
#include "test_engine_caches.moc"
