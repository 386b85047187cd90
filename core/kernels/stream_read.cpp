#include "core/kernels/stream_read.h"

#include <cstring>

#include "core/kernels/cpu_features.h"

#if defined(__x86_64__)
#include "core/kernels/avx512_common.h"
#endif

namespace mgd::kernels {

namespace {

#if defined(__x86_64__)
// Four independent accumulators per 256 bytes: the adds never limit the loads.
MGD_T512 uint64_t readAvx512(const char *p, size_t n) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 256 <= n; i += 256) {
        a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(p + i));
        a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(p + i + 64));
        a2 = _mm512_add_epi64(a2, _mm512_loadu_si512(p + i + 128));
        a3 = _mm512_add_epi64(a3, _mm512_loadu_si512(p + i + 192));
    }
    return static_cast<uint64_t>(
        _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3))));
}

__attribute__((target("avx2"))) uint64_t readAvx2(const char *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p + i + 96)));
    }
    alignas(32) uint64_t lanes[4];
    _mm256_store_si256(reinterpret_cast<__m256i *>(lanes),
                       _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
#endif

uint64_t readScalar(const char *p, size_t n) {
    uint64_t a[4] = {};
    for (size_t i = 0; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; ++k) {
            uint64_t v;
            std::memcpy(&v, p + i + 8 * k, 8);
            a[k] += v;
        }
    return a[0] + a[1] + a[2] + a[3];
}

} // namespace

uint64_t streamRead(const void *p, size_t bytes) {
    const char *c = static_cast<const char *>(p);
    switch (activeLevel()) {
#if defined(__x86_64__)
    case KernelLevel::Avx512: return readAvx512(c, bytes);
    case KernelLevel::Avx2: return readAvx2(c, bytes);
#endif
    default: return readScalar(c, bytes);
    }
}

} // namespace mgd::kernels
