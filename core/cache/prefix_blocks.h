#pragma once
// Full KV blocks shared between conversations by reference count, as vLLM's block pool
// shares them. A block is named by a chained hash (the parent block's hash and the keys of
// its positions: token ids, or image identity + offset), so two conversations whose prompts
// start alike name their leading blocks alike and hold one copy of them. A block nobody
// references any more stays cached (least recently used first out) until the memory pool
// needs its room. Shared blocks are immutable: a conversation that must write into one
// copies it first (KvCache::truncate).
// Engine thread only (the pool it releases into has its own lock).
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "core/util/hasher.h"

namespace mgd {

class MemoryPool;

// hashes[i] names positions [i * blockPositions, (i + 1) * blockPositions) of `keys` and,
// through hashes[i - 1], everything before them; only whole blocks are named.
std::vector<Digest128> chainedBlockHashes(const std::vector<int64_t> &keys, int64_t blockPositions);

struct PrefixBlockStats {
    uint64_t blocks = 0;     // held: referenced + cached
    uint64_t referenced = 0; // blocks some conversation uses
    uint64_t references = 0; // sum of reference counts
    uint64_t poolBlocks = 0; // memory-pool blocks they occupy (one per layer each)
    uint64_t hits = 0;       // blocks a conversation adopted instead of prefilling
    uint64_t evictions = 0;  // cached blocks given back to the pool
};

class PrefixBlocks {
public:
    explicit PrefixBlocks(MemoryPool &pool) : pool_(pool) {}
    // Gives every cached block back to the pool; referenced ones must be released first.
    ~PrefixBlocks();
    PrefixBlocks(const PrefixBlocks &) = delete;
    PrefixBlocks &operator=(const PrefixBlocks &) = delete;

    // The pool blocks (one per layer) of the block named `h`, with a reference taken;
    // nullptr when no such block is held.
    const std::vector<int32_t> *acquire(const Digest128 &h);
    // Hands a full block (its pool blocks, one per layer) over under `h`, referenced once by
    // the caller. false when a block of that name is held already: the caller keeps its own.
    bool insert(const Digest128 &h, const std::vector<int32_t> &poolBlocks);
    bool contains(const Digest128 &h) const { return entries_.count(h) > 0; }
    // Drops one reference; at zero the block stays cached.
    void release(const Digest128 &h);
    // Gives the least recently used unreferenced block back to the pool; false if none.
    bool evictOne();
    // Gives every unreferenced block back.
    void dropUnreferenced();
    PrefixBlockStats stats() const;

private:
    struct DigestHash {
        size_t operator()(const Digest128 &d) const { return static_cast<size_t>(d.high ^ (d.low * 31)); }
    };
    struct DigestEq {
        bool operator()(const Digest128 &a, const Digest128 &b) const {
            return a.high == b.high && a.low == b.low;
        }
    };
    struct Entry {
        std::vector<int32_t> poolBlocks;
        int64_t refs = 0;
        std::list<Digest128>::iterator lru; // valid while refs == 0
    };
    void giveBack(std::unordered_map<Digest128, Entry, DigestHash, DigestEq>::iterator it);

    MemoryPool &pool_;
    std::unordered_map<Digest128, Entry, DigestHash, DigestEq> entries_;
    std::list<Digest128> unreferenced_; // front: least recently released
    uint64_t hits_ = 0, evictions_ = 0, references_ = 0;
};

} // namespace mgd
