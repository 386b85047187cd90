#pragma once
// Linear layers for one decoded token: our matrix-vector kernels (core/kernels) over the
// weights as they are held (bf16 or fp32, memory-mapped or not, never copied), the rows of
// one or several matrices that share the input split across libtorch's threads in one pass
// (q/k/v, gate/up). libtorch's one-row linear streams bf16 weights at ~15 GB/s here; these
// run at the memory roofline.
#include <ATen/core/Tensor.h>

#include <vector>

namespace mgd {

struct Linear;

// True when x is one row on the CPU, needs no gradient, and every layer's weight is a
// contiguous 2-D tensor of x's dtype (bf16 or fp32) with `in` = x's width.
bool decodeEligible(const std::vector<const Linear *> &layers, const at::Tensor &x);

// outs[i] = layers[i](x) for a one-row x [..., in]; outputs [..., out_i] in x's dtype.
std::vector<at::Tensor> decodeLinear(const std::vector<const Linear *> &layers, const at::Tensor &x);

} // namespace mgd
