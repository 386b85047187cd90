#pragma once
// Shared by the GUI tests: a window on a temporary data folder and settings file, with the
// real tiny model; synthetic drops; typing a question and waiting for the answer.
#include <QApplication>
#include <QDir>
#include <QDropEvent>
#include <QElapsedTimer>
#include <QImage>
#include <QMimeData>
#include <QPainter>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTimer>
#include <QUrl>
#include <QtTest>
#include <memory>

#include "ui/chat_controller.h"
#include "ui/chat_window.h"
#include "ui/composer.h"
#include "ui/composer_edit.h"
#include "ui/engine_worker.h"
#include "ui/message_model.h"
#include "ui/settings.h"

namespace uitest {

inline const QString kModel = QStringLiteral(MGD_TEST_DATA "/minigpt4-tiny-hi");
inline const QString kImage = kModel + "/image.png";

// Settings for a test run: the tiny model, short deterministic answers, and a feature disk
// tier inside the temporary folder (the default one in ~/.cache would carry hits between
// runs).
inline void writeSettings(const QTemporaryDir &dir, int maxNewTokens = 16, bool greedy = true) {
    Settings s(dir.filePath("settings.ini"));
    SettingsValues v = Settings::defaults();
    v.modelDir = kModel;
    v.engine.featureDiskDir = dir.filePath("features").toStdString();
    v.sampling.greedy = greedy;
    v.sampling.repetitionPenalty = 1.0f;
    v.sampling.maxNewTokens = maxNewTokens;
    s.setValues(v);
}

inline ChatWindowOptions options(const QTemporaryDir &dir) {
    ChatWindowOptions o;
    o.dataDir = dir.filePath("data");
    o.settingsFile = dir.filePath("settings.ini");
    return o;
}

inline std::unique_ptr<ChatWindow> openWindow(const QTemporaryDir &dir) {
    auto w = std::make_unique<ChatWindow>(options(dir));
    w->show();
    if (!QTest::qWaitForWindowExposed(w.get())) qWarning("window not exposed");
    return w;
}

inline bool waitReady(ChatWindow &w, int ms = 30000) {
    QElapsedTimer t;
    t.start();
    while (w.controller()->modelState() != ChatController::ModelState::Ready && t.elapsed() < ms)
        QTest::qWait(10);
    return w.controller()->modelState() == ChatController::ModelState::Ready;
}

// Sends drag-enter and drop events with local file URLs to `target`, as a file manager does.
inline void dropFiles(QWidget *target, const QStringList &paths) {
    QMimeData mime;
    QList<QUrl> urls;
    for (const QString &p : paths) urls << QUrl::fromLocalFile(p);
    mime.setUrls(urls);
    const QPointF pos = QPointF(target->rect().center());
    QDragEnterEvent enter(pos.toPoint(), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(target, &enter);
    QDragMoveEvent move(pos.toPoint(), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(target, &move);
    QDropEvent drop(pos, Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(target, &drop);
}

// Types the question into the composer and presses Enter, as a person does.
inline void typeAndEnter(ChatWindow &w, const QString &text) {
    ComposerEdit *edit = w.composer()->edit();
    edit->setFocus();
    QTest::keyClicks(edit, text);
    QTest::keyClick(edit, Qt::Key_Return);
}

inline bool waitIdle(ChatWindow &w, int ms = 60000) {
    QElapsedTimer t;
    t.start();
    while (w.controller()->busy() && t.elapsed() < ms) QTest::qWait(5);
    return !w.controller()->busy();
}

inline TurnOutcome lastOutcome(const QSignalSpy &spy) {
    return qvariant_cast<TurnOutcome>(spy.last().at(0));
}

// A PNG different from the fixture, so "several images" means several different ones.
inline QString makePng(const QTemporaryDir &dir, const QString &name, QColor color) {
    QImage img(48, 40, QImage::Format_RGB32);
    img.fill(color);
    QPainter p(&img);
    p.fillRect(8, 8, 20, 16, Qt::white);
    p.end();
    const QString path = dir.filePath(name);
    img.save(path, "PNG");
    return path;
}

// Longest gap between ticks of a 5 ms timer on the UI thread: how long the event loop was
// kept from running.
class StallProbe : public QObject {
public:
    StallProbe() {
        timer_.setInterval(5);
        timer_.setTimerType(Qt::PreciseTimer);
        connect(&timer_, &QTimer::timeout, this, [this] {
            const qint64 now = clock_.elapsed();
            if (last_ >= 0) maxGap_ = std::max(maxGap_, now - last_);
            last_ = now;
        });
    }
    void start() {
        clock_.start();
        last_ = -1;
        maxGap_ = 0;
        timer_.start();
    }
    qint64 stop() {
        timer_.stop();
        return maxGap_;
    }

private:
    QTimer timer_;
    QElapsedTimer clock_;
    qint64 last_ = -1, maxGap_ = 0;
};

} // namespace uitest
