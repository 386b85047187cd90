// The shipped demo model (resources/demo-model), evaluated through the engine on fresh
// held-out questions: a regression in the inference path (or a broken model file) fails here.
#include <QtTest>

#include <cstdio>
#include <filesystem>

#include "core/train/demo_train.h"

using namespace mgd::demo;

#ifndef MGD_DEMO_MODEL_DIR
#define MGD_DEMO_MODEL_DIR MGD_TEST_DATA "/../../resources/demo-model"
#endif

class TestDemoModel : public QObject {
    Q_OBJECT
private slots:
    void answersHeldOutQuestions() {
        const std::string dir = MGD_DEMO_MODEL_DIR;
        QVERIFY2(std::filesystem::exists(dir + "/weights.safetensors"), dir.c_str());
        // A seed no training or reported evaluation used; 20 questions per type.
        // And two more questions about the same image in each conversation, as people chat.
        const EvalReport r = evaluateDemoModel(dir, 140, 777001, 1, 2);
        std::printf("%s", r.table().c_str());
        for (size_t i = 0; i < r.errors.size() && i < 8; ++i) std::printf("  ERR %s\n", r.errors[i].c_str());
        // Thresholds just below what the shipped model reaches on this seed (see the README).
        QVERIFY2(r.overall() >= kMinOverall, qPrintable(QString("overall %1").arg(r.overall())));
        QCOMPARE(r.laterTotal, 280);
        const double later = double(r.laterCorrect) / r.laterTotal;
        QVERIFY2(later >= kMinLater, qPrintable(QString("later questions %1").arg(later)));
    }

private:
    // The shipped model reaches 0.907 (127/140) and 0.882 on the later questions (247/280) on
    // this seed; on 500 questions (seed 12345) 90.0% and 90.3% (a model trained on single
    // exchanges got 25.6% on the later ones).
    static constexpr double kMinOverall = 0.85;
    static constexpr double kMinLater = 0.82;
};

QTEST_APPLESS_MAIN(TestDemoModel)
#include "test_demo_model.moc"
