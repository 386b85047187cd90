#include "ui/message_widget.h"

#include <QApplication>
#include <QClipboard>
#include <QEvent>
#include <QHBoxLayout>
#include <QLabel>
#include <QMouseEvent>
#include <QStyle>
#include <QToolButton>
#include <QVBoxLayout>

#include "ui/grounding.h"
#include "ui/markdown.h"

namespace {

constexpr int kThumb = 112;
constexpr int kGrounded = 320;

QString ms(double v) {
    return v >= 1000 ? QString::number(v / 1000, 'f', 2) + " s"
                     : QString::number(v, 'f', v < 10 ? 1 : 0) + " ms";
}

} // namespace

MessageWidget::MessageWidget(const ChatItem &item, const ImageAttachment *groundingSource, QWidget *parent)
    : QFrame(parent) {
    setFrameShape(QFrame::StyledPanel);
    setAutoFillBackground(true);
    auto *v = new QVBoxLayout(this);
    v->setContentsMargins(10, 6, 10, 6);
    v->setSpacing(4);

    auto *head = new QHBoxLayout;
    who_ = new QLabel(this);
    QFont bold = who_->font();
    bold.setBold(true);
    who_->setFont(bold);
    head->addWidget(who_);
    head->addStretch();
    copy_ = new QToolButton(this);
    copy_->setText(tr("Copy"));
    copy_->setToolTip(tr("Copy this answer"));
    copy_->setAutoRaise(true);
    connect(copy_, &QToolButton::clicked, this, [this] { QApplication::clipboard()->setText(item_.text); });
    head->addWidget(copy_);
    v->addLayout(head);

    thumbs_ = new QHBoxLayout;
    thumbs_->setSpacing(6);
    v->addLayout(thumbs_);

    body_ = new QLabel(this);
    body_->setObjectName("messageBody");
    body_->setWordWrap(true);
    body_->setTextFormat(Qt::RichText);
    body_->setTextInteractionFlags(Qt::TextBrowserInteraction);
    body_->setOpenExternalLinks(true);
    body_->setSizePolicy(QSizePolicy::Preferred, QSizePolicy::Minimum);
    v->addWidget(body_);

    grounded_ = new QLabel(this);
    grounded_->setCursor(Qt::PointingHandCursor);
    grounded_->setToolTip(tr("Click to view full size"));
    grounded_->installEventFilter(this);
    grounded_->hide();
    v->addWidget(grounded_);

    stats_ = new QLabel(this);
    stats_->setObjectName("messageStats");
    QFont small = stats_->font();
    small.setPointSizeF(small.pointSizeF() * 0.85);
    stats_->setFont(small);
    stats_->setForegroundRole(QPalette::PlaceholderText);
    stats_->setWordWrap(true);
    v->addWidget(stats_);

    item_.fromUser = !item.fromUser; // force the first render to build everything
    setItem(item, groundingSource);
}

QString MessageWidget::statsLine(const ChatItem &m) {
    if (m.fromUser) return {};
    if (m.streaming) return tr("answering…");
    QStringList parts;
    if (m.stats) {
        const mgd::TurnStats &s = *m.stats;
        parts << tr("TTFT %1").arg(ms(s.ttftMs));
        if (s.decodeMs > 0 && s.generatedTokens > 0)
            parts << tr("%1 tok/s").arg(s.generatedTokens * 1000.0 / s.decodeMs, 0, 'f', 1);
        parts << tr("%n token(s)", nullptr, s.generatedTokens);
        if (s.contextImages > 0) {
            if (s.imagesEncoded == 0)
                parts << tr("image features: cache hit (%n image(s))", nullptr, s.contextImages);
            else
                parts << tr("image features: %1 cache miss, encoded in %2")
                             .arg(s.imagesEncoded)
                             .arg(ms(s.encodeMs));
        }
        if (s.promptTokens > 0)
            parts << tr("prompt %1 tok, %2 reused").arg(s.promptTokens).arg(s.reusedTokens);
        if (s.droppedTurns > 0)
            parts << tr("%n oldest turn(s) dropped to fit the context", nullptr, s.droppedTurns);
        if (s.cancelled)
            parts << tr("stopped");
        else if (s.stopReason == mgd::StopReason::MaxTokens || s.stopReason == mgd::StopReason::ContextFull)
            parts << tr("cut at %1").arg(QString::fromLatin1(mgd::stopReasonName(s.stopReason)));
    }
    if (!m.error.isEmpty()) parts << m.error;
    return parts.join(QStringLiteral("  ·  "));
}

QString MessageWidget::renderedText() const {
    return body_->text();
}

void MessageWidget::setItem(const ChatItem &item, const ImageAttachment *groundingSource) {
    const bool rebuildThumbs = item.fromUser != item_.fromUser || item.images.size() != item_.images.size();
    item_ = item;
    groundingSource_ = groundingSource ? *groundingSource : ImageAttachment();
    who_->setText(item_.fromUser ? tr("You") : tr("MiniGPT"));
    copy_->setVisible(!item_.fromUser && !item_.streaming);
    if (rebuildThumbs) {
        while (QLayoutItem *li = thumbs_->takeAt(0)) {
            delete li->widget();
            delete li;
        }
        for (int i = 0; i < item_.images.size(); ++i) {
            const ImageAttachment &a = item_.images[i];
            auto *l = new QLabel(this);
            if (a.thumbnail.isNull())
                l->setText(tr("[%1]").arg(a.label)); // could not be read
            else
                l->setPixmap(QPixmap::fromImage(
                    a.thumbnail.scaled(kThumb, kThumb, Qt::KeepAspectRatio, Qt::SmoothTransformation)));
            l->setToolTip(
                tr("%1 (%2 × %3) — click to view").arg(a.label).arg(a.size.width()).arg(a.size.height()));
            l->setCursor(Qt::PointingHandCursor);
            l->setProperty("imageIndex", i);
            l->installEventFilter(this);
            thumbs_->addWidget(l);
        }
        thumbs_->addStretch();
    }
    render();
    applyBackground();
}

void MessageWidget::render() {
    const QString display = item_.fromUser ? item_.text : groundingDisplayText(item_.text);
    if (display != renderedFor_ || body_->text().isEmpty()) {
        renderedFor_ = display;
        // User text is shown as typed; answers are Markdown.
        body_->setText(
            item_.fromUser
                ? display.toHtmlEscaped().replace('\n', "<br>")
                : markdownToHtml(display.isEmpty() && item_.streaming ? QStringLiteral("…") : display,
                                 palette()));
    }
    body_->setVisible(!(item_.fromUser && item_.text.isEmpty()));
    const QList<GroundingBox> boxes = item_.fromUser ? QList<GroundingBox>() : parseGrounding(item_.text);
    if (!boxes.isEmpty() && !groundingSource_.bytes.isEmpty()) {
        // Decoding and drawing happen once per change of boxes, not on every streamed token.
        const QString key = groundingSource_.hash + item_.text.left(item_.text.lastIndexOf('}') + 1);
        if (key != groundedFor_) {
            if (groundingDecodedHash_ != groundingSource_.hash) {
                groundingDecoded_ = QImage::fromData(groundingSource_.bytes);
                groundingDecodedHash_ = groundingSource_.hash;
            }
            groundedFor_ = key;
            groundedFull_ = drawGrounding(groundingDecoded_, boxes);
            grounded_->setPixmap(QPixmap::fromImage(
                groundedFull_.scaled(kGrounded, kGrounded, Qt::KeepAspectRatio, Qt::SmoothTransformation)));
        }
        grounded_->show();
    } else {
        groundedFull_ = QImage();
        groundedFor_.clear();
        grounded_->hide();
    }
    const QString stats = statsLine(item_);
    stats_->setText(stats);
    stats_->setVisible(!stats.isEmpty());
}

void MessageWidget::applyBackground() {
    // Questions on the alternate colour, answers on the base: follows light and dark palettes.
    setBackgroundRole(item_.fromUser ? QPalette::AlternateBase : QPalette::Base);
}

void MessageWidget::changeEvent(QEvent *e) {
    QFrame::changeEvent(e);
    if (e->type() == QEvent::PaletteChange) {
        renderedFor_.clear(); // code block tint comes from the palette
        render();
    }
}

bool MessageWidget::eventFilter(QObject *watched, QEvent *e) {
    if (e->type() == QEvent::MouseButtonRelease &&
        static_cast<QMouseEvent *>(e)->button() == Qt::LeftButton) {
        if (watched == grounded_) {
            emit imageActivated(groundedFull_, tr("Grounding boxes"));
            return true;
        }
        bool ok = false;
        const int i = watched->property("imageIndex").toInt(&ok);
        if (ok && i >= 0 && i < item_.images.size()) {
            emit imageActivated(QImage::fromData(item_.images[i].bytes), item_.images[i].label);
            return true;
        }
    }
    return QFrame::eventFilter(watched, e);
}
