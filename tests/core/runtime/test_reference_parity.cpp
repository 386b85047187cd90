// The whole inference path against the original MiniGPT-4 code's tensors (tests/data, copied
// from shared/reference): every intermediate, logits, greedy ids, and turn 2 on turn 1's KV.
#include <QProcess>
#include <QtTest>

#include "core/runtime/reference_check.h"

class TestReferenceParity : public QObject {
    Q_OBJECT

    void checkDir(const QString &name) {
        const std::string dir = std::string(MGD_TEST_DATA) + "/" + name.toStdString();
        auto report = mgd::checkReference(dir, 1e-4);
        QVERIFY(report.diffs.size() > 20);
        double worst = 0;
        for (const auto &d : report.diffs) {
            QVERIFY2(d.ok, (d.name + ": max|diff| " + std::to_string(d.maxAbs) + " " + d.note).c_str());
            worst = std::max(worst, d.maxAbs);
        }
        // Turn 2 reused turn 1's KV and prefilled only the rest.
        QVERIFY(report.turn2Reused > 0);
        QCOMPARE(report.turn2Reused + report.turn2Prefilled, report.turn2Prompt);
        QVERIFY(report.turn2Prefilled < report.turn2Prompt / 2);
        qInfo("%s: %zu checks, worst max|diff| %.3g, turn 2 prefilled %ld of %ld", qPrintable(name),
              report.diffs.size(), worst, report.turn2Prefilled, report.turn2Prompt);
    }

private slots:
    void minigpt4MatchesOriginal() { checkDir("minigpt4-tiny-hi"); }
    void minigptv2MatchesOriginal() { checkDir("minigptv2-tiny-hi"); }

    // With the conversation's KV kept as int8, the original's greedy ids stay the same (its
    // logits move by the quantization error, which the tight tolerance would flag).
    void int8KvKeepsTheOriginalsGreedyIds() {
        for (const char *name : {"minigpt4-tiny-hi", "minigptv2-tiny-hi"}) {
            const std::string dir = std::string(MGD_TEST_DATA) + "/" + name;
            const auto r = mgd::checkReference(dir, dir, 1e-4, "", {}, true);
            int ids = 0;
            double worstLogits = 0;
            for (const auto &d : r.diffs) {
                if (d.name.find("greedy_ids") != std::string::npos) {
                    QVERIFY2(d.ok, (std::string(name) + " " + d.name + ": " + d.note).c_str());
                    ++ids;
                }
                if (d.name.find("greedy_step_logits") != std::string::npos)
                    worstLogits = std::max(worstLogits, d.maxAbs);
            }
            QCOMPARE(ids, 2); // turn 1 and turn 2
            QVERIFY(r.turn2Reused > 0);
            qInfo("%s with int8 KV: greedy ids equal, step logits max|diff| %.3g", name, worstLogits);
        }
    }

    void cliVerifyReferencePassesAndFailsOnTamperedData() {
        QProcess p;
        p.start(MGD_CLI, {"verify-reference", MGD_TEST_DATA "/minigpt4-tiny-hi"});
        QVERIFY(p.waitForFinished(120000));
        const QString out = p.readAllStandardOutput();
        QCOMPARE(p.exitCode(), 0);
        QVERIFY2(out.contains("PASS") && out.contains("turn2.logits"), qPrintable(out));
        // A tolerance nothing can meet makes it fail: the check is not vacuous.
        p.start(MGD_CLI, {"verify-reference", MGD_TEST_DATA "/minigptv2-tiny-hi", "--tolerance", "-1"});
        QVERIFY(p.waitForFinished(120000));
        QCOMPARE(p.exitCode(), 1);
    }
};

QTEST_APPLESS_MAIN(TestReferenceParity)
#include "test_reference_parity.moc"
