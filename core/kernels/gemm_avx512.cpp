// AVX-512 few-row products (gemm.h). A tile is NR <= 4 weight rows x MR <= 6 activation rows:
// 24 accumulators + 4 weight vectors + 1 activation vector fill 29 of the 32 registers, each
// weight load serves 6 FMAs and each activation load 4. Weight rows are the outer loop, so
// every weight byte comes from memory once per call and the activations (a few KiB per row)
// are re-read from cache.
#include "core/kernels/gemv_impl.h"

#if defined(__x86_64__)
#include "core/kernels/avx512_common.h"

namespace mgd::kernels::detail::avx512 {

namespace {

constexpr int kNR = 4, kMR = 6;

struct Tile {
    const void *w;
    int64_t wStride;
    const void *x;
    int64_t xStride, cols;
    float *y;
    int64_t yStride;
    const float *bias; // of the tile's first weight row, or null
};

template <int NR, int MR> MGD_T512 inline void store(const Tile &t, __m512 (&a)[MR][NR]) {
    MGD_UNROLL
    for (int i = 0; i < MR; ++i) {
        MGD_UNROLL
        for (int r = 0; r < NR; ++r)
            t.y[i * t.yStride + r] = _mm512_reduce_add_ps(a[i][r]) + (t.bias ? t.bias[r] : 0.0f);
    }
}

// W (fp32 or bf16) and X (fp32 or bf16) widened to fp32, 16 columns a step, masked tail.
template <int NR, int MR, class W, class X> MGD_T512 void tileFma(const Tile &t) {
    const W *w = static_cast<const W *>(t.w);
    const X *x = static_cast<const X *>(t.x);
    __m512 a[MR][NR];
    MGD_UNROLL
    for (int i = 0; i < MR; ++i) {
        MGD_UNROLL
        for (int r = 0; r < NR; ++r) a[i][r] = _mm512_setzero_ps();
    }
    for (int64_t c = 0; c < t.cols; c += 16) {
        const __mmask16 m = mask16(t.cols - c);
        __m512 wv[NR];
        MGD_UNROLL
        for (int r = 0; r < NR; ++r) wv[r] = load16(w + r * t.wStride + c, m);
        MGD_UNROLL
        for (int i = 0; i < MR; ++i) {
            const __m512 xv = load16(x + i * t.xStride + c, m);
            MGD_UNROLL
            for (int r = 0; r < NR; ++r) a[i][r] = _mm512_fmadd_ps(wv[r], xv, a[i][r]);
        }
    }
    store<NR, MR>(t, a);
}

// bf16 x bf16 with vdpbf16ps: 32 columns a step (pairs summed into fp32 lanes), masked tail.
template <int NR, int MR> MGD_T512_BF16 void tileDpBf16(const Tile &t) {
    const uint16_t *w = static_cast<const uint16_t *>(t.w);
    const uint16_t *x = static_cast<const uint16_t *>(t.x);
    __m512 a[MR][NR];
    MGD_UNROLL
    for (int i = 0; i < MR; ++i) {
        MGD_UNROLL
        for (int r = 0; r < NR; ++r) a[i][r] = _mm512_setzero_ps();
    }
    for (int64_t c = 0; c < t.cols; c += 32) {
        const __mmask32 m = mask32(t.cols - c);
        __m512bh wv[NR];
        MGD_UNROLL
        for (int r = 0; r < NR; ++r) wv[r] = (__m512bh)_mm512_maskz_loadu_epi16(m, w + r * t.wStride + c);
        MGD_UNROLL
        for (int i = 0; i < MR; ++i) {
            const __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, x + i * t.xStride + c);
            MGD_UNROLL
            for (int r = 0; r < NR; ++r) a[i][r] = _mm512_dpbf16_ps(a[i][r], wv[r], xv);
        }
    }
    store<NR, MR>(t, a);
}

using TileFn = void (*)(const Tile &);

// fns[nr - 1][mr - 1]: every tile shape the edges of a call need.
template <template <int, int> class K> struct Table {
    TileFn fns[kNR][kMR];
    constexpr Table() : fns{} { fill<1>(); }
    template <int NR> constexpr void fill() {
        fns[NR - 1][0] = K<NR, 1>::fn;
        fns[NR - 1][1] = K<NR, 2>::fn;
        fns[NR - 1][2] = K<NR, 3>::fn;
        fns[NR - 1][3] = K<NR, 4>::fn;
        fns[NR - 1][4] = K<NR, 5>::fn;
        fns[NR - 1][5] = K<NR, 6>::fn;
        if constexpr (NR < kNR) fill<NR + 1>();
    }
};
template <int NR, int MR> struct F32F32 { static constexpr TileFn fn = tileFma<NR, MR, float, float>; };
template <int NR, int MR> struct Bf16Fma {
    static constexpr TileFn fn = tileFma<NR, MR, uint16_t, uint16_t>;
};
template <int NR, int MR> struct Bf16Dp { static constexpr TileFn fn = tileDpBf16<NR, MR>; };

template <class W, class X>
void run(const TileFn (&fns)[kNR][kMR], const W *w, int64_t wStride, int64_t cols, const X *x, int64_t m,
         int64_t xStride, float *y, int64_t yStride, const float *bias, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r += kNR) {
        const int64_t nr = r1 - r < kNR ? r1 - r : kNR;
        for (int64_t i = 0; i < m; i += kMR) {
            const int64_t mr = m - i < kMR ? m - i : kMR;
            const Tile t{w + r * wStride,     wStride, x + i * xStride,          xStride, cols,
                         y + i * yStride + r, yStride, bias ? bias + r : nullptr};
            fns[nr - 1][mr - 1](t);
        }
    }
}

} // namespace

void gemmF32(const PackedF32 &w, const float *x, int64_t m, int64_t xStride, float *y, int64_t yStride,
             const float *bias, int64_t r0, int64_t r1) {
    static constexpr Table<F32F32> table;
    run(table.fns, w.data, w.stride, w.cols, x, m, xStride, y, yStride, bias, r0, r1);
}

void gemmBf16(const PackedBf16 &w, const uint16_t *x, int64_t m, int64_t xStride, float *y, int64_t yStride,
              const float *bias, int64_t r0, int64_t r1) {
    static constexpr Table<Bf16Dp> dp;
    static constexpr Table<Bf16Fma> fma;
    run(useAvx512Bf16() ? dp.fns : fma.fns, w.data, w.stride, w.cols, x, m, xStride, y, yStride, bias, r0,
        r1);
}

} // namespace mgd::kernels::detail::avx512

#endif
