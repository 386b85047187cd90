// AVX-512 kernels (KernelLevel::Avx512). Target attributes per function, not global -m flags:
// the project is built for generic x86-64 and calls these only when cpu_features says so.
// The bf16/fp32 kernels take one row at a time (one sequential stream per thread), Q8 one 4-row
// block; column tails use masked loads.
#include "core/kernels/gemv_impl.h"

#if defined(__x86_64__)
#include "core/kernels/avx512_common.h"

namespace mgd::kernels::detail::avx512 {

namespace {

// One row at a time, 4 accumulators: rows are contiguous, so a thread's rows are one sequential
// stream, which the hardware prefetcher follows at full bandwidth. Interleaving 8 rows (8 streams
// of 2-4 KiB each, so each reuses x from a register) reached 0.72 of a plain read on the bench
// shape's 1024-column matrices against 1.00 for this (Zen 4, 2 threads; 0.88 vs 0.99 at 2048).
// x is re-read per row from L1. A row's result never depends on how rows were split.
template <class W, class X> MGD_T512 float rowFma(const W *w, const X *x, int64_t cols) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t c = 0;
    for (; c + 64 <= cols; c += 64) {
        a0 = _mm512_fmadd_ps(load16(w + c), load16(x + c), a0);
        a1 = _mm512_fmadd_ps(load16(w + c + 16), load16(x + c + 16), a1);
        a2 = _mm512_fmadd_ps(load16(w + c + 32), load16(x + c + 32), a2);
        a3 = _mm512_fmadd_ps(load16(w + c + 48), load16(x + c + 48), a3);
    }
    for (; c < cols; c += 16) {
        const __mmask16 m = mask16(cols - c);
        a0 = _mm512_fmadd_ps(load16(w + c, m), load16(x + c, m), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

MGD_T512_BF16 inline __m512bh ld(const uint16_t *p) {
    return (__m512bh)_mm512_loadu_si512(p);
}

// vdpbf16ps: 32 bf16 products per instruction, pairs summed into fp32 lanes; 128 columns per
// iteration over 4 accumulators.
MGD_T512_BF16 float rowBf16Dp(const uint16_t *w, const uint16_t *x, int64_t cols) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t c = 0;
    for (; c + 128 <= cols; c += 128) {
        a0 = _mm512_dpbf16_ps(a0, ld(w + c), ld(x + c));
        a1 = _mm512_dpbf16_ps(a1, ld(w + c + 32), ld(x + c + 32));
        a2 = _mm512_dpbf16_ps(a2, ld(w + c + 64), ld(x + c + 64));
        a3 = _mm512_dpbf16_ps(a3, ld(w + c + 96), ld(x + c + 96));
    }
    for (; c < cols; c += 32) {
        const __mmask32 m = mask32(cols - c);
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_maskz_loadu_epi16(m, w + c),
                              (__m512bh)_mm512_maskz_loadu_epi16(m, x + c));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

// int8 x int8 with vpdpbusd (unsigned x signed bytes): the weights are flipped to w + 128
// (xor 0x80) and the activation's `init` lanes start each group at -128 * sum(x_q), so every
// group's 8 lanes sum to the exact int32 dot product. One 64-byte load covers 2 groups; their
// combined scales (weight fp16 * activation fp32, 16 groups per superblock) are spread over the
// lanes with one permute. NR = 4: the whole block of row r (r % 4 == 0), read as one sequential
// stream; NR = 1: row r alone. No software prefetch: with it (3 KiB ahead) the bench shape's
// matrices streamed at 0.54-0.65 of a plain read, without at 0.74-0.78 (Zen 4, 2 threads).

template <int NR> MGD_T512_VNNI void rowsQ8(const PackedQ8 &w, int64_t r, const Q8Activation &a, float *out) {
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    const __m512i idx0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i two = _mm512_set1_epi32(2);
    const int64_t row = r % PackedQ8::kBlockRows;
    const int8_t *blk = w.block(r);
    __m512 acc[NR];
    MGD_UNROLL
    for (int i = 0; i < NR; ++i) acc[i] = _mm512_setzero_ps();
    for (int64_t p0 = 0; p0 < w.pairs; p0 += 8, blk += PackedQ8::kSuperBytes) {
        const int64_t g0 = 2 * p0;
        const __m512 sx = _mm512_load_ps(a.scale.data() + g0);
        __m512 scale[NR];
        MGD_UNROLL
        for (int i = 0; i < NR; ++i)
            scale[i] = _mm512_mul_ps(
                _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i *>(blk + (row + i) * 32))),
                sx);
        const int64_t np = w.pairs - p0 < 8 ? w.pairs - p0 : 8;
        const int8_t *line = blk + PackedQ8::kScaleBytes + row * 64;
        __m512i idx = idx0;
        for (int64_t p = 0; p < np; ++p, line += 256) {
            const __m512i xq = _mm512_load_si512(a.q.data() + (g0 + 2 * p) * 32);
            const __m512i init = _mm512_load_si512(a.init.data() + (g0 + 2 * p) * 8);
            MGD_UNROLL
            for (int i = 0; i < NR; ++i) {
                const __m512i wv = _mm512_xor_si512(_mm512_load_si512(line + i * 64), flip);
                const __m512i d = _mm512_dpbusd_epi32(init, wv, xq);
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_permutexvar_ps(idx, scale[i]), acc[i]);
            }
            idx = _mm512_add_epi32(idx, two);
        }
    }
    MGD_UNROLL
    for (int i = 0; i < NR; ++i) out[i] = _mm512_reduce_add_ps(acc[i]);
}

// Rows [r0, r1) of row-major weights, one at a time.
template <class T, class X, class Fn>
MGD_T512 inline void overRows(const T &w, const X *x, float *y, const float *bias, int64_t r0, int64_t r1,
                              Fn fn) {
    for (int64_t r = r0; r < r1; ++r) y[r] = finish(fn(w.data + r * w.stride, x, w.cols), bias, r);
}

} // namespace

void gemvBf16F32(const PackedBf16 &w, const float *x, float *y, const float *bias, int64_t r0, int64_t r1) {
    overRows(w, x, y, bias, r0, r1, rowFma<uint16_t, float>);
}

void gemvBf16Bf16(const PackedBf16 &w, const uint16_t *x, float *y, const float *bias, int64_t r0,
                  int64_t r1) {
    if (useAvx512Bf16())
        overRows(w, x, y, bias, r0, r1, rowBf16Dp);
    else
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

// Same arithmetic as quantizeGroup (the scalar reference): cvtps2dq rounds to nearest even like
// roundNearest, vpmovsdb's saturation never triggers (|x * inv| rounds to at most 127).
MGD_T512 bool quantizeActivation(const float *x, int64_t cols, int8_t *q, float *scale, int32_t *sum) {
    const __m512 absMask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    const __m512 maxFinite = _mm512_set1_ps(3.4028234663852886e38f);
    bool ok = true;
    for (int64_t g = 0; g * 32 < cols; ++g) {
        const int64_t n = cols - g * 32;
        const __mmask16 m0 = mask16(n), m1 = n > 16 ? mask16(n - 16) : 0;
        const __m512 v0 = _mm512_maskz_loadu_ps(m0, x + g * 32),
                     v1 = _mm512_maskz_loadu_ps(m1, x + g * 32 + 16);
        const __m512 a0 = _mm512_and_ps(v0, absMask), a1 = _mm512_and_ps(v1, absMask);
        // Ordered compare: false for NaN and inf.
        ok &= (_mm512_cmp_ps_mask(a0, maxFinite, _CMP_LE_OQ) &
               _mm512_cmp_ps_mask(a1, maxFinite, _CMP_LE_OQ)) == 0xffff;
        const float maxAbs = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
        const __m512 inv = _mm512_set1_ps(maxAbs > 0 ? 127 / maxAbs : 0);
        const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, inv)),
                      q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, inv));
        _mm_storeu_si128(reinterpret_cast<__m128i *>(q + g * 32), _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128(reinterpret_cast<__m128i *>(q + g * 32 + 16), _mm512_cvtsepi32_epi8(q1));
        scale[g] = maxAbs / 127;
        sum[g] = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
    return ok;
}

} // namespace mgd::kernels::detail::avx512

#endif
