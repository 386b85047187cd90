// A saved conversation's JSON (the files under <data dir>/conversations): listing, opening
// and deleting it. Whatever it says, nothing outside the data folder is read or deleted.
#include <QCoreApplication>
#include <QDir>
#include <QFile>
#include <QTemporaryDir>

#include "fuzz/fuzz_support.h"
#include "ui/conversation_store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int argc = 1;
    static char name[] = "fuzz_conversation_store";
    static char *argv[] = {name, nullptr};
    static QCoreApplication app(argc, argv);
    static QTemporaryDir root;
    // A file beside the data folder that a hostile file might try to reach.
    static const QString bystander = root.filePath("bystander.json");
    static const QString dataDir = root.filePath("data");
    static bool once = [] {
        QFile b(bystander);
        return b.open(QIODevice::WriteOnly) && b.write("{}") == 2;
    }();
    if (!once) std::abort();

    QDir(dataDir).removeRecursively();
    QDir().mkpath(dataDir + "/conversations");
    QFile f(dataDir + "/conversations/fuzzed.json");
    if (!f.open(QIODevice::WriteOnly) ||
        f.write(reinterpret_cast<const char *>(data), qint64(size)) != qint64(size))
        std::abort();
    f.close();

    ConversationStore store(dataDir);
    QString error;
    for (const auto &s : store.list()) {
        (void)store.load(s.id, &error);
        store.remove(s.id, &error);
    }
    (void)store.load("fuzzed", &error);
    store.remove("fuzzed", &error);
    if (!QFile::exists(bystander)) std::abort();
    return 0;
}
