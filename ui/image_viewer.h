#pragma once
// Shows one image at full size (scaled down to fit the screen), e.g. a thumbnail clicked in
// the conversation or an answer's grounding boxes.
#include <QDialog>
#include <QImage>

class QLabel;

class ImageViewer : public QDialog {
    Q_OBJECT

public:
    ImageViewer(const QImage &image, const QString &title, QWidget *parent = nullptr);

protected:
    void resizeEvent(QResizeEvent *e) override;

private:
    void rescale();
    QImage image_;
    QLabel *label_ = nullptr;
};
