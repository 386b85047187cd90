#pragma once
// The bridge between the UI thread and the core: an mgd::Engine living on one worker QThread.
// Everything reaches it through queued signals and leaves through queued signals; the only
// direct calls from other threads are cancel() and metricsSnapshot(), which the Engine
// allows. The bridge translates Qt types to the facade's and back, and nothing more.
#include <QList>
#include <QMutex>
#include <QObject>
#include <QString>
#include <QTimer>
#include <atomic>
#include <map>
#include <memory>
#include <optional>

#include "core/runtime/engine.h"
#include "ui/chat_types.h"

struct TurnJob {
    enum class Kind { Submit, Regenerate, EditLast };
    quint64 id = 0;
    QString conversation; // the UI's conversation id
    Kind kind = Kind::Submit;
    QString text;                  // Submit, EditLast
    QList<ImageAttachment> images; // Submit, EditLast
    mgd::SamplingParams sampling;
    // The conversation before this action. An engine that has not seen the conversation
    // (after a restart or a model reload) is given it first, so the model keeps its context.
    QList<ChatItem> history;
};

struct TurnOutcome {
    quint64 id = 0;
    QString conversation;
    QString answer;
    mgd::TurnStats stats;
    // The engine's view of the conversation after the turn, so the UI (and tests) can check
    // both sides agree after a regenerate or an edit.
    std::vector<mgd::MessageView> engineMessages;
};

Q_DECLARE_METATYPE(TurnJob)
Q_DECLARE_METATYPE(TurnOutcome)
Q_DECLARE_METATYPE(mgd::EngineSettings)
Q_DECLARE_METATYPE(mgd::ModelSummary)

class EngineWorker : public QObject {
    Q_OBJECT

public:
    explicit EngineWorker(QObject *parent = nullptr);
    ~EngineWorker() override;

    // Any thread. Stops job `job` whether it runs already or is still queued (the engine
    // clears its flag when a turn starts, so the request is remembered per job).
    void cancel(quint64 job);
    // Any thread; empty until an engine exists.
    std::optional<mgd::MetricsSnapshot> metricsSnapshot() const;
    // Test-only: sleep this long on the worker thread after each streamed piece, so a test can
    // stop an answer mid-way on a model that answers in milliseconds. 0 (off) in the app.
    void setTokenDelayForTesting(int ms) { tokenDelayMs_.store(ms); }

public slots:
    void loadModel(const QString &dir, const mgd::EngineSettings &settings);
    void applySettings(const mgd::EngineSettings &settings);
    void runTurn(const TurnJob &job);
    // The user deleted the conversation: drops the engine's copy and its saved state.
    void forgetConversation(const QString &conversation);
    // Destroys the engine on the thread that created it; call before the thread quits.
    void shutdown();

signals:
    void modelLoading(const QString &dir);
    void modelLoaded(const mgd::ModelSummary &summary, double ms);
    void modelFailed(const QString &message);
    void settingsApplied();
    void settingsFailed(const QString &message);
    void turnStarted(quint64 job);
    void tokenStreamed(quint64 job, const QString &piece);
    void turnFinished(const TurnOutcome &outcome);
    void turnFailed(quint64 job, const QString &conversation, const QString &message);
    // kIdleReleaseMs after the last turn or load with nothing new queued: the engine handed
    // back `bytes` of RSS the turn had freed (Engine::releaseIdleMemory).
    void idleMemoryReleased(quint64 bytes);

public:
    static constexpr int kIdleReleaseMs = 2000;

private:
    int engineConversation(const TurnJob &job);
    // (Re)starts the idle countdown; a turn stops it. On the worker thread.
    void scheduleIdleRelease();
    QTimer *idleTimer_ = nullptr;
    void ensureEngine(const mgd::EngineSettings &settings);

    mutable QMutex engineMutex_; // guards the pointer (not the engine) for other threads
    std::unique_ptr<mgd::Engine> engine_;
    std::map<QString, int> conversations_; // UI id -> engine id (worker thread only)
    std::atomic<quint64> runningJob_{0};
    std::atomic<quint64> cancelledJob_{0};
    std::atomic<int> tokenDelayMs_{0};
};

// Registers the types above for queued connections (call once, before connecting).
void registerWorkerTypes();
