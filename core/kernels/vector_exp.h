#pragma once
// exp on SIMD lanes (internal; x86-64 only), shared by softmax and SiLU: 2^k * p(r) with
// k = round(x / ln 2), r = x - k ln 2 (two-part ln 2), p the degree-6 Taylor polynomial
// (|r| <= 0.347: truncation < 2e-8 relative). x is clamped at -87.3 so 2^k stays a normal float;
// callers keep x <= 0.
#if defined(__x86_64__)
#include "core/kernels/avx512_common.h"

#ifndef MGD_T2
#define MGD_T2 __attribute__((target("avx2,fma,f16c")))
#endif

namespace mgd::kernels::detail {

constexpr float kLog2e = 1.44269504f, kLn2Hi = 0.693145752f, kLn2Lo = 1.42860677e-06f, kExpMin = -87.3f;
constexpr float kC2 = 1.0f / 2, kC3 = 1.0f / 6, kC4 = 1.0f / 24, kC5 = 1.0f / 120, kC6 = 1.0f / 720;

MGD_T512 inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(kExpMin));
    const __m512 k =
        _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(kLn2Hi), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(kLn2Lo), r);
    __m512 p = _mm512_set1_ps(kC6);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k);
}

MGD_T2 inline __m256 exp256(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(kExpMin));
    const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(kLn2Hi), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(kLn2Lo), r);
    __m256 p = _mm256_set1_ps(kC6);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    // 2^k from the exponent bits (k >= -126 after the clamp).
    const __m256i bits =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

} // namespace mgd::kernels::detail
#endif
