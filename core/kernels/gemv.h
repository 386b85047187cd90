#pragma once
// Matrix-vector products y[r] = sum_c W[r,c] * x[c] (+ bias[r]) for one decoded token: they are
// memory-bandwidth bound, so the kernels stream each weight byte once at the memory roofline.
// Each call computes the row range [r0, r1) of y so a caller can split rows across threads; it
// never allocates. The instruction set is picked at run time (cpu_features.h: activeLevel()).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

namespace mgd::kernels {

// Allocation behind AlignedBuffer: 64-byte aligned; from 4 MiB on, 2 MiB aligned and marked for
// transparent huge pages (on a VM, 4 KiB pages cost ~30% of streaming bandwidth in page walks).
void *allocAligned(size_t bytes);
void freeAligned(void *p);

// An owned, 64-byte aligned array (moveable, not copyable). resize() discards the contents and
// reallocates only when growing.
template <class T> class AlignedBuffer {
public:
    AlignedBuffer() = default;
    explicit AlignedBuffer(size_t n) { resize(n); }
    void resize(size_t n) {
        if (n > capacity_) {
            ptr_.reset(static_cast<T *>(allocAligned(n * sizeof(T))));
            capacity_ = n;
        }
        size_ = n;
    }
    T *data() { return ptr_.get(); }
    const T *data() const { return ptr_.get(); }
    size_t size() const { return size_; }

private:
    struct Free {
        void operator()(T *p) const { freeAligned(p); }
    };
    std::unique_ptr<T, Free> ptr_;
    size_t size_ = 0, capacity_ = 0;
};

// Row-major bf16 weights, used in place (e.g. memory-mapped): a view, never a copy. stride is in
// elements (>= cols; -1: cols). Any alignment works (unaligned loads).
struct PackedBf16 {
    const uint16_t *data = nullptr;
    int64_t rows = 0, cols = 0, stride = 0;
    PackedBf16() = default;
    PackedBf16(const uint16_t *data, int64_t rows, int64_t cols, int64_t stride = -1);
    size_t bytes() const { return static_cast<size_t>(rows * cols) * 2; }
};

// Row-major fp32 weights, used in place.
struct PackedF32 {
    const float *data = nullptr;
    int64_t rows = 0, cols = 0, stride = 0;
    PackedF32() = default;
    PackedF32(const float *data, int64_t rows, int64_t cols, int64_t stride = -1);
    size_t bytes() const { return static_cast<size_t>(rows * cols) * 4; }
};

// Symmetric int8 weights, one fp16 scale per 32 consecutive values of a row (scale = maxabs/127
// rounded UP to fp16, so |q| <= 127 and |w - q*scale| <= scale/2). 1.0625 bytes per weight.
//
// Layout (prepared once at load; measured +10-15% streaming bandwidth over row-major on Zen 4,
// as a thread then reads one sequential stream instead of 4 row and 4 scale streams): rows in blocks
// of 4 (zero rows pad the last block), each block a run of superblocks of 16 groups:
//   [4 rows x 16 fp16 scales = 128 B][8 group pairs x 4 rows x 64 B]
// The last superblock holds the remaining groups rounded up to a pair (zero weights). Read
// values with qAt / scale / dequantize.
struct PackedQ8 {
    static constexpr int64_t kBlockRows = 4, kSuperGroups = 16, kScaleBytes = 128;
    static constexpr int64_t kSuperBytes = kScaleBytes + kBlockRows * kSuperGroups * 32; // 2176
    int64_t rows = 0, cols = 0;
    int64_t groups = 0;               // ceil(cols / 32)
    int64_t pairs = 0;                // ceil(groups / 2)
    int64_t blockBytes = 0;           // one block of 4 rows
    AlignedBuffer<int8_t> data;       // the bytes, unless `external` is set
    const int8_t *external = nullptr; // the bytes elsewhere (quantizeQ8Into), kept alive by owner
    std::shared_ptr<const void> owner;

    const int8_t *base() const { return external ? external : data.data(); }
    const int8_t *block(int64_t r) const { return base() + (r / kBlockRows) * blockBytes; }
    // Within a block: superblock s starts at s * kSuperBytes; row i's scales at +i * 32; the 64
    // bytes of pair p (0..7) of row i at +kScaleBytes + p * 256 + i * 64.
    int8_t qAt(int64_t r, int64_t c) const;
    float scale(int64_t r, int64_t g) const;
    float dequantize(int64_t r, int64_t c) const { return qAt(r, c) * scale(r, c / 32); }
    size_t bytes() const { return static_cast<size_t>((rows + kBlockRows - 1) / kBlockRows * blockBytes); }
    // bytes() of a rows x cols matrix, before quantizing it (to place it: quantizeQ8Into).
    static size_t bytesFor(int64_t rows, int64_t cols);
};

// Rows [r0, r1) of w dequantized to row-major fp32 (dst row stride in floats, >= cols), e.g. for
// prefill tiles (0.23 ns per value measured, against 4.3 ns through qAt one value at a time).
void dequantizeQ8Rows(const PackedQ8 &w, int64_t r0, int64_t r1, float *dst, int64_t dstStride);

// Quantizes row-major weights (stride in elements, -1: cols); big matrices on all cores.
// Bad shapes, non-finite weights or a group maxabs beyond fp16 range (> 65504 * 127): mgd::Error.
PackedQ8 quantizeQ8(const float *src, int64_t rows, int64_t cols, int64_t stride = -1);
PackedQ8 quantizeQ8(const uint16_t *bf16Src, int64_t rows, int64_t cols, int64_t stride = -1);
// The same, written to dst (PackedQ8::bytesFor(rows, cols) of 64-byte aligned room, e.g. a slot of the
// model's huge-page weight arena) and kept alive by `owner`: no buffer of its own, so loading a model in int8
// never holds a matrix twice (quantized into a heap buffer, then copied to the arena, the freed buffers
// stayed in the heap: 0.8 GB of RSS over a 1.1B model's weights).
PackedQ8 quantizeQ8Into(const float *src, int64_t rows, int64_t cols, int64_t stride, int8_t *dst,
                        std::shared_ptr<const void> owner);
PackedQ8 quantizeQ8Into(const uint16_t *bf16Src, int64_t rows, int64_t cols, int64_t stride, int8_t *dst,
                        std::shared_ptr<const void> owner);

// An input vector quantized once per token (per distinct x) and shared by every row and thread:
// int8 in groups of 32 with an fp32 scale each (maxabs/127), zero-padded to a multiple of 16
// groups. `init` is what the AVX-512 VNNI kernel starts each 2-group dot product from.
struct Q8Activation {
    int64_t cols = 0, groups = 0;
    AlignedBuffer<int8_t> q;
    AlignedBuffer<float> scale;
    AlignedBuffer<int32_t> init;
};
// Grows `out`'s buffers only when cols exceeds what they hold. Non-finite x: mgd::Error.
void quantizeActivationQ8(const float *x, int64_t cols, Q8Activation &out);

// y[r] = W[r,:] . x (+ bias[r]) for r in [r0, r1); bias may be null; x has W.cols entries, y and
// bias are indexed by row (so y has at least r1 entries). Accumulated in fp32 with each product
// exact (bf16 * bf16 fits fp32; bf16 * fp32 and fp32 * fp32 are fused into the add, one rounding).
// Results do not depend on how [r0, r1) ranges split the rows.
void gemvBf16(const PackedBf16 &w, const float *x, float *y, const float *bias, int64_t r0, int64_t r1);
// bf16 activations: AVX512-BF16 vdpbf16ps where present (denormals flushed, as the hardware does).
void gemvBf16(const PackedBf16 &w, const uint16_t *x, float *y, const float *bias, int64_t r0, int64_t r1);
void gemvF32(const PackedF32 &w, const float *x, float *y, const float *bias, int64_t r0, int64_t r1);
// x from quantizeActivationQ8 with x.cols == w.cols; group dot products are exact int32.
void gemvQ8(const PackedQ8 &w, const Q8Activation &x, float *y, const float *bias, int64_t r0, int64_t r1);

// fp16 <-> fp32 without F16C (load-time and reference use).
float halfToFloat(uint16_t h);
// The smallest fp16 >= v, for 0 < v <= 65504 (0 for v <= 0).
uint16_t floatToHalfUp(float v);

} // namespace mgd::kernels
