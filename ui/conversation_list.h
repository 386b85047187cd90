#pragma once
// The side list of saved conversations, newest first, with the open one selected. Deleting
// asks first (through the window, which owns the dialogs).
#include <QListWidget>

class ConversationStore;

class ConversationList : public QListWidget {
    Q_OBJECT

public:
    explicit ConversationList(ConversationStore *store, QWidget *parent = nullptr);
    void refresh();
    void setCurrentConversation(const QString &id);
    QString conversationAt(int row) const;

signals:
    void conversationActivated(const QString &id);
    void deleteRequested(const QString &id);

protected:
    void contextMenuEvent(QContextMenuEvent *e) override;
    void keyPressEvent(QKeyEvent *e) override;

private:
    ConversationStore *store_;
    QString current_;
    bool refreshing_ = false;
};
