#pragma once
// File > Import Model…: makes a model folder from the original MiniGPT-4 / MiniGPT-v2
// downloads with mgd::importOriginalModel, on a thread of its own so the window stays live.
// Cancelling or closing mid-import stops it; the core then leaves nothing behind.
#include <QDialog>
#include <QString>
#include <atomic>
#include <memory>

class QComboBox;
class QDialogButtonBox;
class QDoubleSpinBox;
class QGroupBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QThread;

namespace mgd {
struct ImportProgress;
struct ImportSummary;
} // namespace mgd

class ImportDialog : public QDialog {
    Q_OBJECT

public:
    // defaultParent: where the new folder goes unless the person picks another place (the
    // app passes "<data dir>/models"; it is created when the import starts).
    explicit ImportDialog(const QString &defaultParent = {}, QWidget *parent = nullptr);
    // Cancels a running import and waits for its thread (it stops within one tensor).
    ~ImportDialog() override;

    // arch: minigpt4 | minigpt4-llama2 | minigptv2; dtype: bfloat16 | float16 | float32, or
    // empty to keep the choice. For tests and for pre-filling.
    void setInputs(const QString &arch, const QString &vit, const QString &qformer, const QString &llm,
                   const QString &ckpt, const QString &out, const QString &dtype);
    // 0 means the importer's default; any non-zero value opens the Advanced group.
    void setAdvanced(int imageSize, int vitHeads, int qformerHeads, double loraAlpha);
    void startImport();
    void cancelImport();
    bool isRunning() const { return thread_ != nullptr; }
    QString statusText() const;
    // The folder the last successful import made; empty before.
    QString importedDir() const { return importedDir_; }

public slots:
    // Escape or the window's close button: a running import is cancelled first.
    void reject() override;

signals:
    void imported(const QString &outDir);
    // Hides QDialog::finished(int); connect to &QDialog::finished for that one.
    void finished(bool ok, const QString &message);

private:
    QWidget *pathRow(QLineEdit *edit, QPushButton *browse);
    QString derivedName() const;
    void updateForArch();
    void updateDefaultOut();
    void setRunning(bool running);
    void setStatus(const QString &text);
    void showProgress(const mgd::ImportProgress &p);
    void importDone(bool ok, const QString &error, const mgd::ImportSummary &summary);

    QString outParent_; // where a derived output folder goes: the default, or the one browsed to
    QString autoOut_;   // the output path last filled in for the person; replaced while unedited
    QString importedDir_;
    QWidget *form_ = nullptr;
    QComboBox *arch_ = nullptr, *dtype_ = nullptr;
    QLineEdit *vit_ = nullptr, *qformer_ = nullptr, *llm_ = nullptr, *ckpt_ = nullptr, *out_ = nullptr;
    QPushButton *qformerBrowse_ = nullptr;
    QLabel *qformerNote_ = nullptr;
    QGroupBox *advanced_ = nullptr;
    QWidget *advancedBody_ = nullptr;
    QSpinBox *imageSize_ = nullptr, *vitHeads_ = nullptr, *qformerHeads_ = nullptr;
    QDoubleSpinBox *loraAlpha_ = nullptr;
    QProgressBar *progress_ = nullptr;
    QLabel *status_ = nullptr;
    QDialogButtonBox *buttons_ = nullptr;
    QPushButton *importButton_ = nullptr, *useButton_ = nullptr, *closeButton_ = nullptr;
    std::unique_ptr<QThread> thread_; // set while an import runs, until its result is shown
    std::atomic<bool> cancel_{false};
};
