#pragma once
// The image-feature cache: projected visual tokens keyed by the image's content hash, kept in
// up to three tiers (device memory, host memory, a disk folder) so that an image seen before,
// in this conversation, another one, or before a restart, never runs the vision encoder again.
#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/cache/feature_file.h"
#include "core/memory/block_store.h"

namespace mgd {

enum class CachePolicy { Lru, Lfu };

struct FeatureCacheSettings {
    bool enabled = true;
    uint64_t deviceBytes = 0; // device tier budget (only used when a CUDA device is available)
    uint64_t hostBytes = 256ull << 20;
    uint64_t diskBytes = 2ull << 30;
    std::string diskDir; // empty: no disk tier
    CachePolicy policy = CachePolicy::Lru;
    std::string device = "cpu"; // "cuda" / "cuda:N" enables the device tier when at::hasCUDA()
    // Where a BlockStore's blocks live ("cpu", "cuda[:n]"); empty: on `device` (the engine's
    // pool is allocated there). Decides whether blocks are filled by memcpy or a device copy.
    std::string storeDevice;
};

struct TierCounters {
    uint64_t lookups = 0, hits = 0, misses = 0, evictions = 0, entries = 0, bytes = 0, budget = 0,
             rejectedCorrupt = 0;
    // Stores into this tier that were skipped: larger than the budget, or no room because every
    // resident entry is pinned (or, for a BlockStore-backed host tier, the store had no blocks).
    uint64_t rejectedFull = 0;
};

struct FeatureCacheStats {
    TierCounters device, host, disk;
    uint64_t pinned = 0; // entries with at least one live FeatureHandle
    // Whole-cache view for hit-rate charts: a lookup hits when any tier had the entry.
    uint64_t lookups = 0, hits = 0, misses = 0;
};

// A lookup or insert result. While any copy of it is alive the entry is pinned: no tier evicts
// it. Copies share one pin. An empty handle (operator bool false) is a miss.
class FeatureHandle {
public:
    FeatureHandle() = default;
    explicit operator bool() const { return value_.defined(); }
    // The cached value, contiguous. From a lookup it may share storage with the cache's copy:
    // read it, never modify it in place. It lives on the cache's device when the device tier
    // holds it, else on the CPU; callers .to() their device either way.
    const at::Tensor &tensor() const { return value_; }
    // Where the value was found: "device" | "host" | "disk", or "new" for insert().
    const char *tier() const { return tier_; }

private:
    friend class FeatureCache;
    FeatureHandle(at::Tensor value, const char *tier, std::shared_ptr<void> pin)
        : value_(std::move(value)), tier_(tier), pin_(std::move(pin)) {}
    at::Tensor value_;
    const char *tier_ = "";
    std::shared_ptr<void> pin_;
};

// The cache of projected visual tokens, in up to three tiers with a byte budget each: device
// (CUDA only), host (plain tensors, or the blocks of an optional BlockStore: the engine's memory
// pool), disk (one file per entry in a folder, so a restart keeps them).
//
// Invariants (tests/core/cache/test_feature_cache.cpp checks each one):
// - Ownership: the cache owns one copy of a value per tier that holds it (device tensor, host
//   tensor or store blocks, disk file). Tiers are independent: evicting an entry from one tier
//   leaves its copies in the others. insert() stores copies, never the caller's tensor; a lookup
//   handle may alias the device/host copy, so it is read-only.
// - Budgets: a tier's bytes (device/host: payload bytes, or whole blocks with a store; disk:
//   file bytes; stores in progress included) never exceed its budget. The one exception:
//   applySettings() shrank a budget below what pinned entries hold; then nothing new enters
//   that tier, and it is trimmed back to budget as those pins are released. An entry larger
//   than a budget, or one that would only fit by evicting a pinned entry, is not stored in that
//   tier (counted in rejectedFull); that is never an error.
// - Reference count: every handle returned by lookup()/insert() holds one pin on its entry
//   (copies of a handle share it); the pin goes when the last copy is destroyed. An entry with
//   pins > 0 is never evicted from any tier: not by inserts, evictHost(), applySettings() or
//   clear(). An entry with no pins and in no tier is forgotten.
// - Eviction happens only to make room (insert, promotion, a full store), on evictHost(), and to
//   fit budgets after applySettings() or an unpin. Victims are the tier's unpinned entries:
//   least recently used first (Lru), or least frequently used first, ties by least recent
//   (Lfu). A use is an insert or a lookup hit. Hits refresh the file's mtime, so after a restart
//   the folder's mtimes give the LRU order (LFU use counts start again from zero).
// - Disk entries are versioned, checksummed files written atomically (temp, fsync, rename);
//   one that is corrupt, truncated, stale (other version or key) or gone is deleted when read,
//   counted in rejectedCorrupt, and reported as a miss.
// - Counters: per tier and overall, lookups == hits + misses in every stats() snapshot. A lookup
//   reaches a lower tier only after missing the ones above it. Disabled, a lookup counts as a
//   miss of the host tier and overall.
// - With a BlockStore, host entries are copied into its blocks on insert and out on lookup; the
//   tier holds at most what the store grants and never more than hostBytes. When
//   allocateBlock() returns -1 the cache evicts its own unpinned host entries (policy order)
//   and retries, and gives up on the host tier when none are left.
// Thread safety: every member may be called from any thread. One mutex guards the index;
// copies, checksums and file reads/writes run outside it. The cache never calls the BlockStore
// while holding that mutex, so a store may call evictHost() from inside allocateBlock() (not
// while holding a non-recursive lock of its own: evictHost() calls releaseBlock()). The store
// must outlive the cache and every handle it returned. One process per folder.
class FeatureCache {
public:
    explicit FeatureCache(FeatureCacheSettings s, BlockStore *hostStore = nullptr);
    ~FeatureCache();
    FeatureCache(const FeatureCache &) = delete;
    FeatureCache &operator=(const FeatureCache &) = delete;

    // key: 32 hex chars (XXH3-128 of preprocessed pixels + vision model identity +
    // preprocessing); anything else throws mgd::Error. A hit in a lower tier is promoted to the
    // host tier (and the device tier when on CUDA).
    FeatureHandle lookup(const std::string &key);
    // Stores value (any dtype/shape, CPU or CUDA) in the memory tier(s) and writes it to disk.
    // The handle holds value itself (contiguous), tier "new".
    FeatureHandle insert(const std::string &key, const at::Tensor &value);
    bool contains(const std::string &key) const; // any tier, no counters, no promotion
    // Frees at least `bytes` of host-tier storage by evicting unpinned entries (the pool asks
    // this when it is full); returns bytes freed (less when too much is pinned).
    uint64_t evictHost(uint64_t bytes);
    void applySettings(const FeatureCacheSettings &s); // new budgets/policy; evicts to fit
    void clear(); // every unpinned entry of every tier, and the folder's other entry files
    FeatureCacheStats stats() const;
    // Why the disk tier is off or last failed to write ("" when fine); for the settings page.
    std::string diskError() const;

    struct Core;

private:
    std::shared_ptr<Core> core_;
};

} // namespace mgd
