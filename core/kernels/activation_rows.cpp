#include "core/kernels/activation_rows.h"

#include <cmath>
#include <cstring>

#include "core/kernels/cpu_features.h"

#if defined(__x86_64__)
#include "core/kernels/avx512_common.h"
#include "core/kernels/vector_exp.h"
#endif

namespace mgd::kernels {

namespace {

// Round to nearest even, as c10::BFloat16 does (NaN stays NaN).
float roundBf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return f;
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    std::memcpy(&f, &u, 4);
    return f;
}

void siluMulScalar(const float *gate, const float *up, int64_t n, bool rb, float *out) {
    for (int64_t i = 0; i < n; ++i) {
        const float g = rb ? roundBf16(gate[i]) : gate[i], u = rb ? roundBf16(up[i]) : up[i];
        const float s = g / (1.0f + std::exp(-g));
        out[i] = rb ? roundBf16(roundBf16(s) * u) : s * u;
    }
}

#if defined(__x86_64__)
using detail::exp256;
using detail::exp512;
using detail::avx512::mask16;

// The same integer rounding as roundBf16 on 16 or 8 lanes (a NaN keeps a NaN pattern).
MGD_T512 inline __m512 round512(__m512 v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
    return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
}

// silu(g) = g * sigmoid(g) with e = exp(-|g|) <= 1, so no exp overflows:
// sigmoid = 1 / (1 + e) for g >= 0, e / (1 + e) below.
MGD_T512 inline __m512 silu512(__m512 g) {
    const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(g)));
    const __m512 one = _mm512_set1_ps(1.0f);
    const __mmask16 neg = _mm512_cmp_ps_mask(g, _mm512_setzero_ps(), _CMP_LT_OQ);
    const __m512 num = _mm512_mask_blend_ps(neg, one, e);
    return _mm512_mul_ps(g, _mm512_div_ps(num, _mm512_add_ps(one, e)));
}

MGD_T512 void siluMul512(const float *gate, const float *up, int64_t n, bool rb, float *out) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = mask16(n - i);
        __m512 g = _mm512_maskz_loadu_ps(m, gate + i), u = _mm512_maskz_loadu_ps(m, up + i);
        if (rb) g = round512(g), u = round512(u);
        __m512 s = silu512(g);
        s = rb ? round512(_mm512_mul_ps(round512(s), u)) : _mm512_mul_ps(s, u);
        _mm512_mask_storeu_ps(out + i, m, s);
    }
}

MGD_T512 void round512Row(float *v, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = mask16(n - i);
        _mm512_mask_storeu_ps(v + i, m, round512(_mm512_maskz_loadu_ps(m, v + i)));
    }
}

MGD_T512 void toBf16Row512(const float *v, int64_t n, uint16_t *out) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = mask16(n - i);
        const __m512i r =
            _mm512_srli_epi32(_mm512_castps_si512(round512(_mm512_maskz_loadu_ps(m, v + i))), 16);
        _mm256_mask_storeu_epi16(out + i, m, _mm512_cvtepi32_epi16(r));
    }
}

MGD_T2 inline __m256 round256(__m256 v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb);
    return _mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
}

MGD_T2 inline __m256 silu256(__m256 g) {
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    const __m256 absG = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), g);
    const __m256 e = exp256(_mm256_sub_ps(zero, absG));
    const __m256 num = _mm256_blendv_ps(one, e, _mm256_cmp_ps(g, zero, _CMP_LT_OQ));
    return _mm256_mul_ps(g, _mm256_div_ps(num, _mm256_add_ps(one, e)));
}

// (A lambda would not inherit the target attribute.)
MGD_T2 inline __m256 siluMulStep256(__m256 g, __m256 u, bool rb) {
    if (rb) g = round256(g), u = round256(u);
    const __m256 s = silu256(g);
    return rb ? round256(_mm256_mul_ps(round256(s), u)) : _mm256_mul_ps(s, u);
}

// Whole 8-wide steps in vectors, the rest through the same vector code on a padded copy.
MGD_T2 void siluMul256(const float *gate, const float *up, int64_t n, bool rb, float *out) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, siluMulStep256(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i), rb));
    if (i < n) {
        alignas(32) float g[8] = {}, u[8] = {}, o[8];
        std::memcpy(g, gate + i, static_cast<size_t>(n - i) * 4);
        std::memcpy(u, up + i, static_cast<size_t>(n - i) * 4);
        _mm256_store_ps(o, siluMulStep256(_mm256_load_ps(g), _mm256_load_ps(u), rb));
        std::memcpy(out + i, o, static_cast<size_t>(n - i) * 4);
    }
}

MGD_T2 void round256Row(float *v, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(v + i, round256(_mm256_loadu_ps(v + i)));
    for (; i < n; ++i) v[i] = roundBf16(v[i]);
}
#endif

} // namespace

void siluMulRow(const float *gate, const float *up, int64_t n, bool roundBf16, float *out) {
    if (n <= 0) return;
    switch (activeLevel()) {
#if defined(__x86_64__)
    case KernelLevel::Avx512: return siluMul512(gate, up, n, roundBf16, out);
    case KernelLevel::Avx2: return siluMul256(gate, up, n, roundBf16, out);
#endif
    default: return siluMulScalar(gate, up, n, roundBf16, out);
    }
}

void toBf16Row(const float *v, int64_t n, uint16_t *out) {
    if (n <= 0) return;
#if defined(__x86_64__)
    if (activeLevel() == KernelLevel::Avx512) return toBf16Row512(v, n, out);
#endif
    for (int64_t i = 0; i < n; ++i) {
        const float f = roundBf16(v[i]);
        uint32_t u;
        std::memcpy(&u, &f, 4);
        out[i] = static_cast<uint16_t>(u >> 16);
    }
}

void roundBf16Row(float *v, int64_t n) {
    if (n <= 0) return;
    switch (activeLevel()) {
#if defined(__x86_64__)
    case KernelLevel::Avx512: return round512Row(v, n);
    case KernelLevel::Avx2: return round256Row(v, n);
#endif
    default:
        for (int64_t i = 0; i < n; ++i) v[i] = roundBf16(v[i]);
    }
}

} // namespace mgd::kernels
