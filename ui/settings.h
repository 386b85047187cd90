#pragma once
// The app's persisted preferences (QSettings), mapped one to one onto the core's
// EngineSettings and SamplingParams so the settings dialog, the worker and the CLI flags
// all speak the same struct.
#include <QByteArray>
#include <QObject>
#include <QString>
#include <memory>

#include "core/runtime/engine.h"

class QSettings;

struct SettingsValues {
    QString modelDir;
    mgd::EngineSettings engine;
    mgd::SamplingParams sampling;
};

class Settings : public QObject {
    Q_OBJECT

public:
    // iniPath empty: the platform's usual place for this organisation/application.
    explicit Settings(const QString &iniPath = {}, QObject *parent = nullptr);
    ~Settings() override;

    SettingsValues values() const;
    // Persists at once (sync), then emits changed() when anything differs.
    void setValues(const SettingsValues &v);

    QByteArray windowGeometry() const;
    QByteArray windowState() const;
    void setWindowLayout(const QByteArray &geometry, const QByteArray &state);

    // The model the app opens when none was chosen: the one place that names it.
    static QString defaultModelDir();
    static SettingsValues defaults();
    QString fileName() const;

signals:
    void changed(const SettingsValues &before, const SettingsValues &after);

private:
    std::unique_ptr<QSettings> store_;
};

// True when a change needs the model reloaded (folder or device); everything else is
// applied to the running engine.
bool needsModelReload(const SettingsValues &a, const SettingsValues &b);
bool sameEngineSettings(const mgd::EngineSettings &a, const mgd::EngineSettings &b);
