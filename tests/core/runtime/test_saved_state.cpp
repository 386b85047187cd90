// Conversation state across restarts (EngineSettings::kvDiskDir): a restarted engine continues
// a tagged conversation prefilling only the new question, with the answer it would have given
// without the restart; damaged, stale or foreign entries are dropped and never used.
#include <ATen/ATen.h>
#include <QFile>
#include <QTemporaryDir>
#include <QtTest>

#include "core/cache/conversation_kv_store.h"
#include "core/cache/kv_file.h"
#include "core/runtime/engine.h"

namespace {

const std::string kModel = MGD_TEST_DATA "/minigpt4-tiny-hi";

mgd::TurnRequest ask(const std::string &text, bool withImage) {
    mgd::TurnRequest r;
    r.text = text;
    if (withImage) r.images.push_back(mgd::ImageInput::fromFile(kModel + "/image.png"));
    r.sampling.greedy = true;
    r.sampling.repetitionPenalty = 1.0f;
    r.sampling.maxNewTokens = 8;
    return r;
}

mgd::EngineSettings settingsIn(const QTemporaryDir &dir, bool withStateTier = true) {
    mgd::EngineSettings s;
    s.featureDiskBytes = 0;
    s.responseCache = false; // every turn runs the model
    s.kvDiskDir = dir.path().toStdString() + "/state";
    if (!withStateTier) s.kvDiskBytes = 0;
    return s;
}

struct Saved {
    std::vector<mgd::HistoryMessage> history;
};

// Two turns of a tagged conversation, saved; returns its history as the UI would keep it.
// With `third`, the same engine goes on with the third turn (the answer without a restart).
std::vector<mgd::HistoryMessage> twoTurns(const QTemporaryDir &dir, const std::string &tag,
                                          mgd::EngineSettings s, mgd::TurnResult *third = nullptr) {
    mgd::Engine e(s);
    e.loadModel(kModel);
    const int c = e.newConversation(tag);
    std::vector<mgd::HistoryMessage> h;
    for (const auto &[q, img] :
         {std::pair<std::string, bool>{"What is in this image?", true}, {"And the colours?", false}}) {
        const auto r = e.submitTurn(c, ask(q, img));
        mgd::HistoryMessage u{true, q, {}};
        if (img) u.images.push_back(mgd::ImageInput::fromFile(kModel + "/image.png"));
        h.push_back(u);
        h.push_back({false, r.answer, {}});
    }
    e.flushSavedState();
    if (third) *third = e.submitTurn(c, ask("Is it big?", false));
    return h;
}

// The third turn after a restart; `tag` empty: restored from the text alone.
mgd::TurnResult thirdTurn(mgd::EngineSettings s, const std::vector<mgd::HistoryMessage> &h,
                          const std::string &tag, mgd::ConversationKvStats *stats = nullptr) {
    mgd::Engine e(s);
    e.loadModel(kModel);
    const int c = e.restoreConversation(h, tag);
    auto r = e.submitTurn(c, ask("Is it big?", false));
    if (stats) *stats = e.savedStateStats();
    return r;
}

QString onlyEntry(const QTemporaryDir &dir) {
    const QStringList files = QDir(dir.filePath("state")).entryList({"*.mgkv"}, QDir::Files);
    return files.size() == 1 ? dir.filePath("state/" + files[0]) : QString();
}

} // namespace

class TestSavedState : public QObject {
    Q_OBJECT

private slots:
    void restartPrefillsOnlyTheNewQuestion() {
        QTemporaryDir tmp, noRestart;
        const auto history = twoTurns(tmp, "conv-1", settingsIn(tmp));
        QVERIFY(!onlyEntry(tmp).isEmpty());
        mgd::TurnResult continued;
        twoTurns(noRestart, "conv-1", settingsIn(noRestart, false), &continued);
        mgd::ConversationKvStats st;
        const auto restarted = thirdTurn(settingsIn(tmp), history, "conv-1", &st);
        const auto fromText = thirdTurn(settingsIn(tmp, false), history, "");
        QCOMPARE(st.loaded, uint64_t(1));
        // The answer the engine gives without a restart (answers keep their generated token
        // ids: re-tokenizing their text gives other ids on this random-weight model, so a
        // restart without saved state answers differently), from the new question only.
        QCOMPARE(restarted.tokens, continued.tokens);
        QCOMPARE(fromText.stats.reusedTokens, int64_t(0));
        QCOMPARE(restarted.stats.promptTokens, continued.stats.promptTokens);
        // Exactly what the engine that never stopped prefills: the new question (and the last
        // answer's final token, which decoding never fed back).
        QCOMPARE(restarted.stats.prefillTokens, continued.stats.prefillTokens);
        QVERIFY2(restarted.stats.prefillTokens * 5 < restarted.stats.promptTokens,
                 qPrintable(QString("prefilled %1 of %2")
                                .arg(restarted.stats.prefillTokens)
                                .arg(restarted.stats.promptTokens)));
        QCOMPARE(restarted.stats.reusedTokens + restarted.stats.prefillTokens, restarted.stats.promptTokens);
        QCOMPARE(restarted.stats.imagesEncoded, 0); // the image's positions came with the state
    }

    // After a restart, the restored state's full blocks are shared at once: two restored
    // conversations on one image hold its prefix once, and a new conversation on the image
    // starts from those blocks with nothing copied but the last partial block.
    void restoredStateIsSharedWithNewConversations() {
        QTemporaryDir dir;
        const auto h1 = twoTurns(dir, "conv-one", settingsIn(dir));
        const auto h2 = twoTurns(dir, "conv-two", settingsIn(dir));
        mgd::Engine e(settingsIn(dir));
        e.loadModel(kModel);
        e.restoreConversation(h1, "conv-one");
        const uint64_t kvOne = e.metricsSnapshot().memory.poolKvBytes;
        e.restoreConversation(h2, "conv-two");
        const mgd::PrefixBlockStats both = e.sharedKvStats();
        QVERIFY(both.referenced >= 6);
        QVERIFY(both.references >= 2 * 6); // the image prefix held once, referenced twice
        QVERIFY2(e.metricsSnapshot().memory.poolKvBytes < 2 * kvOne,
                 qPrintable(QString("%1 vs %2").arg(e.metricsSnapshot().memory.poolKvBytes).arg(kvOne)));
        const auto fresh = e.submitTurn(e.newConversation(), ask("Describe the colors.", true));
        QVERIFY(fresh.stats.prefixFromOtherConversation);
        QVERIFY(fresh.stats.reusedTokens >= 96);
        QCOMPARE(fresh.stats.imagesEncoded, 0);
    }

    void damagedEntryIsDroppedAndTheHistoryPrefilled() {
        for (const char *damage : {"flip", "truncate", "empty"}) {
            QTemporaryDir tmp;
            const auto history = twoTurns(tmp, "conv-1", settingsIn(tmp));
            const QString path = onlyEntry(tmp);
            QFile f(path);
            QVERIFY(f.open(QIODevice::ReadWrite));
            const qint64 size = f.size();
            if (QByteArray(damage) == "flip") {
                f.seek(size / 2);
                char c;
                f.getChar(&c);
                f.seek(size / 2);
                f.putChar(char(c ^ 0x20));
            } else {
                f.resize(QByteArray(damage) == "empty" ? 0 : size - 100);
            }
            f.close();
            mgd::ConversationKvStats st;
            const auto r = thirdTurn(settingsIn(tmp), history, "conv-1", &st);
            const auto ref = thirdTurn(settingsIn(tmp, false), history, "");
            QCOMPARE(st.rejectedCorrupt, uint64_t(1));
            QCOMPARE(st.loaded, uint64_t(0));
            QCOMPARE(r.stats.reusedTokens, int64_t(0)); // nothing of it was used
            QCOMPARE(r.tokens, ref.tokens);             // exactly the history re-prefilled from its text
        }
    }

    void entryOfAnotherModelOrConversationIsNeverUsed() {
        QTemporaryDir tmp;
        const auto history = twoTurns(tmp, "conv-1", settingsIn(tmp));
        // Another compute dtype: another KV; the entry is stale.
        mgd::EngineSettings bf16 = settingsIn(tmp);
        bf16.dtype = "bfloat16";
        mgd::ConversationKvStats st;
        const auto r = thirdTurn(bf16, history, "conv-1", &st);
        QCOMPARE(st.rejectedStale, uint64_t(1));
        QCOMPARE(r.stats.reusedTokens, int64_t(0));
        // An entry renamed to another conversation's name is refused too.
        QTemporaryDir tmp2;
        const auto h2 = twoTurns(tmp2, "conv-1", settingsIn(tmp2));
        {
            mgd::ConversationKvStore probe(tmp2.path().toStdString() + "/state", 1 << 30, {});
            QVERIFY(QFile::rename(onlyEntry(tmp2), QString::fromStdString(probe.pathOf("conv-2"))));
        }
        const auto r2 = thirdTurn(settingsIn(tmp2), h2, "conv-2", &st);
        QCOMPARE(st.loaded, uint64_t(0));
        QCOMPARE(r2.stats.reusedTokens, int64_t(0));
    }

    void editedHistoryUsesOnlyTheMatchingPrefix() {
        QTemporaryDir tmp;
        auto history = twoTurns(tmp, "conv-1", settingsIn(tmp));
        history[2].text = "And the shapes?"; // the second question was edited elsewhere
        const auto r = thirdTurn(settingsIn(tmp), history, "conv-1");
        // Reused: the system prompt, the image and the first turn; not past the edit.
        QVERIFY2(r.stats.reusedTokens > 100, qPrintable(QString::number(r.stats.reusedTokens)));
        QVERIFY(r.stats.reusedTokens < r.stats.promptTokens - 16);
        QCOMPARE(r.stats.reusedTokens + r.stats.prefillTokens, r.stats.promptTokens);
    }

    // The entry format alone: a whole entry reads back exactly; one with no positions too (its
    // empty tensors have no data pointer to copy to).
    void kvFileRoundTripsIncludingAnEmptyOne() {
        QTemporaryDir tmp;
        const mgd::KvExpectation expect{"m", 2, 2, 4, at::kFloat, 64};
        for (int64_t positions : {int64_t(5), int64_t(0)}) {
            mgd::KvEntry e;
            e.meta = {"m", "c", 2, 2, 4, at::kFloat, {{true, "h", {}}, {false, "g", {7, 8}}}};
            for (int64_t p = 0; p < positions; ++p) e.keys.push_back(p * 3 - 2);
            for (int l = 0; l < 2; ++l) e.layers.push_back(at::randn({2, 2, positions, 4}));
            const std::string path = tmp.filePath("e.mgkv").toStdString();
            mgd::writeKvFile(path, e);
            mgd::KvEntry back;
            std::string why;
            QCOMPARE(mgd::readKvFile(path, expect, back, &why), mgd::KvFileStatus::Ok);
            QCOMPARE(back.keys, e.keys);
            QCOMPARE(back.meta.messages.size(), size_t(2));
            QCOMPARE(back.meta.messages[1].answerIds, std::vector<int32_t>({7, 8}));
            for (int l = 0; l < 2; ++l) QVERIFY(at::equal(back.layers[l], e.layers[l]));
            mgd::KvExpectation other = expect;
            other.model = "another";
            QCOMPARE(mgd::readKvFile(path, other, back, &why), mgd::KvFileStatus::Stale);
        }
    }

    void deletedConversationLosesItsStateAndTheBudgetHolds() {
        QTemporaryDir tmp;
        twoTurns(tmp, "conv-1", settingsIn(tmp));
        const QString first = onlyEntry(tmp);
        const qint64 entryBytes = QFileInfo(first).size();
        QVERIFY(entryBytes > 0);
        {
            mgd::Engine e(settingsIn(tmp));
            e.loadModel(kModel);
            e.forgetSavedState("conv-1");
            QVERIFY(!QFile::exists(first));
        }
        // A budget of about one and a half entries keeps the newest conversation only.
        mgd::EngineSettings small = settingsIn(tmp);
        small.kvDiskBytes = uint64_t(entryBytes) * 3 / 2;
        twoTurns(tmp, "conv-a", small);
        twoTurns(tmp, "conv-b", small);
        mgd::Engine e(small);
        e.loadModel(kModel);
        const auto st = e.savedStateStats();
        QCOMPARE(st.entries, uint64_t(1));
        QVERIFY(st.bytes <= small.kvDiskBytes);
        mgd::ConversationKvStore probe(small.kvDiskDir, small.kvDiskBytes, {});
        QVERIFY(QFile::exists(QString::fromStdString(probe.pathOf("conv-b"))));
    }
};

QTEST_APPLESS_MAIN(TestSavedState)
#include "test_saved_state.moc"
