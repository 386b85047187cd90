#include "ui/example_gallery.h"

#include <QDir>
#include <QFile>
#include <QHBoxLayout>
#include <QImageReader>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QToolButton>
#include <QVBoxLayout>

namespace {
constexpr int kThumb = 96;
const QString kDefaultQuestion = QStringLiteral("Describe the image.");
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
    auto *v = new QVBoxLayout(this);
    v->setContentsMargins(0, 8, 0, 0);
    title_ = new QLabel(tr("Or try an example:"), this);
    title_->setAlignment(Qt::AlignCenter);
    title_->setForegroundRole(QPalette::PlaceholderText);
    v->addWidget(title_);
    row_ = new QHBoxLayout;
    row_->setSpacing(8);
    v->addLayout(row_);
    hide();
}

void ExampleGallery::setModelDir(const QString &modelDir) {
    while (QLayoutItem *it = row_->takeAt(0)) {
        if (it->widget()) it->widget()->deleteLater();
        delete it;
    }
    items_ = loadExamples(modelDir);
    row_->addStretch();
    for (const ExampleItem &e : items_) {
        QImageReader reader(e.imagePath);
        reader.setAutoTransform(true);
        const QImage img = reader.read();
        auto *b = new QToolButton(this);
        b->setToolButtonStyle(Qt::ToolButtonTextUnderIcon);
        b->setAutoRaise(true);
        b->setIconSize(QSize(kThumb, kThumb));
        if (!img.isNull())
            b->setIcon(QPixmap::fromImage(
                img.scaled(kThumb, kThumb, Qt::KeepAspectRatio, Qt::SmoothTransformation)));
        // Long questions would make the buttons wide: elide under the thumbnail, full in the tip.
        b->setText(fontMetrics().elidedText(e.question, Qt::ElideRight, kThumb + 40));
        b->setToolTip(e.question);
        b->setAccessibleName(e.question);
        connect(b, &QToolButton::clicked, this, [this, e] { emit exampleChosen(e.imagePath, e.question); });
        row_->addWidget(b);
    }
    row_->addStretch();
    setVisible(!items_.isEmpty());
}
