#pragma once
// The disk tier of conversation state: one KV entry per conversation (core/cache/kv_file), so
// that after a restart a conversation's next turn prefills only its new question.
// Invariants:
// - Entries are written atomically on the store's own writer thread: save() only queues (a
//   newer save of the same conversation replaces a queued older one), so a turn never waits
//   for the disk. load() and remove() wait for that conversation's pending write first.
// - The folder stays within its byte budget: after each write the least recently used
//   entries (file mtime; a load touches it) are deleted, never the one just written. An entry
//   larger than the whole budget is not written.
// - An entry that fails any check (damaged, another version, another model) is deleted when
//   read and counted; the caller re-prefills. One process per folder.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/cache/kv_file.h"

namespace mgd {

struct ConversationKvStats {
    uint64_t entries = 0, bytes = 0, budget = 0;
    uint64_t saved = 0, loaded = 0, misses = 0, rejectedCorrupt = 0, rejectedStale = 0, writeErrors = 0,
             evicted = 0, skippedTooLarge = 0;
};

class ConversationKvStore {
public:
    // `dir` is created by the first write (a failure is counted in writeErrors, lastError()).
    // `expect` is the loaded model's identity and layout: entries for anything else are stale.
    ConversationKvStore(std::string dir, uint64_t budgetBytes, KvExpectation expect);
    ~ConversationKvStore(); // finishes queued writes
    ConversationKvStore(const ConversationKvStore &) = delete;
    ConversationKvStore &operator=(const ConversationKvStore &) = delete;

    // Queues the entry (keys, layers, messages); its meta is stamped with this store's model.
    void save(const std::string &conversation, KvEntry entry);
    std::optional<KvEntry> load(const std::string &conversation);
    void remove(const std::string &conversation);
    void flush(); // waits until every queued write is on disk
    ConversationKvStats stats() const;
    std::string lastError() const;
    const std::string &dir() const { return dir_; }
    std::string pathOf(const std::string &conversation) const;

private:
    void writerLoop();
    void enforceBudget(const std::string &keep);
    void waitFor(const std::string &conversation, std::unique_lock<std::mutex> &lk);

    const std::string dir_;
    const uint64_t budget_;
    const KvExpectation expect_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::pair<std::string, std::shared_ptr<KvEntry>>> queue_;
    std::string writing_; // conversation being written now ("" when idle)
    bool stop_ = false;
    ConversationKvStats stats_;
    std::string lastError_;
    std::thread writer_;
};

} // namespace mgd
