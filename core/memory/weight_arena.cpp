#include "core/memory/weight_arena.h"

#include <ATen/ATen.h>

#include <cstring>

#include "core/kernels/gemv.h"

namespace mgd {

WeightArena::WeightArena(size_t bytes) : capacity_(bytes) {
    if (bytes) base_.reset(static_cast<char *>(kernels::allocAligned(bytes)), kernels::freeAligned);
}

void *WeightArena::take(size_t bytes) {
    const size_t need = slot(bytes);
    if (!base_ || used_ + need > capacity_) return nullptr;
    void *p = base_.get() + used_;
    used_ += need;
    return p;
}

at::Tensor WeightArena::adopt(const at::Tensor &t) {
    if (!t.defined() || !t.device().is_cpu() || !base_) return t;
    const size_t need = slot(t.nbytes());
    if (used_ + need > capacity_) return t;
    const at::Tensor src = t.contiguous();
    char *dst = base_.get() + used_;
    std::memcpy(dst, src.data_ptr(), src.nbytes());
    used_ += need;
    // The deleter owns a reference to the arena: the block lives while any view of it does.
    return at::from_blob(
        dst, t.sizes(), [keep = base_](void *) {}, t.options().requires_grad(false));
}

} // namespace mgd
