#pragma once
// The main window: conversations on the left, the chat in the middle, the performance panel
// docked on the right; menus, shortcuts, drag-and-drop anywhere, and the settings dialog.
// Where data and settings live is injectable so tests run against temporary folders.
#include <QMainWindow>
#include <QStringList>

class ChatController;
class Composer;
class ExampleGallery;
class ImportDialog;
class ConversationList;
class ConversationStore;
class MessageListView;
class PerfPanel;
class QAction;
class QDockWidget;
class QLabel;
class QProgressBar;
class QTimer;
class Settings;
class SettingsDialog;

struct ChatWindowOptions {
    QString dataDir;      // conversations and images; empty: ~/.local/share/minigpt-desk
    QString settingsFile; // an INI file; empty: the platform's usual settings store
    QString modelDir;     // opens this model (and remembers it); empty: the one in settings
    QStringList images;   // attached to the composer at start
};

class ChatWindow : public QMainWindow {
    Q_OBJECT

public:
    explicit ChatWindow(const ChatWindowOptions &options = {}, QWidget *parent = nullptr);
    ~ChatWindow() override;

    ChatController *controller() const { return controller_; }
    Composer *composer() const { return composer_; }
    MessageListView *messageView() const { return view_; }
    PerfPanel *perfPanel() const { return panel_; }
    ConversationList *conversationList() const { return list_; }
    Settings *settings() const { return settings_; }
    QLabel *errorBanner() const { return banner_; }
    ExampleGallery *exampleGallery() const { return gallery_; }
    QDockWidget *perfDock() const { return dock_; }

    // Opens the settings dialog (non-modal: the chat keeps working) and returns it.
    SettingsDialog *openSettings();
    // Opens File > Import Model… (non-modal); "Use this model" switches to the new folder.
    ImportDialog *openImportDialog();
    void showError(const QString &message);
    void sendFromComposer();
    void editLastQuestion();
    void attachFiles(const QStringList &paths);
    // Puts an example's image and question in the composer (the person sends it).
    void useExample(const QString &imagePath, const QString &question);

protected:
    void changeEvent(QEvent *e) override;
    void closeEvent(QCloseEvent *e) override;
    void dragEnterEvent(QDragEnterEvent *e) override;
    void dragMoveEvent(QDragMoveEvent *e) override;
    void dropEvent(QDropEvent *e) override;

private:
    void buildMenus();
    void applyBannerColors();
    void updateActions();
    void updateTitle();
    void confirmDelete(const QString &id);
    void openImageDialog();
    void pasteImage();
    void useModelFolder(const QString &dir);
    QList<QPair<QString, QString>> installedModels() const;

    Settings *settings_ = nullptr;
    ConversationStore *store_ = nullptr;
    ChatController *controller_ = nullptr;
    ConversationList *list_ = nullptr;
    MessageListView *view_ = nullptr;
    Composer *composer_ = nullptr;
    PerfPanel *panel_ = nullptr;
    ExampleGallery *gallery_ = nullptr;
    QString lastExample_; // the question the last chosen example put in the composer
    QDockWidget *dock_ = nullptr;
    QLabel *banner_ = nullptr;
    QTimer *bannerTimer_ = nullptr;
    QLabel *modelLabel_ = nullptr;
    QProgressBar *progress_ = nullptr;
    QAction *newChat_ = nullptr, *openImage_ = nullptr, *deleteChat_ = nullptr, *settingsAction_ = nullptr,
            *stop_ = nullptr, *regenerate_ = nullptr, *editLast_ = nullptr, *copyAnswer_ = nullptr,
            *pasteImage_ = nullptr, *importModel_ = nullptr;
    bool closed_ = false;
};
