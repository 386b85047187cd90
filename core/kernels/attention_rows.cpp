// One-token attention's row loops. Each level keeps whole head rows in registers: values are
// accumulated 16 (AVX-512) or 8 (AVX2) columns at a time across all rows, so `out` is read and
// written once per call; scores reduce one row at a time. Column tails run in plain C++.
#include "core/kernels/attention_rows.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/kernels/cpu_features.h"
#include "core/kernels/gemv_impl.h"

#if defined(__x86_64__)
#include "core/kernels/avx512_common.h"
#include "core/kernels/vector_exp.h"
#endif

namespace mgd::kernels {

namespace {

inline float widen(float v) {
    return v;
}
inline float widen(uint16_t v) {
    return detail::bf16ToFloat(v);
}
inline float widen(int8_t v) {
    return static_cast<float>(v);
}

template <class T> float dotTail(const T *k, const float *q, int64_t c0, int64_t n) {
    float s = 0;
    for (int64_t d = c0; d < n; ++d) s += widen(k[d]) * q[d];
    return s;
}

template <class T>
void dotScalar(const T *k, int64_t stride, int64_t rows, int64_t n, const float *scale, const float *q,
               float *out) {
    for (int64_t t = 0; t < rows; ++t) {
        const float s = dotTail(k + t * stride, q, 0, n);
        out[t] = scale ? s * scale[t] : s;
    }
}

template <class T>
void addScalar(const T *v, int64_t stride, int64_t rows, int64_t n, const float *scale, const float *p,
               float *out) {
    for (int64_t t = 0; t < rows; ++t) {
        const float w = scale ? p[t] * scale[t] : p[t];
        const T *r = v + t * stride;
        for (int64_t d = 0; d < n; ++d) out[d] += w * widen(r[d]);
    }
}

void softmaxScalar(float *row, int64_t n, float scale) {
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t t = 0; t < n; ++t) mx = std::max(mx, row[t] * scale);
    float sum = 0;
    for (int64_t t = 0; t < n; ++t) sum += (row[t] = std::exp(row[t] * scale - mx));
    const float inv = 1.0f / sum;
    for (int64_t t = 0; t < n; ++t) row[t] *= inv;
}

#if defined(__x86_64__)
using namespace detail::avx512;
using detail::exp256;
using detail::exp512;

MGD_T512 void softmax512(float *row, int64_t n, float scale) {
    const __m512 s = _mm512_set1_ps(scale);
    __m512 m = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    for (int64_t t = 0; t < n; t += 16) {
        const __mmask16 k = mask16(n - t);
        m = _mm512_mask_max_ps(m, k, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, row + t), s));
    }
    const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(m));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t t = 0; t < n; t += 16) {
        const __mmask16 k = mask16(n - t);
        const __m512 e = exp512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(k, row + t), s, mx));
        _mm512_mask_storeu_ps(row + t, k, e);
        sum = _mm512_mask_add_ps(sum, k, sum, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (int64_t t = 0; t < n; t += 16) {
        const __mmask16 k = mask16(n - t);
        _mm512_mask_storeu_ps(row + t, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, row + t), inv));
    }
}

MGD_T512 inline __m512 load16w(const int8_t *p, __mmask16 m) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, p)));
}
MGD_T512 inline __m512 load16w(const uint16_t *p, __mmask16 m) {
    return load16(p, m);
}
MGD_T512 inline __m512 load16w(const float *p, __mmask16 m) {
    return load16(p, m);
}

// bf16 keys against a bf16 q: vdpbf16ps on the keys as stored (denormals flushed, as the
// hardware does), 64 columns per instruction pair, the same products as the FMA path (exact in
// fp32), summed in another order. n <= 256.
MGD_T512_BF16 void dotBf16Dp(const uint16_t *k, int64_t stride, int64_t rows, int64_t n, const uint16_t *qb,
                             float *out) {
    const int64_t steps = (n + 31) / 32;
    __m512bh qv[8];
    __mmask32 m[8];
    for (int64_t i = 0; i < steps; ++i) {
        m[i] = mask32(n - 32 * i);
        qv[i] = (__m512bh)_mm512_maskz_loadu_epi16(m[i], qb + 32 * i);
    }
    for (int64_t t = 0; t < rows; ++t) {
        const uint16_t *r = k + t * stride;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;
        int64_t i = 0;
        for (; i + 2 <= steps; i += 2) {
            a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_maskz_loadu_epi16(m[i], r + 32 * i), qv[i]);
            a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_maskz_loadu_epi16(m[i + 1], r + 32 * i + 32),
                                  qv[i + 1]);
        }
        if (i < steps) a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_maskz_loadu_epi16(m[i], r + 32 * i), qv[i]);
        out[t] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    }
}

template <class T>
MGD_T512 void dot512(const T *k, int64_t stride, int64_t rows, int64_t n, const float *scale, const float *q,
                     float *out) {
    for (int64_t t = 0; t < rows; ++t) {
        const T *r = k + t * stride;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;
        int64_t d = 0;
        for (; d + 32 <= n; d += 32) {
            a0 = _mm512_fmadd_ps(load16w(r + d, 0xffff), _mm512_loadu_ps(q + d), a0);
            a1 = _mm512_fmadd_ps(load16w(r + d + 16, 0xffff), _mm512_loadu_ps(q + d + 16), a1);
        }
        for (; d < n; d += 16) {
            const __mmask16 m = mask16(n - d);
            a0 = _mm512_fmadd_ps(load16w(r + d, m), _mm512_maskz_loadu_ps(m, q + d), a0);
        }
        const float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        out[t] = scale ? s * scale[t] : s;
    }
}

// R registers of columns [c0, c0 + 16R) across all rows (the last one masked by `last`).
template <int R, class T>
MGD_T512 void addBlock512(const T *v, int64_t stride, int64_t rows, const float *scale, const float *p,
                          float *out, __mmask16 last) {
    __m512 a[R];
    MGD_UNROLL
    for (int i = 0; i < R; ++i) a[i] = _mm512_maskz_loadu_ps(i + 1 < R ? 0xffff : last, out + 16 * i);
    for (int64_t t = 0; t < rows; ++t) {
        const __m512 pt = _mm512_set1_ps(scale ? p[t] * scale[t] : p[t]);
        const T *r = v + t * stride;
        MGD_UNROLL
        for (int i = 0; i < R; ++i)
            a[i] = _mm512_fmadd_ps(pt, load16w(r + 16 * i, i + 1 < R ? 0xffff : last), a[i]);
    }
    MGD_UNROLL
    for (int i = 0; i < R; ++i) _mm512_mask_storeu_ps(out + 16 * i, i + 1 < R ? 0xffff : last, a[i]);
}

// Up to 128 columns (8 registers) per pass over the rows.
template <class T>
MGD_T512 void add512(const T *v, int64_t stride, int64_t rows, int64_t n, const float *scale, const float *p,
                     float *out) {
    for (int64_t c0 = 0; c0 < n; c0 += 128) {
        const int64_t w = n - c0 < 128 ? n - c0 : 128;
        const __mmask16 last = mask16(w - (w - 1) / 16 * 16);
        const T *vc = v + c0;
        float *oc = out + c0;
        switch ((w + 15) / 16) {
        case 1: addBlock512<1>(vc, stride, rows, scale, p, oc, last); break;
        case 2: addBlock512<2>(vc, stride, rows, scale, p, oc, last); break;
        case 3: addBlock512<3>(vc, stride, rows, scale, p, oc, last); break;
        case 4: addBlock512<4>(vc, stride, rows, scale, p, oc, last); break;
        case 5: addBlock512<5>(vc, stride, rows, scale, p, oc, last); break;
        case 6: addBlock512<6>(vc, stride, rows, scale, p, oc, last); break;
        case 7: addBlock512<7>(vc, stride, rows, scale, p, oc, last); break;
        default: addBlock512<8>(vc, stride, rows, scale, p, oc, last); break;
        }
    }
}

MGD_T2 inline __m256 load8w(const float *p) {
    return _mm256_loadu_ps(p);
}
MGD_T2 inline __m256 load8w(const uint16_t *p) {
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p))), 16));
}
MGD_T2 inline __m256 load8w(const int8_t *p) {
    int64_t b;
    std::memcpy(&b, p, 8);
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(b)));
}
MGD_T2 inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

template <class T>
MGD_T2 void dot256(const T *k, int64_t stride, int64_t rows, int64_t n, const float *scale, const float *q,
                   float *out) {
    for (int64_t t = 0; t < rows; ++t) {
        const T *r = k + t * stride;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        int64_t d = 0;
        for (; d + 16 <= n; d += 16) {
            a0 = _mm256_fmadd_ps(load8w(r + d), _mm256_loadu_ps(q + d), a0);
            a1 = _mm256_fmadd_ps(load8w(r + d + 8), _mm256_loadu_ps(q + d + 8), a1);
        }
        for (; d + 8 <= n; d += 8) a0 = _mm256_fmadd_ps(load8w(r + d), _mm256_loadu_ps(q + d), a0);
        const float s = hsum8(_mm256_add_ps(a0, a1)) + dotTail(r, q, d, n);
        out[t] = scale ? s * scale[t] : s;
    }
}

// Whole 8-wide steps in vectors, the last n % 8 values in plain C++ (same exp formula).
MGD_T2 void softmax256(float *row, int64_t n, float scale) {
    const int64_t full = n / 8 * 8;
    const __m256 s = _mm256_set1_ps(scale);
    float mx = -std::numeric_limits<float>::infinity();
    if (full) {
        __m256 m = _mm256_set1_ps(mx);
        for (int64_t t = 0; t < full; t += 8)
            m = _mm256_max_ps(m, _mm256_mul_ps(_mm256_loadu_ps(row + t), s));
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, m);
        mx = *std::max_element(lanes, lanes + 8);
    }
    for (int64_t t = full; t < n; ++t) mx = std::max(mx, row[t] * scale);
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 sum = _mm256_setzero_ps();
    for (int64_t t = 0; t < full; t += 8) {
        const __m256 e = exp256(_mm256_fmsub_ps(_mm256_loadu_ps(row + t), s, vmx));
        _mm256_storeu_ps(row + t, e);
        sum = _mm256_add_ps(sum, e);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, sum);
    float total =
        ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    for (int64_t t = full; t < n; ++t) {
        alignas(32) float one[8] = {row[t] * scale - mx};
        _mm256_store_ps(one, exp256(_mm256_load_ps(one)));
        total += (row[t] = one[0]);
    }
    const __m256 inv = _mm256_set1_ps(1.0f / total);
    for (int64_t t = 0; t < full; t += 8)
        _mm256_storeu_ps(row + t, _mm256_mul_ps(_mm256_loadu_ps(row + t), inv));
    for (int64_t t = full; t < n; ++t) row[t] *= 1.0f / total;
}

template <int R, class T>
MGD_T2 void addBlock256(const T *v, int64_t stride, int64_t rows, const float *scale, const float *p,
                        float *out) {
    __m256 a[R];
    MGD_UNROLL
    for (int i = 0; i < R; ++i) a[i] = _mm256_loadu_ps(out + 8 * i);
    for (int64_t t = 0; t < rows; ++t) {
        const __m256 pt = _mm256_set1_ps(scale ? p[t] * scale[t] : p[t]);
        const T *r = v + t * stride;
        MGD_UNROLL
        for (int i = 0; i < R; ++i) a[i] = _mm256_fmadd_ps(pt, load8w(r + 8 * i), a[i]);
    }
    MGD_UNROLL
    for (int i = 0; i < R; ++i) _mm256_storeu_ps(out + 8 * i, a[i]);
}

// Up to 64 columns (8 registers) per pass over the rows; the last n % 8 columns in plain C++.
template <class T>
MGD_T2 void add256(const T *v, int64_t stride, int64_t rows, int64_t n, const float *scale, const float *p,
                   float *out) {
    const int64_t full = n / 8 * 8;
    for (int64_t c0 = 0; c0 < full; c0 += 64) {
        const T *vc = v + c0;
        float *oc = out + c0;
        switch ((full - c0 < 64 ? full - c0 : 64) / 8) {
        case 1: addBlock256<1>(vc, stride, rows, scale, p, oc); break;
        case 2: addBlock256<2>(vc, stride, rows, scale, p, oc); break;
        case 3: addBlock256<3>(vc, stride, rows, scale, p, oc); break;
        case 4: addBlock256<4>(vc, stride, rows, scale, p, oc); break;
        case 5: addBlock256<5>(vc, stride, rows, scale, p, oc); break;
        case 6: addBlock256<6>(vc, stride, rows, scale, p, oc); break;
        case 7: addBlock256<7>(vc, stride, rows, scale, p, oc); break;
        default: addBlock256<8>(vc, stride, rows, scale, p, oc); break;
        }
    }
    if (full < n) addScalar(v + full, stride, rows, n - full, scale, p, out + full);
}
#endif

template <class T>
void dotRows(const T *k, int64_t stride, int64_t rows, int64_t n, const float *scale, const float *q,
             float *out) {
    switch (activeLevel()) {
#if defined(__x86_64__)
    case KernelLevel::Avx512: return dot512(k, stride, rows, n, scale, q, out);
    case KernelLevel::Avx2: return dot256(k, stride, rows, n, scale, q, out);
#endif
    default: return dotScalar(k, stride, rows, n, scale, q, out);
    }
}

template <class T>
void addRows(const T *v, int64_t stride, int64_t rows, int64_t n, const float *scale, const float *p,
             float *out) {
    switch (activeLevel()) {
#if defined(__x86_64__)
    case KernelLevel::Avx512: return add512(v, stride, rows, n, scale, p, out);
    case KernelLevel::Avx2: return add256(v, stride, rows, n, scale, p, out);
#endif
    default: return addScalar(v, stride, rows, n, scale, p, out);
    }
}

} // namespace

void softmaxRow(float *row, int64_t n, float scale) {
    if (n <= 0) return;
    switch (activeLevel()) {
#if defined(__x86_64__)
    case KernelLevel::Avx512: return softmax512(row, n, scale);
    case KernelLevel::Avx2: return softmax256(row, n, scale);
#endif
    default: return softmaxScalar(row, n, scale);
    }
}

void dotRowsBf16(const uint16_t *k, int64_t stride, int64_t rows, int64_t n, const float *q, float *out) {
    dotRows(k, stride, rows, n, nullptr, q, out);
}
void dotRowsBf16(const uint16_t *k, int64_t stride, int64_t rows, int64_t n, const uint16_t *q, float *out) {
#if defined(__x86_64__)
    if (n <= 256 && activeLevel() == KernelLevel::Avx512 && useAvx512Bf16())
        return dotBf16Dp(k, stride, rows, n, q, out);
#endif
    thread_local std::vector<float> wide;
    wide.resize(static_cast<size_t>(n));
    for (int64_t d = 0; d < n; ++d) wide[static_cast<size_t>(d)] = widen(q[d]);
    dotRows(k, stride, rows, n, nullptr, wide.data(), out);
}

void dotRowsF32(const float *k, int64_t stride, int64_t rows, int64_t n, const float *q, float *out) {
    dotRows(k, stride, rows, n, nullptr, q, out);
}
void dotRowsI8(const int8_t *k, int64_t stride, int64_t rows, int64_t n, const float *scale, const float *q,
               float *out) {
    dotRows(k, stride, rows, n, scale, q, out);
}
void addRowsBf16(const uint16_t *v, int64_t stride, int64_t rows, int64_t n, const float *p, float *out) {
    addRows(v, stride, rows, n, nullptr, p, out);
}
void addRowsF32(const float *v, int64_t stride, int64_t rows, int64_t n, const float *p, float *out) {
    addRows(v, stride, rows, n, nullptr, p, out);
}
void addRowsI8(const int8_t *v, int64_t stride, int64_t rows, int64_t n, const float *scale, const float *p,
               float *out) {
    addRows(v, stride, rows, n, scale, p, out);
}

} // namespace mgd::kernels
