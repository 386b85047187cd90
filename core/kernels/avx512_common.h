#pragma once
// What the AVX-512 kernel files share (internal; x86-64 only): the intrinsics header, the
// per-function target attributes (the project is built for generic x86-64 and calls these
// only when cpu_features says so), tail masks and widening loads.
#include <cstdint>

// GCC 12 warns that the intrinsics' own _mm*_undefined_* placeholders are uninitialized (GCC bug
// 105593): silence it for the header only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#define MGD_T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define MGD_T512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512bf16")))
#define MGD_T512_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni")))
#define MGD_UNROLL _Pragma("GCC unroll 8")

namespace mgd::kernels::detail::avx512 {

// Masks of the first n elements of a 16- or 32-element step.
MGD_T512 inline __mmask16 mask16(int64_t n) {
    return n >= 16 ? 0xffff : static_cast<__mmask16>((1u << n) - 1);
}
MGD_T512 inline __mmask32 mask32(int64_t n) {
    return n >= 32 ? ~__mmask32(0) : static_cast<__mmask32>((1u << n) - 1);
}

// 16 bf16 -> exact fp32: zero-extend to 32 bits, shift into the high half. (Measured faster on
// Zen 4 than splitting 32 loaded bf16 into even/odd halves, which also needs x permuted.)
MGD_T512 inline __m512 load16(const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(p))), 16));
}
MGD_T512 inline __m512 load16(const uint16_t *p, __mmask16 m) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
MGD_T512 inline __m512 load16(const float *p) {
    return _mm512_loadu_ps(p);
}
MGD_T512 inline __m512 load16(const float *p, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, p);
}

} // namespace mgd::kernels::detail::avx512
