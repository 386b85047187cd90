#pragma once
// Products of a few rows of activations with a weight matrix, Y = X W^T (+ bias): a short
// prefill (a follow-up question, a new conversation's question: 2-64 tokens). A general GEMM
// repacks the weights on every call, which for a few rows costs more than the product (8-12
// ms per token here against 4 at 100 tokens); these read the weights in place, once per call,
// in tiles of 4 weight rows x 6 activation rows held in registers while the activations stay
// in cache. Like the gemv kernels they compute the weight rows [r0, r1) so callers split rows
// across threads, and never allocate.
#include <cstdint>

#include "core/kernels/gemv.h"

namespace mgd::kernels {

// Whether the tiled kernels run on this CPU (AVX-512); without them use a general GEMM.
bool gemmAvailable();

// y[i * yStride + r] = x[i * xStride + :] . w[r, :] (+ bias[r]) for i < m and r in [r0, r1).
// Accumulated in fp32 (bf16 x bf16 with AVX512-BF16 vdpbf16ps where present, as gemvBf16).
// Off gemmAvailable(), a plain loop (for tests).
void gemmF32(const PackedF32 &w, const float *x, int64_t m, int64_t xStride, float *y, int64_t yStride,
             const float *bias, int64_t r0, int64_t r1);
void gemmBf16(const PackedBf16 &w, const uint16_t *x, int64_t m, int64_t xStride, float *y, int64_t yStride,
              const float *bias, int64_t r0, int64_t r1);

} // namespace mgd::kernels
