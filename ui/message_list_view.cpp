#include "ui/message_list_view.h"

#include <QLabel>
#include <QScrollBar>
#include <QTimer>
#include <QVBoxLayout>

#include "ui/markdown.h"
#include "ui/message_model.h"
#include "ui/message_widget.h"

MessageListView::MessageListView(QWidget *parent) : QScrollArea(parent) {
    setWidgetResizable(true);
    setFrameShape(QFrame::NoFrame);
    setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    content_ = new QWidget;
    content_->setBackgroundRole(QPalette::Window);
    layout_ = new QVBoxLayout(content_);
    layout_->setContentsMargins(12, 12, 12, 12);
    layout_->setSpacing(10);
    // What an empty conversation shows: how to start, and whatever was added (the examples).
    emptyState_ = new QWidget(content_);
    emptyLayout_ = new QVBoxLayout(emptyState_);
    emptyLayout_->setContentsMargins(0, 0, 0, 0);
    placeholder_ = new QLabel(tr("Drop an image anywhere on the window, paste one, or open one "
                                 "with Ctrl+O — then ask about it.\nEnter sends, Shift+Enter "
                                 "starts a new line."),
                              emptyState_);
    placeholder_->setAlignment(Qt::AlignCenter);
    placeholder_->setForegroundRole(QPalette::PlaceholderText);
    placeholder_->setWordWrap(true);
    emptyLayout_->addWidget(placeholder_);
    layout_->addWidget(emptyState_);
    layout_->addStretch();
    setWidget(content_);
    // The first Markdown rendering loads the parser and the fixed-pitch font (tens of ms):
    // pay that now rather than while the first answer streams.
    markdownToHtml(QStringLiteral("*warm* `up`"), palette());
    // Follow new text only while the reader is at the bottom.
    connect(verticalScrollBar(), &QScrollBar::valueChanged, this,
            [this](int v) { following_ = v >= verticalScrollBar()->maximum() - 4; });
    connect(verticalScrollBar(), &QScrollBar::rangeChanged, this, [this](int, int max) {
        if (following_) verticalScrollBar()->setValue(max);
    });
}

void MessageListView::addToEmptyState(QWidget *w) {
    w->setParent(emptyState_);
    emptyLayout_->addWidget(w);
}

void MessageListView::setModel(MessageModel *model) {
    if (model_) disconnect(model_, nullptr, this, nullptr);
    model_ = model;
    connect(model_, &MessageModel::modelReset, this, &MessageListView::rebuild);
    connect(model_, &MessageModel::rowsInserted, this,
            [this](const QModelIndex &, int first, int last) { insertRows(first, last); });
    connect(model_, &MessageModel::rowsRemoved, this,
            [this](const QModelIndex &, int first, int last) { removeRows(first, last); });
    connect(model_, &MessageModel::dataChanged, this,
            [this](const QModelIndex &a, const QModelIndex &b) { updateRows(a.row(), b.row()); });
    rebuild();
}

const ImageAttachment *MessageListView::groundingSourceFor(int row) const {
    // An answer's boxes refer to the newest image asked about up to its question.
    for (int r = row; r >= 0; --r) {
        const ChatItem &m = model_->at(r);
        if (m.fromUser && !m.images.isEmpty()) return &m.images.first();
    }
    return nullptr;
}

void MessageListView::rebuild() {
    for (MessageWidget *w : widgets_) w->deleteLater();
    widgets_.clear();
    following_ = true;
    if (model_ && model_->count() > 0) insertRows(0, model_->count() - 1);
    emptyState_->setVisible(widgets_.isEmpty());
}

void MessageListView::insertRows(int first, int last) {
    for (int r = first; r <= last; ++r) {
        auto *w = new MessageWidget(model_->at(r), groundingSourceFor(r), content_);
        connect(w, &MessageWidget::imageActivated, this, &MessageListView::imageActivated);
        // Layout: [empty state, message 0 .. n-1, stretch]
        layout_->insertWidget(r + 1, w);
        widgets_.insert(r, w);
    }
    emptyState_->setVisible(widgets_.isEmpty());
    following_ = true;
    scrollToEndIfFollowing();
}

void MessageListView::removeRows(int first, int last) {
    for (int r = last; r >= first; --r) {
        MessageWidget *w = widgets_.takeAt(r);
        layout_->removeWidget(w);
        w->deleteLater();
    }
    emptyState_->setVisible(widgets_.isEmpty());
}

void MessageListView::updateRows(int first, int last) {
    for (int r = first; r <= last && r < widgets_.size(); ++r)
        widgets_[r]->setItem(model_->at(r), groundingSourceFor(r));
    scrollToEndIfFollowing();
}

void MessageListView::scrollToEndIfFollowing() {
    if (!following_) return;
    // After the layout settles, so the new height is known.
    QTimer::singleShot(0, this, [this] {
        if (following_) verticalScrollBar()->setValue(verticalScrollBar()->maximum());
    });
}
