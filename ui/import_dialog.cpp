#include "ui/import_dialog.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QStringList>
#include <QThread>
#include <QVBoxLayout>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <string>

#include "core/runtime/engine.h"

namespace {

// The line edit's path, with a leading "~/" expanded as a shell would (people type it).
QString pathOf(const QLineEdit *edit) {
    const QString t = edit->text().trimmed();
    if (t == "~" || t.startsWith("~/")) return QDir::homePath() + t.mid(1);
    return t;
}

QString startDir(const QLineEdit *edit) {
    const QString t = pathOf(edit);
    return t.isEmpty() ? QString() : QFileInfo(t).path();
}

QString shortDtype(const QString &dtype) {
    if (dtype == "float16") return QStringLiteral("fp16");
    if (dtype == "float32") return QStringLiteral("fp32");
    return QStringLiteral("bf16");
}

} // namespace

ImportDialog::ImportDialog(const QString &defaultParent, QWidget *parent)
    : QDialog(parent), outParent_(defaultParent) {
    setObjectName("importDialog");
    setWindowTitle(tr("Import Model"));
    setMinimumWidth(600);
    auto *v = new QVBoxLayout(this);
    auto *intro =
        new QLabel(tr("Makes a model folder for this app from the files of the original MiniGPT-4 or "
                      "MiniGPT-v2. The original files are only read."),
                   this);
    intro->setWordWrap(true);
    v->addWidget(intro);

    form_ = new QWidget(this);
    auto *f = new QFormLayout(form_);
    f->setContentsMargins(0, 0, 0, 0);
    arch_ = new QComboBox(form_);
    arch_->setObjectName("arch");
    arch_->addItem(tr("MiniGPT-4 (Vicuna)"), "minigpt4");
    arch_->addItem(tr("MiniGPT-4 (LLaMA-2)"), "minigpt4-llama2");
    arch_->addItem(tr("MiniGPT-v2"), "minigptv2");
    f->addRow(tr("Architecture:"), arch_);

    // Each input named after the original's file, so people recognise what they downloaded.
    auto lineEdit = [this](const char *name, const QString &placeholder) {
        auto *e = new QLineEdit(form_);
        e->setObjectName(name);
        e->setPlaceholderText(placeholder);
        return e;
    };
    auto browseButton = [this](const char *name) {
        auto *b = new QPushButton(tr("Browse…"), form_);
        b->setObjectName(name);
        return b;
    };
    auto browseFile = [this](QLineEdit *edit, const QString &caption) {
        const QString file = QFileDialog::getOpenFileName(
            this, caption, startDir(edit), tr("PyTorch checkpoints (*.pth *.pt *.bin);;All files (*)"));
        if (!file.isEmpty()) edit->setText(file);
    };

    vit_ = lineEdit("vit", tr("eva_vit_g.pth"));
    auto *vitBrowse = browseButton("vitBrowse");
    connect(vitBrowse, &QPushButton::clicked, this,
            [this, browseFile] { browseFile(vit_, tr("EVA ViT-g weights")); });
    f->addRow(tr("EVA ViT-g weights:"), pathRow(vit_, vitBrowse));

    qformer_ = lineEdit("qformer", tr("blip2_pretrained_flant5xxl.pth"));
    qformerBrowse_ = browseButton("qformerBrowse");
    connect(qformerBrowse_, &QPushButton::clicked, this,
            [this, browseFile] { browseFile(qformer_, tr("BLIP-2 Q-Former")); });
    f->addRow(tr("BLIP-2 Q-Former:"), pathRow(qformer_, qformerBrowse_));
    qformerNote_ = new QLabel(tr("Only MiniGPT-4 (Vicuna) uses it; not needed for the others."), form_);
    qformerNote_->setObjectName("qformerNote");
    qformerNote_->setForegroundRole(QPalette::PlaceholderText);
    f->addRow(QString(), qformerNote_);

    llm_ = lineEdit("llm", tr("Vicuna or Llama-2-7b-chat (Hugging Face folder)"));
    auto *llmBrowse = browseButton("llmBrowse");
    connect(llmBrowse, &QPushButton::clicked, this, [this] {
        const QString d = QFileDialog::getExistingDirectory(this, tr("LLM folder"), pathOf(llm_));
        if (!d.isEmpty()) llm_->setText(d);
    });
    f->addRow(tr("LLM folder:"), pathRow(llm_, llmBrowse));

    ckpt_ = lineEdit("ckpt", tr("pretrained_minigpt4.pth / minigptv2_checkpoint.pth"));
    auto *ckptBrowse = browseButton("ckptBrowse");
    connect(ckptBrowse, &QPushButton::clicked, this,
            [this, browseFile] { browseFile(ckpt_, tr("MiniGPT checkpoint")); });
    f->addRow(tr("MiniGPT checkpoint:"), pathRow(ckpt_, ckptBrowse));

    out_ = lineEdit("out", tr("The new model folder (must not exist yet)"));
    auto *outBrowse = browseButton("outBrowse");
    connect(outBrowse, &QPushButton::clicked, this, [this] {
        // Picks the parent; the folder itself gets a name from the architecture and precision.
        const QString d = QFileDialog::getExistingDirectory(
            this, tr("Folder to put the new model in"), outParent_.isEmpty() ? startDir(out_) : outParent_);
        if (d.isEmpty()) return;
        outParent_ = d;
        autoOut_ = out_->text();
        updateDefaultOut();
    });
    f->addRow(tr("Output folder:"), pathRow(out_, outBrowse));

    dtype_ = new QComboBox(form_);
    dtype_->setObjectName("dtype");
    dtype_->addItem(tr("bfloat16 — half the memory, fast on CPU"), "bfloat16");
    dtype_->addItem(tr("float16 — half the memory, best on CUDA"), "float16");
    dtype_->addItem(tr("float32 — twice the memory"), "float32");
    f->addRow(tr("Precision:"), dtype_);

    // Collapsed unless wanted: the standard downloads need none of it. Its values count only
    // while it is ticked.
    advanced_ = new QGroupBox(tr("Advanced (checkpoints other than the standard downloads)"), form_);
    advanced_->setObjectName("advanced");
    advanced_->setCheckable(true);
    advanced_->setChecked(false);
    auto *av = new QVBoxLayout(advanced_);
    advancedBody_ = new QWidget(advanced_);
    av->addWidget(advancedBody_);
    auto *af = new QFormLayout(advancedBody_);
    af->setContentsMargins(0, 0, 0, 0);
    auto spinBox = [this](const char *name, int max, const QString &zeroText) {
        auto *b = new QSpinBox(advancedBody_);
        b->setObjectName(name);
        b->setRange(0, max);
        b->setSpecialValueText(zeroText);
        return b;
    };
    imageSize_ = spinBox("imageSize", 4096, tr("default (224; MiniGPT-v2: 448)"));
    imageSize_->setSuffix(tr(" px"));
    af->addRow(tr("Image size:"), imageSize_);
    vitHeads_ = spinBox("vitHeads", 256, tr("default (16)"));
    af->addRow(tr("ViT heads:"), vitHeads_);
    qformerHeads_ = spinBox("qformerHeads", 256, tr("default (12)"));
    af->addRow(tr("Q-Former heads:"), qformerHeads_);
    loraAlpha_ = new QDoubleSpinBox(advancedBody_);
    loraAlpha_->setObjectName("loraAlpha");
    loraAlpha_->setRange(0, 4096);
    loraAlpha_->setDecimals(1);
    loraAlpha_->setSpecialValueText(tr("the checkpoint's, else 16"));
    af->addRow(tr("LoRA alpha:"), loraAlpha_);
    advancedBody_->setVisible(false);
    connect(advanced_, &QGroupBox::toggled, advancedBody_, &QWidget::setVisible);
    f->addRow(advanced_);
    v->addWidget(form_);

    progress_ = new QProgressBar(this);
    progress_->setObjectName("progress");
    progress_->setRange(0, 1000);
    progress_->setValue(0);
    v->addWidget(progress_);
    status_ = new QLabel(this);
    status_->setObjectName("status");
    status_->setWordWrap(true);
    status_->setTextFormat(Qt::PlainText); // paths and core messages, never markup
    status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    v->addWidget(status_);
    v->addStretch(1);

    // "Use this model" is added on success: the box shows every button it lays out.
    buttons_ = new QDialogButtonBox(this);
    importButton_ = buttons_->addButton(tr("Import"), QDialogButtonBox::ActionRole);
    importButton_->setObjectName("importButton");
    closeButton_ = buttons_->addButton(tr("Close"), QDialogButtonBox::RejectRole);
    closeButton_->setObjectName("closeButton");
    importButton_->setDefault(true);
    connect(importButton_, &QPushButton::clicked, this, &ImportDialog::startImport);
    connect(buttons_, &QDialogButtonBox::accepted, this, &QDialog::accept);
    connect(buttons_, &QDialogButtonBox::rejected, this, [this] {
        if (isRunning())
            cancelImport(); // the button reads "Cancel" meanwhile; the dialog stays to say so
        else
            reject();
    });
    v->addWidget(buttons_);

    connect(arch_, &QComboBox::currentIndexChanged, this, &ImportDialog::updateForArch);
    connect(dtype_, &QComboBox::currentIndexChanged, this, &ImportDialog::updateDefaultOut);
    updateForArch();
}

ImportDialog::~ImportDialog() {
    // The thread uses this object until it ends; what it posted afterwards dies with us.
    if (thread_) {
        cancel_.store(true);
        thread_->wait();
    }
}

QWidget *ImportDialog::pathRow(QLineEdit *edit, QPushButton *browse) {
    auto *w = new QWidget(form_);
    auto *h = new QHBoxLayout(w);
    h->setContentsMargins(0, 0, 0, 0);
    h->addWidget(edit, 1);
    h->addWidget(browse);
    return w;
}

QString ImportDialog::derivedName() const {
    return arch_->currentData().toString() + "-" + shortDtype(dtype_->currentData().toString());
}

void ImportDialog::updateForArch() {
    const bool hasQFormer = arch_->currentData().toString() == "minigpt4";
    qformer_->setEnabled(hasQFormer);
    qformerBrowse_->setEnabled(hasQFormer);
    qformerHeads_->setEnabled(hasQFormer);
    updateDefaultOut();
}

void ImportDialog::updateDefaultOut() {
    if (outParent_.isEmpty() || out_->text() != autoOut_) return; // the person's own choice stays
    const QDir parent(outParent_);
    const QString base = derivedName();
    QString name = base;
    for (int i = 2; QFileInfo::exists(parent.filePath(name)); ++i) name = base + "-" + QString::number(i);
    autoOut_ = parent.filePath(name);
    out_->setText(autoOut_);
}

void ImportDialog::setInputs(const QString &arch, const QString &vit, const QString &qformer,
                             const QString &llm, const QString &ckpt, const QString &out,
                             const QString &dtype) {
    if (const int a = arch_->findData(arch); a >= 0) arch_->setCurrentIndex(a);
    if (const int d = dtype_->findData(dtype); d >= 0) dtype_->setCurrentIndex(d);
    vit_->setText(vit);
    qformer_->setText(qformer);
    llm_->setText(llm);
    ckpt_->setText(ckpt);
    if (!out.isEmpty()) out_->setText(out); // empty keeps the derived default
}

void ImportDialog::setAdvanced(int imageSize, int vitHeads, int qformerHeads, double loraAlpha) {
    imageSize_->setValue(imageSize);
    vitHeads_->setValue(vitHeads);
    qformerHeads_->setValue(qformerHeads);
    loraAlpha_->setValue(loraAlpha);
    advanced_->setChecked(imageSize > 0 || vitHeads > 0 || qformerHeads > 0 || loraAlpha > 0);
}

QString ImportDialog::statusText() const {
    return status_->text();
}

void ImportDialog::setStatus(const QString &text) {
    status_->setText(text);
    status_->setToolTip(QString());
}

void ImportDialog::setRunning(bool running) {
    form_->setEnabled(!running);
    if (importButton_) importButton_->setEnabled(!running);
    closeButton_->setText(running ? tr("Cancel") : tr("Close"));
}

void ImportDialog::startImport() {
    if (isRunning() || !importButton_) return; // no Import button: this dialog's import is done
    const QString arch = arch_->currentData().toString();
    const bool hasQFormer = arch == "minigpt4";
    QStringList missing;
    if (pathOf(vit_).isEmpty()) missing << tr("EVA ViT-g weights");
    if (hasQFormer && pathOf(qformer_).isEmpty()) missing << tr("BLIP-2 Q-Former");
    if (pathOf(llm_).isEmpty()) missing << tr("LLM folder");
    if (pathOf(ckpt_).isEmpty()) missing << tr("MiniGPT checkpoint");
    if (pathOf(out_).isEmpty()) missing << tr("output folder");
    if (!missing.isEmpty()) {
        setStatus(tr("Fill in: %1.").arg(missing.join(tr(", "))));
        return;
    }
    const QString out = pathOf(out_);
    if (QFileInfo::exists(out)) {
        setStatus(tr("“%1” already exists: choose a new folder.").arg(out));
        return;
    }
    // The app's own models folder may not exist yet; a folder the person named must.
    const QString outParentDir = QFileInfo(out).absolutePath();
    if (!outParent_.isEmpty() && outParentDir == QDir(outParent_).absolutePath()) QDir().mkpath(outParentDir);

    mgd::ImportOptions o;
    o.arch = arch.toStdString();
    o.vit = pathOf(vit_).toStdString();
    if (hasQFormer) o.qformer = pathOf(qformer_).toStdString(); // a stale path would only add a note
    o.llamaModel = pathOf(llm_).toStdString();
    o.ckpt = pathOf(ckpt_).toStdString();
    o.out = out.toStdString();
    o.dtype = dtype_->currentData().toString().toStdString();
    if (advanced_->isChecked()) {
        o.imageSize = imageSize_->value();
        o.vitHeads = vitHeads_->value();
        if (hasQFormer) o.qformerHeads = qformerHeads_->value();
        o.loraAlpha = loraAlpha_->value();
    }

    cancel_.store(false);
    importedDir_.clear();
    progress_->setValue(0);
    setStatus(tr("Starting…"));
    thread_.reset(QThread::create([this, o] {
        // Runs on the import thread: only queued calls reach the widgets.
        using Clock = std::chrono::steady_clock;
        Clock::time_point last{};
        std::string lastStage;
        const auto progress = [&](const mgd::ImportProgress &p) {
            // At most ~20 updates a second, but every change of stage.
            const Clock::time_point now = Clock::now();
            if (p.stage == lastStage && now - last < std::chrono::milliseconds(50)) return;
            last = now;
            lastStage = p.stage;
            QMetaObject::invokeMethod(
                this, [this, p] { showProgress(p); }, Qt::QueuedConnection);
        };
        bool ok = false;
        QString error;
        mgd::ImportSummary summary;
        try {
            summary = mgd::importOriginalModel(o, progress, &cancel_);
            ok = true;
        } catch (const std::exception &e) {
            error = QString::fromUtf8(e.what());
        } catch (...) {
            error = ImportDialog::tr("The import failed with an unknown error.");
        }
        QMetaObject::invokeMethod(
            this, [this, ok, error, summary] { importDone(ok, error, summary); }, Qt::QueuedConnection);
    }));
    setRunning(true);
    thread_->start();
}

void ImportDialog::cancelImport() {
    if (!isRunning()) return;
    cancel_.store(true);
    setStatus(tr("Cancelling…"));
}

void ImportDialog::reject() {
    // Closing mid-import: stop it and wait (it stops within one tensor); the result still
    // arrives queued and is shown by importDone.
    if (thread_) {
        cancel_.store(true);
        thread_->wait();
    }
    QDialog::reject();
}

void ImportDialog::showProgress(const mgd::ImportProgress &p) {
    if (cancel_.load()) return; // keep "Cancelling…" in view
    progress_->setValue(static_cast<int>(std::lround(std::clamp(p.fraction, 0.0, 1.0) * 1000)));
    QString stage = QString::fromStdString(p.stage);
    if (p.stage == "checking")
        stage = tr("Checking");
    else if (p.stage == "hashing")
        stage = tr("Reading and hashing");
    else if (p.stage == "writing")
        stage = tr("Writing");
    else if (p.stage == "done")
        stage = tr("Done");
    setStatus(p.detail.empty() ? stage : tr("%1: %2").arg(stage, QString::fromStdString(p.detail)));
}

void ImportDialog::importDone(bool ok, const QString &error, const mgd::ImportSummary &summary) {
    thread_->wait(); // it posted this as its last act
    thread_.reset();
    if (!ok) {
        setRunning(false);
        progress_->setValue(0);
        const QString message = cancel_.load() ? tr("Cancelled — nothing was written.") : error;
        setStatus(message);
        emit finished(false, message);
        return;
    }
    // A cancel that came after the final rename is too late: the folder is complete, so it
    // counts as imported.
    importedDir_ = QString::fromStdString(summary.outDir);
    QStringList lines;
    lines << tr("Imported %1 tensors (%2 MB) in %3 s into %4.")
                 .arg(summary.tensors)
                 .arg(static_cast<double>(summary.bytesWritten) / 1e6, 0, 'f', 1)
                 .arg(summary.seconds, 0, 'f', 1)
                 .arg(importedDir_);
    for (const std::string &n : summary.notes) lines << tr("Note: %1").arg(QString::fromStdString(n));
    if (!summary.ignoredKeys.empty())
        lines << tr("%n key(s) ignored, as the original ignores them (hover to list them).", nullptr,
                    static_cast<int>(summary.ignoredKeys.size()));
    const QString text = lines.join('\n');
    setStatus(text);
    QStringList ignored;
    for (size_t i = 0; i < summary.ignoredKeys.size() && i < 40; ++i)
        ignored << QString::fromStdString(summary.ignoredKeys[i]);
    if (summary.ignoredKeys.size() > 40) ignored << tr("… and %1 more").arg(summary.ignoredKeys.size() - 40);
    status_->setToolTip(ignored.join('\n'));

    progress_->setValue(1000);
    form_->setEnabled(false); // the folder exists now: importing it again would only fail
    delete importButton_;     // the box forgets it
    importButton_ = nullptr;
    useButton_ = buttons_->addButton(tr("Use this model"), QDialogButtonBox::AcceptRole);
    useButton_->setObjectName("useButton");
    useButton_->setDefault(true);
    closeButton_->setText(tr("Close"));
    emit imported(importedDir_);
    emit finished(true, text);
}
