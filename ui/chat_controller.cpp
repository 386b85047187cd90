#include "ui/chat_controller.h"

#include <QCoreApplication>

#include "ui/conversation_store.h"
#include "ui/message_model.h"

namespace {

// Streamed text reaches the view at most this often: re-rendering Markdown per token would
// cost the UI thread more than the model spends producing it.
constexpr int kFlushMs = 40;

ConversationData freshConversation() {
    ConversationData c;
    c.id = ConversationStore::newId();
    c.created = c.updated = QDateTime::currentDateTimeUtc();
    return c;
}

} // namespace

ChatController::ChatController(Settings *settings, ConversationStore *store, QObject *parent)
    : QObject(parent), settings_(settings), store_(store), messages_(new MessageModel(this)),
      worker_(new EngineWorker), conv_(freshConversation()) {
    registerWorkerTypes();
    thread_.setObjectName("engine-worker");
    worker_->moveToThread(&thread_);

    // Every crossing between the threads is a queued signal.
    const auto q = Qt::QueuedConnection;
    connect(this, &ChatController::loadRequested, worker_, &EngineWorker::loadModel, q);
    connect(this, &ChatController::applyRequested, worker_, &EngineWorker::applySettings, q);
    connect(this, &ChatController::turnRequested, worker_, &EngineWorker::runTurn, q);
    connect(this, &ChatController::forgetRequested, worker_, &EngineWorker::forgetConversation, q);

    connect(
        worker_, &EngineWorker::modelLoading, this,
        [this](const QString &dir) {
            modelState_ = ModelState::Loading;
            emit modelStateChanged(modelState_, tr("Loading %1…").arg(dir));
        },
        q);
    connect(
        worker_, &EngineWorker::modelLoaded, this,
        [this](const mgd::ModelSummary &s, double ms) {
            summary_ = s;
            modelState_ = ModelState::Ready;
            emit modelStateChanged(modelState_, tr("%1 (%2, %3) loaded in %4 ms")
                                                    .arg(QString::fromStdString(s.name),
                                                         QString::fromStdString(s.architecture),
                                                         QString::fromStdString(s.dtype))
                                                    .arg(ms, 0, 'f', 0));
        },
        q);
    connect(
        worker_, &EngineWorker::modelFailed, this,
        [this](const QString &message) {
            modelState_ = ModelState::Failed;
            emit modelStateChanged(modelState_, message);
            emit errorOccurred(tr("The model could not be loaded: %1").arg(message));
        },
        q);
    connect(
        worker_, &EngineWorker::settingsFailed, this,
        [this](const QString &message) {
            emit errorOccurred(tr("Settings could not be applied: %1").arg(message));
        },
        q);
    connect(worker_, &EngineWorker::tokenStreamed, this, &ChatController::onToken, q);
    connect(worker_, &EngineWorker::turnFinished, this, &ChatController::onFinished, q);
    connect(worker_, &EngineWorker::turnFailed, this, &ChatController::onFailed, q);
    // The engine is destroyed on the thread that made it, as the thread ends.
    connect(&thread_, &QThread::finished, worker_, &EngineWorker::shutdown, Qt::DirectConnection);
    connect(settings_, &Settings::changed, this, &ChatController::onSettingsChanged);
    connect(store_, &ConversationStore::saveFailed, this, [this](const QString &error) {
        emit errorOccurred(tr("The conversation was not saved: %1").arg(error));
    });

    flushTimer_.setSingleShot(true);
    flushTimer_.setInterval(kFlushMs);
    connect(&flushTimer_, &QTimer::timeout, this, &ChatController::flushStream);
    thread_.start();
}

ChatController::~ChatController() {
    shutdown();
}

std::optional<quint64> ChatController::runningJob() const {
    if (!job_) return std::nullopt;
    return job_->id;
}

mgd::EngineSettings ChatController::engineSettings(const SettingsValues &v) const {
    mgd::EngineSettings e = v.engine;
    // Conversation state lives with the conversations it belongs to (budgeted, LRU).
    if (e.kvDiskDir.empty()) e.kvDiskDir = (store_->dataDir() + "/conversation-state").toStdString();
    return e;
}

void ChatController::loadModel() {
    const SettingsValues v = settings_->values();
    modelState_ = ModelState::Loading;
    emit modelStateChanged(modelState_, tr("Loading %1…").arg(v.modelDir));
    emit loadRequested(v.modelDir, engineSettings(v));
}

void ChatController::onSettingsChanged(const SettingsValues &before, const SettingsValues &after) {
    // Sampling is read per turn; the engine's settings apply at once; a new folder or device
    // needs the model loaded again (conversations carry their history into the new engine).
    if (needsModelReload(before, after))
        loadModel();
    else if (!sameEngineSettings(before.engine, after.engine))
        emit applyRequested(engineSettings(after));
}

bool ChatController::canRegenerate() const {
    return !busy() && modelState_ == ModelState::Ready && messages_->count() > 0;
}

bool ChatController::canEditLast() const {
    return !busy() && lastQuestion().has_value();
}

QString ChatController::lastAnswer() const {
    for (int i = messages_->count() - 1; i >= 0; --i)
        if (!messages_->at(i).fromUser) return messages_->at(i).text;
    return {};
}

std::optional<ChatItem> ChatController::lastQuestion() const {
    for (int i = messages_->count() - 1; i >= 0; --i)
        if (messages_->at(i).fromUser) return messages_->at(i);
    return std::nullopt;
}

bool ChatController::send(const QString &text, const QList<ImageAttachment> &images) {
    return startJob(TurnJob::Kind::Submit, text, images);
}

bool ChatController::editLast(const QString &text, const QList<ImageAttachment> &images) {
    return startJob(TurnJob::Kind::EditLast, text, images);
}

bool ChatController::regenerate() {
    return startJob(TurnJob::Kind::Regenerate, {}, {});
}

bool ChatController::startJob(TurnJob::Kind kind, const QString &text, const QList<ImageAttachment> &images) {
    auto refuse = [this](const QString &why) {
        emit errorOccurred(why);
        return false;
    };
    if (shutDown_) return false;
    if (busy()) return refuse(tr("An answer is still being written: stop it first."));
    if (modelState_ != ModelState::Ready)
        return refuse(modelState_ == ModelState::Loading ? tr("The model is still loading.")
                                                         : tr("No model is loaded."));
    const QString question = text.trimmed();
    if (kind != TurnJob::Kind::Regenerate && question.isEmpty() && images.isEmpty())
        return refuse(tr("Type a question or add an image."));
    if (kind == TurnJob::Kind::Regenerate && messages_->count() == 0)
        return refuse(tr("Nothing to regenerate yet."));
    if (kind == TurnJob::Kind::EditLast && !lastQuestion())
        return refuse(tr("There is no question to edit yet."));

    TurnJob job;
    job.id = nextJob_++;
    job.conversation = conv_.id;
    job.kind = kind;
    job.text = question;
    job.images = images;
    job.sampling = settings_->values().sampling;
    job.history = messages_->items();

    RunningJob running;
    running.id = job.id;
    running.kind = kind;
    running.before = messages_->items();
    running.text = question;
    running.images = images;

    // Show the conversation as it will be: regenerate drops the last answer, edit drops the
    // last question and its answer (the engine truncates its KV state the same way).
    if (kind == TurnJob::Kind::Regenerate) {
        if (!messages_->at(messages_->count() - 1).fromUser) messages_->truncate(messages_->count() - 1);
    } else {
        if (kind == TurnJob::Kind::EditLast) {
            int last = messages_->count() - 1;
            while (last >= 0 && !messages_->at(last).fromUser) --last;
            messages_->truncate(last);
        }
        ChatItem user;
        user.fromUser = true;
        user.text = question;
        user.images = images;
        messages_->append(user);
    }
    int questionImages = 0;
    for (int i = messages_->count() - 1; i >= 0; --i)
        if (messages_->at(i).fromUser) {
            questionImages = static_cast<int>(messages_->at(i).images.size());
            break;
        }
    ChatItem answer;
    answer.fromUser = false;
    answer.streaming = true;
    answer.imagesInTurn = questionImages;
    messages_->append(answer);
    running.row = messages_->count() - 1;
    job_ = running;
    streamBuffer_.clear();

    save(); // the question is on disk before the model starts
    emit busyChanged(true);
    emit turnRequested(job);
    return true;
}

void ChatController::stop() {
    if (job_ && worker_) worker_->cancel(job_->id);
}

void ChatController::onToken(quint64 job, const QString &piece) {
    if (!job_ || job != job_->id) return;
    streamBuffer_ += piece;
    if (!flushTimer_.isActive()) flushTimer_.start();
}

void ChatController::flushStream() {
    if (!job_ || streamBuffer_.isEmpty()) return;
    messages_->appendText(job_->row, streamBuffer_);
    streamBuffer_.clear();
}

void ChatController::onFinished(const TurnOutcome &outcome) {
    if (!job_ || outcome.id != job_->id) return;
    flushTimer_.stop();
    ChatItem answer = messages_->at(job_->row);
    answer.text = outcome.answer; // the post-processed answer, as the engine keeps it
    answer.stats = outcome.stats;
    answer.streaming = false;
    messages_->replace(job_->row, answer);
    endJob();
    save();
    emit turnCompleted(outcome);
    if (pendingOpen_) {
        const QString target = *pendingOpen_;
        pendingOpen_.reset();
        if (target.isEmpty())
            newChat();
        else
            openConversation(target);
    }
}

void ChatController::onFailed(quint64 job, const QString &conversation, const QString &message) {
    if (!job_ || job != job_->id) return;
    flushTimer_.stop();
    // The engine left its conversation as it was; so does the view, and the question goes
    // back to the composer so nothing typed is lost.
    const RunningJob failed = *job_;
    messages_->setItems(failed.before);
    endJob();
    save();
    emit errorOccurred(message);
    if (failed.kind != TurnJob::Kind::Regenerate) emit questionReturned(failed.text, failed.images);
    if (pendingOpen_) {
        const QString target = *pendingOpen_;
        pendingOpen_.reset();
        if (target.isEmpty())
            newChat();
        else
            openConversation(target);
    }
}

void ChatController::endJob() {
    job_.reset();
    streamBuffer_.clear();
    emit busyChanged(false);
}

void ChatController::save() {
    if (messages_->count() == 0) return; // an untouched new chat is not worth a file
    conv_.messages = messages_->items();
    conv_.updated = QDateTime::currentDateTimeUtc();
    conv_.title = ConversationStore::titleFor(conv_);
    store_->save(conv_);
}

void ChatController::newChat() {
    if (busy()) {
        pendingOpen_ = QString();
        stop();
        return;
    }
    conv_ = freshConversation();
    messages_->clear();
    emit conversationChanged(conv_.id);
}

bool ChatController::openConversation(const QString &id) {
    if (id == conv_.id) return true;
    if (busy()) {
        pendingOpen_ = id;
        stop();
        return true;
    }
    QString error;
    auto c = store_->load(id, &error);
    if (!c) {
        emit errorOccurred(error);
        return false;
    }
    conv_ = *c;
    messages_->setItems(conv_.messages);
    emit conversationChanged(conv_.id);
    return true;
}

bool ChatController::deleteConversation(const QString &id) {
    if (busy() && id == conv_.id) {
        emit errorOccurred(tr("Stop the answer before deleting this conversation."));
        return false;
    }
    QString error;
    if (!store_->remove(id, &error)) {
        emit errorOccurred(error);
        return false;
    }
    emit forgetRequested(id);
    if (id == conv_.id) newChat();
    return true;
}

void ChatController::shutdown() {
    if (shutDown_) return;
    shutDown_ = true;
    if (job_) worker_->cancel(job_->id);
    // The worker ends the cancelled turn within a token, then its thread stops and destroys
    // the engine.
    thread_.quit();
    thread_.wait();
    delete worker_;
    worker_ = nullptr;
    // Deliver what the worker sent before it stopped (the last tokens, the end of the turn),
    // so the saved conversation has the final answer and its stats.
    QCoreApplication::sendPostedEvents(this, QEvent::MetaCall);
    if (job_) { // the turn never reported back: keep what arrived, marked as interrupted
        flushStream();
        job_.reset();
    }
    save();
    store_->flush();
}
