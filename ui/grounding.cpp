#include "ui/grounding.h"

#include <QFontMetrics>
#include <QPainter>
#include <QRegularExpression>

namespace {

const QRegularExpression &boxPattern() {
    static const QRegularExpression re(
        R"(\{\s*<(\d{1,3})>\s*<(\d{1,3})>\s*<(\d{1,3})>\s*<(\d{1,3})>\s*\})");
    return re;
}

const QRegularExpression &phrasePattern() {
    static const QRegularExpression re(R"(<p>(.*?)</p>)");
    return re;
}

QColor boxColor(int i) {
    static const QColor colors[] = {
        QColor(230, 25, 75),  QColor(60, 180, 75),  QColor(0, 130, 200),  QColor(245, 130, 48),
        QColor(145, 30, 180), QColor(70, 240, 240), QColor(240, 50, 230), QColor(210, 245, 60)};
    return colors[i % 8];
}

} // namespace

QList<GroundingBox> parseGrounding(const QString &answer) {
    QList<GroundingBox> boxes;
    QString lastPhrase;
    qsizetype phraseEnd = -1;
    auto phrases = phrasePattern().globalMatch(answer);
    QList<QRegularExpressionMatch> phraseMatches;
    while (phrases.hasNext()) phraseMatches << phrases.next();
    auto it = boxPattern().globalMatch(answer);
    while (it.hasNext()) {
        const auto m = it.next();
        double v[4];
        bool ok = true;
        for (int i = 0; i < 4; ++i) {
            v[i] = m.captured(i + 1).toInt() / 100.0;
            ok = ok && v[i] >= 0 && v[i] <= 1;
        }
        if (!ok) continue;
        // The label is the phrase closest before the box.
        for (const auto &p : phraseMatches)
            if (p.capturedEnd() <= m.capturedStart() && p.capturedEnd() > phraseEnd) {
                lastPhrase = p.captured(1).trimmed();
                phraseEnd = p.capturedEnd();
            }
        QRectF r(QPointF(std::min(v[0], v[2]), std::min(v[1], v[3])),
                 QPointF(std::max(v[0], v[2]), std::max(v[1], v[3])));
        if (r.width() <= 0 || r.height() <= 0) continue;
        const QString label = lastPhrase.isEmpty() ? QObject::tr("box %1").arg(boxes.size() + 1)
                                                   : lastPhrase;
        boxes << GroundingBox{label, r};
    }
    return boxes;
}

QString groundingDisplayText(const QString &answer) {
    QString out = answer;
    out.replace(phrasePattern(), "**\\1**");
    int n = 0;
    QString result;
    qsizetype last = 0;
    auto it = boxPattern().globalMatch(out);
    while (it.hasNext()) {
        const auto m = it.next();
        result += out.mid(last, m.capturedStart() - last);
        const bool spaced = result.isEmpty() || result.back().isSpace();
        result += (spaced ? QStringLiteral("[%1]") : QStringLiteral(" [%1]")).arg(++n);
        last = m.capturedEnd();
    }
    result += out.mid(last);
    result.replace("<delim>", ", ");
    return result;
}

QImage drawGrounding(const QImage &image, const QList<GroundingBox> &boxes) {
    QImage out = image.convertToFormat(QImage::Format_ARGB32_Premultiplied);
    QPainter p(&out);
    p.setRenderHint(QPainter::Antialiasing);
    const qreal scale = std::max<qreal>(1.0, std::min(out.width(), out.height()) / 300.0);
    QFont font = p.font();
    font.setPixelSize(static_cast<int>(12 * scale));
    font.setBold(true);
    p.setFont(font);
    const QFontMetrics fm(font);
    for (int i = 0; i < boxes.size(); ++i) {
        const QRectF r(boxes[i].rect.x() * out.width(), boxes[i].rect.y() * out.height(),
                       boxes[i].rect.width() * out.width(), boxes[i].rect.height() * out.height());
        const QColor c = boxColor(i);
        p.setPen(QPen(c, 2 * scale));
        p.setBrush(Qt::NoBrush);
        p.drawRect(r);
        const QString text = QStringLiteral("%1 %2").arg(i + 1).arg(boxes[i].label);
        QRectF tag(r.topLeft(),
                   QSizeF(fm.horizontalAdvance(text) + 6 * scale, fm.height() + 2 * scale));
        if (tag.top() - tag.height() >= 0) tag.translate(0, -tag.height());
        p.fillRect(tag, c);
        p.setPen(c.lightness() > 150 ? Qt::black : Qt::white);
        p.drawText(tag, Qt::AlignCenter, text);
    }
    return out;
}
