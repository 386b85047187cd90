#pragma once
// Small building blocks shared by the modules: named the way the original code names them.
#include <ATen/core/Tensor.h>
#include <memory>
#include <string>

namespace mgd {

class Weights;
class WeightArena;

namespace kernels {
struct PackedQ8;
}

struct Linear {
    at::Tensor weight; // [out, in]; undefined once quantized to int8
    at::Tensor bias;   // [out] or undefined
    // int8 weights (--dtype int8): 32-value groups with a scale each, quantized at load.
    std::shared_ptr<const kernels::PackedQ8> q8;
    int64_t outFeatures() const;
    int64_t inFeatures() const;
    size_t weightBytes() const;
    // Replaces the weight by its int8 quantization (the weight tensor is let go), written
    // straight into `arena` when it has room, else into a buffer of its own.
    void quantizeInt8(WeightArena *arena = nullptr);
    // int8: quantized as it is loaded (into `arena` when given), and the source's mapped pages
    // dropped at once, so a model never holds its bf16 and int8 weights together.
    static Linear load(const Weights &w, const std::string &prefix, int64_t in, int64_t out, bool bias,
                       at::ScalarType dtype, bool int8 = false, WeightArena *arena = nullptr);
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
