#pragma once
// Element-wise steps of one decoded token that would otherwise run in scalar code on one thread
// while the other cores wait: SiLU(gate) * up over the MLP's width, rounding to bf16. Dispatched at run time
// like gemv.h; no allocation.
#include <cstdint>

namespace mgd::kernels {

// out[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + exp(-x)). With roundBf16 each op's result
// is rounded to bf16 (nearest even) where ATen's bf16 ops store theirs: gate and up as read,
// silu, the product. The SIMD levels use their own exp (within ~2e-7 relative), the scalar one
// std::exp. out may alias gate or up.
void siluMulRow(const float *gate, const float *up, int64_t n, bool roundBf16, float *out);

// v[i] rounded to the nearest bf16 (even on ties), kept as float.
void roundBf16Row(float *v, int64_t n);
// The same rounding, stored as bf16 bits.
void toBf16Row(const float *v, int64_t n, uint16_t *out);

} // namespace mgd::kernels
