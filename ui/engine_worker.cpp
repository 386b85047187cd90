#include "ui/engine_worker.h"

#include <QElapsedTimer>
#include <QMetaType>
#include <QThread>

#include "core/util/error.h"

#ifdef Q_OS_LINUX
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace {

std::vector<mgd::ImageInput> toInputs(const QList<ImageAttachment> &images) {
    std::vector<mgd::ImageInput> out;
    out.reserve(images.size());
    for (const ImageAttachment &a : images) {
        mgd::ImageInput in;
        in.bytes.assign(a.bytes.begin(), a.bytes.end());
        in.label = a.label.toStdString();
        out.push_back(std::move(in));
    }
    return out;
}

mgd::TurnRequest toRequest(const TurnJob &job) {
    mgd::TurnRequest r;
    r.text = job.text.toStdString();
    r.images = toInputs(job.images);
    r.sampling = job.sampling;
    return r;
}

} // namespace

void registerWorkerTypes() {
    qRegisterMetaType<TurnJob>();
    qRegisterMetaType<TurnOutcome>();
    qRegisterMetaType<mgd::EngineSettings>();
    qRegisterMetaType<mgd::ModelSummary>();
}

EngineWorker::EngineWorker(QObject *parent) : QObject(parent) {
    registerWorkerTypes();
}

EngineWorker::~EngineWorker() = default;

void EngineWorker::cancel(quint64 job) {
    cancelledJob_.store(job);
    QMutexLocker lock(&engineMutex_);
    if (engine_ && runningJob_.load() == job) engine_->cancel();
}

std::optional<mgd::MetricsSnapshot> EngineWorker::metricsSnapshot() const {
    QMutexLocker lock(&engineMutex_);
    if (!engine_) return std::nullopt;
    return engine_->metricsSnapshot();
}

void EngineWorker::ensureEngine(const mgd::EngineSettings &settings) {
    if (engine_) return;
#ifdef Q_OS_LINUX
    // Inference is background work: on a busy machine the UI thread must win the CPU. Linux
    // ignores QThread priorities under SCHED_OTHER, so lower this thread's nice value; the
    // compute threads libtorch starts from here inherit it.
    setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 5);
#endif
    auto e = std::make_unique<mgd::Engine>(settings);
    QMutexLocker lock(&engineMutex_);
    engine_ = std::move(e);
}

void EngineWorker::loadModel(const QString &dir, const mgd::EngineSettings &settings) {
    emit modelLoading(dir);
    QElapsedTimer t;
    t.start();
    try {
        if (engine_) engine_->applySettings(settings);
        ensureEngine(settings);
        engine_->loadModel(dir.toStdString());
        conversations_.clear(); // the engine dropped them with the old model
        emit modelLoaded(engine_->modelSummary(), static_cast<double>(t.nsecsElapsed()) / 1e6);
    } catch (const std::exception &e) {
        emit modelFailed(QString::fromUtf8(e.what()));
    }
    scheduleIdleRelease(); // loading leaves its conversions' buffers freed on the heap
}

void EngineWorker::scheduleIdleRelease() {
    if (!idleTimer_) {
        // Created here, on the worker thread, so it fires there, between jobs.
        idleTimer_ = new QTimer(this);
        idleTimer_->setSingleShot(true);
        idleTimer_->setInterval(kIdleReleaseMs);
        connect(idleTimer_, &QTimer::timeout, this, [this] {
            if (engine_) emit idleMemoryReleased(engine_->releaseIdleMemory());
        });
    }
    idleTimer_->start();
}

void EngineWorker::applySettings(const mgd::EngineSettings &settings) {
    try {
        ensureEngine(settings);
        engine_->applySettings(settings);
        emit settingsApplied();
    } catch (const std::exception &e) {
        emit settingsFailed(QString::fromUtf8(e.what()));
    }
}

int EngineWorker::engineConversation(const TurnJob &job) {
    auto it = conversations_.find(job.conversation);
    if (it != conversations_.end()) return it->second;
    std::vector<mgd::HistoryMessage> history;
    for (const ChatItem &m : job.history) {
        mgd::HistoryMessage h;
        h.fromUser = m.fromUser;
        h.text = m.text.toStdString();
        h.images = toInputs(m.images);
        history.push_back(std::move(h));
    }
    // The store's id tags the engine's conversation: its state is saved under it and found
    // again after a restart.
    const std::string tag = job.conversation.toStdString();
    const int id =
        history.empty() ? engine_->newConversation(tag) : engine_->restoreConversation(history, tag);
    conversations_[job.conversation] = id;
    return id;
}

void EngineWorker::runTurn(const TurnJob &job) {
    if (idleTimer_) idleTimer_->stop();
    runningJob_.store(job.id);
    emit turnStarted(job.id);
    try {
        if (!engine_ || !engine_->hasModel()) throw mgd::Error("no model is loaded yet");
        const int conv = engineConversation(job);
        const mgd::TokenCallback onToken = [&](const std::string &piece) {
            emit tokenStreamed(job.id, QString::fromStdString(piece));
            // A cancel that arrived before the engine started this turn was cleared by it.
            if (cancelledJob_.load() == job.id) engine_->cancel();
            if (const int ms = tokenDelayMs_.load()) QThread::msleep(static_cast<unsigned long>(ms));
        };
        mgd::TurnResult r;
        switch (job.kind) {
        case TurnJob::Kind::Submit: r = engine_->submitTurn(conv, toRequest(job), onToken); break;
        case TurnJob::Kind::Regenerate: r = engine_->regenerate(conv, job.sampling, onToken); break;
        case TurnJob::Kind::EditLast: r = engine_->editLast(conv, toRequest(job), onToken); break;
        }
        TurnOutcome o;
        o.id = job.id;
        o.conversation = job.conversation;
        o.answer = QString::fromStdString(r.answer);
        o.stats = r.stats;
        o.engineMessages = engine_->messages(conv);
        runningJob_.store(0);
        emit turnFinished(o);
    } catch (const std::exception &e) {
        runningJob_.store(0);
        emit turnFailed(job.id, job.conversation, QString::fromUtf8(e.what()));
    }
    scheduleIdleRelease();
}

void EngineWorker::forgetConversation(const QString &conversation) {
    // Deleted by the user: its saved state goes too, open in this session or not.
    if (engine_) engine_->forgetSavedState(conversation.toStdString());
    auto it = conversations_.find(conversation);
    if (it == conversations_.end()) return;
    if (engine_) engine_->deleteConversation(it->second);
    conversations_.erase(it);
}

void EngineWorker::shutdown() {
    if (idleTimer_) idleTimer_->stop();
    std::unique_ptr<mgd::Engine> dying;
    {
        QMutexLocker lock(&engineMutex_);
        dying = std::move(engine_);
    }
    conversations_.clear();
}
