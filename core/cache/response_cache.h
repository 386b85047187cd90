#pragma once
// Exact-repeat cache of deterministic answers. Invariants: only greedy requests are stored or
// looked up (sampling must stay random); the key covers everything that decides the answer
// (model identity, prompt token ids and image identities, generation settings); at most
// `capacity` entries, least recently used evicted first.
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/metrics/turn_stats.h"

namespace mgd {

struct CachedResponse {
    std::string text;             // the streamed text, as the callback received it
    std::vector<int32_t> tokens;  // every generated token
    std::vector<int32_t> keptIds; // tokens kept in the conversation
    StopReason stopReason = StopReason::None;
};

// Everything that decides a greedy answer besides the prompt.
struct ResponseRequest {
    std::string modelIdentity;                        // folder, vision identity, effective config
    const std::vector<int64_t> *promptKeys = nullptr; // token ids and image identities
    int64_t maxNewTokens = 0;
    double repetitionPenalty = 1.0;
    bool ignoreEos = false;
};

class ResponseCache {
public:
    explicit ResponseCache(size_t capacity = 256) : capacity_(capacity) {}
    // The key of a request: 32 hex digits of XXH3-128 over every field.
    static std::string keyFor(const ResponseRequest &r);
    bool lookup(const std::string &key, CachedResponse &out);
    void insert(const std::string &key, CachedResponse value);
    void clear();
    size_t size() const;

private:
    using Entry = std::pair<std::string, CachedResponse>;
    size_t capacity_;
    mutable std::mutex mu_;
    std::list<Entry> lru_; // front = most recent
    std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

} // namespace mgd
