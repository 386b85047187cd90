#include "core/memory/memory_pool.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>

#include "core/kernels/gemv.h"
#include "core/metrics/metrics.h"
#include "core/util/error.h"

namespace mgd {

namespace {

constexpr uint64_t kMiB = 1024 * 1024;

std::string mib(uint64_t bytes) {
    return std::to_string((bytes + kMiB / 2) / kMiB) + " MiB";
}

} // namespace

MemoryPool::MemoryPool(uint64_t capacityBytes, uint64_t blockBytes, const std::string &device)
    : blockBytes_(blockBytes) {
    if (blockBytes == 0) throw Error("memory pool: the block size must be positive");
    const uint64_t blocks = capacityBytes / blockBytes;
    if (blocks == 0)
        throw Error("memory pool: a budget of " + std::to_string(capacityBytes) +
                    " bytes holds no block of " + std::to_string(blockBytes) +
                    " bytes; raise the memory pool size");
    if (blocks > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))
        throw Error("memory pool: " + std::to_string(blocks) + " blocks are too many; use larger blocks");
    const uint64_t bytes = blocks * blockBytes;
    try {
        // Not touched here: on CPU the pages are committed as blocks are first written, so a
        // large budget costs nothing at start-up; the budget is enforced by the block count.
        const c10::Device dev(device);
        if (dev.is_cpu()) {
            // 2 MiB aligned and marked for transparent huge pages: attention reads a KV block
            // per head in 4 KiB runs spread over the arena, which on 4 KiB pages costs a page
            // walk each (decode measured 15% slower with 16-position blocks).
            void *p = kernels::allocAligned(bytes);
            arena_ = at::from_blob(
                p, {static_cast<int64_t>(bytes)}, [](void *q) { kernels::freeAligned(q); },
                at::TensorOptions().dtype(at::kByte));
        } else {
            arena_ =
                at::empty({static_cast<int64_t>(bytes)}, at::TensorOptions().dtype(at::kByte).device(dev));
        }
    } catch (const std::exception &e) {
        std::string why = e.what();
        why = why.substr(0, why.find('\n')); // c10 errors append a long backtrace
        throw Error("memory pool: cannot allocate " + mib(bytes) + " on device '" + device + "': " + why +
                    "; lower the memory pool size or choose another device");
    }
    base_ = static_cast<uint8_t *>(arena_.data_ptr());
    blocks_ = static_cast<int32_t>(blocks);
    state_.assign(blocks, kFree);
    free_.reserve(blocks);
    // Reverse order so blocks are handed out 0, 1, 2, ... (front of the arena first).
    for (int32_t b = blocks_ - 1; b >= 0; --b) free_.push_back(b);
}

MemoryPool::~MemoryPool() = default;

int32_t MemoryPool::allocate(PoolUse use) {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) {
        ++allocFailures_;
        return -1;
    }
    const int32_t b = free_.back();
    free_.pop_back();
    state_[b] = use == PoolUse::Kv ? kKv : kFeature;
    (use == PoolUse::Kv ? kvBlocks_ : featureBlocks_)++;
    ++allocations_;
    highWaterBlocks_ = std::max(highWaterBlocks_, kvBlocks_ + featureBlocks_);
    return b;
}

void MemoryPool::checkAllocated(int32_t block, const char *what) const {
    if (block < 0 || block >= blocks_)
        throw Error(std::string("memory pool: ") + what + " of block " + std::to_string(block) +
                    ", outside [0, " + std::to_string(blocks_) + ")");
    if (state_[block] == kFree)
        throw Error(std::string("memory pool: ") + what + " of block " + std::to_string(block) +
                    ", which is free (double release or use after release)");
}

void MemoryPool::release(int32_t block) {
    std::lock_guard<std::mutex> lock(mu_);
    checkAllocated(block, "release");
    (state_[block] == kKv ? kvBlocks_ : featureBlocks_)--;
    state_[block] = kFree;
    free_.push_back(block);
    ++releases_;
}

at::Tensor MemoryPool::view(int32_t block, at::IntArrayRef shape, at::ScalarType dtype) const {
    {
        std::lock_guard<std::mutex> lock(mu_);
        checkAllocated(block, "view");
    }
    int64_t numel = 1;
    for (int64_t d : shape) {
        if (d < 0) throw Error("memory pool: view with a negative dimension");
        numel *= d;
    }
    const uint64_t elem = c10::elementSize(dtype);
    const uint64_t offset = static_cast<uint64_t>(block) * blockBytes_;
    if (static_cast<uint64_t>(numel) > blockBytes_ / elem)
        throw Error("memory pool: a view of " + std::to_string(numel) + " elements of " +
                    std::to_string(elem) + " bytes does not fit a block of " + std::to_string(blockBytes_) +
                    " bytes");
    if (offset % elem != 0)
        throw Error("memory pool: block " + std::to_string(block) + " is not aligned for " +
                    std::to_string(elem) +
                    "-byte elements; use a block size that is a "
                    "multiple of 64");
    // Slicing the arena (rather than from_blob) keeps its storage alive through the view.
    return arena_.narrow(0, static_cast<int64_t>(offset), numel * static_cast<int64_t>(elem))
        .view(dtype)
        .view(shape);
}

PoolUse MemoryPool::useOf(int32_t block) const {
    std::lock_guard<std::mutex> lock(mu_);
    checkAllocated(block, "use query");
    return state_[block] == kKv ? PoolUse::Kv : PoolUse::Feature;
}

PoolStats MemoryPool::stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    PoolStats s;
    s.blockBytes = blockBytes_;
    s.blocks = static_cast<uint64_t>(blocks_);
    s.capacityBytes = s.blocks * blockBytes_;
    s.kvBytes = kvBlocks_ * blockBytes_;
    s.featureBytes = featureBlocks_ * blockBytes_;
    s.usedBytes = s.kvBytes + s.featureBytes;
    s.highWaterBytes = highWaterBlocks_ * blockBytes_;
    s.freeBlocks = free_.size();
    s.allocations = allocations_;
    s.releases = releases_;
    s.allocFailures = allocFailures_;
    return s;
}

uint8_t *MemoryPool::blockData(int32_t block) {
    std::lock_guard<std::mutex> lock(mu_);
    checkAllocated(block, "data access");
    return base_ + static_cast<uint64_t>(block) * blockBytes_;
}

uint64_t MemoryPool::defaultCapacity(const std::string &device) {
    bool cuda = false;
    try {
        cuda = c10::Device(device).is_cuda();
    } catch (const std::exception &) {
        throw Error("memory pool: unknown device '" + device + "' (use \"cpu\" or \"cuda\")");
    }
    uint64_t available = 0;
    if (cuda) {
        uint64_t freeBytes = 0, totalBytes = 0;
        if (cudaMemoryInfo(freeBytes, totalBytes)) available = freeBytes;
    } else {
        available = availableHostBytes();
    }
    if (available == 0) return 64 * kMiB;
    // A quarter leaves room for weights and activations; the floor keeps a small machine
    // usable, the ceiling (which wins over the floor) never claims more than half of it.
    uint64_t cap = std::max(available / 4, 64 * kMiB);
    cap = std::min(cap, available / 2);
    return cap >= kMiB ? cap / kMiB * kMiB : cap;
}

} // namespace mgd
