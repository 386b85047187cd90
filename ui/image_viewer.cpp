#include "ui/image_viewer.h"

#include <QGuiApplication>
#include <QLabel>
#include <QScreen>
#include <QVBoxLayout>

ImageViewer::ImageViewer(const QImage &image, const QString &title, QWidget *parent)
    : QDialog(parent), image_(image) {
    setWindowTitle(tr("%1 — %2 × %3").arg(title).arg(image.width()).arg(image.height()));
    setAttribute(Qt::WA_DeleteOnClose);
    auto *v = new QVBoxLayout(this);
    v->setContentsMargins(0, 0, 0, 0);
    label_ = new QLabel(this);
    label_->setAlignment(Qt::AlignCenter);
    label_->setMinimumSize(64, 64);
    label_->setBackgroundRole(QPalette::Dark);
    label_->setAutoFillBackground(true);
    v->addWidget(label_);
    const QSize avail = screen() ? screen()->availableSize() * 0.85 : QSize(1024, 768);
    // Small images (the tiny model's 32 px fixtures) are enlarged to be seen at all.
    QSize want = image.size();
    if (want.width() < 256 && want.height() < 256) want.scale(512, 512, Qt::KeepAspectRatio);
    resize(want.boundedTo(avail).expandedTo(QSize(200, 150)));
}

void ImageViewer::resizeEvent(QResizeEvent *e) {
    QDialog::resizeEvent(e);
    rescale();
}

void ImageViewer::rescale() {
    if (image_.isNull()) return;
    const bool enlarge = image_.width() < label_->width() && image_.height() < label_->height();
    // Enlarged pixels stay sharp; reduced ones are smoothed.
    label_->setPixmap(QPixmap::fromImage(image_.scaled(
        label_->size(), Qt::KeepAspectRatio,
        enlarge ? Qt::FastTransformation : Qt::SmoothTransformation)));
}
