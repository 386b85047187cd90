// minigpt-desk: the desktop window. Opens on the built-in model at once; everything else is
// in ui/ (ChatWindow).
#include <QApplication>
#include <QCommandLineParser>
#include <QPainter>
#include <QPainterPath>

#include "ui/chat_window.h"

namespace {

// Drawn rather than shipped, so the app needs no image plugin for its own icon.
QIcon appIcon() {
    QIcon icon;
    for (int size : {16, 32, 48, 64, 128, 256}) {
        QPixmap pm(size, size);
        pm.fill(Qt::transparent);
        QPainter p(&pm);
        p.setRenderHint(QPainter::Antialiasing);
        QPainterPath bubble;
        const qreal r = size * 0.18;
        bubble.addRoundedRect(QRectF(size * 0.06, size * 0.08, size * 0.88, size * 0.7), r, r);
        QPolygonF tail;
        tail << QPointF(size * 0.25, size * 0.72) << QPointF(size * 0.2, size * 0.95)
             << QPointF(size * 0.45, size * 0.76);
        bubble.addPolygon(tail);
        p.fillPath(bubble.simplified(), QColor(42, 110, 187));
        // A small "image" inside the bubble: a mountain and a sun.
        QPainterPath mountain;
        mountain.moveTo(size * 0.18, size * 0.66);
        mountain.lineTo(size * 0.42, size * 0.36);
        mountain.lineTo(size * 0.58, size * 0.54);
        mountain.lineTo(size * 0.68, size * 0.44);
        mountain.lineTo(size * 0.84, size * 0.66);
        mountain.closeSubpath();
        p.fillPath(mountain, Qt::white);
        p.setBrush(QColor(255, 204, 64));
        p.setPen(Qt::NoPen);
        p.drawEllipse(QPointF(size * 0.72, size * 0.27), size * 0.08, size * 0.08);
        icon.addPixmap(pm);
    }
    return icon;
}

} // namespace

int main(int argc, char **argv) {
    QApplication app(argc, argv);
    QApplication::setOrganizationName("minigpt-desk");
    QApplication::setApplicationName("minigpt-desk");
    QApplication::setApplicationDisplayName("MiniGPT Desk");
    QApplication::setApplicationVersion(MGD_VERSION);
    QApplication::setWindowIcon(appIcon());
    // The desktop file (and AppStream) id: Wayland matches windows to the menu entry by it.
    QApplication::setDesktopFileName("io.github.minigptdesk.MiniGPTDesk");

    QCommandLineParser cli;
    cli.setApplicationDescription("Chat about images with MiniGPT-4-family models.");
    cli.addHelpOption();
    cli.addVersionOption();
    const QCommandLineOption model("model", "Open the model in DIR (and remember it).", "DIR");
    const QCommandLineOption image("image", "Attach FILE to the first question (repeatable).",
                                   "FILE");
    const QCommandLineOption dataDir("data-dir", "Keep conversations and images in DIR.", "DIR");
    const QCommandLineOption settings("settings", "Read and write settings in the INI FILE.",
                                      "FILE");
    cli.addOptions({model, image, dataDir, settings});
    cli.addPositionalArgument("images", "Images to attach, like --image.", "[FILE...]");
    cli.process(app);

    ChatWindowOptions options;
    options.modelDir = cli.value(model);
    options.dataDir = cli.value(dataDir);
    options.settingsFile = cli.value(settings);
    options.images = cli.values(image) + cli.positionalArguments();
    ChatWindow window(options);
    window.show();
    return QApplication::exec();
}
