#include "core/import/lora_fold.h"

#include <ATen/ATen.h>

#include "core/util/error.h"

namespace mgd {

at::Tensor foldLora(const at::Tensor &base, const at::Tensor &a, const at::Tensor &b, double alpha,
                    const std::string &name) {
    if (base.dim() != 2 || a.dim() != 2 || b.dim() != 2 || b.size(1) != a.size(0) ||
        b.size(0) != base.size(0) || a.size(1) != base.size(1))
        throw Error("LoRA of '" + name + "': A " + std::to_string(a.size(0)) + "x" +
                    std::to_string(a.size(1)) + " and B " + std::to_string(b.size(0)) + "x" +
                    std::to_string(b.size(1)) + " do not fit the weight " + std::to_string(base.size(0)) +
                    "x" + std::to_string(base.size(1)));
    const double scale = alpha / static_cast<double>(a.size(0));
    at::Tensor w = base.to(at::kDouble) + at::matmul(b.to(at::kDouble), a.to(at::kDouble)) * scale;
    return w.to(at::kFloat);
}

} // namespace mgd
