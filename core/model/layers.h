#pragma once
// Small building blocks shared by the modules: named the way the original code names them.
#include <ATen/core/Tensor.h>
#include <string>

namespace mgd {

class Weights;

struct Linear {
    at::Tensor weight; // [out, in]
    at::Tensor bias;   // [out] or undefined
    static Linear load(const Weights &w, const std::string &prefix, int64_t in, int64_t out, bool bias,
                       at::ScalarType dtype);
    // x [..., in] -> [..., out]. A single fp32 row goes through matrix-vector, which streams
    // the weights several times faster than linear() on CPU (design.md, "Decode shapes").
    at::Tensor operator()(const at::Tensor &x) const;
};

struct LayerNorm {
    at::Tensor weight, bias;
    double eps = 1e-5;
    static LayerNorm load(const Weights &w, const std::string &prefix, int64_t dim, double eps,
                          at::ScalarType dtype);
    at::Tensor operator()(const at::Tensor &x) const;
};

} // namespace mgd
