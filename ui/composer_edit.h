#pragma once
// The question box: Enter sends, Shift+Enter starts a new line; images pasted or dropped
// into it go to the composer's pending images instead of becoming text.
#include <QMimeData>
#include <QPlainTextEdit>

class ComposerEdit : public QPlainTextEdit {
    Q_OBJECT

public:
    explicit ComposerEdit(QWidget *parent = nullptr);
    QSize sizeHint() const override;

signals:
    void submitRequested();
    void mimeOffered(const QMimeData *mime);

protected:
    void keyPressEvent(QKeyEvent *e) override;
    bool canInsertFromMimeData(const QMimeData *source) const override;
    void insertFromMimeData(const QMimeData *source) override;

private:
    void fitHeight();
};
