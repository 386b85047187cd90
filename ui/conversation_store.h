#pragma once
// Saved conversations: one JSON file per conversation and each image once, named by the
// SHA-256 of its bytes, under a data folder the caller chooses (tests use a temporary one).
// Invariants: every write goes to a temporary file renamed over the old one (QSaveFile), and
// images are written before the conversation that names them, so a crash at any point
// leaves the previous version or the new one, never a half-written file or a dangling image.
// Writes run in order on one writer thread (QSaveFile syncs to disk, which can take tens of
// milliseconds); the index is updated at once, and load/remove/flush wait for pending writes.
#include <QDateTime>
#include <QList>
#include <QObject>
#include <QString>
#include <QThreadPool>
#include <optional>

#include "ui/chat_types.h"

class ConversationStore : public QObject {
    Q_OBJECT

public:
    struct Summary {
        QString id, title;
        QDateTime updated;
        int messages = 0;
    };

    // dataDir empty: $XDG_DATA_HOME/minigpt-desk (~/.local/share/minigpt-desk).
    explicit ConversationStore(const QString &dataDir = {}, QObject *parent = nullptr);
    ~ConversationStore() override;

    QString dataDir() const { return dir_; }
    QString imagePath(const ImageAttachment &image) const;
    // Newest first.
    QList<Summary> list() const { return index_; }
    std::optional<ConversationData> load(const QString &id, QString *error) const;
    // Queues the write; a failure is reported through saveFailed.
    void save(const ConversationData &c);
    // Waits until every queued write is on disk.
    void flush() const;
    // Removes the conversation and every image no other conversation uses.
    bool remove(const QString &id, QString *error);

    static QString newId();
    // Ids name files: letters, digits, '-' and '_' only (newId() makes UUIDs).
    static bool isValidId(const QString &id);
    static QString titleFor(const ConversationData &c);

signals:
    void listChanged();
    void saveFailed(const QString &message);

private:
    QString conversationPath(const QString &id) const;
    void rebuildIndex();
    void touchIndex(const ConversationData &c);

    QString dir_;
    QList<Summary> index_;
    mutable QThreadPool writer_;
};
