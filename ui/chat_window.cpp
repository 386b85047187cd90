#include "ui/chat_window.h"

#include <QAction>
#include <QApplication>
#include <QClipboard>
#include <QCloseEvent>
#include <QDir>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QProgressBar>
#include <QPushButton>
#include <QSplitter>
#include <QStatusBar>
#include <QTimer>
#include <QToolButton>
#include <QVBoxLayout>

#include "ui/chat_controller.h"
#include "ui/composer.h"
#include "ui/composer_edit.h"
#include "ui/conversation_list.h"
#include "ui/conversation_store.h"
#include "ui/image_attachment.h"
#include "ui/image_viewer.h"
#include "ui/import_dialog.h"
#include "ui/example_gallery.h"
#include "ui/message_list_view.h"
#include "ui/message_model.h"
#include "ui/perf_panel.h"
#include "ui/settings.h"
#include "ui/settings_dialog.h"

ChatWindow::ChatWindow(const ChatWindowOptions &options, QWidget *parent) : QMainWindow(parent) {
    setObjectName("chatWindow");
    setAcceptDrops(true);
    settings_ = new Settings(options.settingsFile, this);
    if (!options.modelDir.isEmpty()) {
        SettingsValues v = settings_->values();
        v.modelDir = options.modelDir;
        settings_->setValues(v);
    }
    store_ = new ConversationStore(options.dataDir, this);
    controller_ = new ChatController(settings_, store_, this);

    // Left: conversations. Middle: error banner, messages, composer.
    auto *splitter = new QSplitter(Qt::Horizontal, this);
    auto *left = new QWidget(splitter);
    auto *lv = new QVBoxLayout(left);
    lv->setContentsMargins(6, 6, 0, 6);
    auto *newButton = new QPushButton(tr("New chat"), left);
    connect(newButton, &QPushButton::clicked, controller_, &ChatController::newChat);
    lv->addWidget(newButton);
    list_ = new ConversationList(store_, left);
    lv->addWidget(list_, 1);
    splitter->addWidget(left);

    auto *middle = new QWidget(splitter);
    auto *mv = new QVBoxLayout(middle);
    mv->setContentsMargins(0, 0, 0, 0);
    mv->setSpacing(0);
    banner_ = new QLabel(middle);
    banner_->setObjectName("errorBanner");
    banner_->setWordWrap(true);
    banner_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    banner_->setMargin(8);
    banner_->setAutoFillBackground(true);
    applyBannerColors();
    banner_->hide();
    mv->addWidget(banner_);
    bannerTimer_ = new QTimer(this);
    bannerTimer_->setSingleShot(true);
    bannerTimer_->setInterval(15000);
    connect(bannerTimer_, &QTimer::timeout, banner_, &QLabel::hide);

    view_ = new MessageListView(middle);
    view_->setModel(controller_->messages());
    connect(view_, &MessageListView::imageActivated, this,
            [this](const QImage &img, const QString &t) { (new ImageViewer(img, t, this))->show(); });
    mv->addWidget(view_, 1);
    gallery_ = new ExampleGallery;
    view_->addToEmptyState(gallery_);
    connect(gallery_, &ExampleGallery::exampleChosen, this, &ChatWindow::useExample);
    composer_ = new Composer(middle);
    mv->addWidget(composer_);
    splitter->addWidget(middle);
    splitter->setStretchFactor(0, 0);
    splitter->setStretchFactor(1, 1);
    splitter->setSizes({220, 700});
    setCentralWidget(splitter);

    // Right: the performance panel, in a dock that can be hidden or floated.
    panel_ = new PerfPanel;
    dock_ = new QDockWidget(tr("Performance"), this);
    dock_->setObjectName("perfDock");
    dock_->setWidget(panel_);
    addDockWidget(Qt::RightDockWidgetArea, dock_);
    panel_->setSource([this]() -> std::optional<mgd::MetricsSnapshot> {
        EngineWorker *w = controller_ ? controller_->worker() : nullptr;
        return w ? w->metricsSnapshot() : std::nullopt;
    });

    modelLabel_ = new QLabel(this);
    progress_ = new QProgressBar(this);
    progress_->setRange(0, 0); // busy indicator: loading has no measurable progress
    progress_->setMaximumWidth(160);
    progress_->hide();
    statusBar()->addWidget(modelLabel_, 1);
    statusBar()->addPermanentWidget(progress_);

    buildMenus();

    connect(composer_, &Composer::sendRequested, this, &ChatWindow::sendFromComposer);
    connect(composer_, &Composer::stopRequested, controller_, &ChatController::stop);
    connect(composer_, &Composer::openImageRequested, this, &ChatWindow::openImageDialog);
    connect(composer_, &Composer::imagesRefused, this,
            [this](const QStringList &errors) { showError(errors.join('\n')); });
    connect(controller_, &ChatController::errorOccurred, this, &ChatWindow::showError);
    connect(controller_, &ChatController::busyChanged, this, [this](bool busy) {
        composer_->setBusy(busy);
        updateActions();
    });
    connect(controller_, &ChatController::turnCompleted, this, [this] { updateActions(); });
    connect(controller_, &ChatController::questionReturned, this,
            [this](const QString &text, const QList<ImageAttachment> &images) {
                if (composer_->text().isEmpty()) composer_->setText(text);
                composer_->addImages(images);
            });
    connect(controller_, &ChatController::conversationChanged, this, [this](const QString &id) {
        list_->setCurrentConversation(id);
        composer_->setEditing(false);
        updateActions();
        updateTitle();
    });
    connect(store_, &ConversationStore::listChanged, this, [this] {
        list_->setCurrentConversation(controller_->conversationId());
        updateTitle();
    });
    connect(list_, &ConversationList::conversationActivated, controller_, &ChatController::openConversation);
    connect(list_, &ConversationList::deleteRequested, this, &ChatWindow::confirmDelete);
    connect(controller_, &ChatController::modelStateChanged, this,
            [this](ChatController::ModelState state, const QString &message) {
                progress_->setVisible(state == ChatController::ModelState::Loading);
                modelLabel_->setText(message);
                composer_->setCanSend(state == ChatController::ModelState::Ready);
                if (state == ChatController::ModelState::Ready)
                    gallery_->setModelDir(settings_->values().modelDir);
                updateActions();
            });

    const QByteArray geometry = settings_->windowGeometry();
    if (!geometry.isEmpty())
        restoreGeometry(geometry);
    else
        resize(1240, 780);
    const QByteArray state = settings_->windowState();
    if (!state.isEmpty()) restoreState(state);

    attachFiles(options.images);
    updateActions();
    updateTitle();
    composer_->edit()->setFocus();
    // The window shows at once; the model loads on the worker thread behind it.
    controller_->loadModel();
}

ChatWindow::~ChatWindow() {
    if (!closed_) controller_->shutdown();
}

void ChatWindow::buildMenus() {
    QMenu *file = menuBar()->addMenu(tr("&File"));
    newChat_ = file->addAction(tr("&New Chat"), QKeySequence::New, controller_, &ChatController::newChat);
    openImage_ = file->addAction(tr("&Open Image…"), QKeySequence::Open, this, &ChatWindow::openImageDialog);
    importModel_ = file->addAction(tr("&Import Model…"), this, &ChatWindow::openImportDialog);
    deleteChat_ = file->addAction(tr("&Delete Conversation…"), this, [this] {
        if (!controller_->conversationId().isEmpty()) confirmDelete(controller_->conversationId());
    });
    file->addSeparator();
    settingsAction_ =
        file->addAction(tr("&Settings…"), QKeySequence(tr("Ctrl+,")), this, &ChatWindow::openSettings);
    settingsAction_->setMenuRole(QAction::PreferencesRole);
    file->addSeparator();
    file->addAction(tr("&Quit"), QKeySequence::Quit, this, &QWidget::close);

    QMenu *edit = menuBar()->addMenu(tr("&Edit"));
    copyAnswer_ = edit->addAction(tr("&Copy Answer"), QKeySequence(tr("Ctrl+Shift+C")), this, [this] {
        QApplication::clipboard()->setText(controller_->lastAnswer());
        statusBar()->showMessage(tr("Answer copied"), 2000);
    });
    pasteImage_ =
        edit->addAction(tr("&Paste Image"), QKeySequence(tr("Ctrl+Shift+V")), this, &ChatWindow::pasteImage);
    editLast_ = edit->addAction(tr("&Edit Last Question"), QKeySequence(tr("Ctrl+E")), this,
                                &ChatWindow::editLastQuestion);

    QMenu *chat = menuBar()->addMenu(tr("&Chat"));
    chat->addAction(tr("&Send"), this, &ChatWindow::sendFromComposer)
        ->setShortcut(QKeySequence(tr("Ctrl+Return")));
    stop_ = chat->addAction(tr("S&top"), QKeySequence(Qt::Key_Escape), controller_, &ChatController::stop);
    regenerate_ = chat->addAction(tr("&Regenerate Answer"), QKeySequence(tr("Ctrl+R")), this, [this] {
        composer_->setEditing(false);
        controller_->regenerate();
    });
    chat->addAction(editLast_);

    QMenu *view = menuBar()->addMenu(tr("&View"));
    QAction *panel = dock_->toggleViewAction();
    panel->setText(tr("&Performance Panel"));
    panel->setShortcut(QKeySequence(tr("F9")));
    view->addAction(panel);
    QAction *side = view->addAction(tr("&Conversations"));
    side->setCheckable(true);
    side->setChecked(true);
    side->setShortcut(QKeySequence(tr("Ctrl+Shift+L")));
    connect(side, &QAction::toggled, list_->parentWidget(), &QWidget::setVisible);

    // Named, so tests and accessibility tools can find them.
    newChat_->setObjectName("actionNewChat");
    openImage_->setObjectName("actionOpenImage");
    importModel_->setObjectName("actionImportModel");
    deleteChat_->setObjectName("actionDeleteConversation");
    settingsAction_->setObjectName("actionSettings");
    copyAnswer_->setObjectName("actionCopyAnswer");
    pasteImage_->setObjectName("actionPasteImage");
    editLast_->setObjectName("actionEditLast");
    stop_->setObjectName("actionStop");
    regenerate_->setObjectName("actionRegenerate");

    QMenu *help = menuBar()->addMenu(tr("&Help"));
    help->addAction(tr("&Keyboard Shortcuts"), this, [this] {
        QMessageBox::information(
            this, tr("Keyboard shortcuts"),
            tr("Enter\tsend\nShift+Enter\tnew line\nEsc\tstop the answer\nCtrl+R\tregenerate\n"
               "Ctrl+E\tedit the last question\nCtrl+Shift+C\tcopy the answer\nCtrl+O\topen "
               "images\nCtrl+V\tpaste an image (in the question box)\nCtrl+N\tnew chat\n"
               "F9\tperformance panel\nCtrl+,\tsettings"));
    });
    help->addAction(tr("&About MiniGPT Desk"), this, [this] {
        // What we link and under which licence, as a binary distribution must say.
        QMessageBox::about(
            this, tr("About MiniGPT Desk"),
            tr("<b>MiniGPT Desk %1</b><br>Chat about images with MiniGPT-4-family models, on this "
               "computer.<br>Model: %2<br><br>MIT licence. Built with: Qt %3 (LGPL-3.0), libtorch "
               "(BSD-3-Clause), OpenBLAS (BSD-3-Clause), OpenCV (Apache-2.0), nlohmann/json (MIT), "
               "xxHash (BSD-2-Clause), hiredis (BSD-3-Clause), OpenSSL libcrypto (Apache-2.0), protobuf (BSD-3-Clause).<br>"
               "The built-in demo model was trained by this project; imported models keep the "
               "licences of their original files.")
                .arg(QCoreApplication::applicationVersion(),
                     QString::fromStdString(controller_->modelSummary().name), QString::fromLatin1(qVersion())));
    });
}

void ChatWindow::updateActions() {
    const bool busy = controller_->busy();
    stop_->setEnabled(busy);
    regenerate_->setEnabled(controller_->canRegenerate());
    editLast_->setEnabled(controller_->canEditLast());
    copyAnswer_->setEnabled(!controller_->lastAnswer().isEmpty());
    deleteChat_->setEnabled(!busy);
}

void ChatWindow::updateTitle() {
    QString title;
    for (const ConversationStore::Summary &s : store_->list())
        if (s.id == controller_->conversationId()) title = s.title;
    setWindowTitle(title.isEmpty() ? tr("MiniGPT Desk") : tr("%1 — MiniGPT Desk").arg(title));
}

void ChatWindow::applyBannerColors() {
    // A warm tint that reads in both the light and the dark palette.
    QPalette p = palette();
    const bool dark = p.color(QPalette::Window).lightness() < 128;
    p.setColor(QPalette::Window, dark ? QColor(110, 40, 30) : QColor(255, 228, 214));
    p.setColor(QPalette::WindowText, dark ? QColor(255, 235, 225) : QColor(110, 20, 0));
    banner_->setPalette(p);
}

void ChatWindow::changeEvent(QEvent *e) {
    QMainWindow::changeEvent(e);
    if (e->type() == QEvent::PaletteChange && banner_) applyBannerColors();
}

void ChatWindow::showError(const QString &message) {
    banner_->setText(message);
    banner_->show();
    bannerTimer_->start();
}

void ChatWindow::sendFromComposer() {
    const QString text = composer_->text();
    const QList<ImageAttachment> images = composer_->pendingImages();
    const bool started =
        composer_->editing() ? controller_->editLast(text, images) : controller_->send(text, images);
    if (!started) return;
    banner_->hide();
    composer_->clear();
    composer_->setEditing(false);
}

void ChatWindow::editLastQuestion() {
    const std::optional<ChatItem> q = controller_->lastQuestion();
    if (!q || controller_->busy()) return;
    composer_->clear();
    composer_->setText(q->text);
    composer_->addImages(q->images);
    composer_->setEditing(true);
    composer_->edit()->setFocus();
    composer_->edit()->moveCursor(QTextCursor::End);
}

void ChatWindow::attachFiles(const QStringList &paths) {
    QStringList errors;
    QList<ImageAttachment> images;
    for (const QString &p : paths) {
        QString error;
        if (auto a = attachmentFromFile(p, &error))
            images << *a;
        else
            errors << error;
    }
    composer_->addImages(images);
    if (!errors.isEmpty()) showError(errors.join('\n'));
}

void ChatWindow::useExample(const QString &imagePath, const QString &question) {
    // A second example replaces the first one's image and question, never what was typed.
    if (!lastExample_.isEmpty() && composer_->text() == lastExample_ &&
        composer_->pendingImages().size() == 1)
        composer_->clear();
    attachFiles({imagePath});
    if (composer_->text().trimmed().isEmpty()) {
        composer_->setText(question);
        lastExample_ = question;
    }
    composer_->edit()->setFocus();
}

void ChatWindow::openImageDialog() {
    const QStringList paths = QFileDialog::getOpenFileNames(this, tr("Add images"), {}, imageFileFilter());
    attachFiles(paths);
}

void ChatWindow::pasteImage() {
    const QMimeData *mime = QApplication::clipboard()->mimeData();
    if (!mimeMayHoldImages(mime)) {
        showError(tr("The clipboard holds no image."));
        return;
    }
    composer_->offerMime(mime);
}

void ChatWindow::confirmDelete(const QString &id) {
    QString title;
    for (const ConversationStore::Summary &s : store_->list())
        if (s.id == id) title = s.title;
    if (title.isEmpty()) return; // never saved: nothing to delete
    const auto answer = QMessageBox::question(
        this, tr("Delete conversation"), tr("Delete “%1” and its images? This cannot be undone.").arg(title),
        QMessageBox::Yes | QMessageBox::Cancel, QMessageBox::Cancel);
    if (answer == QMessageBox::Yes) controller_->deleteConversation(id);
}

SettingsDialog *ChatWindow::openSettings() {
    bool cuda = false;
    if (EngineWorker *w = controller_->worker())
        if (const auto s = w->metricsSnapshot()) cuda = s->memory.cuda;
    auto *dlg = new SettingsDialog(
        settings_->values(), QString::fromStdString(controller_->modelSummary().promptTemplate), cuda, this);
    dlg->setAttribute(Qt::WA_DeleteOnClose);
    dlg->offerModels(installedModels());
    connect(dlg, &QDialog::accepted, this, [this, dlg] { settings_->setValues(dlg->values()); });
    dlg->open();
    return dlg;
}

ImportDialog *ChatWindow::openImportDialog() {
    auto *dlg = new ImportDialog(QDir(store_->dataDir()).filePath("models"), this);
    dlg->setAttribute(Qt::WA_DeleteOnClose);
    connect(dlg, &QDialog::accepted, this, [this, dlg] { useModelFolder(dlg->importedDir()); });
    // Not modal: an import of the real files takes minutes, and the chat keeps working.
    dlg->show();
    return dlg;
}

QList<QPair<QString, QString>> ChatWindow::installedModels() const {
    // The built-in model, then every folder File > Import Model… made (those with a config.json).
    QList<QPair<QString, QString>> out;
    if (!Settings::defaultModelDir().isEmpty())
        out.append({tr("Built-in demo model"), Settings::defaultModelDir()});
    const QDir models(QDir(store_->dataDir()).filePath("models"));
    for (const QString &name : models.entryList(QDir::Dirs | QDir::NoDotAndDotDot, QDir::Name))
        if (QFileInfo::exists(models.filePath(name + "/config.json")))
            out.append({name, models.filePath(name)});
    return out;
}

void ChatWindow::useModelFolder(const QString &dir) {
    // The settings dialog's path: Settings::changed makes the controller reload the model.
    SettingsValues v = settings_->values();
    v.modelDir = dir;
    settings_->setValues(v);
}

void ChatWindow::closeEvent(QCloseEvent *e) {
    // A running answer is cancelled and kept; the conversation is saved before the window goes.
    settings_->setWindowLayout(saveGeometry(), saveState());
    if (!closed_) controller_->shutdown();
    closed_ = true;
    e->accept();
}

void ChatWindow::dragEnterEvent(QDragEnterEvent *e) {
    if (mimeMayHoldImages(e->mimeData())) e->acceptProposedAction();
}

void ChatWindow::dragMoveEvent(QDragMoveEvent *e) {
    if (mimeMayHoldImages(e->mimeData())) e->acceptProposedAction();
}

void ChatWindow::dropEvent(QDropEvent *e) {
    composer_->offerMime(e->mimeData());
    e->acceptProposedAction();
}
