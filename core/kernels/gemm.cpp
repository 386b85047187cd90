// Dispatch of the few-row products (gemm.h) and their plain-loop fallback.
#include "core/kernels/gemm.h"

#include <string>

#include "core/kernels/cpu_features.h"
#include "core/kernels/gemv_impl.h"
#include "core/util/error.h"

namespace mgd::kernels {

namespace {

void check(const char *what, int64_t rows, int64_t m, int64_t cols, int64_t xStride, int64_t r0, int64_t r1) {
    if (m < 0 || xStride < cols || r0 < 0 || r1 < r0 || r1 > rows)
        throw Error(std::string(what) + ": bad shape (m " + std::to_string(m) + ", rows [" +
                    std::to_string(r0) + ", " + std::to_string(r1) + ") of " + std::to_string(rows) + ")");
}

inline float toFloat(float v) {
    return v;
}
inline float toFloat(uint16_t v) {
    return detail::bf16ToFloat(v);
}

template <class W, class X>
void plain(const W *w, int64_t wStride, int64_t cols, const X *x, int64_t m, int64_t xStride, float *y,
           int64_t yStride, const float *bias, int64_t r0, int64_t r1) {
    for (int64_t i = 0; i < m; ++i)
        for (int64_t r = r0; r < r1; ++r) {
            float s = 0;
            for (int64_t c = 0; c < cols; ++c) s += toFloat(w[r * wStride + c]) * toFloat(x[i * xStride + c]);
            y[i * yStride + r] = s + (bias ? bias[r] : 0.0f);
        }
}

} // namespace

bool gemmAvailable() {
#if defined(__x86_64__)
    return activeLevel() == KernelLevel::Avx512;
#else
    return false;
#endif
}

void gemmF32(const PackedF32 &w, const float *x, int64_t m, int64_t xStride, float *y, int64_t yStride,
             const float *bias, int64_t r0, int64_t r1) {
    check("gemmF32", w.rows, m, w.cols, xStride, r0, r1);
#if defined(__x86_64__)
    if (gemmAvailable()) return detail::avx512::gemmF32(w, x, m, xStride, y, yStride, bias, r0, r1);
#endif
    plain(w.data, w.stride, w.cols, x, m, xStride, y, yStride, bias, r0, r1);
}

void gemmBf16(const PackedBf16 &w, const uint16_t *x, int64_t m, int64_t xStride, float *y, int64_t yStride,
              const float *bias, int64_t r0, int64_t r1) {
    check("gemmBf16", w.rows, m, w.cols, xStride, r0, r1);
#if defined(__x86_64__)
    if (gemmAvailable()) return detail::avx512::gemmBf16(w, x, m, xStride, y, yStride, bias, r0, r1);
#endif
    plain(w.data, w.stride, w.cols, x, m, xStride, y, yStride, bias, r0, r1);
}

} // namespace mgd::kernels
