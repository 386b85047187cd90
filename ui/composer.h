#pragma once
// Where a question is written: the text box, the images waiting to be sent (each removable),
// and the Send button that turns into Stop while an answer streams.
#include <QList>
#include <QMimeData>
#include <QWidget>

#include "ui/chat_types.h"

class ComposerEdit;
class QHBoxLayout;
class QLabel;

class QPushButton;
class QToolButton;
class QWidget;

class Composer : public QWidget {
    Q_OBJECT

public:
    explicit Composer(QWidget *parent = nullptr);

    QString text() const;
    void setText(const QString &text);
    const QList<ImageAttachment> &pendingImages() const { return pending_; }
    void addImages(const QList<ImageAttachment> &images);
    void removeImage(int index);
    void clear();
    // Adds the images in a drop or paste; refused ones are reported through imagesRefused.
    void offerMime(const QMimeData *mime);
    void setBusy(bool busy);
    void setCanSend(bool can);
    void setEditing(bool editing);
    bool editing() const { return editing_; }
    ComposerEdit *edit() const { return edit_; }
    QPushButton *sendButton() const { return send_; }

signals:
    void sendRequested();
    void stopRequested();
    void openImageRequested();
    void editCancelled();
    void imagesRefused(const QStringList &errors);
    void pendingChanged();

private:
    void rebuildStrip();

    ComposerEdit *edit_ = nullptr;
    QPushButton *send_ = nullptr;
    QToolButton *attach_ = nullptr;
    QWidget *strip_ = nullptr;
    QHBoxLayout *stripLayout_ = nullptr;
    QWidget *editBanner_ = nullptr;
    QList<ImageAttachment> pending_;
    bool busy_ = false;
    bool canSend_ = false;
    bool editing_ = false;
};
