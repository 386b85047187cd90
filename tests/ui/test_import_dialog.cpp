// File > Import Model…: the dialog driven through its public API on the tiny original-format
// files, through the real core importer on the dialog's own thread.
#include <QApplication>
#include <QComboBox>
#include <QDir>
#include <QFileInfo>
#include <QLineEdit>
#include <QPushButton>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest>
#include <memory>

#include "ui/import_dialog.h"

namespace {

const QString kV4 = QStringLiteral(MGD_TEST_DATA "/reference-original/minigpt4-tiny-hi/");
const QString kV2 = QStringLiteral(MGD_TEST_DATA "/reference-original/minigptv2-tiny-hi/");

// minigpt4-tiny-hi into `out`; its heads and image size are not the real files' defaults.
void fillMiniGpt4(ImportDialog &d, const QString &out) {
    d.setInputs("minigpt4", kV4 + "eva_vit_g.pth", kV4 + "blip2_pretrained_flant5xxl.pth", kV4 + "vicuna",
                kV4 + "pretrained_minigpt4.pth", out, "float32");
    d.setAdvanced(32, 4, 4, 0);
}

// Everything in `dir`, hidden entries too (a half-written ".name.importing-PID" would show).
QStringList entries(const QTemporaryDir &dir) {
    return QDir(dir.path()).entryList(QDir::AllEntries | QDir::Hidden | QDir::System | QDir::NoDotAndDotDot);
}

} // namespace

class TestImportDialog : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() {
        QVERIFY2(QFileInfo::exists(kV4 + "pretrained_minigpt4.pth"), qPrintable("fixture missing: " + kV4));
        QVERIFY2(QFileInfo::exists(kV2 + "minigptv2_checkpoint.pth"), qPrintable("fixture missing: " + kV2));
    }

    void importsMiniGpt4() {
        QTemporaryDir dir;
        ImportDialog d(dir.path());
        d.show();
        const QString out = dir.filePath("imported");
        fillMiniGpt4(d, out);
        QSignalSpy finished(&d, &ImportDialog::finished);
        QSignalSpy imported(&d, &ImportDialog::imported);
        QVERIFY(!d.findChild<QPushButton *>("useButton"));
        d.startImport();
        QVERIFY(d.isRunning());
        // Inputs are locked while the import thread reads them.
        QVERIFY(!d.findChild<QLineEdit *>("vit")->isEnabled());
        QVERIFY(!d.findChild<QComboBox *>("arch")->isEnabled());
        QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 60000);
        QVERIFY2(finished.at(0).at(0).toBool(), qPrintable(d.statusText()));
        QVERIFY(!d.isRunning());
        QCOMPARE(imported.count(), 1);
        const QString dirOut = imported.at(0).at(0).toString();
        QCOMPARE(QDir::cleanPath(dirOut), QDir::cleanPath(out));
        QCOMPARE(d.importedDir(), dirOut);
        QVERIFY(QFileInfo::exists(out + "/config.json"));
        QVERIFY(QFileInfo::exists(out + "/model.safetensors.index.json"));
        QVERIFY(d.statusText().contains("tensors"));
        QCOMPARE(entries(dir), QStringList{"imported"});

        // "Use this model" accepts; the Import button is gone.
        auto *use = d.findChild<QPushButton *>("useButton");
        QVERIFY(use && use->isVisible());
        QVERIFY(!d.findChild<QPushButton *>("importButton"));
        use->click();
        QCOMPARE(d.result(), int(QDialog::Accepted));
    }

    // The tiny ViT is not EVA ViT-g's width, so without its head count the core refuses,
    // saying which option is missing, and writes nothing.
    void missingHeadsFails() {
        QTemporaryDir dir;
        ImportDialog d(dir.path());
        d.show();
        const QString out = dir.filePath("imported");
        fillMiniGpt4(d, out);
        d.setAdvanced(32, 0, 4, 0);
        QSignalSpy finished(&d, &ImportDialog::finished);
        QSignalSpy imported(&d, &ImportDialog::imported);
        d.startImport();
        QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 60000);
        QVERIFY(!finished.at(0).at(0).toBool());
        QVERIFY2(d.statusText().contains("--vit-heads") || d.statusText().contains("heads"),
                 qPrintable(d.statusText()));
        QCOMPARE(finished.at(0).at(1).toString(), d.statusText());
        QCOMPARE(imported.count(), 0);
        QVERIFY(!QFileInfo::exists(out));
        QVERIFY(entries(dir).isEmpty());
        // The inputs come back so the person can fix them and try again.
        QVERIFY(d.findChild<QLineEdit *>("vit")->isEnabled());
        QVERIFY(d.findChild<QPushButton *>("importButton")->isEnabled());
    }

    void cancelWritesNothing() {
        QTemporaryDir dir;
        ImportDialog d(dir.path());
        d.show();
        const QString out = dir.filePath("imported");
        fillMiniGpt4(d, out);
        QSignalSpy finished(&d, &ImportDialog::finished);
        QSignalSpy imported(&d, &ImportDialog::imported);
        d.startImport();
        d.cancelImport();
        QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 60000);
        QVERIFY(!finished.at(0).at(0).toBool());
        QVERIFY2(d.statusText().startsWith("Cancelled"), qPrintable(d.statusText()));
        QCOMPARE(imported.count(), 0);
        QVERIFY(!QFileInfo::exists(out));
        QVERIFY(entries(dir).isEmpty());
        QVERIFY(!d.isRunning());
    }

    // Closing, or destroying, the dialog mid-import stops the thread without leaks or crashes.
    void closingMidImportStops() {
        QTemporaryDir dir;
        {
            ImportDialog d(dir.path());
            d.show();
            fillMiniGpt4(d, dir.filePath("closed"));
            QSignalSpy finished(&d, &ImportDialog::finished);
            d.startImport();
            d.reject();
            QVERIFY(!d.isVisible());
            QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 60000);
            QVERIFY(!finished.at(0).at(0).toBool());
        }
        {
            auto d = std::make_unique<ImportDialog>(dir.path());
            fillMiniGpt4(*d, dir.filePath("destroyed"));
            d->startImport();
            d.reset();
            QTest::qWait(50); // anything it posted must be dropped with it
        }
        QVERIFY(entries(dir).isEmpty());
    }

    void qformerOnlyForMiniGpt4() {
        QTemporaryDir dir;
        ImportDialog d(dir.path());
        auto *qformer = d.findChild<QLineEdit *>("qformer");
        auto *browse = d.findChild<QPushButton *>("qformerBrowse");
        QVERIFY(qformer && browse);
        d.setInputs("minigptv2", kV2 + "eva_vit_g.pth", {}, kV2 + "llama2-chat",
                    kV2 + "minigptv2_checkpoint.pth", {}, {});
        QVERIFY(!qformer->isEnabled());
        QVERIFY(!browse->isEnabled());
        d.setInputs("minigpt4", {}, {}, {}, {}, {}, {});
        QVERIFY(qformer->isEnabled());
        QVERIFY(browse->isEnabled());
        auto *arch = d.findChild<QComboBox *>("arch");
        arch->setCurrentIndex(arch->findData("minigpt4-llama2"));
        QVERIFY(!qformer->isEnabled());

        // The output folder follows the architecture until the person types their own.
        auto *out = d.findChild<QLineEdit *>("out");
        QCOMPARE(out->text(), QDir(dir.path()).filePath("minigpt4-llama2-bf16"));
        out->setText(dir.filePath("mine"));
        arch->setCurrentIndex(arch->findData("minigptv2"));
        QCOMPARE(out->text(), dir.filePath("mine"));

        // Missing inputs are named in the status line; nothing starts.
        QSignalSpy finished(&d, &ImportDialog::finished);
        d.startImport();
        QVERIFY(!d.isRunning());
        QVERIFY2(d.statusText().contains("EVA ViT-g"), qPrintable(d.statusText()));
        QCOMPARE(finished.count(), 0);
    }

    // MiniGPT-v2: no Q-Former, LoRA folded from the checkpoint.
    void importsMiniGptV2() {
        QTemporaryDir dir;
        ImportDialog d(dir.path());
        const QString out = dir.filePath("v2");
        d.setInputs("minigptv2", kV2 + "eva_vit_g.pth", {}, kV2 + "llama2-chat",
                    kV2 + "minigptv2_checkpoint.pth", out, "bfloat16");
        d.setAdvanced(64, 4, 0, 0);
        QSignalSpy finished(&d, &ImportDialog::finished);
        d.startImport();
        QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 60000);
        QVERIFY2(finished.at(0).at(0).toBool(), qPrintable(d.statusText()));
        QVERIFY(QFileInfo::exists(out + "/config.json"));
    }
};

QTEST_MAIN(TestImportDialog)
#include "test_import_dialog.moc"
