// AVX2 + FMA + F16C kernels (KernelLevel::Avx2; also Q8 on AVX-512 CPUs without VNNI). Target
// attributes per function, not global -m flags. bf16/fp32 take one row at a time (one sequential
// stream per thread), Q8 one 4-row block; column tails are finished in scalar code.
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

MGD_T2 inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// 8 bf16 -> exact fp32: zero-extend to 32 bits, shift into the high half (x stays in order).
MGD_T2 inline __m256 load8(const uint16_t *p) {
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p))), 16));
}
MGD_T2 inline __m256 load8(const float *p) {
    return _mm256_loadu_ps(p);
}
inline float toFloat(uint16_t v) {
    return bf16ToFloat(v);
}
inline float toFloat(float v) {
    return v;
}

// One row of bf16 or fp32 weights against fp32 or bf16 x, widened to fp32 for FMA: 32 columns
// per iteration over 4 accumulators, the tail in scalar code. One row at a time keeps a thread's
// reads one sequential stream (see gemv_avx512.cpp).
template <class W, class X> MGD_T2 float rowFma(const W *w, const X *x, int64_t cols) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t c = 0;
    for (; c + 32 <= cols; c += 32) {
        a0 = _mm256_fmadd_ps(load8(w + c), load8(x + c), a0);
        a1 = _mm256_fmadd_ps(load8(w + c + 8), load8(x + c + 8), a1);
        a2 = _mm256_fmadd_ps(load8(w + c + 16), load8(x + c + 16), a2);
        a3 = _mm256_fmadd_ps(load8(w + c + 24), load8(x + c + 24), a3);
    }
    for (; c + 8 <= cols; c += 8) a0 = _mm256_fmadd_ps(load8(w + c), load8(x + c), a0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; c < cols; ++c) s += toFloat(w[c]) * toFloat(x[c]);
    return s;
}

// One 32-byte group per step: |x| (unsigned) times sign(w, x) (signed) with maddubs, pairs
// summed again with madd: the exact int32 dot product (|x|, |w| <= 127, so the int16 pair sums
// never saturate). The group's combined scale (weight fp16 * activation fp32, 8 groups per
// load) is broadcast from a register with one permute. NR = 4: the whole block of row r
// (r % 4 == 0), one sequential stream prefetched ahead; NR = 1: row r.
constexpr int64_t kQ8Prefetch = 3072;

template <int NR> MGD_T2 void rowsQ8(const PackedQ8 &w, int64_t r, const Q8Activation &a, float *out) {
    const __m256i ones = _mm256_set1_epi16(1);
    const int64_t row = r % PackedQ8::kBlockRows;
    const int8_t *blk = w.block(r);
    __m256 acc[NR];
    MGD_UNROLL
    for (int i = 0; i < NR; ++i) acc[i] = _mm256_setzero_ps();
    for (int64_t g0 = 0; g0 < 2 * w.pairs; g0 += PackedQ8::kSuperGroups, blk += PackedQ8::kSuperBytes) {
        const int64_t ng = 2 * w.pairs - g0 < 16 ? 2 * w.pairs - g0 : 16;
        for (int64_t h = 0; h < ng; h += 8) {
            const __m256 sx = _mm256_load_ps(a.scale.data() + g0 + h);
            __m256 scale[NR];
            MGD_UNROLL
            for (int i = 0; i < NR; ++i)
                scale[i] = _mm256_mul_ps(_mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i *>(
                                             blk + (row + i) * 32 + h * 2))),
                                         sx);
            __m256i idx = _mm256_setzero_si256();
            for (int64_t gi = h; gi < (ng < h + 8 ? ng : h + 8); ++gi) {
                const __m256i xq =
                    _mm256_load_si256(reinterpret_cast<const __m256i *>(a.q.data() + (g0 + gi) * 32));
                const __m256i ax = _mm256_abs_epi8(xq);
                const int8_t *q = blk + PackedQ8::kScaleBytes + gi / 2 * 256 + row * 64 + gi % 2 * 32;
                MGD_UNROLL
                for (int i = 0; i < NR; ++i) {
                    if (NR > 1 && gi % 2 == 0)
                        _mm_prefetch(reinterpret_cast<const char *>(q + kQ8Prefetch + i * 64), _MM_HINT_T0);
                    const __m256i wv = _mm256_load_si256(reinterpret_cast<const __m256i *>(q + i * 64));
                    const __m256i d =
                        _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv, xq)), ones);
                    acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_permutevar8x32_ps(scale[i], idx),
                                             acc[i]);
                }
                idx = _mm256_add_epi32(idx, _mm256_set1_epi32(1));
            }
        }
    }
    MGD_UNROLL
    for (int i = 0; i < NR; ++i) out[i] = hsum(acc[i]);
}

// Rows [r0, r1) of row-major weights, one at a time.
template <class T, class X, class Fn>
MGD_T2 inline void overRows(const T &w, const X *x, float *y, const float *bias, int64_t r0, int64_t r1,
                            Fn fn) {
    for (int64_t r = r0; r < r1; ++r) y[r] = finish(fn(w.data + r * w.stride, x, w.cols), bias, r);
}

} // namespace

void gemvBf16F32(const PackedBf16 &w, const float *x, float *y, const float *bias, int64_t r0, int64_t r1) {
    overRows(w, x, y, bias, r0, r1, rowFma<uint16_t, float>);
}

void gemvBf16Bf16(const PackedBf16 &w, const uint16_t *x, float *y, const float *bias, int64_t r0,
                  int64_t r1) {
    overRows(w, x, y, bias, r0, r1, rowFma<uint16_t, uint16_t>);
}

void gemvF32(const PackedF32 &w, const float *x, float *y, const float *bias, int64_t r0, int64_t r1) {
    overRows(w, x, y, bias, r0, r1, rowFma<float, float>);
}

void gemvQ8(const PackedQ8 &w, const Q8Activation &x, float *y, const float *bias, int64_t r0, int64_t r1) {
    overQ8Rows(
        y, bias, r0, r1, [&](int64_t r, float *out) { rowsQ8<PackedQ8::kBlockRows>(w, r, x, out); },
        [&](int64_t r, float *out) { rowsQ8<1>(w, r, x, out); });
}

// Same arithmetic as quantizeGroup (the scalar reference), which also does the partial last group.
MGD_T2 bool quantizeActivation(const float *x, int64_t cols, int8_t *q, float *scale, int32_t *sum) {
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 maxFinite = _mm256_set1_ps(3.4028234663852886e38f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    bool ok = true;
    int64_t g = 0;
    for (; g * 32 + 32 <= cols; ++g) {
        __m256 v[4], m = _mm256_setzero_ps();
        int finite = 0xff;
        for (int k = 0; k < 4; ++k) {
            v[k] = _mm256_loadu_ps(x + g * 32 + 8 * k);
            const __m256 a = _mm256_and_ps(v[k], absMask);
            finite &= _mm256_movemask_ps(_mm256_cmp_ps(a, maxFinite, _CMP_LE_OQ));
            m = _mm256_max_ps(m, a);
        }
        ok &= finite == 0xff;
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float maxAbs = _mm_cvtss_f32(h);
        const __m256 inv = _mm256_set1_ps(maxAbs > 0 ? 127 / maxAbs : 0);
        __m256i i[4];
        for (int k = 0; k < 4; ++k) i[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], inv));
        // packs work within 128-bit halves: the permute restores column order.
        const __m256i bytes =
            _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(q + g * 32),
                            _mm256_permutevar8x32_epi32(bytes, order));
        const __m256i s = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
        scale[g] = maxAbs / 127;
        sum[g] = _mm_cvtsi128_si32(t);
    }
    if (g * 32 < cols) ok &= quantizeGroup(x + g * 32, cols - g * 32, q + g * 32, scale + g, sum + g);
    return ok;
}

} // namespace mgd::kernels::detail::avx2

#endif
