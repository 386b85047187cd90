#include "core/cache/response_cache.h"

#include "core/util/hasher.h"

namespace mgd {

std::string ResponseCache::keyFor(const ResponseRequest &r) {
    Hasher128 h;
    h.add(r.modelIdentity);
    if (r.promptKeys) h.add(r.promptKeys->data(), r.promptKeys->size() * sizeof(int64_t));
    const int64_t gen[3] = {r.maxNewTokens, static_cast<int64_t>(r.repetitionPenalty * 1e6), r.ignoreEos};
    return h.add(gen, sizeof gen).digest().hex();
}

bool ResponseCache::lookup(const std::string &key, CachedResponse &out) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    lru_.splice(lru_.begin(), lru_, it->second);
    out = it->second->second;
    return true;
}

void ResponseCache::insert(const std::string &key, CachedResponse value) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(key);
    if (it != index_.end()) {
        it->second->second = std::move(value);
        lru_.splice(lru_.begin(), lru_, it->second);
        return;
    }
    lru_.emplace_front(key, std::move(value));
    index_[key] = lru_.begin();
    while (lru_.size() > capacity_) {
        index_.erase(lru_.back().first);
        lru_.pop_back();
    }
}

void ResponseCache::clear() {
    std::lock_guard<std::mutex> lock(mu_);
    lru_.clear();
    index_.clear();
}

size_t ResponseCache::size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return lru_.size();
}

} // namespace mgd
