// Saved conversations: round trip, images stored once by content hash, atomic writes, and
// deletion that keeps images other conversations still use.
#include <QCryptographicHash>
#include <QDir>
#include <QTemporaryDir>
#include <QtTest>

#include "ui/conversation_store.h"
#include "ui/image_attachment.h"

namespace {

const QString kImage = QStringLiteral(MGD_TEST_DATA "/minigpt4-tiny-hi/image.png");

ConversationData conversation(const QString &question, const ImageAttachment &img) {
    ConversationData c;
    c.id = ConversationStore::newId();
    c.created = c.updated = QDateTime::currentDateTimeUtc();
    ChatItem q;
    q.text = question;
    q.images << img;
    ChatItem a;
    a.fromUser = false;
    a.text = "An answer with `code`.";
    mgd::TurnStats s;
    s.ttftMs = 12.5;
    s.generatedTokens = 7;
    s.stopReason = mgd::StopReason::Eos;
    a.stats = s;
    c.messages << q << a;
    c.title = ConversationStore::titleFor(c);
    return c;
}

int files(const QString &dir) {
    return static_cast<int>(QDir(dir).entryList(QDir::Files).size());
}

} // namespace

class TestConversationStore : public QObject {
    Q_OBJECT

private slots:
    void roundTripsMessagesImagesAndStats() {
        QTemporaryDir dir;
        QString error;
        const auto img = attachmentFromFile(kImage, &error);
        QVERIFY2(img, qPrintable(error));
        ConversationStore store(dir.path());
        const ConversationData c = conversation("What is this?", *img);
        store.save(c);
        QCOMPARE(store.list().size(), 1); // listed at once, written behind
        store.flush();

        ConversationStore reopened(dir.path()); // as after a restart
        QCOMPARE(reopened.list().size(), 1);
        QCOMPARE(reopened.list()[0].title, QStringLiteral("What is this?"));
        const auto back = reopened.load(c.id, &error);
        QVERIFY2(back, qPrintable(error));
        QCOMPARE(back->messages.size(), 2);
        QCOMPARE(back->messages[0].text, QStringLiteral("What is this?"));
        QCOMPARE(back->messages[0].images.size(), 1);
        QCOMPARE(back->messages[0].images[0].bytes, img->bytes);
        QCOMPARE(back->messages[0].images[0].hash, img->hash);
        QVERIFY(!back->messages[1].fromUser);
        QCOMPARE(back->messages[1].stats->ttftMs, 12.5);
        QCOMPARE(back->messages[1].stats->generatedTokens, 7);
        QCOMPARE(QString::fromLatin1(mgd::stopReasonName(back->messages[1].stats->stopReason)),
                 QStringLiteral("eos"));
    }

    void imagesAreStoredOnceByContentHash() {
        QTemporaryDir dir;
        QString error;
        const auto img = attachmentFromFile(kImage, &error);
        QFile f(kImage);
        QVERIFY(f.open(QIODevice::ReadOnly));
        const QString sha =
            QString::fromLatin1(QCryptographicHash::hash(f.readAll(), QCryptographicHash::Sha256).toHex());
        QCOMPARE(img->hash, sha);
        ConversationStore store(dir.path());
        const ConversationData a = conversation("first", *img), b = conversation("second", *img);
        store.save(a);
        store.save(b);
        store.save(a); // saving again rewrites, never duplicates
        store.flush();
        // Exactly these files: no duplicates and no temporary files left by the atomic writes.
        QCOMPARE(files(dir.filePath("images")), 1);
        QVERIFY(QFile::exists(dir.filePath("images/" + sha + ".png")));
        QCOMPARE(files(dir.filePath("conversations")), 2);

        // Deleting one keeps the image the other still shows; deleting both removes it.
        QVERIFY(store.remove(a.id, &error));
        QCOMPARE(files(dir.filePath("images")), 1);
        QVERIFY(store.load(b.id, &error));
        QVERIFY(store.remove(b.id, &error));
        QCOMPARE(files(dir.filePath("images")), 0);
        QCOMPARE(store.list().size(), 0);
    }

    void overwriteIsAtomicAndDamagedFilesAreLeftAlone() {
        QTemporaryDir dir;
        QString error;
        const auto img = attachmentFromFile(kImage, &error);
        ConversationStore store(dir.path());
        ConversationData c = conversation("q", *img);
        store.save(c);
        // A stray half-written file from some other program: not listed, not deleted.
        QFile junk(dir.filePath("conversations/broken.json"));
        QVERIFY(junk.open(QIODevice::WriteOnly));
        junk.write("{\"id\": \"bro");
        junk.close();
        c.messages[1].text = "a longer, newer answer";
        store.save(c);
        store.flush();
        ConversationStore reopened(dir.path());
        QCOMPARE(reopened.list().size(), 1);
        QCOMPARE(reopened.load(c.id, &error)->messages[1].text, QStringLiteral("a longer, newer answer"));
        QVERIFY(QFile::exists(dir.filePath("conversations/broken.json")));
        QVERIFY(!reopened.load("broken", &error));
        QVERIFY(!error.isEmpty());
    }

    void missingImageIsAnErrorNotACrash() {
        QTemporaryDir dir;
        QString error;
        const auto img = attachmentFromFile(kImage, &error);
        ConversationStore store(dir.path());
        const ConversationData c = conversation("q", *img);
        store.save(c);
        store.flush();
        QVERIFY(QFile::remove(store.imagePath(*img)));
        error.clear();
        QVERIFY(!store.load(c.id, &error));
        QVERIFY2(error.contains(img->hash), qPrintable(error));
    }

    // A conversation file is outside data once it can be copied in: whatever id or image
    // names it holds, the store reads and deletes only inside its own folder.
    void hostileNamesNeverLeaveTheDataFolder() {
        QTemporaryDir root;
        const QString data = root.filePath("data"), victim = root.filePath("victim.png");
        QDir().mkpath(data + "/conversations");
        QVERIFY(QFile::copy(kImage, victim));
        QFile f(data + "/conversations/hostile.json");
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(R"({"version":1,"id":"../../victim","title":"t","updated":"2026-01-01T00:00:00.000Z",
                   "messages":[{"role":"user","text":"hi","images":[{"file":"../../victim.png","label":"x"}]}]})");
        f.close();
        ConversationStore store(data);
        QCOMPARE(store.list().size(), 1);
        QCOMPARE(store.list().first().id, QString("hostile")); // the file's name, not the JSON's id
        QString error;
        QVERIFY(!store.load("hostile", &error));
        QVERIFY2(error.contains("outside the store"), qPrintable(error));
        QVERIFY(!store.load("../victim", &error));
        QVERIFY(!store.remove("../../victim", &error));
        QVERIFY(store.remove("hostile", &error));
        QVERIFY(QFile::exists(victim));
    }
};

QTEST_MAIN(TestConversationStore)
#include "test_conversation_store.moc"
