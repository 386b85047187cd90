// The process test_kill_safety kills: it saves conversations, feature-cache entries and saved
// conversation states as fast as it can, through the app's own ConversationStore,
// FeatureCache and ConversationKvStore, and prints a
// line after each save is on disk ("saved <id> <version>"). Every run continues the versions
// the store already holds, so 100 runs killed at random make one long history.
// Content is a function of (conversation, version), so the test can tell a whole version
// from a torn one. Usage: kill_safety_writer DATA_DIR FEATURE_DIR
#include <ATen/ATen.h>

#include <QBuffer>
#include <QCoreApplication>
#include <QImage>
#include <cstdio>

#include "core/cache/conversation_kv_store.h"
#include "core/cache/feature_cache.h"
#include "tests/ui/kill_safety_content.h"
#include "ui/conversation_store.h"
#include "ui/image_attachment.h"

namespace {

ImageAttachment imageFor(int conversation, int version) {
    QImage img(48, 32, QImage::Format_RGB888);
    img.fill(QColor(conversation * 40 % 256, version % 256, (version / 256) % 256));
    QByteArray png;
    QBuffer b(&png);
    b.open(QIODevice::WriteOnly);
    img.save(&b, "PNG");
    return *attachmentFromBytes(png, QString("c%1-v%2.png").arg(conversation).arg(version), nullptr);
}

ConversationData versionOf(int conversation, int version) {
    ConversationData c;
    c.id = killsafety::conversationId(conversation);
    c.title = killsafety::title(conversation, version);
    c.created = QDateTime::fromSecsSinceEpoch(1'700'000'000);
    c.updated = QDateTime::fromSecsSinceEpoch(1'700'000'000 + version);
    for (int m = 0; m < killsafety::messageCount(version); ++m) {
        ChatItem item;
        item.fromUser = m % 2 == 0;
        item.text = killsafety::messageText(conversation, version, m);
        if (m == 0) {
            item.images << imageFor(conversation, version);
            item.imagesInTurn = 1;
        }
        c.messages << item;
    }
    return c;
}

} // namespace

int main(int argc, char **argv) {
    QCoreApplication app(argc, argv);
    if (argc != 3) return 2;
    ConversationStore store(QString::fromLocal8Bit(argv[1]));
    mgd::FeatureCacheSettings fs;
    fs.hostBytes = 1 << 20;
    fs.diskBytes = killsafety::kFeatureDiskBytes;
    fs.diskDir = argv[2];
    mgd::FeatureCache features(fs);
    mgd::ConversationKvStore states(std::string(argv[2]) + "/../state", 64 << 20,
                                    killsafety::kvExpectation());

    int version[killsafety::kConversations] = {};
    for (const auto &s : store.list())
        for (int c = 0; c < killsafety::kConversations; ++c)
            if (s.id == killsafety::conversationId(c)) version[c] = killsafety::versionOfTitle(s.title);
    int next = 0;
    for (int v : version) next = std::max(next, v);
    std::printf("ready\n");
    std::fflush(stdout);
    for (int round = 0;; ++round) {
        const int c = round % killsafety::kConversations;
        const int v = ++version[c];
        store.save(versionOf(c, v));
        const int64_t entry = int64_t(next + round) * 7 + c;
        features.insert(killsafety::featureKey(entry), killsafety::featureValue(entry));
        states.save(killsafety::conversationId(c).toStdString(), killsafety::kvEntry(c, v));
        store.flush();
        std::printf("saved %s %d\n", qPrintable(killsafety::conversationId(c)), v);
        std::fflush(stdout);
    }
}
