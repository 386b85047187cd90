#include "ui/conversation_store.h"

#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QRegularExpression>
#include <QSaveFile>
#include <QSet>
#include <QStandardPaths>
#include <QUuid>
#include <algorithm>

#include "ui/image_attachment.h"

namespace {

constexpr int kFormatVersion = 1;

// The stats of an answer, in core's one TurnStats codec.
QJsonObject statsToJson(const mgd::TurnStats &s) {
    return QJsonDocument::fromJson(QByteArray::fromStdString(mgd::turnStatsToJson(s))).object();
}

mgd::TurnStats statsFromJson(const QJsonObject &o) {
    return mgd::turnStatsFromJson(QJsonDocument(o).toJson(QJsonDocument::Compact).toStdString())
        .value_or(mgd::TurnStats{});
}

bool writeAtomically(const QString &path, const QByteArray &data, QString *error) {
    QSaveFile f(path);
    if (!f.open(QIODevice::WriteOnly) || f.write(data) != data.size() || !f.commit()) {
        if (error) *error = QObject::tr("could not write %1: %2").arg(path, f.errorString());
        return false;
    }
    return true;
}

// Images are stored as <sha256>.<format>; a file naming anything else (a path such as
// "../../x") must never make the store read or delete outside its folder.
bool isStoredImageName(const QString &name) {
    static const QRegularExpression re("^[0-9a-f]{64}\\.[a-z0-9]{1,8}$");
    return re.match(name).hasMatch();
}

QStringList imageNames(const QJsonObject &conv) {
    QStringList names;
    for (const QJsonValue &m : conv["messages"].toArray())
        for (const QJsonValue &img : m.toObject()["images"].toArray())
            if (const QString n = img.toObject()["file"].toString(); isStoredImageName(n)) names << n;
    return names;
}

std::optional<QJsonObject> readJson(const QString &path, QString *error) {
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly)) {
        if (error) *error = QObject::tr("could not open %1: %2").arg(path, f.errorString());
        return std::nullopt;
    }
    QJsonParseError pe;
    const QJsonDocument doc = QJsonDocument::fromJson(f.readAll(), &pe);
    if (!doc.isObject()) {
        if (error) *error = QObject::tr("%1 is not a saved conversation (%2)").arg(path, pe.errorString());
        return std::nullopt;
    }
    return doc.object();
}

} // namespace

ConversationStore::ConversationStore(const QString &dataDir, QObject *parent)
    : QObject(parent),
      dir_(dataDir.isEmpty()
               ? QStandardPaths::writableLocation(QStandardPaths::GenericDataLocation) + "/minigpt-desk"
               : dataDir) {
    QDir().mkpath(dir_ + "/conversations");
    QDir().mkpath(dir_ + "/images");
    writer_.setMaxThreadCount(1); // one writer: writes land in the order they were made
    writer_.setExpiryTimeout(-1);
    rebuildIndex();
}

ConversationStore::~ConversationStore() {
    flush();
}

void ConversationStore::flush() const {
    writer_.waitForDone();
}

QString ConversationStore::newId() {
    return QUuid::createUuid().toString(QUuid::WithoutBraces);
}

QString ConversationStore::titleFor(const ConversationData &c) {
    for (const ChatItem &m : c.messages) {
        if (!m.fromUser) continue;
        QString t = m.text.simplified();
        if (t.isEmpty() && !m.images.isEmpty()) t = m.images.first().label;
        if (t.size() > 60) t = t.left(57) + "…";
        if (!t.isEmpty()) return t;
    }
    return tr("New chat");
}

QString ConversationStore::conversationPath(const QString &id) const {
    return dir_ + "/conversations/" + id + ".json";
}

QString ConversationStore::imagePath(const ImageAttachment &image) const {
    return dir_ + "/images/" + image.hash + "." + image.format;
}

void ConversationStore::rebuildIndex() {
    index_.clear();
    const QDir d(dir_ + "/conversations");
    for (const QString &name : d.entryList({"*.json"}, QDir::Files)) {
        const auto o = readJson(d.filePath(name), nullptr);
        if (!o) continue; // unreadable files are left alone, not deleted
        Summary s;
        // The id is the file's name (what load and remove open), whatever the JSON says.
        s.id = QFileInfo(name).completeBaseName();
        s.title = (*o)["title"].toString();
        s.updated = QDateTime::fromString((*o)["updated"].toString(), Qt::ISODateWithMs);
        s.messages = static_cast<int>((*o)["messages"].toArray().size());
        if (isValidId(s.id)) index_ << s;
    }
    std::sort(index_.begin(), index_.end(),
              [](const Summary &a, const Summary &b) { return a.updated > b.updated; });
}

void ConversationStore::touchIndex(const ConversationData &c) {
    index_.erase(std::remove_if(index_.begin(), index_.end(), [&](const Summary &s) { return s.id == c.id; }),
                 index_.end());
    index_.prepend({c.id, c.title, c.updated, static_cast<int>(c.messages.size())});
    std::stable_sort(index_.begin(), index_.end(),
                     [](const Summary &a, const Summary &b) { return a.updated > b.updated; });
    emit listChanged();
}

void ConversationStore::save(const ConversationData &c) {
    // Serialise here (cheap); write on the writer thread. Image bytes are shared, not copied.
    QList<QPair<QString, QByteArray>> images;
    QJsonArray messages;
    for (const ChatItem &m : c.messages) {
        if (m.streaming && m.text.isEmpty()) continue; // nothing arrived yet: nothing to keep
        QJsonObject o{{"role", m.fromUser ? "user" : "assistant"}, {"text", m.text}};
        if (m.fromUser) {
            QJsonArray names;
            for (const ImageAttachment &img : m.images) {
                const QString path = imagePath(img);
                images.append({path, img.bytes});
                names.append(QJsonObject{{"file", QFileInfo(path).fileName()}, {"label", img.label}});
            }
            o["images"] = names;
        } else {
            o["imagesInTurn"] = m.imagesInTurn;
            if (m.stats) o["stats"] = statsToJson(*m.stats);
            if (!m.error.isEmpty()) o["error"] = m.error;
            if (m.streaming) o["interrupted"] = true;
        }
        messages.append(o);
    }
    const QJsonObject doc{{"version", kFormatVersion},
                          {"id", c.id},
                          {"title", c.title},
                          {"created", c.created.toString(Qt::ISODateWithMs)},
                          {"updated", c.updated.toString(Qt::ISODateWithMs)},
                          {"messages", messages}};
    const QByteArray json = QJsonDocument(doc).toJson();
    const QString path = conversationPath(c.id);
    writer_.start([this, images, json, path] {
        QString error;
        bool ok = true;
        for (const auto &[imagePath, bytes] : images)
            if (ok && !QFile::exists(imagePath)) ok = writeAtomically(imagePath, bytes, &error);
        if (ok) ok = writeAtomically(path, json, &error);
        if (!ok)
            QMetaObject::invokeMethod(
                this, [this, error] { emit saveFailed(error); }, Qt::QueuedConnection);
    });
    touchIndex(c);
}

bool ConversationStore::isValidId(const QString &id) {
    static const QRegularExpression re("^[A-Za-z0-9_-]{1,64}$");
    return re.match(id).hasMatch();
}

std::optional<ConversationData> ConversationStore::load(const QString &id, QString *error) const {
    if (!isValidId(id)) {
        if (error) *error = tr("'%1' is not a conversation id").arg(id);
        return std::nullopt;
    }
    flush();
    const auto o = readJson(conversationPath(id), error);
    if (!o) return std::nullopt;
    ConversationData c;
    c.id = (*o)["id"].toString();
    c.title = (*o)["title"].toString();
    c.created = QDateTime::fromString((*o)["created"].toString(), Qt::ISODateWithMs);
    c.updated = QDateTime::fromString((*o)["updated"].toString(), Qt::ISODateWithMs);
    for (const QJsonValue &v : (*o)["messages"].toArray()) {
        const QJsonObject m = v.toObject();
        ChatItem item;
        item.fromUser = m["role"].toString() == "user";
        item.text = m["text"].toString();
        for (const QJsonValue &iv : m["images"].toArray()) {
            const QJsonObject io = iv.toObject();
            if (!isStoredImageName(io["file"].toString())) {
                if (error)
                    *error = tr("conversation '%1' names an image outside the store: '%2'")
                                 .arg(c.title, io["file"].toString().left(80));
                return std::nullopt;
            }
            const QString path = dir_ + "/images/" + io["file"].toString();
            QString why;
            auto a = attachmentFromFile(path, &why);
            if (!a) {
                if (error)
                    *error = tr("conversation '%1': image %2 is missing or damaged: %3")
                                 .arg(c.title, io["file"].toString(), why);
                return std::nullopt;
            }
            a->label = io["label"].toString();
            item.images << *a;
        }
        item.imagesInTurn = m["imagesInTurn"].toInt();
        if (m.contains("stats")) item.stats = statsFromJson(m["stats"].toObject());
        item.error = m["error"].toString();
        if (m["interrupted"].toBool() && item.error.isEmpty())
            item.error = tr("stopped when the app was closed");
        c.messages << item;
    }
    return c;
}

bool ConversationStore::remove(const QString &id, QString *error) {
    if (!isValidId(id)) {
        if (error) *error = tr("'%1' is not a conversation id").arg(id);
        return false;
    }
    flush();
    const auto doomed = readJson(conversationPath(id), error);
    if (!QFile::remove(conversationPath(id))) {
        if (error) *error = tr("could not delete %1").arg(conversationPath(id));
        return false;
    }
    index_.erase(std::remove_if(index_.begin(), index_.end(), [&](const Summary &s) { return s.id == id; }),
                 index_.end());
    if (doomed) {
        QSet<QString> stillUsed;
        const QDir d(dir_ + "/conversations");
        for (const QString &name : d.entryList({"*.json"}, QDir::Files))
            if (const auto o = readJson(d.filePath(name), nullptr))
                for (const QString &n : imageNames(*o)) stillUsed.insert(n);
        for (const QString &n : imageNames(*doomed))
            if (!stillUsed.contains(n)) QFile::remove(dir_ + "/images/" + n);
    }
    emit listChanged();
    return true;
}
