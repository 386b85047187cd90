#include "ui/image_attachment.h"

#include <QBuffer>
#include <QCryptographicHash>
#include <QFileInfo>
#include <QImageReader>
#include <QMimeData>
#include <QUrl>

#include "core/image/image_decode.h"

namespace {

// Qt's format name -> the suffix we store under. GIF is left out: the core cannot decode it.
const QList<QPair<QByteArray, QString>> kFormats = {
    {"png", "png"}, {"jpeg", "jpg"}, {"jpg", "jpg"}, {"bmp", "bmp"}, {"webp", "webp"},
    {"tiff", "tif"}, {"tif", "tif"}, {"ppm", "ppm"}, {"pgm", "pgm"}, {"pbm", "pbm"}};

QString suffixFor(const QByteArray &format) {
    for (const auto &f : kFormats)
        if (f.first == format) return f.second;
    return {};
}

QString human(qint64 bytes) {
    return bytes >= (1 << 20) ? QString::number(double(bytes) / (1 << 20), 'f', 1) + " MiB"
                              : QString::number(bytes) + " bytes";
}

} // namespace

QStringList supportedImageSuffixes() {
    return {"png", "jpg", "jpeg", "bmp", "webp", "tif", "tiff", "ppm", "pgm", "pbm"};
}

QString imageFileFilter() {
    QStringList globs;
    for (const QString &s : supportedImageSuffixes()) globs << "*." + s;
    return QObject::tr("Images (%1)").arg(globs.join(' '));
}

std::optional<ImageAttachment> attachmentFromBytes(const QByteArray &bytes, const QString &label,
                                                   QString *error) {
    const mgd::ImageLimits limits;
    auto fail = [&](const QString &why) -> std::optional<ImageAttachment> {
        if (error) *error = QObject::tr("'%1' was not added: %2").arg(label, why);
        return std::nullopt;
    };
    if (bytes.isEmpty()) return fail(QObject::tr("the file is empty"));
    if (static_cast<size_t>(bytes.size()) > limits.maxFileBytes)
        return fail(QObject::tr("it is %1, the limit is %2")
                        .arg(human(bytes.size()), human(static_cast<qint64>(limits.maxFileBytes))));
    QBuffer buffer;
    buffer.setData(bytes);
    buffer.open(QIODevice::ReadOnly);
    QImageReader reader(&buffer);
    const QByteArray format = reader.format();
    if (format.isEmpty()) return fail(QObject::tr("it is not an image in a format this app reads "
                                                  "(PNG, JPEG, BMP, WebP, TIFF, PPM)"));
    const QString suffix = suffixFor(format);
    if (suffix.isEmpty())
        return fail(QObject::tr("%1 images are not supported; use PNG, JPEG, BMP, WebP or TIFF")
                        .arg(QString::fromLatin1(format).toUpper()));
    const QSize size = reader.size();
    if (size.isValid() && qint64(size.width()) * size.height() > limits.maxPixels)
        return fail(QObject::tr("it is %1 × %2 pixels, more than the limit of %3 megapixels")
                        .arg(size.width())
                        .arg(size.height())
                        .arg(limits.maxPixels / 1000000));
    const QImage image = reader.read();
    if (image.isNull())
        return fail(
            QObject::tr("the image is damaged or truncated (%1)").arg(reader.errorString()));

    ImageAttachment a;
    a.bytes = bytes;
    a.label = label;
    a.format = suffix;
    a.size = image.size();
    a.hash =
        QString::fromLatin1(QCryptographicHash::hash(bytes, QCryptographicHash::Sha256).toHex());
    const int t = ImageAttachment::kThumbnailSize;
    a.thumbnail = image.width() > t || image.height() > t
                      ? image.scaled(t, t, Qt::KeepAspectRatio, Qt::SmoothTransformation)
                      : image;
    return a;
}

std::optional<ImageAttachment> attachmentFromFile(const QString &path, QString *error) {
    QFile f(path);
    const QString name = QFileInfo(path).fileName();
    const mgd::ImageLimits limits;
    if (!f.open(QIODevice::ReadOnly)) {
        if (error) *error = QObject::tr("'%1' could not be opened: %2").arg(name, f.errorString());
        return std::nullopt;
    }
    if (static_cast<size_t>(f.size()) > limits.maxFileBytes) {
        if (error)
            *error =
                QObject::tr("'%1' was not added: it is %2, the limit is %3")
                    .arg(name, human(f.size()), human(static_cast<qint64>(limits.maxFileBytes)));
        return std::nullopt;
    }
    return attachmentFromBytes(f.readAll(), name, error);
}

bool mimeMayHoldImages(const QMimeData *mime) {
    return mime && (mime->hasImage() || mime->hasUrls());
}

QList<ImageAttachment> attachmentsFromMime(const QMimeData *mime, QStringList *errors) {
    QList<ImageAttachment> out;
    if (!mime) return out;
    QString error;
    if (mime->hasUrls()) {
        for (const QUrl &url : mime->urls()) {
            if (!url.isLocalFile()) {
                if (errors) *errors << QObject::tr("'%1' is not a local file").arg(url.toString());
                continue;
            }
            if (auto a = attachmentFromFile(url.toLocalFile(), &error)) out << *a;
            else if (errors) *errors << error;
        }
        if (!out.isEmpty() || !mime->hasImage()) return out;
    }
    if (mime->hasImage()) {
        // Clipboard images arrive decoded; store them losslessly.
        const QImage image = qvariant_cast<QImage>(mime->imageData());
        QByteArray png;
        QBuffer buffer(&png);
        buffer.open(QIODevice::WriteOnly);
        if (image.isNull() || !image.save(&buffer, "PNG")) {
            if (errors) *errors << QObject::tr("the pasted image could not be read");
            return out;
        }
        if (auto a = attachmentFromBytes(png, QObject::tr("pasted image"), &error)) out << *a;
        else if (errors) *errors << error;
    }
    return out;
}
