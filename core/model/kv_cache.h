#pragma once
// Attention key/value state of one conversation. Invariants: positions [0, length) of every
// layer hold the keys/values of the first `length` sequence positions; truncate() lowers
// length and, with a pool, returns the blocks past it; storage is owned (moved, never copied).
// Two storages: contiguous per-layer tensors grown geometrically (no pool), or fixed-size
// blocks of `blockPositions` positions from the MemoryPool (no fragmentation, budgeted).
// Pooled, the leading full blocks may be shared with other conversations (PrefixBlocks,
// reference counted, immutable); every block after them is this cache's own.
#include <ATen/core/Tensor.h>
#include <functional>
#include <utility>
#include <vector>

#include "core/util/hasher.h"

namespace mgd {

class MemoryPool;
class PrefixBlocks;

struct KvShape {
    int64_t layers = 0, kvHeads = 0, headDim = 0, maxPositions = 0;
    at::ScalarType dtype = at::kFloat; // what attention computes in
    at::Device device = at::kCPU;
    // Stored as int8 with one float scale per head and position (over headDim), dequantized
    // to `dtype` when attention reads it: 1/4 of float32's bytes, about 1/2 of bfloat16's.
    bool int8 = false;
};

// Raw, read-only views of positions for one-token attention: built without tensor ops, so a
// decode step pays nothing per block. k and v hold [kvHeads][len][headDim] elements of
// KvCache::element(), a head `headStride` elements after the previous; int8 state has one
// float scale per head and position (kScale/vScale, heads `scaleHeadStride` apart).
struct KvSpan {
    const void *k = nullptr, *v = nullptr;
    const float *kScale = nullptr, *vScale = nullptr;
    int64_t len = 0, headStride = 0, scaleHeadStride = 0;
};
enum class KvElement { F32, Bf16, Int8, Other };

class KvCache {
public:
    KvCache() = default;
    ~KvCache();
    KvCache(KvCache &&o) noexcept;
    KvCache &operator=(KvCache &&o) noexcept;
    KvCache(const KvCache &) = delete;
    KvCache &operator=(const KvCache &) = delete;

    // Stores blocks in `pool` from now on (the cache must be empty). onExhausted is asked to
    // free pool memory (evict features, idle conversations) when an allocation fails; it
    // returns false when nothing more can be freed.
    // `shared` (optional, on the same pool) is where full blocks are shared with other caches.
    void usePool(MemoryPool *pool, int64_t blockPositions, std::function<bool()> onExhausted,
                 PrefixBlocks *shared = nullptr);
    static int64_t blockBytes(const KvShape &s, int64_t blockPositions);
    // Bytes one position takes in every layer, keys and values (scales included).
    static int64_t bytesPerPosition(const KvShape &s);
    // Keep the state as int8 from now on (the cache must be empty).
    void setInt8(bool on);

    // Makes room for `positions` positions; throws mgd::Error when the pool is exhausted.
    void reserve(const KvShape &s, int64_t positions);
    // k, v: [kvHeads, n, headDim] for positions [start, start + n).
    void write(int64_t layer, int64_t start, const at::Tensor &k, const at::Tensor &v);
    // One position's keys and values, each [kvHeads, headDim] in the storage dtype, from raw
    // memory (the one-token step); fp32/bf16 storage only (int8 quantizes through write()).
    void writeOne(int64_t layer, int64_t pos, const void *k, const void *v);
    // Views (K, V), each [kvHeads, len, headDim], covering positions [0, total) in order.
    std::vector<std::pair<at::Tensor, at::Tensor>> segments(int64_t layer, int64_t total) const;
    // (K, V), each [kvHeads, total, headDim] in the compute dtype, in one piece: a view of
    // contiguous storage, else one copy of the blocks (int8 dequantized once), so attention
    // over many small blocks runs one matrix product, not one per block.
    std::pair<at::Tensor, at::Tensor> gathered(int64_t layer, int64_t total) const;
    // What spans() point at; Other (spans() unusable) for dtypes the decode kernels lack.
    KvElement element() const;
    // Spans covering positions [0, total) of `layer`, appended to `out` (CPU storage only).
    void spans(int64_t layer, int64_t total, std::vector<KvSpan> &out) const;
    int64_t kvHeads() const { return shape_.kvHeads; }
    int64_t headDim() const { return shape_.headDim; }
    // Positions [0, length()) of every layer, as [2, kvHeads, length, headDim] CPU tensors
    // (what a saved conversation keeps).
    std::vector<at::Tensor> exportState() const;
    // Replaces the state with `layers` (as exportState() gives them): length() becomes their
    // positions. Throws mgd::Error when the pool has no room (the cache is then empty).
    void importState(const KvShape &s, const std::vector<at::Tensor> &layers);
    // Copies positions [length(), n) of `other` (same shape, same prefix) into this cache.
    void copyFrom(const KvCache &other, int64_t n);

    // Sharing (pooled caches with a PrefixBlocks table). `hashes` are chainedBlockHashes of
    // the keys of this cache's positions. Hands every full block not yet shared to the table
    // (or, when the table holds an equal block already, uses that one and frees its own).
    void shareFullBlocks(const std::vector<Digest128> &hashes);
    // Starts an empty cache from the leading blocks among hashes[0, maxBlocks) that the table
    // holds (references taken, nothing copied); returns the positions adopted.
    int64_t adoptSharedBlocks(const KvShape &s, const std::vector<Digest128> &hashes, int64_t maxBlocks);
    // Leading positions held in shared blocks (never written: truncate() copies the block a
    // later write would touch).
    int64_t sharedPositions() const { return static_cast<int64_t>(sharedHashes_.size()) * blockPositions_; }
    bool sharing() const { return pool_ && shared_; }
    const PrefixBlocks *sharedTable() const { return sharing() ? shared_ : nullptr; }
    int64_t blockPositions() const { return pool_ ? blockPositions_ : 0; }

    // Positions [0, length()) hold valid keys/values.
    int64_t length() const { return length_; }
    // Marks positions [length(), n) as written (after write() filled them in every layer).
    void commit(int64_t n);
    // Throws mgd::Error when a shared block must be copied (n inside it) and the pool has no
    // room; the cache then holds the whole blocks before it.
    void truncate(int64_t n);
    void clear() { truncate(0); }
    void release(); // frees all storage
    uint64_t bytes() const;
    bool pooled() const { return pool_ != nullptr; }

private:
    int64_t length_ = 0;
    KvShape shape_;
    bool int8_ = false;
    std::vector<at::Tensor> keys_, values_;           // contiguous: per layer [kvHeads, capacity, headDim]
    std::vector<at::Tensor> keyScales_, valueScales_; // int8: per layer [kvHeads, capacity, 1] float
    MemoryPool *pool_ = nullptr;
    int64_t blockPositions_ = 0;
    std::function<bool()> onExhausted_;
    std::vector<std::vector<int32_t>> blocks_;         // pooled: per layer, block ids
    std::vector<std::vector<at::Tensor>> blockViews_;  // [layer][i] -> [2, kvHeads, P, headDim]
    std::vector<std::vector<at::Tensor>> blockScales_; // int8: [layer][i] -> [2, kvHeads, P, 1] float
    PrefixBlocks *shared_ = nullptr;
    std::vector<Digest128> sharedHashes_; // names of blocks [0, size) (shared, not owned)
    void addBlock(int64_t layer, int32_t block);
    void setBlock(int64_t layer, size_t index, int32_t block);
    int32_t allocateBlock(int64_t positions); // waits on onExhausted; throws when exhausted
    void dropLastBlock();
    void unshareLastBlock();
    size_t blockCount() const { return blocks_.empty() ? 0 : blocks_[0].size(); }
    int64_t capacity() const;
};

} // namespace mgd
