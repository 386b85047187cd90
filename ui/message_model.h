#pragma once
// The messages of the conversation on screen, as a list model. Written only from the UI
// thread (tokens arrive there through queued signals), so it needs no lock.
#include <QAbstractListModel>
#include <QList>

#include "ui/chat_types.h"

class MessageModel : public QAbstractListModel {
    Q_OBJECT

public:
    enum Role { FromUserRole = Qt::UserRole + 1, StreamingRole, ErrorRole, ImageCountRole };

    explicit MessageModel(QObject *parent = nullptr);

    int rowCount(const QModelIndex &parent = {}) const override;
    QVariant data(const QModelIndex &index, int role) const override;

    const ChatItem &at(int row) const { return items_.at(row); }
    const QList<ChatItem> &items() const { return items_; }
    int count() const { return static_cast<int>(items_.size()); }

    void setItems(const QList<ChatItem> &items);
    void append(const ChatItem &item);
    void replace(int row, const ChatItem &item);
    void appendText(int row, const QString &piece);
    // Keeps the first n messages.
    void truncate(int n);
    void clear() { setItems({}); }

private:
    QList<ChatItem> items_;
};
