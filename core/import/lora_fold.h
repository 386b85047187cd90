#pragma once
// MiniGPT-v2's LoRA (peft, q_proj and v_proj) folded into the base weight at import, so the
// runtime has one plain matrix: W' = W + (alpha / r) * B @ A, computed in float64.
#include <ATen/core/Tensor.h>
#include <string>

namespace mgd {

// base [out, in], a [r, in], b [out, r] (any float dtypes) -> fp32 [out, in]. Throws
// mgd::Error naming `name` when the shapes do not fit together.
at::Tensor foldLora(const at::Tensor &base, const at::Tensor &a, const at::Tensor &b, double alpha,
                    const std::string &name);

} // namespace mgd
