#pragma once
// Linear layers for one decoded token (or a few prompt tokens): our matrix-vector kernels (core/kernels) over
// the weights as they are held (bf16 or fp32, memory-mapped or not, never copied), the rows of one or several
// matrices that share the input split across libtorch's threads in one pass (q/k/v, gate/up). libtorch's
// one-row linear streams bf16 weights at ~15 GB/s here; these run at the memory roofline.
#include <ATen/core/Tensor.h>

#include <span>
#include <vector>

namespace mgd {

namespace kernels {
struct Q8Activation;
}

struct Linear;

// Few-row products (kernels/gemm.h) run for fp32 prompts of up to kFewRowsMax tokens: below
// that they beat libtorch's GEMM (OpenBLAS repacks the weights every call), above it they do
// not; in bf16 oneDNN's GEMM wins at every size (bench-llm's short_prefill, Zen 4).
constexpr int64_t kFewRowsMax = 8;

// Benchmarks: Off sends every multi-row product to libtorch's GEMM, Always every fp32 or bf16
// one of up to 64 rows to the few-row kernels.
enum class FewRows { Default, Off, Always };
void setFewRowKernels(FewRows mode);

// True when x is one row (the gemv kernels), or fp32 of up to kFewRowsMax rows on a CPU with
// the few-row kernels and no int8 layer, on the CPU, needing no gradient, and every layer's weight
// is a contiguous 2-D tensor of x's dtype (bf16 or fp32) with `in` = x's width.
bool decodeEligible(const std::vector<const Linear *> &layers, const at::Tensor &x);

// outs[i] = layers[i](x) for x [..., in] of decodeEligible rows; outputs [..., out_i] in x's dtype.
std::vector<at::Tensor> decodeLinear(const std::vector<const Linear *> &layers, const at::Tensor &x);

// False when MGD_DECODE_KERNELS=0 (libtorch's linear everywhere, for A/B measurements).
bool decodeKernelsEnabled();

// One row through up to 7 layers that share it, in one parallel pass, on raw memory: y gets
// each layer's outputs one after another (fp32). x is bf16 (bits) when `bf16`, else fp32; int8
// layers (all or none) read `act`, quantized from x by the caller. biases: empty or one fp32
// pointer (or null) per layer.
void decodeLinearInto(std::span<const Linear *const> layers, const void *x, bool bf16,
                      const kernels::Q8Activation *act, std::span<const float *const> biases, float *y);

} // namespace mgd
