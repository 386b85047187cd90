#include "ui/conversation_list.h"

#include <QContextMenuEvent>
#include <QLocale>
#include <QMenu>

#include "ui/conversation_store.h"

ConversationList::ConversationList(ConversationStore *store, QWidget *parent)
    : QListWidget(parent), store_(store) {
    setObjectName("conversationList");
    setSelectionMode(QAbstractItemView::SingleSelection);
    setTextElideMode(Qt::ElideRight);
    setUniformItemSizes(true);
    connect(store_, &ConversationStore::listChanged, this, &ConversationList::refresh);
    connect(this, &QListWidget::currentRowChanged, this, [this](int row) {
        if (refreshing_ || row < 0) return;
        const QString id = conversationAt(row);
        if (id != current_) emit conversationActivated(id);
    });
    refresh();
}

QString ConversationList::conversationAt(int row) const {
    const QListWidgetItem *it = item(row);
    return it ? it->data(Qt::UserRole).toString() : QString();
}

void ConversationList::refresh() {
    refreshing_ = true;
    clear();
    const QLocale locale;
    for (const ConversationStore::Summary &s : store_->list()) {
        auto *it = new QListWidgetItem(s.title.isEmpty() ? tr("New chat") : s.title, this);
        it->setData(Qt::UserRole, s.id);
        it->setToolTip(
            tr("%1\n%n message(s), last %2", nullptr, s.messages)
                .arg(s.title, locale.toString(s.updated.toLocalTime(), QLocale::ShortFormat)));
        if (s.id == current_) setCurrentItem(it);
    }
    refreshing_ = false;
}

void ConversationList::setCurrentConversation(const QString &id) {
    current_ = id;
    refreshing_ = true;
    setCurrentRow(-1);
    for (int r = 0; r < count(); ++r)
        if (conversationAt(r) == id) setCurrentRow(r);
    refreshing_ = false;
}

void ConversationList::contextMenuEvent(QContextMenuEvent *e) {
    const QListWidgetItem *it = itemAt(e->pos());
    if (!it) return;
    const QString id = it->data(Qt::UserRole).toString();
    QMenu menu(this);
    menu.addAction(tr("Open"), this, [this, id] { emit conversationActivated(id); });
    menu.addAction(tr("Delete…"), this, [this, id] { emit deleteRequested(id); });
    menu.exec(e->globalPos());
}

void ConversationList::keyPressEvent(QKeyEvent *e) {
    if (e->key() == Qt::Key_Delete && currentRow() >= 0) {
        emit deleteRequested(conversationAt(currentRow()));
        return;
    }
    QListWidget::keyPressEvent(e);
}
