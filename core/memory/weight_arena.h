#pragma once
// One block of transparent huge pages holding a model's large matrices. Decode streams every
// matrix once per token; read through a file mapping (4 KiB pages) the bf16 kernel reached 0.62
// of a plain read on this VM, from huge pages 0.79-1.0 (page walks). A matrix is copied in at
// load and its mapped pages dropped by the caller, so the process still holds one copy.
#include <ATen/core/Tensor.h>

#include <cstddef>
#include <memory>

namespace mgd {

class WeightArena {
public:
    WeightArena() = default;
    // Room for `bytes` of tensors (each placed at a 64-byte boundary: count that in).
    explicit WeightArena(size_t bytes);

    // Padded size of a tensor of `bytes` in the arena.
    static size_t slot(size_t bytes) { return (bytes + 63) / 64 * 64; }

    // A contiguous copy of t in the arena, same shape and dtype; it keeps the arena alive. A
    // tensor that does not fit, is not on the CPU, or an arena of size 0: t itself.
    at::Tensor adopt(const at::Tensor &t);
    // `bytes` of raw room (64-byte aligned), or null when it does not fit; owner() keeps it alive.
    void *take(size_t bytes);
    std::shared_ptr<const void> owner() const { return base_; }
    size_t used() const { return used_; }
    size_t capacity() const { return capacity_; }

private:
    std::shared_ptr<char> base_;
    size_t used_ = 0, capacity_ = 0;
};

} // namespace mgd
