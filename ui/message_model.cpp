#include "ui/message_model.h"

MessageModel::MessageModel(QObject *parent) : QAbstractListModel(parent) {}

int MessageModel::rowCount(const QModelIndex &parent) const {
    return parent.isValid() ? 0 : static_cast<int>(items_.size());
}

QVariant MessageModel::data(const QModelIndex &index, int role) const {
    if (!index.isValid() || index.row() >= items_.size()) return {};
    const ChatItem &m = items_.at(index.row());
    switch (role) {
    case Qt::DisplayRole: return m.text;
    case FromUserRole: return m.fromUser;
    case StreamingRole: return m.streaming;
    case ErrorRole: return m.error;
    case ImageCountRole: return static_cast<int>(m.images.size());
    default: return {};
    }
}

void MessageModel::setItems(const QList<ChatItem> &items) {
    beginResetModel();
    items_ = items;
    endResetModel();
}

void MessageModel::append(const ChatItem &item) {
    const int row = count();
    beginInsertRows({}, row, row);
    items_.append(item);
    endInsertRows();
}

void MessageModel::replace(int row, const ChatItem &item) {
    items_[row] = item;
    emit dataChanged(index(row), index(row));
}

void MessageModel::appendText(int row, const QString &piece) {
    items_[row].text += piece;
    emit dataChanged(index(row), index(row), {Qt::DisplayRole});
}

void MessageModel::truncate(int n) {
    if (n >= count()) return;
    beginRemoveRows({}, n, count() - 1);
    items_.erase(items_.begin() + n, items_.end());
    endRemoveRows();
}
