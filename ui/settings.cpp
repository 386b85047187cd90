#include "ui/settings.h"

#include "core/util/install_paths.h"

#include <QSettings>

#ifndef MGD_DEFAULT_MODEL
#define MGD_DEFAULT_MODEL ""
#endif

namespace {

constexpr uint64_t kMiB = 1ull << 20;

uint64_t mib(const QSettings &s, const char *key, uint64_t defBytes) {
    return s.value(key, QVariant::fromValue<qulonglong>(defBytes / kMiB)).toULongLong() * kMiB;
}

} // namespace

Settings::Settings(const QString &iniPath, QObject *parent)
    : QObject(parent),
      store_(iniPath.isEmpty() ? std::make_unique<QSettings>()
                               : std::make_unique<QSettings>(iniPath, QSettings::IniFormat)) {}

Settings::~Settings() = default;

QString Settings::defaultModelDir() {
    return QString::fromStdString(mgd::defaultModelDir(MGD_DEFAULT_MODEL));
}

SettingsValues Settings::defaults() {
    SettingsValues v;
    v.modelDir = defaultModelDir();
    // The fastest precision whose answers hold (bf16 where the CPU computes it natively).
    v.engine.dtype = "auto";
    return v;
}

QString Settings::fileName() const {
    return store_->fileName();
}

SettingsValues Settings::values() const {
    const QSettings &s = *store_;
    const SettingsValues d = defaults();
    SettingsValues v;
    v.modelDir = s.value("model/dir", d.modelDir).toString();
    if (v.modelDir.isEmpty()) v.modelDir = d.modelDir;

    mgd::EngineSettings &e = v.engine;
    e.device = s.value("model/device", QString::fromStdString(d.engine.device)).toString().toStdString();
    e.dtype = s.value("model/dtype", QString::fromStdString(d.engine.dtype)).toString().toStdString();
    e.threads = s.value("model/threads", d.engine.threads).toInt();
    e.kvReuse = s.value("cache/kvReuse", d.engine.kvReuse).toBool();
    e.featureCache = s.value("cache/feature", d.engine.featureCache).toBool();
    e.prefixCache = s.value("cache/prefix", d.engine.prefixCache).toBool();
    e.responseCache = s.value("cache/response", d.engine.responseCache).toBool();
    e.memoryPool = s.value("memory/pool", d.engine.memoryPool).toBool();
    e.memoryPoolBytes = mib(s, "memory/poolMiB", d.engine.memoryPoolBytes);
    e.featureDeviceBytes = mib(s, "cache/featureDeviceMiB", d.engine.featureDeviceBytes);
    e.featureHostBytes = mib(s, "cache/featureHostMiB", d.engine.featureHostBytes);
    e.featureDiskBytes = mib(s, "cache/featureDiskMiB", d.engine.featureDiskBytes);
    e.featureDiskDir = s.value("cache/featureDiskDir", QString()).toString().toStdString();
    e.redisUrl = s.value("cache/redisUrl", QString()).toString().toStdString();
    e.kvDiskBytes = mib(s, "cache/conversationStateMiB", d.engine.kvDiskBytes);
    e.kvDiskDir = s.value("cache/conversationStateDir", QString()).toString().toStdString();
    e.kvDtype = s.value("cache/kvDtype", QString()).toString() == "int8" ? "int8" : "";
    e.systemPrompt = s.value("prompt/system", QString()).toString().toStdString();
    e.eviction = s.value("cache/eviction", "lru").toString() == "lfu" ? mgd::EvictionPolicy::Lfu
                                                                      : mgd::EvictionPolicy::Lru;

    mgd::SamplingParams &p = v.sampling;
    p.greedy = s.value("sampling/greedy", d.sampling.greedy).toBool();
    p.temperature = s.value("sampling/temperature", d.sampling.temperature).toFloat();
    p.topP = s.value("sampling/topP", d.sampling.topP).toFloat();
    p.topK = s.value("sampling/topK", d.sampling.topK).toInt();
    p.maxNewTokens = s.value("sampling/maxNewTokens", d.sampling.maxNewTokens).toInt();
    p.repetitionPenalty = s.value("sampling/repetitionPenalty", d.sampling.repetitionPenalty).toFloat();
    p.seed = s.value("sampling/seed", QVariant::fromValue<qlonglong>(d.sampling.seed)).toLongLong();
    return v;
}

void Settings::setValues(const SettingsValues &v) {
    const SettingsValues before = values();
    QSettings &s = *store_;
    s.setValue("model/dir", v.modelDir);
    s.setValue("model/device", QString::fromStdString(v.engine.device));
    s.setValue("model/dtype", QString::fromStdString(v.engine.dtype));
    s.setValue("model/threads", v.engine.threads);
    s.setValue("cache/kvReuse", v.engine.kvReuse);
    s.setValue("cache/feature", v.engine.featureCache);
    s.setValue("cache/prefix", v.engine.prefixCache);
    s.setValue("cache/response", v.engine.responseCache);
    s.setValue("memory/pool", v.engine.memoryPool);
    s.setValue("memory/poolMiB", QVariant::fromValue<qulonglong>(v.engine.memoryPoolBytes / kMiB));
    s.setValue("cache/featureDeviceMiB", QVariant::fromValue<qulonglong>(v.engine.featureDeviceBytes / kMiB));
    s.setValue("cache/featureHostMiB", QVariant::fromValue<qulonglong>(v.engine.featureHostBytes / kMiB));
    s.setValue("cache/featureDiskMiB", QVariant::fromValue<qulonglong>(v.engine.featureDiskBytes / kMiB));
    s.setValue("cache/featureDiskDir", QString::fromStdString(v.engine.featureDiskDir));
    s.setValue("cache/redisUrl", QString::fromStdString(v.engine.redisUrl));
    s.setValue("cache/conversationStateMiB", QVariant::fromValue<qulonglong>(v.engine.kvDiskBytes / kMiB));
    s.setValue("cache/conversationStateDir", QString::fromStdString(v.engine.kvDiskDir));
    s.setValue("cache/kvDtype", QString::fromStdString(v.engine.kvDtype));
    s.setValue("prompt/system", QString::fromStdString(v.engine.systemPrompt));
    s.setValue("cache/eviction", v.engine.eviction == mgd::EvictionPolicy::Lfu ? "lfu" : "lru");
    s.setValue("sampling/greedy", v.sampling.greedy);
    s.setValue("sampling/temperature", v.sampling.temperature);
    s.setValue("sampling/topP", v.sampling.topP);
    s.setValue("sampling/topK", v.sampling.topK);
    s.setValue("sampling/maxNewTokens", v.sampling.maxNewTokens);
    s.setValue("sampling/repetitionPenalty", v.sampling.repetitionPenalty);
    s.setValue("sampling/seed", QVariant::fromValue<qlonglong>(v.sampling.seed));
    s.sync();
    const SettingsValues after = values();
    const mgd::SamplingParams &a = before.sampling, &b = after.sampling;
    const bool samplingSame = a.greedy == b.greedy && a.temperature == b.temperature && a.topP == b.topP &&
                              a.topK == b.topK && a.maxNewTokens == b.maxNewTokens &&
                              a.repetitionPenalty == b.repetitionPenalty && a.seed == b.seed;
    if (!samplingSame || before.modelDir != after.modelDir ||
        !sameEngineSettings(before.engine, after.engine))
        emit changed(before, after);
}

QByteArray Settings::windowGeometry() const {
    return store_->value("window/geometry").toByteArray();
}

QByteArray Settings::windowState() const {
    return store_->value("window/state").toByteArray();
}

void Settings::setWindowLayout(const QByteArray &geometry, const QByteArray &state) {
    store_->setValue("window/geometry", geometry);
    store_->setValue("window/state", state);
    store_->sync();
}

bool needsModelReload(const SettingsValues &a, const SettingsValues &b) {
    return a.modelDir != b.modelDir || a.engine.device != b.engine.device || a.engine.dtype != b.engine.dtype;
}

bool sameEngineSettings(const mgd::EngineSettings &a, const mgd::EngineSettings &b) {
    return a == b;
}
