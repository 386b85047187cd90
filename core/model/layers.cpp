#include "core/model/layers.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "core/kernels/gemv.h"
#include "core/memory/weight_arena.h"

#include "core/model/decode_linear.h"
#include "core/model/weights.h"

namespace mgd {

Linear Linear::load(const Weights &w, const std::string &prefix, int64_t in, int64_t out, bool hasBias,
                    at::ScalarType dtype, bool int8, WeightArena *arena) {
    Linear l;
    l.weight = w.take(prefix + ".weight", {out, in}, dtype);
    if (hasBias) l.bias = w.take(prefix + ".bias", {out}, dtype);
    if (int8) {
        l.quantizeInt8(arena);
        w.release(prefix + ".weight");
    }
    return l;
}

int64_t Linear::outFeatures() const {
    return q8 ? q8->rows : weight.size(0);
}

int64_t Linear::inFeatures() const {
    return q8 ? q8->cols : weight.size(1);
}

size_t Linear::weightBytes() const {
    return q8 ? q8->bytes() : weight.nbytes();
}

void Linear::quantizeInt8(WeightArena *arena) {
    if (q8 || !weight.defined()) return;
    at::Tensor w = weight.contiguous();
    const int64_t rows = w.size(0), cols = w.size(1);
    auto *dst = static_cast<int8_t *>(arena ? arena->take(kernels::PackedQ8::bytesFor(rows, cols)) : nullptr);
    if (w.scalar_type() != at::kBFloat16) w = w.to(at::kFloat).contiguous();
    auto quantize = [&](const auto *src) {
        return dst ? kernels::quantizeQ8Into(src, rows, cols, cols, dst, arena->owner())
                   : kernels::quantizeQ8(src, rows, cols);
    };
    q8 = std::make_shared<kernels::PackedQ8>(w.scalar_type() == at::kBFloat16
                                                 ? quantize(static_cast<const uint16_t *>(w.data_ptr()))
                                                 : quantize(w.data_ptr<float>()));
    weight = at::Tensor();
}

namespace {

// Several tokens through int8 weights: dequantize a block of rows at a time into the input's
// dtype and run libtorch's GEMM on it (one pass over the weights per call, like one decode
// step; no full-size copy is ever held).
at::Tensor linearQ8Tiles(const kernels::PackedQ8 &q, const at::Tensor &bias, const at::Tensor &x) {
    const int64_t out = q.rows, in = q.cols;
    at::Tensor x2 = x.reshape({-1, in});
    at::Tensor y = at::empty({x2.size(0), out}, x.options());
    constexpr int64_t kTile = 256;
    at::Tensor tile = at::empty({std::min(kTile, out), in}, at::TensorOptions().dtype(at::kFloat));
    float *tp = tile.data_ptr<float>();
    for (int64_t r0 = 0; r0 < out; r0 += kTile) {
        const int64_t n = std::min(kTile, out - r0);
        at::parallel_for(0, n, 16, [&](int64_t b, int64_t e) {
            kernels::dequantizeQ8Rows(q, r0 + b, r0 + e, tp + b * in, in);
        });
        at::Tensor w = tile.narrow(0, 0, n).to(x.scalar_type());
        at::Tensor b = bias.defined() ? bias.narrow(0, r0, n) : at::Tensor();
        y.narrow(1, r0, n).copy_(at::linear(x2, w, b));
    }
    auto shape = x.sizes().vec();
    shape.back() = out;
    return y.view(shape);
}

} // namespace

at::Tensor Linear::operator()(const at::Tensor &x) const {
    if (decodeEligible({this}, x)) return decodeLinear({this}, x)[0];
    if (q8) return linearQ8Tiles(*q8, bias, x);
    if (x.scalar_type() == at::kFloat && x.numel() == x.size(-1) && x.device().is_cpu()) {
        at::Tensor y = at::mv(weight, x.reshape({-1}));
        if (bias.defined()) y.add_(bias);
        auto shape = x.sizes().vec();
        shape.back() = weight.size(0);
        return y.view(shape);
    }
    return at::linear(x, weight, bias);
}

LayerNorm LayerNorm::load(const Weights &w, const std::string &prefix, int64_t dim, double eps,
                          at::ScalarType dtype) {
    LayerNorm n;
    n.weight = w.take(prefix + ".weight", {dim}, dtype);
    n.bias = w.take(prefix + ".bias", {dim}, dtype);
    n.eps = eps;
    return n;
}

at::Tensor LayerNorm::operator()(const at::Tensor &x) const {
    return at::layer_norm(x, {x.size(-1)}, weight, bias, eps);
}

} // namespace mgd
