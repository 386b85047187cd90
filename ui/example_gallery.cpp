#include "ui/example_gallery.h"

#include <algorithm>

#include <QDir>
#include <QFile>
#include <QFontMetrics>
#include <QGridLayout>
#include <QImageReader>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QResizeEvent>
#include <QToolButton>
#include <QVBoxLayout>

namespace {
constexpr int kThumb = 80;
constexpr int kCell = kThumb + 48; // a button with its caption, and spacing
const QString kDefaultQuestion = QStringLiteral("Describe the image.");

// Two lines at most under a thumbnail, broken between words; the rest elided.
QString caption(const QFontMetrics &fm, const QString &text, int width) {
    if (fm.horizontalAdvance(text) <= width) return text;
    int cut = -1;
    for (int i = 0; i < text.size(); ++i)
        if (text[i] == ' ' && fm.horizontalAdvance(text.left(i)) <= width) cut = i;
    if (cut < 0) return fm.elidedText(text, Qt::ElideRight, width);
    return text.left(cut) + '\n' + fm.elidedText(text.mid(cut + 1), Qt::ElideRight, width);
}
} // namespace

QList<ExampleItem> loadExamples(const QString &modelDir) {
    QList<ExampleItem> out;
    if (modelDir.isEmpty()) return out;
    const QDir dir(QDir(modelDir).filePath(QStringLiteral("examples")));
    if (!dir.exists()) return out;
    QFile f(dir.filePath(QStringLiteral("examples.json")));
    if (f.open(QIODevice::ReadOnly)) {
        // A malformed list falls back to the plain images: examples are a convenience.
        const QJsonDocument doc = QJsonDocument::fromJson(f.readAll());
        for (const QJsonValue &v : doc.array()) {
            const QJsonObject o = v.toObject();
            const QString image = o.value(QStringLiteral("image")).toString();
            if (image.isEmpty() || !dir.exists(image)) continue;
            QString question = o.value(QStringLiteral("question")).toString().trimmed();
            if (question.isEmpty()) question = kDefaultQuestion;
            out.append({dir.filePath(image), question});
        }
        if (!out.isEmpty()) return out;
    }
    const QStringList images =
        dir.entryList({"*.png", "*.jpg", "*.jpeg", "*.bmp", "*.webp"}, QDir::Files, QDir::Name);
    for (const QString &name : images) out.append({dir.filePath(name), kDefaultQuestion});
    return out;
}

ExampleGallery::ExampleGallery(QWidget *parent) : QWidget(parent) {
    setObjectName(QStringLiteral("exampleGallery"));
    // Its width is whatever the view gives; the columns follow (see arrange()).
    setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
    auto *v = new QVBoxLayout(this);
    v->setSizeConstraint(QLayout::SetNoConstraint);
    v->setContentsMargins(0, 8, 0, 0);
    title_ = new QLabel(tr("Or try an example:"), this);
    title_->setAlignment(Qt::AlignCenter);
    title_->setForegroundRole(QPalette::PlaceholderText);
    v->addWidget(title_);
    grid_ = new QGridLayout;
    grid_->setSpacing(6);
    v->addLayout(grid_);
    hide();
}

void ExampleGallery::setModelDir(const QString &modelDir) {
    qDeleteAll(buttons_);
    buttons_.clear();
    columns_ = 0;
    items_ = loadExamples(modelDir);
    for (const ExampleItem &e : items_) {
        QImageReader reader(e.imagePath);
        reader.setAutoTransform(true);
        const QImage img = reader.read();
        auto *b = new QToolButton(this);
        b->setToolButtonStyle(Qt::ToolButtonTextUnderIcon);
        b->setAutoRaise(true);
        b->setIconSize(QSize(kThumb, kThumb));
        b->setFixedWidth(kCell - 6);
        if (!img.isNull())
            b->setIcon(QPixmap::fromImage(
                img.scaled(kThumb, kThumb, Qt::KeepAspectRatio, Qt::SmoothTransformation)));
        // Long questions would make the buttons wide: elided under the thumbnail, whole in the tip.
        b->setText(caption(fontMetrics(), e.question, kCell - 14));
        b->setToolTip(e.question);
        b->setAccessibleName(e.question);
        connect(b, &QToolButton::clicked, this, [this, e] { emit exampleChosen(e.imagePath, e.question); });
        buttons_ << b;
    }
    arrange();
    setVisible(!items_.isEmpty());
}

void ExampleGallery::resizeEvent(QResizeEvent *e) {
    QWidget::resizeEvent(e);
    arrange();
}

void ExampleGallery::arrange() {
    const int n = static_cast<int>(buttons_.size());
    const int columns = std::clamp(width() / kCell, 1, std::max(1, std::min(n, 6)));
    if (columns == columns_) return;
    columns_ = columns;
    for (QToolButton *b : buttons_) grid_->removeWidget(b);
    for (int i = 0; i < n; ++i) grid_->addWidget(buttons_[i], i / columns, i % columns, Qt::AlignHCenter);
}
