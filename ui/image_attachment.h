#pragma once
// Turning files, drops and clipboard contents into ImageAttachments, refusing what the core
// could not decode (unknown format, corrupt, empty, too large) with a message that names it.
#include <QList>
#include <QString>
#include <QStringList>
#include <optional>

#include "ui/chat_types.h"

class QMimeData;

// The formats both Qt (thumbnails) and the core's decoder read.
QStringList supportedImageSuffixes();
QString imageFileFilter();

std::optional<ImageAttachment> attachmentFromBytes(const QByteArray &bytes, const QString &label,
                                                   QString *error);
std::optional<ImageAttachment> attachmentFromFile(const QString &path, QString *error);
// Images in a drop or paste: local files, or image data (encoded as PNG). Everything that is
// not a usable image adds a line to `errors`.
QList<ImageAttachment> attachmentsFromMime(const QMimeData *mime, QStringList *errors);
bool mimeMayHoldImages(const QMimeData *mime);
