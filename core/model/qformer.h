#pragma once
// The BLIP-2 Q-Former as MiniGPT-4 uses it (Qformer.py, text side removed): learned query
// tokens, embedding LayerNorm, post-LN BERT self-attention, cross-attention to the image
// every cross_attention_freq layers, then the query FFN.
#include <ATen/core/Tensor.h>
#include <string>
#include <utility>
#include <vector>

#include "core/model/layers.h"
#include "core/model/model_config.h"

namespace mgd {

class QFormer {
public:
    QFormer(const Weights &w, const QFormerConfig &c, int encoderWidth, at::ScalarType dtype);
    // image [B, N, encoderWidth] -> queries [B, Q, hidden]
    at::Tensor forward(const at::Tensor &image) const;
    // Trainable tensors (handles) under their original state-dict names.
    std::vector<std::pair<std::string, at::Tensor>> namedParameters() const;

private:
    struct Attention {
        Linear query, key, value, dense;
        LayerNorm norm;
    };
    struct Layer {
        Attention self;
        bool hasCross = false;
        Attention cross;
        Linear intermediate, output;
        LayerNorm outputNorm;
    };
    at::Tensor attend(const Attention &a, const at::Tensor &h, const at::Tensor &kv) const;
    QFormerConfig c_;
    at::Tensor queryTokens_;
    LayerNorm embNorm_;
    std::vector<Layer> layers_;
};

} // namespace mgd
