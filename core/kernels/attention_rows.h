#pragma once
// The two row loops of one-token attention over a KV block, where keys and values are rows of
// `n` values `stride` elements apart: scores (one dot product per key row) and the weighted sum
// of value rows. Dispatched at run time like gemv.h (cpu_features.h: activeLevel()); no
// allocation. int8 rows carry one fp32 scale per row.
#include <cstdint>

namespace mgd::kernels {

// out[t] = sum_d k[t * stride + d] * q[d] (* scale[t] for int8), t in [0, rows).
void dotRowsBf16(const uint16_t *k, int64_t stride, int64_t rows, int64_t n, const float *q, float *out);
// The same with q given as bf16 (bits): vdpbf16ps on the keys as stored where the CPU has
// AVX512-BF16 (a bf16 model's q is bf16; converting per call cost a quarter of the scores' time).
void dotRowsBf16(const uint16_t *k, int64_t stride, int64_t rows, int64_t n, const uint16_t *q, float *out);
void dotRowsF32(const float *k, int64_t stride, int64_t rows, int64_t n, const float *q, float *out);
void dotRowsI8(const int8_t *k, int64_t stride, int64_t rows, int64_t n, const float *scale, const float *q,
               float *out);

// out[d] += sum_t p[t] * v[t * stride + d] (* scale[t] for int8), d in [0, n).
void addRowsBf16(const uint16_t *v, int64_t stride, int64_t rows, int64_t n, const float *p, float *out);
void addRowsF32(const float *v, int64_t stride, int64_t rows, int64_t n, const float *p, float *out);
void addRowsI8(const int8_t *v, int64_t stride, int64_t rows, int64_t n, const float *scale, const float *p,
               float *out);

// row[t] = exp(scale * row[t] - m) / sum, m = max_t scale * row[t]: the attention weights of one
// head. The SIMD levels use their own exp (2^k times a degree-6 polynomial, within ~2e-7
// relative; weights below exp(-87) come out as ~1e-38 instead of denormals), the scalar one
// std::exp.
void softmaxRow(float *row, int64_t n, float scale);

} // namespace mgd::kernels
