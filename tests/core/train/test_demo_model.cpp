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
        const EvalReport r = evaluateDemoModel(dir, 140, 777001, 1);
        std::printf("%s", r.table().c_str());
        for (size_t i = 0; i < r.errors.size() && i < 8; ++i) std::printf("  ERR %s\n", r.errors[i].c_str());
        // Thresholds just below what the shipped model reaches on this seed (see the README).
        QVERIFY2(r.overall() >= kMinOverall, qPrintable(QString("overall %1").arg(r.overall())));
    }

private:
    // The shipped model reaches 0.864 (121/140) on this seed; 87.2% on 500 questions (seed 12345).
    static constexpr double kMinOverall = 0.80;
};

QTEST_APPLESS_MAIN(TestDemoModel)
#include "test_demo_model.moc"
