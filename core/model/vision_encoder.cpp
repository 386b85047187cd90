#include "core/model/vision_encoder.h"

#include <ATen/ATen.h>
#include <cmath>

#include "core/model/weights.h"

namespace mgd {

VisionEncoder::VisionEncoder(const Weights &w, const VisionConfig &c, at::ScalarType dtype) : c_(c) {
    const std::string p = "visual_encoder.";
    const int64_t d = c.width, n = (c.imageSize / c.patchSize) * (c.imageSize / c.patchSize);
    patchWeight_ = w.take(p + "patch_embed.proj.weight", {d, 3, c.patchSize, c.patchSize}, dtype);
    patchBias_ = w.take(p + "patch_embed.proj.bias", {d}, dtype);
    clsToken_ = w.take(p + "cls_token", {1, 1, d}, dtype);
    posEmbed_ = w.take(p + "pos_embed", {1, n + 1, d}, dtype);
    for (int i = 0; i < c.depth; ++i) {
        const std::string b = p + "blocks." + std::to_string(i) + ".";
        Block blk;
        blk.norm1 = LayerNorm::load(w, b + "norm1", d, c.lnEps, dtype);
        blk.norm2 = LayerNorm::load(w, b + "norm2", d, c.lnEps, dtype);
        blk.qkvWeight = w.take(b + "attn.qkv.weight", {3 * d, d}, dtype);
        at::Tensor qb = w.take(b + "attn.q_bias", {d}, dtype);
        at::Tensor vb = w.take(b + "attn.v_bias", {d}, dtype);
        blk.qkvBias = at::cat({qb, at::zeros_like(vb), vb});
        blk.proj = Linear::load(w, b + "attn.proj", d, d, true, dtype);
        blk.fc1 = Linear::load(w, b + "mlp.fc1", d, c.mlpHidden, true, dtype);
        blk.fc2 = Linear::load(w, b + "mlp.fc2", c.mlpHidden, d, true, dtype);
        blocks_.push_back(std::move(blk));
    }
}

at::Tensor VisionEncoder::forward(const at::Tensor &pixels, std::vector<at::Tensor> *blockOutputs) const {
    const int64_t B = pixels.size(0), H = c_.heads, D = c_.width, Dh = D / H;
    const double scale = std::pow(static_cast<double>(Dh), -0.5);
    // [B, 3, S, S] -> [B, D, g, g] -> [B, N, D] (row-major patches)
    at::Tensor x = at::conv2d(pixels.to(patchWeight_.scalar_type()), patchWeight_, patchBias_,
                              {c_.patchSize, c_.patchSize});
    x = x.flatten(2).transpose(1, 2);
    x = at::cat({clsToken_.expand({B, -1, -1}), x}, 1) + posEmbed_; // [B, 1+N, D]
    const int64_t N = x.size(1);
    for (const Block &blk : blocks_) {
        // [B, N, D] -> [B, N, 3, H, Dh] -> [3, B, H, N, Dh]
        at::Tensor qkv = at::linear(blk.norm1(x), blk.qkvWeight, blk.qkvBias)
                             .reshape({B, N, 3, H, Dh})
                             .permute({2, 0, 3, 1, 4});
        at::Tensor q = qkv[0] * scale, k = qkv[1], v = qkv[2];
        at::Tensor attn = at::matmul(q, k.transpose(-2, -1)).softmax(-1); // [B, H, N, N]
        at::Tensor a = at::matmul(attn, v).transpose(1, 2).reshape({B, N, D});
        x = x + blk.proj(a);
        x = x + blk.fc2(at::gelu(blk.fc1(blk.norm2(x))));
        if (blockOutputs) blockOutputs->push_back(x);
    }
    return x;
}

std::vector<std::pair<std::string, at::Tensor>> VisionEncoder::namedParameters() const {
    const std::string p = "visual_encoder.";
    std::vector<std::pair<std::string, at::Tensor>> out{{p + "patch_embed.proj.weight", patchWeight_},
                                                        {p + "patch_embed.proj.bias", patchBias_},
                                                        {p + "cls_token", clsToken_},
                                                        {p + "pos_embed", posEmbed_}};
    for (size_t i = 0; i < blocks_.size(); ++i) {
        const std::string b = p + "blocks." + std::to_string(i) + ".";
        const Block &k = blocks_[i];
        out.emplace_back(b + "norm1.weight", k.norm1.weight);
        out.emplace_back(b + "norm1.bias", k.norm1.bias);
        out.emplace_back(b + "norm2.weight", k.norm2.weight);
        out.emplace_back(b + "norm2.bias", k.norm2.bias);
        out.emplace_back(b + "attn.qkv.weight", k.qkvWeight);
        out.emplace_back(b + "attn.qkv_bias", k.qkvBias);
        out.emplace_back(b + "attn.proj.weight", k.proj.weight);
        out.emplace_back(b + "attn.proj.bias", k.proj.bias);
        out.emplace_back(b + "mlp.fc1.weight", k.fc1.weight);
        out.emplace_back(b + "mlp.fc1.bias", k.fc1.bias);
        out.emplace_back(b + "mlp.fc2.weight", k.fc2.weight);
        out.emplace_back(b + "mlp.fc2.bias", k.fc2.bias);
    }
    return out;
}

} // namespace mgd
