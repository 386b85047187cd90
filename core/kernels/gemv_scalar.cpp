// Portable reference kernels (KernelLevel::Scalar): plain C++, for CPUs without AVX2 and as the
// baseline the SIMD kernels are tested against.
#include "core/kernels/gemv_impl.h"

namespace mgd::kernels::detail::scalar {

namespace {

// Eight partial sums: fewer dependent adds, and the compiler may vectorize them.
template <class W, class X, class ToFloatW, class ToFloatX>
float dot(const W *w, const X *x, int64_t n, ToFloatW fw, ToFloatX fx) {
    float acc[8] = {};
    int64_t c = 0;
    for (; c + 8 <= n; c += 8)
        for (int k = 0; k < 8; ++k) acc[k] += fw(w[c + k]) * fx(x[c + k]);
    for (; c < n; ++c) acc[0] += fw(w[c]) * fx(x[c]);
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

float same(float v) {
    return v;
}

} // namespace

void gemvBf16F32(const PackedBf16 &w, const float *x, float *y, const float *bias, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
        y[r] = finish(dot(w.data + r * w.stride, x, w.cols, bf16ToFloat, same), bias, r);
}

void gemvBf16Bf16(const PackedBf16 &w, const uint16_t *x, float *y, const float *bias, int64_t r0,
                  int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
        y[r] = finish(dot(w.data + r * w.stride, x, w.cols, bf16ToFloat, bf16ToFloat), bias, r);
}

void gemvF32(const PackedF32 &w, const float *x, float *y, const float *bias, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
        y[r] = finish(dot(w.data + r * w.stride, x, w.cols, same, same), bias, r);
}

// Exact int32 dot per group, then scaled by (weight scale * activation scale) as the SIMD
// kernels do.
void gemvQ8(const PackedQ8 &w, const Q8Activation &x, float *y, const float *bias, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
        const int8_t *blk = w.block(r);
        const int64_t i = r % PackedQ8::kBlockRows;
        float acc = 0;
        for (int64_t g = 0; g < w.groups; ++g) {
            const int8_t *q = blk + q8GroupOffset(i, g), *xq = x.q.data() + g * 32;
            int32_t d = 0;
            for (int k = 0; k < 32; ++k) d += int32_t(q[k]) * int32_t(xq[k]);
            uint16_t h;
            std::memcpy(&h, blk + q8ScaleOffset(i, g), 2);
            acc += (halfToFloat(h) * x.scale.data()[g]) * float(d);
        }
        y[r] = finish(acc, bias, r);
    }
}

bool quantizeActivation(const float *x, int64_t cols, int8_t *q, float *scale, int32_t *sum) {
    bool ok = true;
    for (int64_t g = 0; g * 32 < cols; ++g) {
        const int64_t n = cols - g * 32 < 32 ? cols - g * 32 : 32;
        ok &= quantizeGroup(x + g * 32, n, q + g * 32, scale + g, sum + g);
    }
    return ok;
}

} // namespace mgd::kernels::detail::scalar
