#include "ui/composer.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QStyle>
#include <QToolButton>
#include <QVBoxLayout>

#include "ui/composer_edit.h"
#include "ui/image_attachment.h"

namespace {
constexpr int kPendingThumb = 64;
}

Composer::Composer(QWidget *parent) : QWidget(parent) {
    auto *v = new QVBoxLayout(this);
    v->setContentsMargins(8, 4, 8, 8);
    v->setSpacing(4);

    editBanner_ = new QWidget(this);
    auto *eb = new QHBoxLayout(editBanner_);
    eb->setContentsMargins(0, 0, 0, 0);
    eb->addWidget(new QLabel(tr("Editing your last question: sending replaces it and its answer."),
                             editBanner_));
    auto *cancelEdit = new QToolButton(editBanner_);
    cancelEdit->setText(tr("Cancel edit"));
    connect(cancelEdit, &QToolButton::clicked, this, [this] {
        setEditing(false);
        clear();
        emit editCancelled();
    });
    eb->addWidget(cancelEdit);
    eb->addStretch();
    editBanner_->hide();
    v->addWidget(editBanner_);

    strip_ = new QWidget(this);
    stripLayout_ = new QHBoxLayout(strip_);
    stripLayout_->setContentsMargins(0, 0, 0, 0);
    stripLayout_->setSpacing(6);
    strip_->hide();
    v->addWidget(strip_);

    auto *row = new QHBoxLayout;
    attach_ = new QToolButton(this);
    attach_->setIcon(style()->standardIcon(QStyle::SP_DialogOpenButton));
    attach_->setToolTip(tr("Add images (Ctrl+O)"));
    attach_->setAutoRaise(true);
    connect(attach_, &QToolButton::clicked, this, &Composer::openImageRequested);
    row->addWidget(attach_, 0, Qt::AlignBottom);

    edit_ = new ComposerEdit(this);
    connect(edit_, &ComposerEdit::submitRequested, this, [this] {
        // Enter on an empty box does nothing; otherwise the window says why it cannot send
        // (the model still loading, say) rather than ignoring the key.
        const bool empty = text().trimmed().isEmpty() && pending_.isEmpty();
        if (!busy_ && !empty) emit sendRequested();
    });
    connect(edit_, &ComposerEdit::mimeOffered, this, &Composer::offerMime);
    row->addWidget(edit_, 1);

    send_ = new QPushButton(tr("Send"), this);
    send_->setDefault(false);
    send_->setAutoDefault(false);
    connect(send_, &QPushButton::clicked, this, [this] {
        if (busy_) emit stopRequested();
        else if (canSend_) emit sendRequested();
    });
    row->addWidget(send_, 0, Qt::AlignBottom);
    v->addLayout(row);
    setCanSend(false);
}

QString Composer::text() const { return edit_->toPlainText(); }

void Composer::setText(const QString &text) { edit_->setPlainText(text); }

void Composer::addImages(const QList<ImageAttachment> &images) {
    if (images.isEmpty()) return;
    pending_ += images;
    rebuildStrip();
    emit pendingChanged();
}

void Composer::removeImage(int index) {
    if (index < 0 || index >= pending_.size()) return;
    pending_.removeAt(index);
    rebuildStrip();
    emit pendingChanged();
}

void Composer::clear() {
    edit_->clear();
    pending_.clear();
    rebuildStrip();
    emit pendingChanged();
}

void Composer::offerMime(const QMimeData *mime) {
    QStringList errors;
    addImages(attachmentsFromMime(mime, &errors));
    if (!errors.isEmpty()) emit imagesRefused(errors);
}

void Composer::setBusy(bool busy) {
    busy_ = busy;
    send_->setText(busy ? tr("Stop") : tr("Send"));
    send_->setToolTip(busy ? tr("Stop the answer (Esc)") : tr("Send (Enter)"));
    send_->setEnabled(busy || canSend_);
}

void Composer::setCanSend(bool can) {
    canSend_ = can;
    send_->setEnabled(busy_ || canSend_);
}

void Composer::setEditing(bool editing) {
    editing_ = editing;
    editBanner_->setVisible(editing);
}

void Composer::rebuildStrip() {
    while (QLayoutItem *li = stripLayout_->takeAt(0)) {
        delete li->widget();
        delete li;
    }
    for (int i = 0; i < pending_.size(); ++i) {
        const ImageAttachment &a = pending_[i];
        auto *cell = new QWidget(strip_);
        auto *h = new QHBoxLayout(cell);
        h->setContentsMargins(0, 0, 0, 0);
        h->setSpacing(0);
        auto *thumb = new QLabel(cell);
        if (a.thumbnail.isNull()) thumb->setText(a.label);
        else thumb->setPixmap(QPixmap::fromImage(a.thumbnail.scaled(
                 kPendingThumb, kPendingThumb, Qt::KeepAspectRatio, Qt::SmoothTransformation)));
        thumb->setToolTip(
            tr("%1 (%2 × %3)").arg(a.label).arg(a.size.width()).arg(a.size.height()));
        h->addWidget(thumb);
        auto *remove = new QToolButton(cell);
        remove->setObjectName(QStringLiteral("removePending%1").arg(i));
        remove->setText(QStringLiteral("✕"));
        remove->setToolTip(tr("Remove %1").arg(a.label));
        remove->setAutoRaise(true);
        connect(remove, &QToolButton::clicked, this, [this, i] { removeImage(i); });
        h->addWidget(remove, 0, Qt::AlignTop);
        stripLayout_->addWidget(cell);
    }
    stripLayout_->addStretch();
    strip_->setVisible(!pending_.isEmpty());
}
