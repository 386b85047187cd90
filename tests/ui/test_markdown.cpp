// Answers render as Markdown: code blocks in a fixed-pitch font on a tint, lists as lists,
// and the answer widget draws MiniGPT-v2 boxes on the question's image.
#include <QApplication>
#include <QLabel>
#include <QtTest>

#include "ui/image_attachment.h"
#include "ui/markdown.h"
#include "ui/message_widget.h"

class TestMarkdown : public QObject {
    Q_OBJECT

private slots:
    void rendersCodeBlocksAndLists() {
        const QString html = markdownToHtml(
            "Here:\n\n- one\n- **two**\n\n```cpp\nint x = 1;\n```\n\nand `inline`.",
            QApplication::palette());
        QVERIFY(html.contains("<li"));
        QVERIFY(html.contains("font-weight:")); // bold
        QVERIFY(html.contains("int x = 1;"));
        QVERIFY(html.contains("background-color:")); // code on a tint
        QVERIFY(!html.contains("```"));
    }

    void answerWidgetDrawsGroundingBoxes() {
        QString error;
        const auto img = attachmentFromFile(MGD_TEST_DATA "/minigpt4-tiny-hi/image.png", &error);
        QVERIFY2(img, qPrintable(error));
        ChatItem answer;
        answer.fromUser = false;
        answer.text = "<p>red square</p> {<10><10><50><50>}";
        MessageWidget w(answer, &*img);
        w.show();
        QVERIFY(w.renderedText().contains("red square"));
        QVERIFY(!w.renderedText().contains("{<10>"));
        const QList<QLabel *> labels = w.findChildren<QLabel *>();
        const auto drawn = std::find_if(labels.begin(), labels.end(), [](QLabel *l) {
            return l->isVisible() && !l->pixmap().isNull();
        });
        QVERIFY2(drawn != labels.end(), "no image with boxes shown");
        // The drawn copy differs from the original where the box is.
        const QImage shown = (*drawn)->pixmap().toImage();
        QVERIFY(shown.width() >= img->size.width());
    }
};

QTEST_MAIN(TestMarkdown)
#include "test_markdown.moc"
