#pragma once
// The conversation view: one MessageWidget per row of a MessageModel, kept in step with the
// model's signals, scrolled to the newest message while an answer streams (unless the
// reader scrolled up to read something older).
#include <QList>
#include <QScrollArea>

#include "ui/chat_types.h"

class MessageModel;
class MessageWidget;
class QLabel;
class QVBoxLayout;

class MessageListView : public QScrollArea {
    Q_OBJECT

public:
    explicit MessageListView(QWidget *parent = nullptr);
    void setModel(MessageModel *model);
    // Shown under the how-to-start text while the conversation is empty.
    void addToEmptyState(QWidget *w);
    MessageWidget *widgetAt(int row) const { return widgets_.value(row); }
    int widgetCount() const { return static_cast<int>(widgets_.size()); }

signals:
    void imageActivated(const QImage &image, const QString &title);

private:
    void rebuild();
    void insertRows(int first, int last);
    void removeRows(int first, int last);
    void updateRows(int first, int last);
    void scrollToEndIfFollowing();
    const ImageAttachment *groundingSourceFor(int row) const;

    MessageModel *model_ = nullptr;
    QWidget *content_ = nullptr;
    QVBoxLayout *layout_ = nullptr;
    QWidget *emptyState_ = nullptr;
    QVBoxLayout *emptyLayout_ = nullptr;
    QLabel *placeholder_ = nullptr;
    QList<MessageWidget *> widgets_;
    bool following_ = true;
};
