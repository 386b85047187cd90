#pragma once
// Plain data the UI passes around: a message as shown and saved, and the images attached to
// it (the encoded file bytes, so what is saved is exactly what the model saw).
#include <QByteArray>
#include <QDateTime>
#include <QImage>
#include <QList>
#include <QMetaType>
#include <QString>
#include <optional>

#include "core/runtime/engine.h"

struct ImageAttachment {
    QByteArray bytes;     // the encoded file (PNG, JPEG, ...)
    QString label;        // file name, or "pasted image"
    QString hash;         // SHA-256 of bytes, hex: the name it is stored under
    QString format;       // file suffix for storage: png, jpg, ...
    QImage thumbnail;     // at most kThumbnailSize on the long side
    QSize size;           // full size in pixels
    static constexpr int kThumbnailSize = 256;
};

struct ChatItem {
    bool fromUser = true;
    QString text;
    QList<ImageAttachment> images;      // user messages only
    std::optional<mgd::TurnStats> stats; // assistant messages, once finished
    int imagesInTurn = 0;               // how many images the question had (for the stats line)
    bool streaming = false;
    QString error;                      // the turn failed; text is what arrived before
};

struct ConversationData {
    QString id;
    QString title;
    QDateTime created, updated;
    QList<ChatItem> messages;
};

Q_DECLARE_METATYPE(ImageAttachment)
Q_DECLARE_METATYPE(ChatItem)
