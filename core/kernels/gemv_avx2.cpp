// AVX2 + FMA + F16C kernels (KernelLevel::Avx2; also Q8 on AVX-512 CPUs without VNNI). Target
// attributes per function, not global -m flags. 4 rows at a time share each load of x; column
// tails are finished in scalar code.
#include "core/kernels/gemv_impl.h"

#if defined(__x86_64__)
// GCC 12 warns that the intrinsics' own _mm*_undefined_* placeholders are uninitialized (GCC bug
// 105593): silence it for the header only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#define MGD_T2 __attribute__((target("avx2,fma,f16c")))
#define MGD_UNROLL _Pragma("GCC unroll 8")

namespace mgd::kernels::detail::avx2 {

namespace {

constexpr int kRows = 4;

MGD_T2 inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// bf16 pairs in 32-bit lanes: the even element is the low half, the odd one the high half.
MGD_T2 inline __m256 evenBf16(__m256i v) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
MGD_T2 inline __m256 oddBf16(__m256i v) {
    return _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
}

template <int NR>
MGD_T2 inline void stepBf16(const uint16_t *w, int64_t stride, __m256 xe, __m256 xo, __m256 *a0, __m256 *a1) {
    MGD_UNROLL
    for (int r = 0; r < NR; ++r) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(w + r * stride));
        a0[r] = _mm256_fmadd_ps(evenBf16(v), xe, a0[r]);
        a1[r] = _mm256_fmadd_ps(oddBf16(v), xo, a1[r]);
    }
}

template <int NR>
MGD_T2 void rowsBf16F32(const uint16_t *w, int64_t stride, const float *x, int64_t cols, float *out) {
    __m256 a0[NR], a1[NR];
    MGD_UNROLL
    for (int r = 0; r < NR; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
        const __m256 xa = _mm256_loadu_ps(x + c), xb = _mm256_loadu_ps(x + c + 8);
        // shuffle_ps works within 128-bit halves; the 64-bit permute puts the columns in order.
        const __m256 xe =
            _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(xa, xb, 0x88)), 0xd8));
        const __m256 xo =
            _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(xa, xb, 0xdd)), 0xd8));
        stepBf16<NR>(w + c, stride, xe, xo, a0, a1);
    }
    MGD_UNROLL
    for (int r = 0; r < NR; ++r) {
        float s = hsum(_mm256_add_ps(a0[r], a1[r]));
        for (int64_t k = c; k < cols; ++k) s += bf16ToFloat(w[r * stride + k]) * x[k];
        out[r] = s;
    }
}

template <int NR>
MGD_T2 void rowsBf16Bf16(const uint16_t *w, int64_t stride, const uint16_t *x, int64_t cols, float *out) {
    __m256 a0[NR], a1[NR];
    MGD_UNROLL
    for (int r = 0; r < NR; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x + c));
        stepBf16<NR>(w + c, stride, evenBf16(xv), oddBf16(xv), a0, a1);
    }
    MGD_UNROLL
    for (int r = 0; r < NR; ++r) {
        float s = hsum(_mm256_add_ps(a0[r], a1[r]));
        for (int64_t k = c; k < cols; ++k) s += bf16ToFloat(w[r * stride + k]) * bf16ToFloat(x[k]);
        out[r] = s;
    }
}

template <int NR>
MGD_T2 void rowsF32(const float *w, int64_t stride, const float *x, int64_t cols, float *out) {
    __m256 a0[NR], a1[NR];
    MGD_UNROLL
    for (int r = 0; r < NR; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
        const __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);
        MGD_UNROLL
        for (int r = 0; r < NR; ++r) {
            a0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w + r * stride + c), x0, a0[r]);
            a1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w + r * stride + c + 8), x1, a1[r]);
        }
    }
    MGD_UNROLL
    for (int r = 0; r < NR; ++r) {
        float s = hsum(_mm256_add_ps(a0[r], a1[r]));
        for (int64_t k = c; k < cols; ++k) s += w[r * stride + k] * x[k];
        out[r] = s;
    }
}

// One 32-byte group per step: |x| (unsigned) times sign(w, x) (signed) with maddubs, pairs
// summed again with madd: the exact int32 dot product (|x|, |w| <= 127, so the int16 pair sums
// never saturate). The group's combined scale (weight fp16 * activation fp32, 8 groups per
// block) is broadcast from a register with one permute.
template <int NR> MGD_T2 void rowsQ8(const PackedQ8 &w, int64_t r, const Q8Activation &a, float *out) {
    const int64_t groups = w.qStride / 32;
    const __m256i ones = _mm256_set1_epi16(1);
    const int8_t *q = w.row(r);
    const uint16_t *s = w.rowScales(r);
    __m256 acc[NR];
    MGD_UNROLL
    for (int i = 0; i < NR; ++i) acc[i] = _mm256_setzero_ps();
    for (int64_t g0 = 0; g0 < groups; g0 += 8) {
        const __m256 sx = _mm256_load_ps(a.scale.data() + g0);
        __m256 scale[NR];
        MGD_UNROLL
        for (int i = 0; i < NR; ++i)
            scale[i] = _mm256_mul_ps(_mm256_cvtph_ps(_mm_load_si128(
                                         reinterpret_cast<const __m128i *>(s + i * w.scaleStride + g0))),
                                     sx);
        const int64_t end = g0 + 8 < groups ? g0 + 8 : groups;
        __m256i idx = _mm256_setzero_si256();
        for (int64_t g = g0; g < end; ++g) {
            const __m256i xq = _mm256_load_si256(reinterpret_cast<const __m256i *>(a.q.data() + g * 32));
            const __m256i ax = _mm256_abs_epi8(xq);
            MGD_UNROLL
            for (int i = 0; i < NR; ++i) {
                const __m256i wv =
                    _mm256_load_si256(reinterpret_cast<const __m256i *>(q + i * w.qStride + g * 32));
                const __m256i d = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv, xq)), ones);
                acc[i] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_permutevar8x32_ps(scale[i], idx), acc[i]);
            }
            idx = _mm256_add_epi32(idx, _mm256_set1_epi32(1));
        }
    }
    MGD_UNROLL
    for (int i = 0; i < NR; ++i) out[i] = hsum(acc[i]);
}

template <class T, class X, class Fn4, class Fn1>
MGD_T2 inline void overRows(const T &w, const X *x, float *y, const float *bias, int64_t r0, int64_t r1,
                            Fn4 fn4, Fn1 fn1) {
    float out[kRows];
    int64_t r = r0;
    for (; r + kRows <= r1; r += kRows) {
        fn4(w.data + r * w.stride, w.stride, x, w.cols, out);
        for (int i = 0; i < kRows; ++i) y[r + i] = finish(out[i], bias, r + i);
    }
    for (; r < r1; ++r) {
        fn1(w.data + r * w.stride, w.stride, x, w.cols, out);
        y[r] = finish(out[0], bias, r);
    }
}

} // namespace

void gemvBf16F32(const PackedBf16 &w, const float *x, float *y, const float *bias, int64_t r0, int64_t r1) {
    overRows(w, x, y, bias, r0, r1, rowsBf16F32<kRows>, rowsBf16F32<1>);
}

void gemvBf16Bf16(const PackedBf16 &w, const uint16_t *x, float *y, const float *bias, int64_t r0,
                  int64_t r1) {
    overRows(w, x, y, bias, r0, r1, rowsBf16Bf16<kRows>, rowsBf16Bf16<1>);
}

void gemvF32(const PackedF32 &w, const float *x, float *y, const float *bias, int64_t r0, int64_t r1) {
    overRows(w, x, y, bias, r0, r1, rowsF32<kRows>, rowsF32<1>);
}

void gemvQ8(const PackedQ8 &w, const Q8Activation &x, float *y, const float *bias, int64_t r0, int64_t r1) {
    float out[kRows];
    int64_t r = r0;
    for (; r + kRows <= r1; r += kRows) {
        rowsQ8<kRows>(w, r, x, out);
        for (int i = 0; i < kRows; ++i) y[r + i] = finish(out[i], bias, r + i);
    }
    for (; r < r1; ++r) {
        rowsQ8<1>(w, r, x, out);
        y[r] = finish(out[0], bias, r);
    }
}

} // namespace mgd::kernels::detail::avx2

#endif
