// MiniGPT-v2 grounding answers: boxes parsed with their labels, shown as prose, drawn on the
// image where the coordinates say.
#include <QtTest>

#include "ui/grounding.h"

class TestGrounding : public QObject {
    Q_OBJECT

private slots:
    void parsesBoxesWithTheirPhrases() {
        const QString a = "<p>a red square</p> {<10><20><50><60>} and <p>a blue circle</p> "
                          "{<60><55><90><95>}<delim>{<5><5><15><15>}";
        const QList<GroundingBox> b = parseGrounding(a);
        QCOMPARE(b.size(), 3);
        QCOMPARE(b[0].label, QStringLiteral("a red square"));
        QCOMPARE(b[0].rect, QRectF(QPointF(0.10, 0.20), QPointF(0.50, 0.60)));
        QCOMPARE(b[1].label, QStringLiteral("a blue circle"));
        QCOMPARE(b[2].label, QStringLiteral("a blue circle")); // same phrase, second box
    }

    void unlabelledAndMalformedBoxes() {
        QList<GroundingBox> b = parseGrounding("{<0><0><100><100>}");
        QCOMPARE(b.size(), 1);
        QCOMPARE(b[0].label, QStringLiteral("box 1"));
        QCOMPARE(b[0].rect, QRectF(0, 0, 1, 1));
        // Swapped corners are normalised; out-of-range or empty boxes are dropped.
        b = parseGrounding("{<50><60><10><20>} {<10><10><10><40>} {<10><10><300><40>}");
        QCOMPARE(b.size(), 1);
        QCOMPARE(b[0].rect, QRectF(QPointF(0.1, 0.2), QPointF(0.5, 0.6)));
        QVERIFY(parseGrounding("no boxes here {<1><2><3>}").isEmpty());
    }

    void displayTextNumbersTheBoxes() {
        QCOMPARE(groundingDisplayText("<p>a dog</p> {<1><2><30><40>} sits"),
                 QStringLiteral("**a dog** [1] sits"));
        QCOMPARE(groundingDisplayText("plain answer"), QStringLiteral("plain answer"));
    }

    void drawsBoxesWhereTheCoordinatesSay() {
        QImage img(200, 100, QImage::Format_RGB32);
        img.fill(Qt::white);
        const QImage out = drawGrounding(img, parseGrounding("{<25><50><75><90>}"));
        QCOMPARE(out.size(), img.size());
        // The left edge of the box at x = 50 px, halfway down its height; inside stays white.
        const QColor edge = out.pixelColor(50, 80);
        QVERIFY2(edge != QColor(Qt::white), qPrintable(edge.name()));
        QCOMPARE(out.pixelColor(100, 75), QColor(Qt::white));
        QCOMPARE(out.pixelColor(10, 10), QColor(Qt::white));
    }
};

QTEST_MAIN(TestGrounding)
#include "test_grounding.moc"
