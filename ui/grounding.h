#pragma once
// MiniGPT-v2 grounding answers: "<p>a dog</p> {<12><30><58><91>}" name a box on the image in
// 0..100 coordinates of each side (the model sees a square resize, so they scale to the
// original width and height independently).
#include <QImage>
#include <QList>
#include <QRectF>
#include <QString>

struct GroundingBox {
    QString label;
    QRectF rect; // fractions of width and height, 0..1
};

QList<GroundingBox> parseGrounding(const QString &answer);
// The answer as prose: phrases in bold, each box replaced by its number.
QString groundingDisplayText(const QString &answer);
// A copy of `image` with the boxes and their labels drawn on it.
QImage drawGrounding(const QImage &image, const QList<GroundingBox> &boxes);
