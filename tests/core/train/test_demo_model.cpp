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

private:
    // The shipped model reaches 0.993 (139/140; every type >= 0.95) and 0.961 on the later
    // questions (269/280) on this seed; on 500 questions (seed 12345) 99.0% and 97.1%. The
    // issue's bar: 95% overall, 90% per type (a type has 20 questions here: 2 errors allowed).
    static constexpr double kMinOverall = 0.95;
    static constexpr double kMinPerType = 0.90;
    static constexpr double kMinLater = 0.92;
};

QTEST_APPLESS_MAIN(TestDemoModel)
#include "test_demo_model.moc"
