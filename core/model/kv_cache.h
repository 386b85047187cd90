#pragma once
// Attention key/value state of one conversation. Invariants: positions [0, length) of every
// layer hold the keys/values of the first `length` sequence positions; truncate() lowers
// length and, with a pool, returns the blocks past it; storage is owned (moved, never copied).
// Two storages: contiguous per-layer tensors grown geometrically (no pool), or fixed-size
// blocks of `blockPositions` positions from the MemoryPool (no fragmentation, budgeted).
#include <ATen/core/Tensor.h>
#include <functional>
#include <utility>
#include <vector>

namespace mgd {

class MemoryPool;

struct KvShape {
    int64_t layers = 0, kvHeads = 0, headDim = 0, maxPositions = 0;
    at::ScalarType dtype = at::kFloat; // what attention computes in
    at::Device device = at::kCPU;
    // Stored as int8 with one float scale per head and position (over headDim), dequantized
    // to `dtype` when attention reads it: 1/4 of float32's bytes, about 1/2 of bfloat16's.
    bool int8 = false;
};

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
    void usePool(MemoryPool *pool, int64_t blockPositions, std::function<bool()> onExhausted);
    static int64_t blockBytes(const KvShape &s, int64_t blockPositions);
    // Bytes one position takes in every layer, keys and values (scales included).
    static int64_t bytesPerPosition(const KvShape &s);
    // Keep the state as int8 from now on (the cache must be empty).
    void setInt8(bool on);

    // Makes room for `positions` positions; throws mgd::Error when the pool is exhausted.
    void reserve(const KvShape &s, int64_t positions);
    // k, v: [kvHeads, n, headDim] for positions [start, start + n).
    void write(int64_t layer, int64_t start, const at::Tensor &k, const at::Tensor &v);
    // Views (K, V), each [kvHeads, len, headDim], covering positions [0, total) in order.
    std::vector<std::pair<at::Tensor, at::Tensor>> segments(int64_t layer, int64_t total) const;
    // Positions [0, length()) of every layer, as [2, kvHeads, length, headDim] CPU tensors
    // (what a saved conversation keeps).
    std::vector<at::Tensor> exportState() const;
    // Replaces the state with `layers` (as exportState() gives them): length() becomes their
    // positions. Throws mgd::Error when the pool has no room (the cache is then empty).
    void importState(const KvShape &s, const std::vector<at::Tensor> &layers);
    // Copies the first n positions of `other` (same shape) into this cache.
    void copyPrefixFrom(const KvCache &other, int64_t n);

    // Positions [0, length()) hold valid keys/values.
    int64_t length() const { return length_; }
    // Marks positions [length(), n) as written (after write() filled them in every layer).
    void commit(int64_t n);
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
    void addBlock(int64_t layer, int32_t block);
    int64_t capacity() const;
};

} // namespace mgd
