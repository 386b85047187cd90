#pragma once
// One message on screen: who said it, the images attached (thumbnails, click for full size),
// the text as Markdown, MiniGPT-v2 boxes drawn on the image they refer to, and for answers a
// stats line and a copy button.
#include <QFrame>
#include <QImage>

#include "ui/chat_types.h"

class QHBoxLayout;
class QLabel;
class QToolButton;

class MessageWidget : public QFrame {
    Q_OBJECT

public:
    // groundingSource: the image an answer's boxes refer to (the question's), or null.
    MessageWidget(const ChatItem &item, const ImageAttachment *groundingSource,
                  QWidget *parent = nullptr);

    void setItem(const ChatItem &item, const ImageAttachment *groundingSource);
    const ChatItem &item() const { return item_; }
    QString renderedText() const;

    static QString statsLine(const ChatItem &item);

signals:
    void imageActivated(const QImage &image, const QString &title);

protected:
    void changeEvent(QEvent *e) override;
    bool eventFilter(QObject *watched, QEvent *e) override;

private:
    void render();
    void applyBackground();

    ChatItem item_;
    ImageAttachment groundingSource_;   // encoded; decoded only when an answer has boxes
    QImage groundingDecoded_;
    QString groundingDecodedHash_;
    QString groundedFor_;               // the answer text the drawn boxes come from
    QString renderedFor_;
    QLabel *who_ = nullptr;
    QLabel *body_ = nullptr;
    QLabel *stats_ = nullptr;
    QLabel *grounded_ = nullptr;
    QToolButton *copy_ = nullptr;
    QHBoxLayout *thumbs_ = nullptr;
    QImage groundedFull_;
};
