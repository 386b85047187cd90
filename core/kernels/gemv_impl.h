#pragma once
// The per-instruction-set kernels behind gemv.h (internal: gemv.cpp dispatches). Every gemv
// computes rows [r0, r1), y and bias indexed by row, bias may be null.
#include <cstdint>
#include <cstring>

#include "core/kernels/cpu_features.h"
#include "core/kernels/gemv.h"

namespace mgd::kernels::detail {

inline float bf16ToFloat(uint16_t h) {
    const uint32_t bits = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

inline float finish(float dot, const float *bias, int64_t r) {
    return bias ? dot + bias[r] : dot;
}

// Round to nearest even for |v| < 2^22 in plain arithmetic, as cvtps2dq does (no -ffast-math here).
inline float roundNearest(float v) {
    constexpr float kMagic = 12582912.0f; // 1.5 * 2^23
    return (v + kMagic) - kMagic;
}

// One activation group of n <= 32 values (zero-padded to 32): q = round(x * inv), inv = 127 /
// maxabs, scale = maxabs / 127. |x * inv| <= 127 * (1 + 2^-23) rounds to at most 127: no clamp.
// Every level computes exactly this, so the quantized activation does not depend on the level.
// False when a value is not finite.
inline bool quantizeGroup(const float *x, int64_t n, int8_t *q, float *scale, int32_t *sum) {
    float maxAbs = 0;
    bool finite = true;
    for (int64_t k = 0; k < n; ++k) {
        const float a = x[k] < 0 ? -x[k] : x[k];
        maxAbs = a > maxAbs ? a : maxAbs;
        finite &= a <= 3.4028234663852886e38f; // false for NaN too
    }
    const float inv = maxAbs > 0 ? 127 / maxAbs : 0;
    int32_t s = 0;
    for (int64_t k = 0; k < 32; ++k) {
        q[k] = k < n ? static_cast<int8_t>(roundNearest(x[k] * inv)) : 0;
        s += q[k];
    }
    *scale = maxAbs / 127;
    *sum = s;
    return finite;
}

// PackedQ8 layout (gemv.h): byte offsets within a block of row i's group g and of its fp16 scale.
inline int64_t q8GroupOffset(int64_t i, int64_t g) {
    const int64_t gi = g % PackedQ8::kSuperGroups;
    return g / PackedQ8::kSuperGroups * PackedQ8::kSuperBytes + PackedQ8::kScaleBytes + gi / 2 * 256 +
           i * 64 + gi % 2 * 32;
}
inline int64_t q8ScaleOffset(int64_t i, int64_t g) {
    return g / PackedQ8::kSuperGroups * PackedQ8::kSuperBytes + i * 32 + g % PackedQ8::kSuperGroups * 2;
}

// Rows [r0, r1) of a PackedQ8: whole 4-row blocks with `block(r, out)`, rows outside them one by
// one with `one(r, out)`; both give bit-identical per-row results, so any split is deterministic.
template <class Block, class One>
inline void overQ8Rows(float *y, const float *bias, int64_t r0, int64_t r1, Block block, One one) {
    float out[PackedQ8::kBlockRows];
    int64_t r = r0;
    for (; r < r1 && (r % PackedQ8::kBlockRows || r + PackedQ8::kBlockRows > r1); ++r) {
        one(r, out);
        y[r] = finish(out[0], bias, r);
    }
    for (; r + PackedQ8::kBlockRows <= r1; r += PackedQ8::kBlockRows) {
        block(r, out);
        for (int i = 0; i < PackedQ8::kBlockRows; ++i) y[r + i] = finish(out[i], bias, r + i);
    }
    for (; r < r1; ++r) {
        one(r, out);
        y[r] = finish(out[0], bias, r);
    }
}

#define MGD_GEMV_DECLARE(ns)                                                                                 \
    namespace ns {                                                                                           \
    void gemvBf16F32(const PackedBf16 &w, const float *x, float *y, const float *bias, int64_t r0,           \
                     int64_t r1);                                                                            \
    void gemvBf16Bf16(const PackedBf16 &w, const uint16_t *x, float *y, const float *bias, int64_t r0,       \
                      int64_t r1);                                                                           \
    void gemvF32(const PackedF32 &w, const float *x, float *y, const float *bias, int64_t r0, int64_t r1);   \
    void gemvQ8(const PackedQ8 &w, const Q8Activation &x, float *y, const float *bias, int64_t r0,           \
                int64_t r1);                                                                                 \
    /* ceil(cols / 32) groups: q (32 each, zero-padded), scale and sum of q; false: x not finite */          \
    bool quantizeActivation(const float *x, int64_t cols, int8_t *q, float *scale, int32_t *sum);            \
    }

MGD_GEMV_DECLARE(scalar)
MGD_GEMV_DECLARE(avx2)
MGD_GEMV_DECLARE(avx512) // gemvQ8 needs AVX512-VNNI; gemvBf16Bf16 uses AVX512-BF16 if allowed
#undef MGD_GEMV_DECLARE

// The few-row products of gemm.h (gemm_avx512.cpp), weight rows [r0, r1).
namespace avx512 {
void gemmF32(const PackedF32 &w, const float *x, int64_t m, int64_t xStride, float *y, int64_t yStride,
             const float *bias, int64_t r0, int64_t r1);
void gemmBf16(const PackedBf16 &w, const uint16_t *x, int64_t m, int64_t xStride, float *y, int64_t yStride,
              const float *bias, int64_t r0, int64_t r1);
} // namespace avx512

} // namespace mgd::kernels::detail
