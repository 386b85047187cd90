#pragma once
// What the chat window does, without the widgets: owns the worker thread, turns user actions
// into TurnJobs, streams answers into the MessageModel, and saves the conversation at every
// step. Lives on the UI thread; never waits on inference (except when the app closes, after
// cancelling the turn, for at most one token).
#include <QObject>
#include <QPointer>
#include <QThread>
#include <QTimer>
#include <optional>

#include "ui/chat_types.h"
#include "ui/engine_worker.h"
#include "ui/settings.h"

class ConversationStore;
class MessageModel;

class ChatController : public QObject {
    Q_OBJECT

public:
    enum class ModelState { NotLoaded, Loading, Ready, Failed };
    Q_ENUM(ModelState)

    ChatController(Settings *settings, ConversationStore *store, QObject *parent = nullptr);
    ~ChatController() override;

    MessageModel *messages() const { return messages_; }
    // Null once shut down.
    EngineWorker *worker() const { return worker_; }
    ConversationStore *store() const { return store_; }
    ModelState modelState() const { return modelState_; }
    const mgd::ModelSummary &modelSummary() const { return summary_; }
    bool busy() const { return job_.has_value(); }
    QString conversationId() const { return conv_.id; }
    std::optional<quint64> runningJob() const;

    bool canRegenerate() const;
    bool canEditLast() const;
    QString lastAnswer() const;
    // The last question, for the composer to edit.
    std::optional<ChatItem> lastQuestion() const;

    void loadModel();
    // Each returns false (and reports why through errorOccurred) when it cannot start.
    bool send(const QString &text, const QList<ImageAttachment> &images);
    bool editLast(const QString &text, const QList<ImageAttachment> &images);
    bool regenerate();
    void stop();
    void newChat();
    bool openConversation(const QString &id);
    // What the engine is given: the settings, with the conversation-state folder in the
    // data folder unless one is set.
    mgd::EngineSettings engineSettings(const SettingsValues &v) const;
    bool deleteConversation(const QString &id);
    // Cancels a running turn, keeps what arrived, saves, and stops the worker thread.
    void shutdown();

signals:
    void modelStateChanged(ModelState state, const QString &message);
    void busyChanged(bool busy);
    void errorOccurred(const QString &message);
    void conversationChanged(const QString &id);
    void turnCompleted(const TurnOutcome &outcome);
    // A turn failed before anything was kept: the composer gets its question back.
    void questionReturned(const QString &text, const QList<ImageAttachment> &images);

    // To the worker (queued).
    void loadRequested(const QString &dir, const mgd::EngineSettings &settings);
    void applyRequested(const mgd::EngineSettings &settings);
    void turnRequested(const TurnJob &job);
    void forgetRequested(const QString &conversation);

private:
    struct RunningJob {
        quint64 id = 0;
        TurnJob::Kind kind = TurnJob::Kind::Submit;
        QList<ChatItem> before; // the conversation as it was, restored if the turn fails
        QString text;
        QList<ImageAttachment> images;
        int row = -1; // the answer being streamed
    };

    bool startJob(TurnJob::Kind kind, const QString &text, const QList<ImageAttachment> &images);
    void onSettingsChanged(const SettingsValues &before, const SettingsValues &after);
    void onToken(quint64 job, const QString &piece);
    void onFinished(const TurnOutcome &outcome);
    void onFailed(quint64 job, const QString &conversation, const QString &message);
    void flushStream();
    void endJob();
    void save();

    Settings *settings_;
    ConversationStore *store_;
    MessageModel *messages_;
    QThread thread_;
    EngineWorker *worker_;
    ConversationData conv_;
    ModelState modelState_ = ModelState::NotLoaded;
    mgd::ModelSummary summary_;
    std::optional<RunningJob> job_;
    std::optional<QString> pendingOpen_; // a conversation to open once the stopped turn ends
    quint64 nextJob_ = 1;
    QString streamBuffer_;
    QTimer flushTimer_;
    bool shutDown_ = false;
};
