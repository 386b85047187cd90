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
        for (int t = 0; t < kTypes; ++t) {
            QCOMPARE(r.total[t], 20);
            QVERIFY2(r.accuracy(t) >= kMinPerType,
                     qPrintable(QString("%1 %2").arg(typeName(QType(t))).arg(r.accuracy(t))));
        }
        QCOMPARE(r.laterTotal, 280);
        const double later = double(r.laterCorrect) / r.laterTotal;
        QVERIFY2(later >= kMinLater, qPrintable(QString("later questions %1").arg(later)));
    }

    void reducedPrecisionKeepsAccuracy() {
        // bf16 and int8 (matrix-vector kernels, int8 weights) answer as well as fp32: within
        // one point (issue 13's bar); here 140 questions and their later questions, 2 questions
        // of slack (shipped model on this seed: fp32 0.750, bf16 0.757, int8 0.750).
        const std::string dir = MGD_DEMO_MODEL_DIR;
        const EvalReport f32 = evaluateDemoModel(dir, 140, 777002, 2, 1, "float32");
        for (const char *dtype : {"bfloat16", "int8"}) {
            const EvalReport r = evaluateDemoModel(dir, 140, 777002, 2, 1, dtype);
            std::printf("%s: overall %.3f (float32 %.3f), later %d/%d (float32 %d/%d)\n", dtype, r.overall(),
                        f32.overall(), r.laterCorrect, r.laterTotal, f32.laterCorrect, f32.laterTotal);
            QVERIFY2(r.overall() >= f32.overall() - 2.0 / 140, dtype);
            QVERIFY2(r.laterCorrect >= f32.laterCorrect - 2, dtype);
        }
        // int8 attention state (issue 14): the same bar against the full-width KV (504
        // questions with 8 later each: 78.4% both, later 77.6% vs 77.4%).
        const EvalReport kv8 = evaluateDemoModel(dir, 140, 777002, 2, 1, "float32", "int8");
        std::printf("int8 KV: overall %.3f (full width %.3f), later %d/%d (%d/%d)\n", kv8.overall(), f32.overall(),
                    kv8.laterCorrect, kv8.laterTotal, f32.laterCorrect, f32.laterTotal);
        QVERIFY(kv8.overall() >= f32.overall() - 2.0 / 140);
        QVERIFY(kv8.laterCorrect >= f32.laterCorrect - 2);
    }

private:
    // Regression floors just below what the shipped model reaches on this seed: 0.843
    // (118/140; every type >= 0.75) and 0.814 on the later questions (228/280); on 504
    // questions (seed 12345, 8 later questions each) 78.4% and 77.4%. These are the generator's
    // whole range of drawings (any canvas, size, angle, fill); issue 12's bar (97%) is not met.
    static constexpr double kMinOverall = 0.80;
    static constexpr double kMinPerType = 0.70;
    static constexpr double kMinLater = 0.77;
};

QTEST_APPLESS_MAIN(TestDemoModel)
#include "test_demo_model.moc"
