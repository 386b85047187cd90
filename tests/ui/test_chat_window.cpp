// The desktop window driven as a person would (synthetic drops, typing, clicks), on the real
// tiny model through the real worker thread: the issue's "What it must show" list.
#include <QAction>
#include <QChartView>
#include <QCheckBox>
#include <QClipboard>
#include <QComboBox>
#include <QCryptographicHash>
#include <QDialogButtonBox>
#include <QDoubleSpinBox>
#include <QLabel>
#include <QLineEdit>
#include <QLineSeries>
#include <QMessageBox>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QTimer>
#include <QToolButton>
#include <QValueAxis>

#include <limits>

#include "tests/support/redis_server.h"
#include "tests/ui/ui_test_support.h"
#include "ui/conversation_list.h"
#include "ui/conversation_store.h"
#include "ui/example_gallery.h"
#include "ui/import_dialog.h"
#include "ui/message_list_view.h"
#include "ui/message_widget.h"
#include "ui/perf_panel.h"
#include "ui/settings_dialog.h"

using namespace uitest;

namespace {

QByteArray fileBytes(const QString &path) {
    QFile f(path);
    return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
}

QAction *action(ChatWindow &w, const char *name) {
    return w.findChild<QAction *>(name);
}

QStringList texts(const MessageModel &m) {
    QStringList out;
    for (const ChatItem &i : m.items()) out << i.text;
    return out;
}

QStringList texts(const std::vector<mgd::MessageView> &v) {
    QStringList out;
    for (const auto &m : v) out << QString::fromStdString(m.text);
    return out;
}

// Clicks `button` of the next message box that opens.
void answerNextMessageBox(QMessageBox::StandardButton button) {
    QTimer::singleShot(50, [button] {
        for (QWidget *w : QApplication::topLevelWidgets())
            if (auto *box = qobject_cast<QMessageBox *>(w); box && box->isVisible()) {
                box->button(button)->click();
                return;
            }
    });
}

} // namespace

class TestChatWindow : public QObject {
    Q_OBJECT

private slots:
    void droppedPngGoesToComposer() {
        QTemporaryDir dir;
        writeSettings(dir);
        auto w = openWindow(dir);
        QVERIFY(waitReady(*w));
        // Dropped on the conversation view: "anywhere on the window".
        dropFiles(w->messageView()->viewport(), {kImage});
        QCOMPARE(w->composer()->pendingImages().size(), 1);
        QCOMPARE(w->composer()->pendingImages()[0].label, QStringLiteral("image.png"));
        QCOMPARE(w->composer()->pendingImages()[0].bytes, fileBytes(kImage));
        // Several per message, in one drop or more; a pending one can be removed.
        const QString red = makePng(dir, "red.png", Qt::red), blue = makePng(dir, "blue.png", Qt::blue);
        dropFiles(w->composer()->edit()->viewport(), {red, blue});
        QCOMPARE(w->composer()->pendingImages().size(), 3);
        auto *remove = w->composer()->findChild<QToolButton *>("removePending1");
        QVERIFY(remove);
        QTest::mouseClick(remove, Qt::LeftButton);
        QCOMPARE(w->composer()->pendingImages().size(), 2);
        QCOMPARE(w->composer()->pendingImages()[1].label, QStringLiteral("blue.png"));
        QVERIFY(!w->errorBanner()->isVisible());
        // Pasted from the clipboard into the question box.
        QApplication::clipboard()->setImage(QImage(kImage));
        w->composer()->edit()->setFocus();
        QTest::keyClick(w->composer()->edit(), Qt::Key_V, Qt::ControlModifier);
        QCOMPARE(w->composer()->pendingImages().size(), 3);
        QCOMPARE(w->composer()->pendingImages()[2].label, QStringLiteral("pasted image"));
        QVERIFY(w->composer()->edit()->toPlainText().isEmpty());
    }

    // The model folder's examples/ are offered while the conversation is empty; choosing one
    // fills the composer with its image and question.
    void examplesFillTheComposer() {
        QTemporaryDir dir;
        writeSettings(dir, 8);
        // A copy of the tiny model with two examples (and a listed one whose file is missing).
        const QString model = dir.filePath("model");
        QDir().mkpath(model + "/examples");
        for (const QString &f :
             QDir(kModel).entryList({"config.json", "tokenizer.model", "weights.safetensors"}))
            QVERIFY(QFile::copy(kModel + "/" + f, model + "/" + f));
        QVERIFY(QFile::copy(kImage, model + "/examples/one.png"));
        QVERIFY(QImage(kImage).mirrored().save(model + "/examples/two.png"));
        QFile list(model + "/examples/examples.json");
        QVERIFY(list.open(QIODevice::WriteOnly));
        list.write(R"([{"image": "one.png", "question": "What shape is at the top left?"},
                       {"image": "gone.png", "question": "Lost?"},
                       {"image": "two.png", "question": "Describe the image."}])");
        list.close();
        Settings s(dir.filePath("settings.ini"));
        SettingsValues v = s.values();
        v.modelDir = model;
        s.setValues(v);

        auto w = openWindow(dir);
        QVERIFY(waitReady(*w));
        ExampleGallery *g = w->exampleGallery();
        QTRY_VERIFY(g->isVisible());
        const QList<QToolButton *> buttons = g->findChildren<QToolButton *>();
        QCOMPARE(buttons.size(), 2);
        QCOMPARE(buttons[0]->toolTip(), QStringLiteral("What shape is at the top left?"));
        QVERIFY(!buttons[0]->icon().isNull());

        QTest::mouseClick(buttons[0], Qt::LeftButton);
        QCOMPARE(w->composer()->pendingImages().size(), 1);
        QCOMPARE(w->composer()->pendingImages()[0].label, QStringLiteral("one.png"));
        QCOMPARE(w->composer()->text(), QStringLiteral("What shape is at the top left?"));
        // Another example replaces the first one's image and question...
        QTest::mouseClick(buttons[1], Qt::LeftButton);
        QCOMPARE(w->composer()->pendingImages().size(), 1);
        QCOMPARE(w->composer()->pendingImages()[0].label, QStringLiteral("two.png"));
        QCOMPARE(w->composer()->text(), QStringLiteral("Describe the image."));
        // ...but never what the person typed.
        w->composer()->setText(QStringLiteral("my own question"));
        QTest::mouseClick(buttons[0], Qt::LeftButton);
        QCOMPARE(w->composer()->pendingImages().size(), 2);
        QCOMPARE(w->composer()->text(), QStringLiteral("my own question"));

        // Sent through the real path; the examples give way to the conversation.
        QSignalSpy done(w->controller(), &ChatController::turnCompleted);
        w->sendFromComposer();
        QVERIFY(done.wait(30000));
        QCOMPARE(w->controller()->messages()->at(0).images.size(), 2);
        QVERIFY(!g->isVisible());
        w->controller()->newChat();
        QTRY_VERIFY(g->isVisible());

        // A folder without examples/ (the fixture) or with a broken list.
        QCOMPARE(loadExamples(kModel).size(), 0);
        QVERIFY(list.open(QIODevice::WriteOnly | QIODevice::Truncate));
        list.write("{not json");
        list.close();
        const QList<ExampleItem> plain = loadExamples(model);
        QCOMPARE(plain.size(), 2); // every image, with a default question
        QCOMPARE(plain[0].question, QStringLiteral("Describe the image."));
    }

    void enterStreamsAnswerIntoView() {
        QTemporaryDir dir;
        writeSettings(dir, 24);
        auto w = openWindow(dir);
        QVERIFY(waitReady(*w));
        // Slow the tiny model to ~10 ms a token so the answer visibly arrives in pieces.
        w->controller()->worker()->setTokenDelayForTesting(10);
        dropFiles(w->messageView()->viewport(), {kImage});

        // Shift+Enter is a new line, not a send.
        ComposerEdit *edit = w->composer()->edit();
        edit->setFocus();
        QTest::keyClicks(edit, "What is in");
        QTest::keyClick(edit, Qt::Key_Return, Qt::ShiftModifier);
        QCOMPARE(w->controller()->messages()->count(), 0);
        QCOMPARE(edit->toPlainText(), QStringLiteral("What is in\n"));
        edit->clear();

        MessageModel *model = w->controller()->messages();
        QList<int> streamedLengths; // the answer's length each time the view was updated
        connect(model, &MessageModel::dataChanged, this, [&](const QModelIndex &i) {
            const ChatItem &m = model->at(i.row());
            if (!m.fromUser && m.streaming) streamedLengths << static_cast<int>(m.text.size());
        });
        QSignalSpy tokens(w->controller()->worker(), &EngineWorker::tokenStreamed);
        QSignalSpy done(w->controller(), &ChatController::turnCompleted);
        QSignalSpy released(w->controller()->worker(), &EngineWorker::idleMemoryReleased);
        typeAndEnter(*w, "What is in this image?");
        QVERIFY(w->controller()->busy());
        QVERIFY(w->composer()->pendingImages().isEmpty()); // sent with the question
        QVERIFY(edit->toPlainText().isEmpty());
        QCOMPARE(model->count(), 2);
        QCOMPARE(model->at(0).text, QStringLiteral("What is in this image?"));
        QCOMPARE(model->at(0).images.size(), 1);
        QVERIFY(waitIdle(*w));
        QCOMPARE(done.size(), 1);
        // Idle after the answer: the worker hands the turn's freed heap memory back, once (a
        // release after the model's load may have come before the question).
        const qsizetype before = released.size();
        QVERIFY(released.wait(EngineWorker::kIdleReleaseMs + 10000));
        QTest::qWait(EngineWorker::kIdleReleaseMs + 500);
        QCOMPARE(released.size(), before + 1);

        QVERIFY2(tokens.size() >= 10, qPrintable(QString::number(tokens.size())));
        QVERIFY2(streamedLengths.size() >= 2, "the answer reached the view in one piece");
        QVERIFY(std::is_sorted(streamedLengths.begin(), streamedLengths.end()));
        QVERIFY(streamedLengths.first() < streamedLengths.last());
        const ChatItem answer = model->at(1);
        QVERIFY(!answer.streaming);
        QVERIFY(!answer.text.isEmpty());
        QVERIFY(answer.stats.has_value());
        QCOMPARE(answer.stats->generatedTokens, 24);
        // The view shows the answer and its stats line.
        MessageWidget *mw = w->messageView()->widgetAt(1);
        QVERIFY(mw);
        auto *stats = mw->findChild<QLabel *>("messageStats");
        QVERIFY(stats->text().contains("TTFT"));
        QVERIFY(stats->text().contains("tok/s"));
        QVERIFY(stats->text().contains("image features: 1 cache miss"));
        QVERIFY(w->messageView()
                    ->widgetAt(0)
                    ->findChild<QLabel *>("messageBody")
                    ->text()
                    .contains("What is in this image?"));
        action(*w, "actionCopyAnswer")->trigger();
        QCOMPARE(QApplication::clipboard()->text(), answer.text);
    }

    void secondTurnOnSameImageHitsFeatureCache() {
        QTemporaryDir dir;
        writeSettings(dir);
        auto w = openWindow(dir);
        QVERIFY(waitReady(*w));
        QSignalSpy done(w->controller(), &ChatController::turnCompleted);
        dropFiles(w->messageView()->viewport(), {kImage});
        typeAndEnter(*w, "What is in this image?");
        QVERIFY(waitIdle(*w));
        QCOMPARE(lastOutcome(done).stats.imagesEncoded, 1);

        dropFiles(w->messageView()->viewport(), {kImage});
        typeAndEnter(*w, "Look again: what is in it?");
        QVERIFY(waitIdle(*w));
        const TurnOutcome second = lastOutcome(done);
        QCOMPARE(second.stats.imagesEncoded, 0); // features came from the cache
        QVERIFY(second.stats.contextImages >= 1);
        const auto snap = w->controller()->worker()->metricsSnapshot();
        QVERIFY(snap);
        QVERIFY(snap->hitRates.at("feature").hits >= 1);
        QVERIFY(
            w->messageView()->widgetAt(3)->findChild<QLabel *>("messageStats")->text().contains("cache hit"));

        // The panel's timer picks it up: the feature series gets a point above zero.
        PerfPanel *panel = w->perfPanel();
        QTRY_VERIFY_WITH_TIMEOUT(
            panel->series("hit_rate", "feature") && panel->series("hit_rate", "feature")->count() > 0, 3000);
        QTRY_VERIFY_WITH_TIMEOUT(panel->series("hit_rate", "feature")->points().last().y() > 0, 3000);
        QTRY_VERIFY_WITH_TIMEOUT(
            panel->series("latency", "TTFT") && panel->series("latency", "TTFT")->count() >= 1, 3000);
        QVERIFY(panel->series("memory", "process RSS")->count() > 0);
        // The conversation's full KV blocks are offered for sharing (system prompt + image).
        QTRY_VERIFY_WITH_TIMEOUT(panel->findChild<QLabel *>("perfCounters")->text().contains("shared KV"),
                                 3000);

        // The time window sets the charts' x range.
        auto axis = [&] {
            auto *view = panel->findChild<QChartView *>("chart_hit_rate");
            return qobject_cast<QValueAxis *>(view->chart()->axes(Qt::Horizontal).first());
        };
        panel->setWindowSeconds(30);
        QCOMPARE(axis()->max() - axis()->min(), 30.0);
        panel->setWindowSeconds(300);
        QCOMPARE(axis()->max() - axis()->min(), 300.0);

        // Pause stops the series; the exports hold what is charted.
        panel->setPaused(true);
        const int points = panel->series("memory", "process RSS")->count();
        panel->sample();
        QTest::qWait(400);
        QCOMPARE(panel->series("memory", "process RSS")->count(), points);
        panel->setPaused(false);
        QString error;
        QVERIFY2(panel->exportCsv(dir.filePath("m.csv"), &error), qPrintable(error));
        const QByteArray csv = fileBytes(dir.filePath("m.csv"));
        QVERIFY(csv.startsWith("chart,series,time_s,value\n"));
        QVERIFY(csv.contains("hit_rate,\"feature\","));
        QVERIFY(csv.contains("memory,\"process RSS\","));
        QVERIFY(csv.contains("latency,\"TTFT\","));
        QVERIFY2(panel->exportPng(dir.filePath("p.png"), &error), qPrintable(error));
        const QImage png(dir.filePath("p.png"));
        QVERIFY(!png.isNull());
        QVERIFY(png.width() >= panel->width());
    }

    void stopEndsAnswerWithinHalfSecond() {
        QTemporaryDir dir;
        writeSettings(dir, 400);
        auto w = openWindow(dir);
        QVERIFY(waitReady(*w));
        // 20 ms a token: the ~130 tokens the context leaves would take ~2.7 s.
        w->controller()->worker()->setTokenDelayForTesting(20);
        QSignalSpy done(w->controller(), &ChatController::turnCompleted);
        dropFiles(w->messageView()->viewport(), {kImage});
        typeAndEnter(*w, "Describe the image in detail.");
        MessageModel *model = w->controller()->messages();
        QTRY_VERIFY_WITH_TIMEOUT(model->count() == 2 && model->at(1).text.size() > 5, 10000);
        QCOMPARE(w->composer()->sendButton()->text(), QStringLiteral("Stop"));
        QElapsedTimer t;
        t.start();
        QTest::mouseClick(w->composer()->sendButton(), Qt::LeftButton);
        QVERIFY(waitIdle(*w, 5000));
        const qint64 ms = t.elapsed();
        qInfo("stopped %lld ms after the click", static_cast<long long>(ms));
        QVERIFY2(ms < 500, qPrintable(QString::number(ms)));
        const TurnOutcome o = lastOutcome(done);
        QVERIFY(o.stats.cancelled);
        QCOMPARE(QString::fromLatin1(mgd::stopReasonName(o.stats.stopReason)), QStringLiteral("cancelled"));
        QVERIFY(o.stats.generatedTokens < 100);
        // What arrived is kept, marked as stopped; the chat goes on.
        QVERIFY(!model->at(1).text.isEmpty());
        QVERIFY(!model->at(1).streaming);
        QVERIFY(MessageWidget::statsLine(model->at(1)).contains("stopped"));
        QCOMPARE(w->composer()->sendButton()->text(), QStringLiteral("Send"));

        // Esc (the Stop action) works the same way.
        typeAndEnter(*w, "Again?");
        QTRY_VERIFY_WITH_TIMEOUT(model->count() == 4 && model->at(3).text.size() > 5, 10000);
        t.restart();
        QTest::keyClick(w.get(), Qt::Key_Escape);
        QVERIFY(waitIdle(*w, 5000));
        QVERIFY2(t.elapsed() < 500, qPrintable(QString::number(t.elapsed())));
        QVERIFY(lastOutcome(done).stats.cancelled);
    }

    void regenerateAndEditTruncateConversation() {
        QTemporaryDir dir;
        writeSettings(dir, 16, /*greedy=*/false); // sampled, so a regenerated answer is new
        auto w = openWindow(dir);
        QVERIFY(waitReady(*w));
        QSignalSpy done(w->controller(), &ChatController::turnCompleted);
        MessageModel *model = w->controller()->messages();
        dropFiles(w->messageView()->viewport(), {kImage});
        typeAndEnter(*w, "What is in this image?");
        QVERIFY(waitIdle(*w));
        typeAndEnter(*w, "What color is the background?");
        QVERIFY(waitIdle(*w));
        QCOMPARE(model->count(), 4);
        const QStringList before = texts(*model);

        // Regenerate: the last answer is replaced, nothing else changes, on both sides.
        QVERIFY(action(*w, "actionRegenerate")->isEnabled());
        action(*w, "actionRegenerate")->trigger();
        QVERIFY(w->controller()->busy());
        QCOMPARE(model->count(), 4); // the old answer gave way to the streaming one
        QVERIFY(model->at(3).streaming);
        QVERIFY(waitIdle(*w));
        TurnOutcome o = lastOutcome(done);
        QCOMPARE(model->count(), 4);
        QCOMPARE(texts(*model).mid(0, 3), before.mid(0, 3));
        QCOMPARE(texts(*model), texts(o.engineMessages));
        QCOMPARE(o.engineMessages.size(), size_t{4});
        // The engine truncated its KV to the common prefix instead of starting over.
        QVERIFY(o.stats.reusedTokens > 0);
        QVERIFY(o.stats.prefillTokens < o.stats.promptTokens);

        // Edit: the question comes back to the composer; sending replaces it and its answer.
        action(*w, "actionEditLast")->trigger();
        QVERIFY(w->composer()->editing());
        QCOMPARE(w->composer()->text(), QStringLiteral("What color is the background?"));
        w->composer()->edit()->clear();
        typeAndEnter(*w, "How many shapes are there?");
        QVERIFY(waitIdle(*w));
        o = lastOutcome(done);
        QVERIFY(!w->composer()->editing());
        QCOMPARE(model->count(), 4);
        QCOMPARE(model->at(0).text, before[0]);
        QCOMPARE(model->at(1).text, before[1]);
        QCOMPARE(model->at(2).text, QStringLiteral("How many shapes are there?"));
        QCOMPARE(texts(*model), texts(o.engineMessages));
        QVERIFY(!texts(o.engineMessages).contains("What color is the background?"));
        QCOMPARE(o.engineMessages[0].imageHashes.size(), size_t{1});
        QVERIFY(o.stats.reusedTokens > 0);

        // Edit with an image: the question keeps the images it is given.
        action(*w, "actionEditLast")->trigger();
        w->composer()->edit()->clear();
        dropFiles(w->messageView()->viewport(), {makePng(dir, "green.png", Qt::green)});
        typeAndEnter(*w, "And in this one?");
        QVERIFY(waitIdle(*w));
        o = lastOutcome(done);
        QCOMPARE(model->count(), 4);
        QCOMPARE(model->at(2).images.size(), 1);
        QCOMPARE(o.engineMessages.size(), size_t{4});
        QCOMPARE(o.engineMessages[2].imageHashes.size(), size_t{1});
    }

    void settingsSurviveWindowRestart() {
        QTemporaryDir dir;
        writeSettings(dir);
        {
            auto w = openWindow(dir);
            QVERIFY(waitReady(*w));
            action(*w, "actionSettings")->trigger();
            auto *dlg = w->findChild<SettingsDialog *>();
            QVERIFY(dlg && dlg->isVisible());
            dlg->findChild<QCheckBox *>("greedy")->setChecked(false);
            dlg->findChild<QDoubleSpinBox *>("temperature")->setValue(0.35);
            dlg->findChild<QDoubleSpinBox *>("topP")->setValue(0.8);
            dlg->findChild<QSpinBox *>("topK")->setValue(40);
            dlg->findChild<QSpinBox *>("maxNewTokens")->setValue(77);
            dlg->findChild<QSpinBox *>("seed")->setValue(1234);
            dlg->findChild<QComboBox *>("eviction")->setCurrentIndex(1);
            dlg->findChild<QCheckBox *>("responseCache")->setChecked(false);
            dlg->findChild<QSpinBox *>("poolMiB")->setValue(48);
            dlg->findChild<QPlainTextEdit *>("systemPrompt")->setPlainText("Answer in one word.");
            dlg->findChild<QDialogButtonBox *>()->button(QDialogButtonBox::Ok)->click();
            const SettingsValues v = w->settings()->values();
            QCOMPARE(v.sampling.maxNewTokens, 77);
            QCOMPARE(v.engine.memoryPoolBytes, uint64_t{48} << 20);
            // Applied to the running engine without a restart: the pool was rebuilt at 48 MiB.
            QTRY_VERIFY_WITH_TIMEOUT(
                w->controller()->worker()->metricsSnapshot()->memory.poolCapacityBytes > (40ull << 20) &&
                    w->controller()->worker()->metricsSnapshot()->memory.poolCapacityBytes <= (48ull << 20),
                5000);
            QVERIFY(w->close());
        }
        auto w = openWindow(dir);
        QVERIFY(waitReady(*w));
        const SettingsValues v = w->settings()->values();
        QCOMPARE(v.sampling.greedy, false);
        QCOMPARE(v.sampling.temperature, 0.35f);
        QCOMPARE(v.sampling.topP, 0.8f);
        QCOMPARE(v.sampling.topK, 40);
        QCOMPARE(v.sampling.maxNewTokens, 77);
        QCOMPARE(v.sampling.seed, int64_t{1234});
        QVERIFY(v.engine.eviction == mgd::EvictionPolicy::Lfu);
        QCOMPARE(v.engine.responseCache, false);
        QCOMPARE(v.engine.memoryPoolBytes, uint64_t{48} << 20);
        QCOMPARE(QString::fromStdString(v.engine.systemPrompt), QString("Answer in one word."));
        QVERIFY(w->controller()->worker()->metricsSnapshot()->memory.poolCapacityBytes <= (48ull << 20));
        // The dialog shows them too.
        action(*w, "actionSettings")->trigger();
        auto *dlg = w->findChild<SettingsDialog *>();
        QVERIFY(dlg);
        QCOMPARE(dlg->findChild<QDoubleSpinBox *>("temperature")->value(), 0.35);
        QCOMPARE(dlg->findChild<QSpinBox *>("maxNewTokens")->value(), 77);
        QCOMPARE(dlg->findChild<QComboBox *>("eviction")->currentIndex(), 1);
        QCOMPARE(dlg->findChild<QPlainTextEdit *>("systemPrompt")->toPlainText(),
                 QString("Answer in one word."));
        dlg->reject();
    }

    // Settings > "shared (Redis)": a bad URL is named and the dialog stays; a good one turns the
    // tier on, and the panel shows it reachable with its lookups.
    void sharedRedisCacheFromSettingsShowsInThePanel() {
        mgd_test::RedisServer server;
        QVERIFY2(server.start(), "redis-server (Debian package 'redis-server') did not start");
        QTemporaryDir dir;
        writeSettings(dir);
        auto w = openWindow(dir);
        QVERIFY(waitReady(*w));
        SettingsDialog *dlg = w->openSettings();
        auto *url = dlg->findChild<QLineEdit *>("redisUrl");
        QVERIFY(url);
        url->setText("http://not-redis");
        QString warned;
        QTimer::singleShot(200, [&] {
            if (auto *box = qobject_cast<QMessageBox *>(QApplication::activeModalWidget())) {
                warned = box->text();
                box->accept();
            }
        });
        dlg->findChild<QDialogButtonBox *>()->button(QDialogButtonBox::Ok)->click();
        QVERIFY2(warned.contains("Redis URL 'http://not-redis'"), qPrintable(warned));
        QVERIFY(dlg->isVisible());
        url->setText(QString::fromStdString(server.url()));
        dlg->findChild<QDialogButtonBox *>()->button(QDialogButtonBox::Ok)->click();
        QCOMPARE(w->settings()->values().engine.redisUrl, server.url());
        dropFiles(w->messageView()->viewport(), {kImage});
        typeAndEnter(*w, "What is in this image?");
        QVERIFY(waitIdle(*w));
        auto *counters = w->perfPanel()->findChild<QLabel *>("perfCounters");
        QTRY_VERIFY_WITH_TIMEOUT(counters->text().contains("Redis reachable · hits 0 · misses 1"), 3000);
        QVERIFY(counters->text().contains("(p50/p95)"));
    }

    void newModelFolderReloadsAndKeepsTheConversation() {
        QTemporaryDir dir;
        writeSettings(dir);
        auto w = openWindow(dir);
        QVERIFY(waitReady(*w));
        dropFiles(w->messageView()->viewport(), {kImage});
        typeAndEnter(*w, "What is in this image?");
        QVERIFY(waitIdle(*w));
        QCOMPARE(QString::fromStdString(w->controller()->modelSummary().architecture),
                 QStringLiteral("minigpt4"));
        SettingsValues v = w->settings()->values();
        v.modelDir = QStringLiteral(MGD_TEST_DATA "/minigptv2-tiny-hi");
        w->settings()->setValues(v); // what the dialog's OK does
        QTRY_COMPARE_WITH_TIMEOUT(QString::fromStdString(w->controller()->modelSummary().architecture),
                                  QStringLiteral("minigptv2"), 10000);
        QVERIFY(waitReady(*w));
        // The new engine gets the conversation so far, then the new question.
        QSignalSpy done(w->controller(), &ChatController::turnCompleted);
        typeAndEnter(*w, "And now?");
        QVERIFY(waitIdle(*w));
        const TurnOutcome o = lastOutcome(done);
        QCOMPARE(o.engineMessages.size(), size_t{4});
        QCOMPARE(o.engineMessages[0].imageHashes.size(), size_t{1});
        QCOMPARE(o.stats.imagesEncoded, 1); // a different vision model: new features
    }

    void importedModelIsOfferedInSettingsAndLoads() {
        QTemporaryDir dir;
        writeSettings(dir);
        auto w = openWindow(dir);
        QVERIFY(waitReady(*w));
        // File > Import Model… on the tiny MiniGPT-v2 originals, into the app's models folder.
        ImportDialog *imp = w->openImportDialog();
        const QString orig = QStringLiteral(MGD_TEST_DATA "/reference-original/minigptv2-tiny-hi/");
        const QString out = dir.filePath("data/models/tiny-v2");
        imp->setInputs("minigptv2", orig + "eva_vit_g.pth", "", orig + "llama2-chat",
                       orig + "minigptv2_checkpoint.pth", out, "float32");
        imp->setAdvanced(64, 4, 0, 0);
        QSignalSpy finished(imp, &ImportDialog::finished);
        imp->startImport();
        QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 1, 60000);
        QVERIFY2(finished[0][0].toBool(), qPrintable(finished[0][1].toString()));
        // The settings dialog lists it with the built-in model.
        SettingsDialog *dlg = w->openSettings();
        auto *models = dlg->findChild<QComboBox *>("installedModels");
        QVERIFY(models->findData(out) >= 0);
        QVERIFY(models->findData(Settings::defaultModelDir()) >= 0);
        dlg->reject();
        // "Use this model" loads it.
        auto *use = imp->findChild<QPushButton *>("useButton");
        QVERIFY(use);
        use->click();
        QTRY_COMPARE_WITH_TIMEOUT(QString::fromStdString(w->controller()->modelSummary().architecture),
                                  QStringLiteral("minigptv2"), 10000);
        QVERIFY(waitReady(*w));
        QCOMPARE(w->settings()->values().modelDir, out);
    }

    void conversationSurvivesRestart() {
        QTemporaryDir dir;
        writeSettings(dir);
        QStringList before;
        QString id;
        {
            auto w = openWindow(dir);
            QVERIFY(waitReady(*w));
            dropFiles(w->messageView()->viewport(), {kImage});
            typeAndEnter(*w, "What is in this image?");
            QVERIFY(waitIdle(*w));
            typeAndEnter(*w, "What color is it?");
            QVERIFY(waitIdle(*w));
            before = texts(*w->controller()->messages());
            id = w->controller()->conversationId();
            QVERIFY(w->close());
        }
        // On disk: the conversation, and the image once under the SHA-256 of its bytes; no
        // temporary files left behind by the atomic writes.
        const QString sha = QString::fromLatin1(
            QCryptographicHash::hash(fileBytes(kImage), QCryptographicHash::Sha256).toHex());
        QVERIFY(QFile::exists(dir.filePath("data/conversations/" + id + ".json")));
        QCOMPARE(fileBytes(dir.filePath("data/images/" + sha + ".png")), fileBytes(kImage));
        QCOMPARE(QDir(dir.filePath("data/conversations")).entryList(QDir::Files).size(), 1);
        QCOMPARE(QDir(dir.filePath("data/images")).entryList(QDir::Files).size(), 1);
        // And its attention state, saved after each turn beside the conversations.
        QCOMPARE(QDir(dir.filePath("data/conversation-state")).entryList({"*.mgkv"}, QDir::Files).size(), 1);

        auto w = openWindow(dir);
        QVERIFY(waitReady(*w));
        ConversationList *list = w->conversationList();
        QCOMPARE(list->count(), 1);
        QCOMPARE(list->item(0)->text(), QStringLiteral("What is in this image?"));
        list->setCurrentRow(0);
        MessageModel *model = w->controller()->messages();
        QCOMPARE(w->controller()->conversationId(), id);
        QCOMPARE(texts(*model), before);
        QCOMPARE(model->at(0).images.size(), 1);
        QCOMPARE(model->at(0).images[0].bytes, fileBytes(kImage));
        QVERIFY(model->at(1).stats.has_value());
        QCOMPARE(w->messageView()->widgetCount(), 4);

        // It goes on with its history: the engine is given the saved conversation first.
        QSignalSpy done(w->controller(), &ChatController::turnCompleted);
        typeAndEnter(*w, "And the shapes?");
        QVERIFY(waitIdle(*w));
        const TurnOutcome o = lastOutcome(done);
        QCOMPARE(o.engineMessages.size(), size_t{6});
        QCOMPARE(texts(o.engineMessages).mid(0, 4), before);
        QCOMPARE(o.engineMessages[0].imageHashes.size(), size_t{1});
        // The restored image is in the prompt; its features come from the feature cache's disk
        // tier, which outlived the first window.
        QCOMPARE(o.stats.contextImages, 1);
        QCOMPARE(o.stats.imagesEncoded, 0);
        QVERIFY(o.stats.promptTokens > 100); // system prompt + image + both earlier turns
        // ... all of which come from the saved state: only the new question is prefilled.
        QVERIFY2(
            o.stats.reusedTokens > 100 && o.stats.prefillTokens < 40,
            qPrintable(
                QString("reused %1, prefilled %2").arg(o.stats.reusedTokens).arg(o.stats.prefillTokens)));
        QCOMPARE(model->count(), 6);
    }

    void closingMidTurnCancelsAndSaves() {
        QTemporaryDir dir;
        writeSettings(dir, 400);
        QString id;
        {
            auto w = openWindow(dir);
            QVERIFY(waitReady(*w));
            w->controller()->worker()->setTokenDelayForTesting(20);
            typeAndEnter(*w, "Tell me a long story.");
            MessageModel *model = w->controller()->messages();
            QTRY_VERIFY_WITH_TIMEOUT(model->count() == 2 && model->at(1).text.size() > 5, 10000);
            id = w->controller()->conversationId();
            QElapsedTimer t;
            t.start();
            QVERIFY(w->close());
            qInfo("closed %lld ms into a running turn", static_cast<long long>(t.elapsed()));
            QVERIFY(t.elapsed() < 1000);
        }
        auto w = openWindow(dir);
        QVERIFY(waitReady(*w));
        QVERIFY(w->controller()->openConversation(id));
        MessageModel *model = w->controller()->messages();
        QCOMPARE(model->count(), 2);
        QCOMPARE(model->at(0).text, QStringLiteral("Tell me a long story."));
        QVERIFY(!model->at(1).text.isEmpty());
        QVERIFY(model->at(1).stats.has_value());
        QVERIFY(model->at(1).stats->cancelled);
    }

    void brokenImagesAreRefusedWithMessage() {
        QTemporaryDir dir;
        writeSettings(dir);
        auto w = openWindow(dir);
        QVERIFY(waitReady(*w));
        const QByteArray png = fileBytes(kImage);
        auto write = [&](const QString &name, const QByteArray &bytes) {
            QFile f(dir.filePath(name));
            f.open(QIODevice::WriteOnly);
            f.write(bytes);
            return dir.filePath(name);
        };
        const QString truncated = write("truncated.png", png.left(png.size() / 2));
        const QString text = write("notes.png", "this is not an image\n");
        const QString empty = write("empty.png", {});
        const struct {
            QString path, says;
        } cases[] = {{truncated, "damaged"}, {text, "not an image"}, {empty, "empty"}};
        for (const auto &c : cases) {
            w->errorBanner()->hide();
            dropFiles(w->messageView()->viewport(), {c.path});
            QVERIFY(w->composer()->pendingImages().isEmpty());
            QVERIFY(w->errorBanner()->isVisible());
            QVERIFY2(w->errorBanner()->text().contains(QFileInfo(c.path).fileName()) &&
                         w->errorBanner()->text().contains(c.says),
                     qPrintable(w->errorBanner()->text()));
        }
        // A good image in the same drop still comes through.
        dropFiles(w->messageView()->viewport(), {truncated, kImage});
        QCOMPARE(w->composer()->pendingImages().size(), 1);
        w->composer()->clear();

        // Bytes the core refuses (past the composer's check): the core's message is shown,
        // the conversation is unchanged and the question returns to the composer.
        ImageAttachment bad;
        bad.bytes = png.left(40);
        bad.label = "half.png";
        bad.format = "png";
        bad.hash = "0";
        QSignalSpy failed(w->controller(), &ChatController::errorOccurred);
        QVERIFY(w->controller()->send("What is this?", {bad}));
        QVERIFY(waitIdle(*w));
        QCOMPARE(failed.size(), 1);
        QVERIFY2(w->errorBanner()->text().contains("half.png"), qPrintable(w->errorBanner()->text()));
        QCOMPARE(w->controller()->messages()->count(), 0);
        QCOMPARE(w->composer()->text(), QStringLiteral("What is this?"));
        QCOMPARE(w->composer()->pendingImages().size(), 1);
        // And the window still works.
        w->composer()->clear();
        typeAndEnter(*w, "Hello?");
        QVERIFY(waitIdle(*w));
        QCOMPARE(w->controller()->messages()->count(), 2);
    }

    void eventLoopNeverStallsDuringTurn() {
        QTemporaryDir dir;
        writeSettings(dir, 120);
        auto w = openWindow(dir);
        QVERIFY(waitReady(*w));
        StallProbe probe;
        // Judged by the best of three turns: a stall our code causes (work on the UI thread per
        // token) shows in every turn, while a machine busy with other processes (ctest -j2, a
        // build) can deschedule the UI thread for 100 ms in any one of them.
        qint64 worst = 0, best = std::numeric_limits<qint64>::max();
        // Full speed: the most token signals per second the UI thread will ever see.
        for (int turn = 0; turn < 3; ++turn) {
            action(*w, "actionNewChat")->trigger();
            dropFiles(w->messageView()->viewport(), {kImage});
            probe.start();
            typeAndEnter(*w, "Describe this image.");
            QVERIFY(waitIdle(*w));
            QTest::qWait(100); // the last repaint and the panel's next poll
            const qint64 gap = probe.stop();
            qInfo("turn %d: longest event-loop stall %lld ms", turn, static_cast<long long>(gap));
            worst = std::max(worst, gap);
            best = std::min(best, gap);
            QVERIFY(w->controller()->messages()->at(1).stats->generatedTokens > 50);
        }
        QVERIFY2(best < 50,
                 qPrintable(QString("stalled %1 ms in every turn (worst %2 ms)").arg(best).arg(worst)));
    }

    void deletingAConversationAsksFirst() {
        QTemporaryDir dir;
        writeSettings(dir);
        auto w = openWindow(dir);
        QVERIFY(waitReady(*w));
        dropFiles(w->messageView()->viewport(), {kImage});
        typeAndEnter(*w, "What is in this image?");
        QVERIFY(waitIdle(*w));
        const QString id = w->controller()->conversationId();
        QCOMPARE(w->conversationList()->count(), 1);
        QTRY_COMPARE(QDir(dir.filePath("data/conversation-state")).entryList({"*.mgkv"}, QDir::Files).size(),
                     1);

        answerNextMessageBox(QMessageBox::Cancel);
        action(*w, "actionDeleteConversation")->trigger();
        QCOMPARE(w->conversationList()->count(), 1);
        w->controller()->store()->flush();
        QVERIFY(QFile::exists(dir.filePath("data/conversations/" + id + ".json")));

        answerNextMessageBox(QMessageBox::Yes);
        action(*w, "actionDeleteConversation")->trigger();
        QCOMPARE(w->conversationList()->count(), 0);
        QVERIFY(!QFile::exists(dir.filePath("data/conversations/" + id + ".json")));
        QCOMPARE(QDir(dir.filePath("data/images")).entryList(QDir::Files).size(), 0);
        // Its saved attention state goes with it (deleted on the engine's thread).
        QTRY_COMPARE(QDir(dir.filePath("data/conversation-state")).entryList({"*.mgkv"}, QDir::Files).size(),
                     0);
        QCOMPARE(w->controller()->messages()->count(), 0); // a new chat took its place
    }
};

QTEST_MAIN(TestChatWindow)
#include "test_chat_window.moc"
