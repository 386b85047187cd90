// Multi-turn generation through the Engine facade: KV reuse across turns, equality with a
// full re-prefill, seeded sampling, cancel, regenerate/edit, context overflow, bad input.
#include <QtTest>

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include "core/runtime/engine.h"
#include "core/util/error.h"

namespace {

const std::string kV1 = MGD_TEST_DATA "/minigpt4-tiny-hi";
const std::string kV2 = MGD_TEST_DATA "/minigptv2-tiny-hi";

// Tests never touch the user's feature cache folder.
mgd::EngineSettings noDisk() {
    mgd::EngineSettings s;
    s.featureDiskBytes = 0;
    return s;
}

mgd::TurnRequest ask(const std::string &text, bool withImage, int maxNew = 8) {
    mgd::TurnRequest r;
    r.text = text;
    if (withImage) r.images.push_back(mgd::ImageInput::fromFile(kV1 + "/image.png"));
    r.sampling.greedy = true;
    r.sampling.repetitionPenalty = 1.0f;
    r.sampling.maxNewTokens = maxNew;
    return r;
}

} // namespace

class TestGeneration : public QObject {
    Q_OBJECT

private slots:
    void followUpTurnPrefillsOnlyNewTokens() {
        mgd::Engine e(noDisk());
        e.loadModel(kV1);
        const int c = e.newConversation();
        auto t1 = e.submitTurn(c, ask("What is in this image?", true));
        QCOMPARE(t1.stats.imagesEncoded, 1);
        QCOMPARE(t1.stats.reusedTokens, int64_t{0});
        QCOMPARE(t1.stats.prefillTokens, t1.stats.promptTokens);
        auto t2 = e.submitTurn(c, ask("What color is the background?", false));
        QCOMPARE(t2.stats.imagesEncoded, 0);
        // Everything of turn 1 up to its answer is reused; only the new text is prefilled.
        QVERIFY2(
            t2.stats.reusedTokens >= t1.stats.promptTokens,
            qPrintable(QString("reused %1 of %2").arg(t2.stats.reusedTokens).arg(t2.stats.promptTokens)));
        QCOMPARE(t2.stats.reusedTokens + t2.stats.prefillTokens, t2.stats.promptTokens);
        QVERIFY(t2.stats.prefillTokens < t2.stats.promptTokens / 3);
    }

    void kvReuseGivesSameTokensAsFullReprefill() {
        for (const std::string &dir : {kV1, kV2}) {
            mgd::EngineSettings off = noDisk();
            off.kvReuse = false;
            mgd::Engine reuse(noDisk()), full(off);
            reuse.loadModel(dir);
            full.loadModel(dir);
            const int a = reuse.newConversation(), b = full.newConversation();
            const char *qs[] = {"What is in this image?", "What color is the background?", "And the shape?"};
            for (int i = 0; i < 3; ++i) {
                auto ra = reuse.submitTurn(a, ask(qs[i], i == 0, 6));
                auto rb = full.submitTurn(b, ask(qs[i], i == 0, 6));
                QCOMPARE(ra.tokens, rb.tokens);
                QCOMPARE(ra.stats.promptTokens, rb.stats.promptTokens);
                if (i > 0) QVERIFY(ra.stats.prefillTokens < rb.stats.prefillTokens);
                QCOMPARE(rb.stats.prefillTokens, rb.stats.promptTokens);
            }
        }
    }

    void samplingIsReproducibleWithSeed() {
        mgd::Engine e(noDisk());
        e.loadModel(kV2);
        auto run = [&](int64_t seed) {
            const int c = e.newConversation();
            mgd::TurnRequest r = ask("Describe it.", true, 24);
            r.sampling.greedy = false;
            r.sampling.temperature = 1.5f;
            r.sampling.topP = 0.95f;
            r.sampling.topK = 50;
            r.sampling.seed = seed;
            return e.submitTurn(c, r).tokens;
        };
        const auto a = run(7), b = run(7), c = run(8);
        QCOMPARE(a, b);
        QVERIFY(a != c);
    }

    void cancelStopsPromptly() {
        mgd::Engine e(noDisk());
        e.loadModel(kV2);
        const int c = e.newConversation();
        std::atomic<bool> started{false};
        std::chrono::steady_clock::time_point cancelledAt;
        std::thread canceller([&] {
            while (!started.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
            std::this_thread::sleep_for(std::chrono::milliseconds(30));
            cancelledAt = std::chrono::steady_clock::now();
            e.cancel();
        });
        mgd::TurnRequest r = ask("Tell me everything.", true, 200);
        auto res = e.submitTurn(c, r, [&](const std::string &) {
            started.store(true);
            std::this_thread::sleep_for(std::chrono::milliseconds(2)); // a slow consumer
        });
        const auto returned = std::chrono::steady_clock::now();
        canceller.join();
        QVERIFY(res.stats.cancelled);
        QCOMPARE(QString::fromLatin1(mgd::stopReasonName(res.stats.stopReason)), QString("cancelled"));
        QVERIFY(res.stats.generatedTokens < 200);
        const double ms = std::chrono::duration<double, std::milli>(returned - cancelledAt).count();
        QVERIFY2(ms < 500, qPrintable(QString("returned %1 ms after cancel").arg(ms)));
        // The partial answer is kept and the conversation goes on.
        QCOMPARE(static_cast<int>(e.messages(c).size()), 2);
        auto next = e.submitTurn(c, ask("Go on.", false));
        QVERIFY(!next.stats.cancelled);
    }

    void regenerateAndEditTruncateToCommonPrefix() {
        mgd::EngineSettings s = noDisk();
        s.responseCache = false; // greedy regenerate would otherwise be answered from it
        mgd::Engine e(s);
        e.loadModel(kV1);
        const int c = e.newConversation();
        auto t1 = e.submitTurn(c, ask("What is in this image?", true));
        auto t2 = e.submitTurn(c, ask("What color is the background?", false));
        auto again = e.regenerate(c, ask("", false).sampling);
        QCOMPARE(static_cast<int>(e.messages(c).size()), 4);
        QCOMPARE(again.tokens, t2.tokens);               // greedy: same answer
        QCOMPARE(again.stats.prefillTokens, int64_t{1}); // only the last prompt position reruns
        auto edited = e.editLast(c, ask("How many shapes?", false));
        const auto msgs = e.messages(c);
        QCOMPARE(static_cast<int>(msgs.size()), 4);
        QCOMPARE(QString::fromStdString(msgs[2].text), QString("How many shapes?"));
        QVERIFY(edited.stats.reusedTokens >= t1.stats.promptTokens);
        QCOMPARE(edited.stats.imagesEncoded, 0);
    }

    void contextOverflowDropsOldestTurnsKeepsImage() {
        mgd::Engine e(noDisk());
        e.loadModel(kV2); // context 256 positions
        const int c = e.newConversation();
        std::string q = "Tell me about the red square and the blue circle in detail please";
        e.submitTurn(c, ask(q, true, 20));
        int dropped = 0;
        for (int i = 0; i < 8 && dropped == 0; ++i) {
            auto r = e.submitTurn(c, ask(q, false, 20));
            dropped = r.stats.droppedTurns;
            if (dropped) QVERIFY2(r.stats.contextImages == 1, "the image must stay in context");
            QVERIFY(r.stats.promptTokens + r.stats.generatedTokens <= 256);
        }
        QVERIFY(dropped > 0);
    }

    void customSystemPromptReplacesTheModelsOwn() {
        mgd::EngineSettings s = noDisk();
        s.responseCache = false;
        mgd::Engine e(s);
        e.loadModel(kV1);
        auto plain = e.submitTurn(e.newConversation(), ask("Hi", true));
        s.systemPrompt = "Be brief.";
        e.applySettings(s);
        auto custom = e.submitTurn(e.newConversation(), ask("Hi", true));
        // The Vicuna system text is far longer than "Be brief."; the rest of the prompt is equal.
        QVERIFY2(custom.stats.promptTokens + 60 < plain.stats.promptTokens,
                 qPrintable(QString("%1 vs %2").arg(custom.stats.promptTokens).arg(plain.stats.promptTokens)));
        QCOMPARE(custom.stats.reusedTokens, int64_t{0}); // no prefix shared with the first chat
    }

    void tooLongQuestionIsRefusedAndLosesNothing() {
        mgd::Engine e(noDisk());
        e.loadModel(kV2);
        const int c = e.newConversation();
        e.submitTurn(c, ask("Hi", true));
        std::string huge;
        for (int i = 0; i < 200; ++i) huge += "word ";
        try {
            e.submitTurn(c, ask(huge, false));
            QFAIL("expected an error");
        } catch (const mgd::Error &err) {
            QVERIFY2(std::string(err.what()).find("too long") != std::string::npos, err.what());
        }
        QCOMPARE(static_cast<int>(e.messages(c).size()), 2);
    }

    void badImageIsRefusedAndLosesNothing() {
        mgd::Engine e(noDisk());
        e.loadModel(kV1);
        const int c = e.newConversation();
        e.submitTurn(c, ask("What is in this image?", true));
        const std::string bad = QDir::tempPath().toStdString() + "/mgd_broken.png";
        std::ofstream(bad, std::ios::binary) << "\x89PNG\r\n\x1a\n garbage";
        mgd::TurnRequest r = ask("And this one?", false);
        r.images.push_back(mgd::ImageInput::fromFile(bad));
        try {
            e.submitTurn(c, r);
            QFAIL("expected an error");
        } catch (const mgd::Error &err) {
            QVERIFY2(std::string(err.what()).find("mgd_broken.png") != std::string::npos, err.what());
        }
        QCOMPARE(static_cast<int>(e.messages(c).size()), 2);
        auto ok = e.submitTurn(c, ask("What color is the background?", false));
        QCOMPARE(ok.stats.imagesEncoded, 0);
        QVERIFY_THROWS_EXCEPTION(mgd::Error, e.submitTurn(c, ask("", false)));
    }
};

QTEST_APPLESS_MAIN(TestGeneration)
#include "test_generation.moc"
