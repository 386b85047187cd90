#pragma once
// The memory pool: one arena per device, allocated once, cut into fixed-size blocks that hold
// conversation KV state and cached image features. Fixed-size blocks make allocate/release
// O(1) (a free list) and fragmentation impossible; the arena size is the memory budget.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "core/memory/block_store.h"

namespace mgd {

enum class PoolUse { Kv, Feature };

struct PoolStats {
    uint64_t capacityBytes = 0, usedBytes = 0, highWaterBytes = 0, kvBytes = 0, featureBytes = 0,
             blockBytes = 0, blocks = 0, freeBlocks = 0, allocations = 0, releases = 0,
             allocFailures = 0;
};

// Invariants (checked by tests/core/memory/test_memory_pool.cpp):
//  1. Block b owns the arena bytes [b * blockBytes, (b + 1) * blockBytes); blocks never overlap
//     and every block lies inside the arena (capacityBytes == blocks * blockBytes).
//  2. Every block is in exactly one state: free (on the free list, exactly once) or allocated
//     for one PoolUse. freeBlocks + allocated blocks == blocks.
//  3. usedBytes == allocated blocks * blockBytes == kvBytes + featureBytes <= capacityBytes;
//     highWaterBytes is the maximum usedBytes ever reached.
//  4. allocations - releases == allocated blocks; a failed allocation changes nothing but
//     allocFailures.
//  5. The arena is never reallocated, so a view or blockData pointer stays valid until its
//     block is released (and the pool destroyed); releasing a free block is an error.
// All members are thread-safe (one mutex; every operation is O(1) under it).
class MemoryPool : public BlockStore {
public:
    // capacityBytes is rounded down to whole blocks. The arena is one kByte tensor on `device`
    // ("cpu" or "cuda[:n]"); throws mgd::Error when it cannot be allocated. A view of dtype T
    // needs each block's offset to be a multiple of sizeof(T): choose blockBytes as a multiple
    // of 64 so any dtype fits and blocks do not share cache lines.
    MemoryPool(uint64_t capacityBytes, uint64_t blockBytes, const std::string &device = "cpu");
    ~MemoryPool() override;
    MemoryPool(const MemoryPool &) = delete;
    MemoryPool &operator=(const MemoryPool &) = delete;

    int32_t allocate(PoolUse use); // -1 when exhausted (counted in allocFailures)
    void release(int32_t block);   // a free or out-of-range block is an mgd::Error
    // A view into the arena (no copy) of an allocated block; numel * element size must fit.
    at::Tensor view(int32_t block, at::IntArrayRef shape, at::ScalarType dtype) const;
    PoolUse useOf(int32_t block) const;
    PoolStats stats() const;
    const at::Tensor &arena() const { return arena_; }

    // BlockStore, for the feature cache's host tier: blocks allocated as PoolUse::Feature.
    // blockData is a host pointer only on a CPU pool (a device pointer on CUDA).
    int32_t allocateBlock() override { return allocate(PoolUse::Feature); }
    void releaseBlock(int32_t block) override { release(block); }
    size_t blockBytes() const override { return static_cast<size_t>(blockBytes_); }
    uint8_t *blockData(int32_t block) override;

    // A default budget: a quarter of the memory available now (MemAvailable on CPU, free
    // device memory on CUDA), clamped to [64 MiB, half of it]. When the free device memory
    // cannot be read, 64 MiB.
    static uint64_t defaultCapacity(const std::string &device);

private:
    enum : uint8_t { kFree = 0, kKv = 1, kFeature = 2 };
    void checkAllocated(int32_t block, const char *what) const; // caller holds mu_

    at::Tensor arena_;
    uint8_t *base_ = nullptr;
    uint64_t blockBytes_ = 0;
    int32_t blocks_ = 0;

    mutable std::mutex mu_;
    std::vector<int32_t> free_;  // stack of free block ids
    std::vector<uint8_t> state_; // per block: kFree, kKv or kFeature
    uint64_t kvBlocks_ = 0, featureBlocks_ = 0, highWaterBlocks_ = 0;
    uint64_t allocations_ = 0, releases_ = 0, allocFailures_ = 0;
};

} // namespace mgd
