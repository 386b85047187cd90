#pragma once
// The per-instruction-set kernels behind gemv.h (internal: gemv.cpp dispatches). Every function
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

#define MGD_GEMV_DECLARE(ns)                                                                                 \
    namespace ns {                                                                                           \
    void gemvBf16F32(const PackedBf16 &w, const float *x, float *y, const float *bias, int64_t r0,           \
                     int64_t r1);                                                                            \
    void gemvBf16Bf16(const PackedBf16 &w, const uint16_t *x, float *y, const float *bias, int64_t r0,       \
                      int64_t r1);                                                                           \
    void gemvF32(const PackedF32 &w, const float *x, float *y, const float *bias, int64_t r0, int64_t r1);   \
    void gemvQ8(const PackedQ8 &w, const Q8Activation &x, float *y, const float *bias, int64_t r0,           \
                int64_t r1);                                                                                 \
    }

MGD_GEMV_DECLARE(scalar)
MGD_GEMV_DECLARE(avx2)
MGD_GEMV_DECLARE(avx512) // gemvQ8 needs AVX512-VNNI; gemvBf16Bf16 uses AVX512-BF16 if allowed
#undef MGD_GEMV_DECLARE

} // namespace mgd::kernels::detail
