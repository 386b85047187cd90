#include "ui/settings_dialog.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QDialogButtonBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QStandardItemModel>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QTabWidget>
#include <QVBoxLayout>

#include "core/cache/redis_url.h"

namespace {

constexpr uint64_t kMiB = 1ull << 20;

QSpinBox *mibBox(QWidget *parent, uint64_t bytes, int max, const QString &zeroText = {}) {
    auto *b = new QSpinBox(parent);
    b->setRange(0, max);
    b->setSuffix(QObject::tr(" MiB"));
    b->setValue(static_cast<int>(bytes / kMiB));
    if (!zeroText.isEmpty()) b->setSpecialValueText(zeroText);
    return b;
}

QWidget *withBrowse(QWidget *parent, QLineEdit *edit, const QString &caption) {
    auto *w = new QWidget(parent);
    auto *h = new QHBoxLayout(w);
    h->setContentsMargins(0, 0, 0, 0);
    h->addWidget(edit, 1);
    auto *b = new QPushButton(QObject::tr("Browse…"), w);
    QObject::connect(b, &QPushButton::clicked, w, [edit, caption, w] {
        const QString d = QFileDialog::getExistingDirectory(w, caption, edit->text());
        if (!d.isEmpty()) edit->setText(d);
    });
    h->addWidget(b);
    return w;
}

} // namespace

SettingsDialog::SettingsDialog(const SettingsValues &values, const QString &promptTemplate,
                               bool cudaAvailable, QWidget *parent)
    : QDialog(parent), initial_(values) {
    setWindowTitle(tr("Settings"));
    setObjectName("settingsDialog");
    auto *v = new QVBoxLayout(this);
    auto *tabs = new QTabWidget(this);
    tabs->addTab(samplingPage(), tr("Sampling"));
    tabs->addTab(modelPage(promptTemplate, cudaAvailable), tr("Model"));
    tabs->addTab(cachePage(), tr("Caches && memory"));
    v->addWidget(tabs);
    auto *hint = new QLabel(tr("Changes apply at once; a new model folder or device reloads the "
                               "model (conversations are kept)."),
                            this);
    hint->setWordWrap(true);
    hint->setForegroundRole(QPalette::PlaceholderText);
    v->addWidget(hint);
    auto *buttons = new QDialogButtonBox(
        QDialogButtonBox::Ok | QDialogButtonBox::Cancel | QDialogButtonBox::RestoreDefaults, this);
    connect(buttons, &QDialogButtonBox::accepted, this, [this] {
        // A mistyped Redis URL is named here rather than turning into silent misses.
        const std::string url = redisUrl_->text().trimmed().toStdString();
        try {
            if (!url.empty()) mgd::parseRedisUrl(url);
        } catch (const std::exception &e) {
            QMessageBox::warning(this, tr("Shared cache"), QString::fromStdString(e.what()));
            redisUrl_->setFocus();
            return;
        }
        accept();
    });
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    connect(buttons->button(QDialogButtonBox::RestoreDefaults), &QPushButton::clicked, this, [this] {
        const SettingsValues d = Settings::defaults();
        greedy_->setChecked(d.sampling.greedy);
        temperature_->setValue(d.sampling.temperature);
        topP_->setValue(d.sampling.topP);
        topK_->setValue(d.sampling.topK);
        maxNew_->setValue(d.sampling.maxNewTokens);
        repetition_->setValue(d.sampling.repetitionPenalty);
        seed_->setValue(static_cast<int>(d.sampling.seed));
        modelDir_->setText(d.modelDir);
        device_->setCurrentIndex(0);
        dtype_->setCurrentIndex(0);
        threads_->setValue(d.engine.threads);
        systemPrompt_->clear();
        kvReuse_->setChecked(d.engine.kvReuse);
        kvDtype_->setCurrentIndex(0);
        stateDisk_->setValue(static_cast<int>(d.engine.kvDiskBytes / kMiB));
        featureCache_->setChecked(d.engine.featureCache);
        prefixCache_->setChecked(d.engine.prefixCache);
        responseCache_->setChecked(d.engine.responseCache);
        pool_->setChecked(d.engine.memoryPool);
        poolSize_->setValue(static_cast<int>(d.engine.memoryPoolBytes / kMiB));
        featureDevice_->setValue(static_cast<int>(d.engine.featureDeviceBytes / kMiB));
        featureHost_->setValue(static_cast<int>(d.engine.featureHostBytes / kMiB));
        featureDisk_->setValue(static_cast<int>(d.engine.featureDiskBytes / kMiB));
        featureDir_->clear();
        redisUrl_->clear();
        eviction_->setCurrentIndex(0);
    });
    v->addWidget(buttons);
    updateEnabled();
}

QWidget *SettingsDialog::samplingPage() {
    const mgd::SamplingParams &p = initial_.sampling;
    auto *w = new QWidget(this);
    auto *f = new QFormLayout(w);
    greedy_ = new QCheckBox(tr("Always pick the most likely token (deterministic)"), w);
    greedy_->setObjectName("greedy");
    greedy_->setChecked(p.greedy);
    connect(greedy_, &QCheckBox::toggled, this, &SettingsDialog::updateEnabled);
    f->addRow(tr("Greedy:"), greedy_);
    temperature_ = new QDoubleSpinBox(w);
    temperature_->setObjectName("temperature");
    temperature_->setRange(0.0, 2.0);
    temperature_->setSingleStep(0.05);
    temperature_->setValue(p.temperature);
    f->addRow(tr("Temperature:"), temperature_);
    topP_ = new QDoubleSpinBox(w);
    topP_->setObjectName("topP");
    topP_->setRange(0.01, 1.0);
    topP_->setSingleStep(0.05);
    topP_->setValue(p.topP);
    f->addRow(tr("Top-p:"), topP_);
    topK_ = new QSpinBox(w);
    topK_->setObjectName("topK");
    topK_->setRange(0, 100000);
    topK_->setSpecialValueText(tr("off"));
    topK_->setValue(p.topK);
    f->addRow(tr("Top-k:"), topK_);
    maxNew_ = new QSpinBox(w);
    maxNew_->setObjectName("maxNewTokens");
    maxNew_->setRange(1, 8192);
    maxNew_->setValue(p.maxNewTokens);
    f->addRow(tr("Max new tokens:"), maxNew_);
    repetition_ = new QDoubleSpinBox(w);
    repetition_->setObjectName("repetitionPenalty");
    repetition_->setRange(1.0, 3.0);
    repetition_->setSingleStep(0.05);
    repetition_->setValue(p.repetitionPenalty);
    f->addRow(tr("Repetition penalty:"), repetition_);
    seed_ = new QSpinBox(w);
    seed_->setObjectName("seed");
    seed_->setRange(-1, std::numeric_limits<int>::max());
    seed_->setSpecialValueText(tr("random"));
    seed_->setValue(static_cast<int>(std::clamp<int64_t>(p.seed, -1, std::numeric_limits<int>::max())));
    f->addRow(tr("Seed:"), seed_);
    return w;
}

QWidget *SettingsDialog::modelPage(const QString &promptTemplate, bool cudaAvailable) {
    const mgd::EngineSettings &e = initial_.engine;
    auto *w = new QWidget(this);
    auto *f = new QFormLayout(w);
    modelDir_ = new QLineEdit(initial_.modelDir, w);
    modelDir_->setObjectName("modelDir");
    installed_ = new QComboBox(w);
    installed_->setObjectName("installedModels");
    installed_->addItem(tr("(other folder)"), QString());
    connect(installed_, &QComboBox::activated, this, [this](int i) {
        const QString dir = installed_->itemData(i).toString();
        if (!dir.isEmpty()) modelDir_->setText(dir);
    });
    f->addRow(tr("Model:"), installed_);
    f->addRow(tr("Model folder:"), withBrowse(w, modelDir_, tr("Model folder")));
    // bfloat16 halves the memory of an fp32 folder; float16 runs in float32 on a CPU (no fp16
    // matrix products there).
    dtype_ = new QComboBox(w);
    dtype_->setObjectName("dtype");
    dtype_->addItem(tr("Automatic (bfloat16 where the CPU computes it natively)"), QStringLiteral("auto"));
    dtype_->addItem(tr("As the model folder says"), QString());
    dtype_->addItem(tr("bfloat16 (half the memory of float32)"), "bfloat16");
    dtype_->addItem(tr("int8 (quarter of float32; the LLM's matrices)"), "int8");
    dtype_->addItem(tr("float32"), "float32");
    dtype_->addItem(tr("float16 (CUDA; float32 on a CPU)"), "float16");
    dtype_->setCurrentIndex(std::max(0, dtype_->findData(QString::fromStdString(e.dtype))));
    f->addRow(tr("Precision:"), dtype_);
    device_ = new QComboBox(w);
    device_->setObjectName("device");
    device_->addItem(tr("CPU"), "cpu");
    device_->addItem(cudaAvailable ? tr("CUDA") : tr("CUDA (not available)"), "cuda");
    if (!cudaAvailable && e.device != "cuda") {
        // Disabled rather than hidden, so people see the option exists.
        if (auto *m = qobject_cast<QStandardItemModel *>(device_->model())) m->item(1)->setEnabled(false);
    }
    device_->setCurrentIndex(e.device == "cuda" ? 1 : 0);
    f->addRow(tr("Device:"), device_);
    threads_ = new QSpinBox(w);
    threads_->setObjectName("threads");
    threads_->setRange(0, 256);
    threads_->setSpecialValueText(tr("one per core"));
    threads_->setValue(e.threads);
    f->addRow(tr("CPU threads:"), threads_);
    auto *tmpl =
        new QLabel(promptTemplate.isEmpty() ? tr("(load a model to see it)")
                                            : tr("%1 — set by the model's config.json").arg(promptTemplate),
                   w);
    tmpl->setWordWrap(true);
    f->addRow(tr("Prompt template:"), tmpl);
    // Every template puts free text before the first turn; empty keeps the model's own.
    systemPrompt_ = new QPlainTextEdit(QString::fromStdString(e.systemPrompt), w);
    systemPrompt_->setObjectName("systemPrompt");
    systemPrompt_->setPlaceholderText(tr("Empty: the model's own system prompt"));
    systemPrompt_->setMaximumHeight(90);
    f->addRow(tr("System prompt:"), systemPrompt_);
    return w;
}

QWidget *SettingsDialog::cachePage() {
    const mgd::EngineSettings &e = initial_.engine;
    auto *w = new QWidget(this);
    auto *f = new QFormLayout(w);
    kvReuse_ = new QCheckBox(tr("Keep each conversation's KV state between turns"), w);
    kvReuse_->setObjectName("kvReuse");
    kvReuse_->setChecked(e.kvReuse);
    connect(kvReuse_, &QCheckBox::toggled, this, &SettingsDialog::updateEnabled);
    f->addRow(tr("KV reuse:"), kvReuse_);
    kvDtype_ = new QComboBox(w);
    kvDtype_->setObjectName("kvDtype");
    kvDtype_->addItem(tr("Model precision"), QString());
    kvDtype_->addItem(tr("int8 (about 1/4 of float32's memory, 1/2 of bfloat16's)"), QStringLiteral("int8"));
    kvDtype_->setCurrentIndex(e.kvDtype == "int8" ? 1 : 0);
    kvDtype_->setToolTip(tr("How attention state is stored: int8 holds about twice (bfloat16) or four "
                            "times (float32) as many positions in the same memory, at a small cost in "
                            "accuracy"));
    f->addRow(tr("  KV precision:"), kvDtype_);
    stateDisk_ = mibBox(w, e.kvDiskBytes, 1 << 22, tr("off"));
    stateDisk_->setObjectName("conversationStateMiB");
    stateDisk_->setToolTip(tr("Saved attention state of conversations, so a conversation reopened after "
                              "a restart answers without reading its history again"));
    f->addRow(tr("  kept across restarts:"), stateDisk_);
    prefixCache_ = new QCheckBox(tr("New conversations reuse a shared prompt prefix"), w);
    prefixCache_->setObjectName("prefixCache");
    prefixCache_->setChecked(e.prefixCache);
    f->addRow(tr("Prefix cache:"), prefixCache_);
    responseCache_ = new QCheckBox(tr("Repeat answers of identical greedy requests"), w);
    responseCache_->setObjectName("responseCache");
    responseCache_->setChecked(e.responseCache);
    f->addRow(tr("Response cache:"), responseCache_);
    featureCache_ = new QCheckBox(tr("Keep encoded image features for reuse"), w);
    featureCache_->setObjectName("featureCache");
    featureCache_->setChecked(e.featureCache);
    connect(featureCache_, &QCheckBox::toggled, this, &SettingsDialog::updateEnabled);
    f->addRow(tr("Feature cache:"), featureCache_);
    featureDevice_ = mibBox(w, e.featureDeviceBytes, 1 << 20);
    featureDevice_->setObjectName("featureDeviceMiB");
    f->addRow(tr("  device tier:"), featureDevice_);
    featureHost_ = mibBox(w, e.featureHostBytes, 1 << 20);
    featureHost_->setObjectName("featureHostMiB");
    f->addRow(tr("  host tier:"), featureHost_);
    featureDisk_ = mibBox(w, e.featureDiskBytes, 1 << 22, tr("off"));
    featureDisk_->setObjectName("featureDiskMiB");
    f->addRow(tr("  disk tier:"), featureDisk_);
    featureDir_ = new QLineEdit(QString::fromStdString(e.featureDiskDir), w);
    featureDir_->setObjectName("featureDiskDir");
    featureDir_->setPlaceholderText(tr("default ($XDG_CACHE_HOME/minigpt-desk/features)"));
    f->addRow(tr("  disk folder:"), withBrowse(w, featureDir_, tr("Feature cache folder")));
    redisUrl_ = new QLineEdit(QString::fromStdString(e.redisUrl), w);
    redisUrl_->setObjectName("redisUrl");
    redisUrl_->setPlaceholderText(tr("off (e.g. redis://cache-host:6379, shared by a team's desks)"));
    redisUrl_->setToolTip(tr("redis://[:password@]host:port[/db] or unix:///path/to/redis.sock"));
    f->addRow(tr("  shared (Redis):"), redisUrl_);
    eviction_ = new QComboBox(w);
    eviction_->setObjectName("eviction");
    eviction_->addItem(tr("Least recently used (LRU)"));
    eviction_->addItem(tr("Least frequently used (LFU)"));
    eviction_->setCurrentIndex(e.eviction == mgd::EvictionPolicy::Lfu ? 1 : 0);
    f->addRow(tr("Eviction:"), eviction_);
    pool_ = new QCheckBox(tr("Pre-allocate KV state and features in one budgeted pool"), w);
    pool_->setObjectName("memoryPool");
    pool_->setChecked(e.memoryPool);
    connect(pool_, &QCheckBox::toggled, this, &SettingsDialog::updateEnabled);
    f->addRow(tr("Memory pool:"), pool_);
    poolSize_ = mibBox(w, e.memoryPoolBytes, 1 << 20, tr("automatic"));
    poolSize_->setObjectName("poolMiB");
    f->addRow(tr("  pool size:"), poolSize_);
    return w;
}

void SettingsDialog::updateEnabled() {
    for (QWidget *w : {static_cast<QWidget *>(temperature_), static_cast<QWidget *>(topP_),
                       static_cast<QWidget *>(topK_), static_cast<QWidget *>(seed_)})
        w->setEnabled(!greedy_->isChecked());
    const bool fc = featureCache_->isChecked();
    for (QWidget *w : {static_cast<QWidget *>(featureDevice_), static_cast<QWidget *>(featureHost_),
                       static_cast<QWidget *>(featureDisk_), static_cast<QWidget *>(featureDir_),
                       static_cast<QWidget *>(redisUrl_), static_cast<QWidget *>(eviction_)})
        w->setEnabled(fc);
    poolSize_->setEnabled(pool_->isChecked());
    kvDtype_->setEnabled(kvReuse_->isChecked());
    stateDisk_->setEnabled(kvReuse_->isChecked());
}

void SettingsDialog::offerModels(const QList<QPair<QString, QString>> &models) {
    for (const auto &[name, dir] : models) {
        installed_->addItem(name, dir);
        if (QDir(dir) == QDir(modelDir_->text().trimmed()))
            installed_->setCurrentIndex(installed_->count() - 1);
    }
}

SettingsValues SettingsDialog::values() const {
    SettingsValues v = initial_;
    v.sampling.greedy = greedy_->isChecked();
    v.sampling.temperature = static_cast<float>(temperature_->value());
    v.sampling.topP = static_cast<float>(topP_->value());
    v.sampling.topK = topK_->value();
    v.sampling.maxNewTokens = maxNew_->value();
    v.sampling.repetitionPenalty = static_cast<float>(repetition_->value());
    v.sampling.seed = seed_->value();
    v.modelDir = modelDir_->text().trimmed();
    v.engine.device = device_->currentData().toString().toStdString();
    v.engine.dtype = dtype_->currentData().toString().toStdString();
    v.engine.threads = threads_->value();
    v.engine.systemPrompt = systemPrompt_->toPlainText().toStdString();
    v.engine.kvReuse = kvReuse_->isChecked();
    v.engine.prefixCache = prefixCache_->isChecked();
    v.engine.responseCache = responseCache_->isChecked();
    v.engine.featureCache = featureCache_->isChecked();
    v.engine.featureDeviceBytes = uint64_t(featureDevice_->value()) * kMiB;
    v.engine.featureHostBytes = uint64_t(featureHost_->value()) * kMiB;
    v.engine.featureDiskBytes = uint64_t(featureDisk_->value()) * kMiB;
    v.engine.featureDiskDir = featureDir_->text().trimmed().toStdString();
    v.engine.redisUrl = redisUrl_->text().trimmed().toStdString();
    v.engine.eviction = eviction_->currentIndex() == 1 ? mgd::EvictionPolicy::Lfu : mgd::EvictionPolicy::Lru;
    v.engine.kvDtype = kvDtype_->currentData().toString().toStdString();
    v.engine.kvDiskBytes = static_cast<uint64_t>(stateDisk_->value()) * kMiB;
    v.engine.memoryPool = pool_->isChecked();
    v.engine.memoryPoolBytes = uint64_t(poolSize_->value()) * kMiB;
    return v;
}
