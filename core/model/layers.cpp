#include "core/model/layers.h"

#include <ATen/ATen.h>

#include "core/model/decode_linear.h"
#include "core/model/weights.h"

namespace mgd {

Linear Linear::load(const Weights &w, const std::string &prefix, int64_t in, int64_t out, bool hasBias,
                    at::ScalarType dtype) {
    Linear l;
    l.weight = w.take(prefix + ".weight", {out, in}, dtype);
    if (hasBias) l.bias = w.take(prefix + ".bias", {out}, dtype);
    return l;
}

at::Tensor Linear::operator()(const at::Tensor &x) const {
    if (decodeEligible({this}, x)) return decodeLinear({this}, x)[0];
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
