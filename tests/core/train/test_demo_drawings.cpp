// The shipped demo model on pictures made by other means than its generator: 74 drawings made
// with ImageMagick `convert -draw` by tests/drawings/make_drawings.py (varied canvases and
// backgrounds, filled and outlined, several shapes), every question of a drawing asked in one
// conversation through Engine::submitTurn with the PNG decoded by the app's own decoder.
#include <QtTest>

#include <cstdio>
#include <filesystem>

#include "core/train/drawing_eval.h"

using namespace mgd::demo;

#ifndef MGD_DEMO_MODEL_DIR
#define MGD_DEMO_MODEL_DIR MGD_TEST_DATA "/../../resources/demo-model"
#endif

class TestDemoDrawings : public QObject {
    Q_OBJECT
private slots:
    void answersQuestionsAboutDrawings() {
        const std::string list = MGD_TEST_DATA "/drawings/drawings.json";
        QVERIFY2(std::filesystem::exists(list), list.c_str());
        const DrawingReport r = evaluateDrawings(MGD_DEMO_MODEL_DIR, list);
        std::printf("%d of %d right (%.1f%%), first questions %d of %d\n", r.correct, r.total,
                    100 * r.accuracy(), r.firstCorrect, r.firstTotal);
        for (const auto &f : r.failures) std::printf("  ERR %s\n", f.c_str());
        QVERIFY(r.total >= 500);
        QVERIFY2(r.accuracy() >= kMinAccuracy, qPrintable(QString("accuracy %1").arg(r.accuracy())));
    }

    void answersTheEarlierReportsPictures() {
        // The pictures of the issue and of the first demo model's closing note, redrawn.
        const DrawingReport r =
            evaluateDrawings(MGD_DEMO_MODEL_DIR, MGD_TEST_DATA "/drawings/drawings.json", "earlier-reports");
        std::printf("earlier reports: %d of %d right\n", r.correct, r.total);
        for (const auto &f : r.failures) std::printf("  ERR %s\n", f.c_str());
        QCOMPARE(r.firstTotal, 10);
        QVERIFY2(r.accuracy() >= kMinEarlier, qPrintable(QString("accuracy %1").arg(r.accuracy())));
    }

    void unreadableListIsNamed() {
        try {
            evaluateDrawings(MGD_DEMO_MODEL_DIR, MGD_TEST_DATA "/drawings/no-such.json");
            QFAIL("no error");
        } catch (const std::exception &e) {
            QVERIFY(QString(e.what()).contains("no-such.json"));
        }
    }

private:
    // Regression floors just below what the shipped model reaches: 474/595 (79.7%) on all the
    // drawings, 69/80 (86.2%) on the earlier reports' pictures (the model before this one: 45.5%
    // and 41%). Issue 12's bar is 95%: not reached yet (see resources/demo-model/README.md).
    static constexpr double kMinAccuracy = 0.77;
    static constexpr double kMinEarlier = 0.82;
};

QTEST_APPLESS_MAIN(TestDemoDrawings)
#include "test_demo_drawings.moc"
