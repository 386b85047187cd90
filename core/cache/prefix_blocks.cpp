#include "core/cache/prefix_blocks.h"

#include "core/memory/memory_pool.h"
#include "core/util/error.h"

namespace mgd {

std::vector<Digest128> chainedBlockHashes(const std::vector<int64_t> &keys, int64_t blockPositions) {
    std::vector<Digest128> out;
    if (blockPositions <= 0) return out;
    const size_t P = static_cast<size_t>(blockPositions);
    Digest128 parent{0, static_cast<uint64_t>(blockPositions)}; // the block size is part of a name
    for (size_t start = 0; start + P <= keys.size(); start += P) {
        parent = Hasher128().addValue(parent).add(keys.data() + start, P * sizeof(int64_t)).digest();
        out.push_back(parent);
    }
    return out;
}

PrefixBlocks::~PrefixBlocks() {
    // Referenced blocks would be released later by their conversations into a pool that may
    // be gone: the engine drops every conversation's state before this table goes.
    for (auto &[h, e] : entries_)
        for (int32_t b : e.poolBlocks) pool_.release(b);
}

const std::vector<int32_t> *PrefixBlocks::acquire(const Digest128 &h) {
    auto it = entries_.find(h);
    if (it == entries_.end()) return nullptr;
    Entry &e = it->second;
    if (e.refs == 0) unreferenced_.erase(e.lru);
    ++e.refs;
    ++references_;
    ++hits_;
    return &e.poolBlocks;
}

bool PrefixBlocks::insert(const Digest128 &h, const std::vector<int32_t> &poolBlocks) {
    auto [it, added] = entries_.try_emplace(h);
    if (!added) return false;
    it->second.poolBlocks = poolBlocks;
    it->second.refs = 1;
    ++references_;
    return true;
}

void PrefixBlocks::release(const Digest128 &h) {
    auto it = entries_.find(h);
    if (it == entries_.end() || it->second.refs <= 0)
        throw Error("shared KV block " + h.hex() + " released more often than it was taken");
    Entry &e = it->second;
    --references_;
    if (--e.refs == 0) e.lru = unreferenced_.insert(unreferenced_.end(), h);
}

void PrefixBlocks::giveBack(std::unordered_map<Digest128, Entry, DigestHash, DigestEq>::iterator it) {
    for (int32_t b : it->second.poolBlocks) pool_.release(b);
    unreferenced_.erase(it->second.lru);
    entries_.erase(it);
    ++evictions_;
}

bool PrefixBlocks::evictOne() {
    if (unreferenced_.empty()) return false;
    giveBack(entries_.find(unreferenced_.front()));
    return true;
}

void PrefixBlocks::dropUnreferenced() {
    while (evictOne()) {
    }
}

PrefixBlockStats PrefixBlocks::stats() const {
    PrefixBlockStats s;
    s.blocks = entries_.size();
    s.referenced = entries_.size() - unreferenced_.size();
    s.references = references_;
    for (const auto &[h, e] : entries_) s.poolBlocks += e.poolBlocks.size();
    s.hits = hits_;
    s.evictions = evictions_;
    return s;
}

} // namespace mgd
