#pragma once
// "Try an example": the example images a model folder ships (examples/), each with a question,
// shown while a conversation is empty, as the original MiniGPT-4 demo offers its examples.
// Choosing one fills the composer; the person still presses Send.
#include <QList>
#include <QString>
#include <QWidget>

class QGridLayout;
class QLabel;
class QToolButton;

struct ExampleItem {
    QString imagePath;
    QString question;
};

// examples/examples.json ([{"image": "a.png", "question": "..."}]) when present, else every
// image in examples/ with "Describe the image."; entries whose image is missing are skipped.
QList<ExampleItem> loadExamples(const QString &modelDir);

class ExampleGallery : public QWidget {
    Q_OBJECT

public:
    explicit ExampleGallery(QWidget *parent = nullptr);
    // Shows the examples of this model folder (hidden when it has none).
    void setModelDir(const QString &modelDir);
    const QList<ExampleItem> &examples() const { return items_; }

signals:
    void exampleChosen(const QString &imagePath, const QString &question);

protected:
    void resizeEvent(QResizeEvent *e) override;

private:
    // As many columns as fit: the gallery must never make the conversation view wider.
    void arrange();

    QLabel *title_ = nullptr;
    QGridLayout *grid_ = nullptr;
    QList<QToolButton *> buttons_;
    QList<ExampleItem> items_;
    int columns_ = 0;
};
