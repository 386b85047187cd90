// Weight formats, quantization and the run-time dispatch to the per-ISA kernels.
#include "core/kernels/gemv.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "core/kernels/cpu_features.h"
#include "core/kernels/gemv_impl.h"
#include "core/util/error.h"

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace mgd::kernels {

namespace {

void checkShape(const char *what, const void *data, int64_t rows, int64_t cols, int64_t stride) {
    if (rows < 0 || cols < 0 || stride < cols || (rows > 0 && cols > 0 && !data))
        throw Error(std::string(what) + ": bad shape " + std::to_string(rows) + "x" + std::to_string(cols) +
                    " (stride " + std::to_string(stride) + ")");
}

void checkRange(const char *what, int64_t rows, int64_t r0, int64_t r1) {
    if (r0 < 0 || r1 < r0 || r1 > rows)
        throw Error(std::string(what) + ": row range [" + std::to_string(r0) + ", " + std::to_string(r1) +
                    ") outside 0.." + std::to_string(rows));
}

int64_t roundUp(int64_t v, int64_t m) {
    return (v + m - 1) / m * m;
}

float toFloat(float v) {
    return v;
}
float toFloat(uint16_t v) {
    return detail::bf16ToFloat(v);
}

// Rows [4 * b0, 4 * b1) (whole blocks, zero rows past the end).
template <class T>
void quantizeBlocks(const T *src, int64_t stride, const PackedQ8 &p, int8_t *base, int64_t b0, int64_t b1) {
    std::memset(base + b0 * p.blockBytes, 0, static_cast<size_t>((b1 - b0) * p.blockBytes));
    for (int64_t r = b0 * PackedQ8::kBlockRows; r < std::min(p.rows, b1 * PackedQ8::kBlockRows); ++r) {
        const T *in = src + r * stride;
        int8_t *blk = base + r / PackedQ8::kBlockRows * p.blockBytes;
        const int64_t i = r % PackedQ8::kBlockRows;
        for (int64_t g = 0; g < p.groups; ++g) {
            const int64_t c0 = g * 32, n = std::min<int64_t>(32, p.cols - c0);
            float v[32], maxAbs = 0;
            bool finite = true; // std::max would skip a NaN
            for (int64_t k = 0; k < n; ++k) {
                v[k] = toFloat(in[c0 + k]);
                maxAbs = std::max(maxAbs, std::fabs(v[k]));
                finite &= std::isfinite(v[k]);
            }
            if (!finite)
                throw Error("quantizeQ8: non-finite weight in row " + std::to_string(r) + ", columns " +
                            std::to_string(c0) + ".." + std::to_string(c0 + n - 1));
            if (maxAbs == 0) continue;
            if (maxAbs / 127 > 65504.0f)
                throw Error("quantizeQ8: weight magnitude " + std::to_string(maxAbs) + " in row " +
                            std::to_string(r) + " is beyond the fp16 scale range");
            // Rounded up, so |v / scale| <= 127 and the error stays within scale / 2.
            const uint16_t h = floatToHalfUp(maxAbs / 127);
            std::memcpy(blk + detail::q8ScaleOffset(i, g), &h, 2);
            const float scale = halfToFloat(h);
            int8_t *q = blk + detail::q8GroupOffset(i, g);
            for (int64_t k = 0; k < n; ++k)
                q[k] = static_cast<int8_t>(std::clamp(detail::roundNearest(v[k] / scale), -127.0f, 127.0f));
        }
    }
}

// The kernels read blocks with aligned 64-byte loads.
void checkDestination(const int8_t *dst) {
    if (!dst || reinterpret_cast<uintptr_t>(dst) % 64)
        throw Error("quantizeQ8Into: the destination must be 64-byte aligned memory");
}

// The layout's sizes for rows x cols (no storage).
PackedQ8 layoutQ8(int64_t rows, int64_t cols) {
    PackedQ8 p;
    p.rows = rows;
    p.cols = cols;
    p.groups = (cols + 31) / 32;
    p.pairs = (p.groups + 1) / 2;
    const int64_t fullSupers = p.pairs / 8, tailPairs = p.pairs % 8;
    p.blockBytes =
        fullSupers * PackedQ8::kSuperBytes + (tailPairs ? PackedQ8::kScaleBytes + tailPairs * 256 : 0);
    return p;
}

// Into dst when given (kept alive by owner), else into the result's own buffer.
template <class T>
PackedQ8 quantize(const T *src, int64_t rows, int64_t cols, int64_t stride, int8_t *dst = nullptr,
                  std::shared_ptr<const void> owner = {}) {
    if (stride < 0) stride = cols;
    checkShape("quantizeQ8", src, rows, cols, stride);
    PackedQ8 p = layoutQ8(rows, cols);
    const int64_t blocks = (rows + PackedQ8::kBlockRows - 1) / PackedQ8::kBlockRows;
    if (dst) {
        p.external = dst;
        p.owner = std::move(owner);
    } else {
        p.data.resize(static_cast<size_t>(blocks * p.blockBytes));
    }
    int8_t *base = dst ? dst : p.data.data();
    // Load time for a 7B model is dominated by this: spread the blocks over the cores.
    const int64_t threads = std::clamp<int64_t>(
        std::min<int64_t>({int64_t(std::thread::hardware_concurrency()), (rows * cols) >> 20, blocks}), 1,
        16);
    if (threads == 1) {
        quantizeBlocks(src, stride, p, base, 0, blocks);
        return p;
    }
    std::vector<std::exception_ptr> errors(static_cast<size_t>(threads));
    std::vector<std::thread> pool;
    for (int64_t t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            try {
                quantizeBlocks(src, stride, p, base, blocks * t / threads, blocks * (t + 1) / threads);
            } catch (...) {
                errors[static_cast<size_t>(t)] = std::current_exception();
            }
        });
    for (auto &th : pool) th.join();
    for (auto &e : errors)
        if (e) std::rethrow_exception(e);
    return p;
}

} // namespace

void *allocAligned(size_t bytes) {
    constexpr size_t kHuge = size_t(2) << 20;
    const size_t align = bytes >= 2 * kHuge ? kHuge : 64;
    bytes = (bytes + align - 1) / align * align; // aligned_alloc wants a multiple of the alignment
    void *p = std::aligned_alloc(align, bytes ? bytes : align);
    if (!p) throw std::bad_alloc();
#ifdef __linux__
    // Before the first touch, so the pages are faulted in huge (THP in "madvise" mode, Debian's default).
    if (align == kHuge) ::madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
}

void freeAligned(void *p) {
    std::free(p);
}

PackedBf16::PackedBf16(const uint16_t *data, int64_t rows, int64_t cols, int64_t stride)
    : data(data), rows(rows), cols(cols), stride(stride < 0 ? cols : stride) {
    checkShape("PackedBf16", data, rows, cols, this->stride);
}

PackedF32::PackedF32(const float *data, int64_t rows, int64_t cols, int64_t stride)
    : data(data), rows(rows), cols(cols), stride(stride < 0 ? cols : stride) {
    checkShape("PackedF32", data, rows, cols, this->stride);
}

int8_t PackedQ8::qAt(int64_t r, int64_t c) const {
    return block(r)[detail::q8GroupOffset(r % kBlockRows, c / 32) + c % 32];
}

float PackedQ8::scale(int64_t r, int64_t g) const {
    uint16_t h;
    std::memcpy(&h, block(r) + detail::q8ScaleOffset(r % kBlockRows, g), 2);
    return halfToFloat(h);
}

float halfToFloat(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0) { // zero or subnormal: mant * 2^-24
        const float v = std::ldexp(static_cast<float>(mant), -24);
        return sign ? -v : v;
    }
    const uint32_t bits =
        sign | (exp == 31 ? 0x7f800000u | (mant << 13) : ((exp + 112) << 23) | (mant << 13));
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

uint16_t floatToHalfUp(float v) {
    if (!(v > 0)) return 0;
    if (v > 65504.0f) return 0x7c00; // +inf
    int e = 0;
    const float m = std::frexp(v, &e); // v = m * 2^e, m in [0.5, 1)
    if (e <= -14) {                    // below 2^-14: subnormal steps of 2^-24
        const float units = std::ceil(std::ldexp(v, 24));
        return static_cast<uint16_t>(units); // 1024 units is the smallest normal, same bits
    }
    // Normal: v = (1 + f / 1024) * 2^(e - 1), f rounded up; a carry moves into the exponent.
    const uint32_t frac = static_cast<uint32_t>(std::ceil((m * 2 - 1) * 1024));
    return static_cast<uint16_t>(((static_cast<uint32_t>(e - 1 + 15)) << 10) + frac);
}

PackedQ8 quantizeQ8(const float *src, int64_t rows, int64_t cols, int64_t stride) {
    return quantize(src, rows, cols, stride);
}

PackedQ8 quantizeQ8(const uint16_t *bf16Src, int64_t rows, int64_t cols, int64_t stride) {
    return quantize(bf16Src, rows, cols, stride);
}

PackedQ8 quantizeQ8Into(const float *src, int64_t rows, int64_t cols, int64_t stride, int8_t *dst,
                        std::shared_ptr<const void> owner) {
    checkDestination(dst);
    return quantize(src, rows, cols, stride, dst, std::move(owner));
}

PackedQ8 quantizeQ8Into(const uint16_t *bf16Src, int64_t rows, int64_t cols, int64_t stride, int8_t *dst,
                        std::shared_ptr<const void> owner) {
    checkDestination(dst);
    return quantize(bf16Src, rows, cols, stride, dst, std::move(owner));
}

size_t PackedQ8::bytesFor(int64_t rows, int64_t cols) {
    if (rows < 0 || cols < 0) throw Error("PackedQ8::bytesFor: negative shape");
    return layoutQ8(rows, cols).bytes();
}

void dequantizeQ8Rows(const PackedQ8 &w, int64_t r0, int64_t r1, float *dst, int64_t dstStride) {
    checkRange("dequantizeQ8Rows", w.rows, r0, r1);
    if (dstStride < w.cols) throw Error("dequantizeQ8Rows: destination stride below the column count");
    for (int64_t r = r0; r < r1; ++r) {
        const int8_t *blk = w.block(r);
        const int64_t i = r % PackedQ8::kBlockRows;
        float *out = dst + (r - r0) * dstStride;
        for (int64_t g = 0; g < w.groups; ++g) {
            uint16_t h;
            std::memcpy(&h, blk + detail::q8ScaleOffset(i, g), 2);
            const float s = halfToFloat(h);
            const int8_t *q = blk + detail::q8GroupOffset(i, g);
            const int64_t n = std::min<int64_t>(32, w.cols - g * 32);
            for (int64_t k = 0; k < n; ++k) out[g * 32 + k] = q[k] * s;
        }
    }
}

void quantizeActivationQ8(const float *x, int64_t cols, Q8Activation &out) {
    if (cols < 0 || (cols > 0 && !x))
        throw Error("quantizeActivationQ8: bad input of " + std::to_string(cols));
    const int64_t groups = (cols + 31) / 32, padded = roundUp(groups, 16);
    out.cols = cols;
    out.groups = groups;
    out.q.resize(static_cast<size_t>(padded * 32));
    out.scale.resize(static_cast<size_t>(padded));
    out.init.resize(static_cast<size_t>(padded * 8));
    int8_t *q = out.q.data();
    float *scale = out.scale.data();
    int32_t *init = out.init.data();
    std::memset(q + groups * 32, 0, static_cast<size_t>((padded - groups) * 32));
    std::memset(scale + groups, 0, static_cast<size_t>(padded - groups) * 4);
    std::memset(init, 0, static_cast<size_t>(padded * 8) * 4);
    // The group sums go to init's first lanes for now, then move to their place.
    bool ok;
    switch (activeLevel()) {
#if defined(__x86_64__)
    case KernelLevel::Avx512: ok = detail::avx512::quantizeActivation(x, cols, q, scale, init); break;
    case KernelLevel::Avx2: ok = detail::avx2::quantizeActivation(x, cols, q, scale, init); break;
#endif
    default: ok = detail::scalar::quantizeActivation(x, cols, q, scale, init); break;
    }
    if (!ok) throw Error("quantizeActivationQ8: non-finite input");
    // init[g * 8] = -128 * sum_g (the AVX-512 VNNI kernel's offset correction); backwards, so
    // no sum is overwritten before it is moved.
    for (int64_t g = groups - 1; g >= 0; --g) {
        const int32_t sum = init[g];
        init[g] = 0;
        init[g * 8] = -128 * sum;
    }
}

void gemvBf16(const PackedBf16 &w, const float *x, float *y, const float *bias, int64_t r0, int64_t r1) {
    checkRange("gemvBf16", w.rows, r0, r1);
    switch (activeLevel()) {
#if defined(__x86_64__)
    case KernelLevel::Avx512: return detail::avx512::gemvBf16F32(w, x, y, bias, r0, r1);
    case KernelLevel::Avx2: return detail::avx2::gemvBf16F32(w, x, y, bias, r0, r1);
#endif
    default: return detail::scalar::gemvBf16F32(w, x, y, bias, r0, r1);
    }
}

void gemvBf16(const PackedBf16 &w, const uint16_t *x, float *y, const float *bias, int64_t r0, int64_t r1) {
    checkRange("gemvBf16", w.rows, r0, r1);
    switch (activeLevel()) {
#if defined(__x86_64__)
    case KernelLevel::Avx512: return detail::avx512::gemvBf16Bf16(w, x, y, bias, r0, r1);
    case KernelLevel::Avx2: return detail::avx2::gemvBf16Bf16(w, x, y, bias, r0, r1);
#endif
    default: return detail::scalar::gemvBf16Bf16(w, x, y, bias, r0, r1);
    }
}

void gemvF32(const PackedF32 &w, const float *x, float *y, const float *bias, int64_t r0, int64_t r1) {
    checkRange("gemvF32", w.rows, r0, r1);
    switch (activeLevel()) {
#if defined(__x86_64__)
    case KernelLevel::Avx512: return detail::avx512::gemvF32(w, x, y, bias, r0, r1);
    case KernelLevel::Avx2: return detail::avx2::gemvF32(w, x, y, bias, r0, r1);
#endif
    default: return detail::scalar::gemvF32(w, x, y, bias, r0, r1);
    }
}

void gemvQ8(const PackedQ8 &w, const Q8Activation &x, float *y, const float *bias, int64_t r0, int64_t r1) {
    checkRange("gemvQ8", w.rows, r0, r1);
    if (x.cols != w.cols)
        throw Error("gemvQ8: activation has " + std::to_string(x.cols) + " columns, weights " +
                    std::to_string(w.cols));
    switch (activeLevel()) {
#if defined(__x86_64__)
    case KernelLevel::Avx512:
        if (useAvx512Vnni()) return detail::avx512::gemvQ8(w, x, y, bias, r0, r1);
        return detail::avx2::gemvQ8(w, x, y, bias, r0, r1); // Skylake-X: no VNNI
    case KernelLevel::Avx2: return detail::avx2::gemvQ8(w, x, y, bias, r0, r1);
#endif
    default: return detail::scalar::gemvQ8(w, x, y, bias, r0, r1);
    }
}

} // namespace mgd::kernels
