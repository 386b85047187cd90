#pragma once
// EVA-CLIP ViT as MiniGPT-4 builds it (eva_vit.py): pre-LN blocks, qkv with q/v-only bias,
// absolute position embedding, CLS kept, no final norm, exact GELU.
#include <ATen/core/Tensor.h>
#include <string>
#include <utility>
#include <vector>

#include "core/model/layers.h"
#include "core/model/model_config.h"

namespace mgd {

class VisionEncoder {
public:
    VisionEncoder(const Weights &w, const VisionConfig &c, at::ScalarType dtype);
    // pixels [B, 3, S, S] -> tokens [B, 1 + N, width]; blockOutputs (optional) gets each
    // block's output.
    at::Tensor forward(const at::Tensor &pixels, std::vector<at::Tensor> *blockOutputs = nullptr) const;
    // Trainable tensors (handles) under the original names, except each block's combined
    // "attn.qkv_bias" = cat(q_bias, 0, v_bias): a trainer keeps its middle third at zero.
    std::vector<std::pair<std::string, at::Tensor>> namedParameters() const;

private:
    struct Block {
        LayerNorm norm1, norm2;
        at::Tensor qkvWeight, qkvBias; // bias = cat(q_bias, 0, v_bias)
        Linear proj, fc1, fc2;
    };
    VisionConfig c_;
    at::Tensor patchWeight_, patchBias_, clsToken_, posEmbed_;
    std::vector<Block> blocks_;
};

} // namespace mgd
