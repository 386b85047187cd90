#include "core/cache/conversation_kv_store.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <vector>

#include "core/util/error.h"
#include "core/util/hasher.h"

namespace fs = std::filesystem;

namespace mgd {

namespace {
constexpr const char *kExt = ".mgkv";
}

ConversationKvStore::ConversationKvStore(std::string dir, uint64_t budgetBytes, KvExpectation expect)
    : dir_(std::move(dir)), budget_(budgetBytes), expect_(std::move(expect)) {
    // The folder is made by the first write (an app that never saves leaves no trace).
    // Temporary files of a write that was killed: never entries, removed at start.
    std::error_code ec;
    for (const auto &e : fs::directory_iterator(dir_, ec))
        if (e.path().extension() == ".tmp") fs::remove(e.path(), ec);
    stats_.budget = budget_;
    writer_ = std::thread([this] { writerLoop(); });
}

ConversationKvStore::~ConversationKvStore() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    writer_.join();
}

std::string ConversationKvStore::pathOf(const std::string &conversation) const {
    // Named by a hash: the app's ids never become paths.
    return dir_ + "/" + Hasher128().add(conversation).digest().hex() + kExt;
}

void ConversationKvStore::save(const std::string &conversation, KvEntry entry) {
    // Stamped with the loaded model's identity and layout: what a later load checks.
    entry.meta.model = expect_.model;
    entry.meta.layers = expect_.layers;
    entry.meta.kvHeads = expect_.kvHeads;
    entry.meta.headDim = expect_.headDim;
    entry.meta.dtype = expect_.dtype;
    entry.meta.conversation = conversation;
    auto e = std::make_shared<KvEntry>(std::move(entry));
    {
        std::lock_guard<std::mutex> lk(mu_);
        auto it = std::find_if(queue_.begin(), queue_.end(),
                               [&](const auto &q) { return q.first == conversation; });
        if (it != queue_.end())
            it->second = std::move(e);
        else
            queue_.emplace_back(conversation, std::move(e));
    }
    cv_.notify_all();
}

void ConversationKvStore::waitFor(const std::string &conversation, std::unique_lock<std::mutex> &lk) {
    cv_.wait(lk, [&] {
        return writing_ != conversation && std::none_of(queue_.begin(), queue_.end(), [&](const auto &q) {
                   return q.first == conversation;
               });
    });
}

void ConversationKvStore::flush() {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return queue_.empty() && writing_.empty(); });
}

void ConversationKvStore::writerLoop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
        cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return; // stop_ with nothing left to write
        auto [conversation, entry] = std::move(queue_.front());
        queue_.pop_front();
        writing_ = conversation;
        lk.unlock();
        std::string error;
        uint64_t bytes = 0;
        bool tooLarge = false;
        try {
            uint64_t payload = 0;
            for (const at::Tensor &t : entry->layers) payload += t.nbytes();
            tooLarge = payload > budget_;
            if (tooLarge) {
                std::error_code ec;
                fs::remove(pathOf(conversation), ec); // an older, smaller state is out of date too
            } else {
                std::error_code ec;
                fs::create_directories(dir_, ec);
                if (ec)
                    throw Error("conversation state folder '" + dir_ +
                                "': cannot create it: " + ec.message());
                bytes = writeKvFile(pathOf(conversation), *entry);
            }
        } catch (const std::exception &e) {
            error = e.what();
        }
        entry.reset();
        if (!tooLarge && error.empty()) enforceBudget(pathOf(conversation));
        lk.lock();
        if (tooLarge)
            ++stats_.skippedTooLarge;
        else if (!error.empty())
            ++stats_.writeErrors, lastError_ = error;
        else
            ++stats_.saved, lastError_.clear();
        (void)bytes;
        writing_.clear();
        cv_.notify_all();
    }
}

void ConversationKvStore::enforceBudget(const std::string &keep) {
    struct File {
        fs::path path;
        uint64_t bytes;
        fs::file_time_type mtime;
    };
    std::vector<File> files;
    uint64_t total = 0;
    std::error_code ec;
    for (const auto &e : fs::directory_iterator(dir_, ec)) {
        if (e.path().extension() != kExt) continue;
        std::error_code e1, e2;
        const uint64_t n = e.file_size(e1);
        const auto t = e.last_write_time(e2);
        if (e1 || e2) continue;
        files.push_back({e.path(), n, t});
        total += n;
    }
    std::sort(files.begin(), files.end(), [](const File &a, const File &b) { return a.mtime < b.mtime; });
    uint64_t evicted = 0;
    for (const File &f : files) {
        if (total <= budget_) break;
        if (f.path == fs::path(keep)) continue;
        if (fs::remove(f.path, ec)) total -= f.bytes, ++evicted;
    }
    std::lock_guard<std::mutex> lk(mu_);
    stats_.evicted += evicted;
}

std::optional<KvEntry> ConversationKvStore::load(const std::string &conversation) {
    {
        std::unique_lock<std::mutex> lk(mu_);
        waitFor(conversation, lk);
    }
    const std::string path = pathOf(conversation);
    KvEntry e;
    std::string why;
    const KvFileStatus s = readKvFile(path, expect_, e, &why);
    std::lock_guard<std::mutex> lk(mu_);
    if (s == KvFileStatus::Ok && e.meta.conversation == conversation) {
        ++stats_.loaded;
        std::error_code ec;
        fs::last_write_time(path, fs::file_time_type::clock::now(), ec); // LRU: recently used
        return e;
    }
    if (s == KvFileStatus::Missing) {
        ++stats_.misses;
        return std::nullopt;
    }
    // Never used: deleted so it is not read again.
    if (s == KvFileStatus::Stale)
        ++stats_.rejectedStale;
    else
        ++stats_.rejectedCorrupt;
    lastError_ = "conversation state '" + path +
                 "' dropped: " + (s == KvFileStatus::Ok ? "another conversation's" : why);
    std::error_code ec;
    fs::remove(path, ec);
    return std::nullopt;
}

void ConversationKvStore::remove(const std::string &conversation) {
    std::unique_lock<std::mutex> lk(mu_);
    // A queued write of it is dropped; one in flight finishes first.
    queue_.erase(
        std::remove_if(queue_.begin(), queue_.end(), [&](const auto &q) { return q.first == conversation; }),
        queue_.end());
    waitFor(conversation, lk);
    std::error_code ec;
    fs::remove(pathOf(conversation), ec);
}

ConversationKvStats ConversationKvStore::stats() const {
    ConversationKvStats s;
    {
        std::lock_guard<std::mutex> lk(mu_);
        s = stats_;
    }
    std::error_code ec;
    for (const auto &e : fs::directory_iterator(dir_, ec)) {
        std::error_code e1;
        if (e.path().extension() != kExt) continue;
        const uint64_t n = e.file_size(e1);
        if (!e1) ++s.entries, s.bytes += n;
    }
    return s;
}

std::string ConversationKvStore::lastError() const {
    std::lock_guard<std::mutex> lk(mu_);
    return lastError_;
}

} // namespace mgd
