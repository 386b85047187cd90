#include "ui/composer_edit.h"

#include <QKeyEvent>
#include <QMimeData>
#include <QTextBlock>

#include "ui/image_attachment.h"

namespace {

bool holdsImages(const QMimeData *m) {
    if (m->hasImage()) return true;
    if (!m->hasUrls()) return false;
    for (const QUrl &u : m->urls())
        if (u.isLocalFile()) return true;
    return false;
}

} // namespace

ComposerEdit::ComposerEdit(QWidget *parent) : QPlainTextEdit(parent) {
    setPlaceholderText(tr("Ask about the image…  (Enter sends, Shift+Enter new line)"));
    setTabChangesFocus(true);
    connect(document(), &QTextDocument::contentsChanged, this, &ComposerEdit::fitHeight);
    fitHeight();
}

QSize ComposerEdit::sizeHint() const {
    return {QPlainTextEdit::sizeHint().width(), height()};
}

void ComposerEdit::fitHeight() {
    // Grow with the text from two to eight lines, then scroll.
    const int lines = std::clamp(static_cast<int>(document()->size().height()), 2, 8);
    const int h = fontMetrics().lineSpacing() * lines +
                  static_cast<int>(document()->documentMargin() * 2) + frameWidth() * 2 + 4;
    if (h != height()) setFixedHeight(h);
}

void ComposerEdit::keyPressEvent(QKeyEvent *e) {
    const bool enter = e->key() == Qt::Key_Return || e->key() == Qt::Key_Enter;
    if (enter && !(e->modifiers() & Qt::ShiftModifier)) {
        emit submitRequested();
        e->accept();
        return;
    }
    if (enter) {
        insertPlainText(QStringLiteral("\n"));
        e->accept();
        return;
    }
    QPlainTextEdit::keyPressEvent(e);
}

bool ComposerEdit::canInsertFromMimeData(const QMimeData *source) const {
    return holdsImages(source) || QPlainTextEdit::canInsertFromMimeData(source);
}

void ComposerEdit::insertFromMimeData(const QMimeData *source) {
    if (holdsImages(source)) emit mimeOffered(source);
    else QPlainTextEdit::insertFromMimeData(source);
}
