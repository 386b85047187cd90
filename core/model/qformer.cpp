#include "core/model/qformer.h"

#include <ATen/ATen.h>
#include <cmath>

#include "core/model/weights.h"

namespace mgd {

QFormer::QFormer(const Weights &w, const QFormerConfig &c, int encoderWidth, at::ScalarType dtype) : c_(c) {
    const int64_t d = c.hidden;
    queryTokens_ = w.take("query_tokens", {1, c.numQueryTokens, d}, dtype);
    const std::string p = "Qformer.bert.";
    embNorm_ = LayerNorm::load(w, p + "embeddings.LayerNorm", d, c.lnEps, dtype);
    auto loadAttention = [&](const std::string &pre, int64_t kvIn) {
        Attention a;
        a.query = Linear::load(w, pre + ".self.query", d, d, true, dtype);
        a.key = Linear::load(w, pre + ".self.key", kvIn, d, true, dtype);
        a.value = Linear::load(w, pre + ".self.value", kvIn, d, true, dtype);
        a.dense = Linear::load(w, pre + ".output.dense", d, d, true, dtype);
        a.norm = LayerNorm::load(w, pre + ".output.LayerNorm", d, c.lnEps, dtype);
        return a;
    };
    for (int i = 0; i < c.layers; ++i) {
        const std::string l = p + "encoder.layer." + std::to_string(i) + ".";
        Layer layer;
        layer.self = loadAttention(l + "attention", d);
        layer.hasCross = (i % c.crossAttentionFreq) == 0;
        if (layer.hasCross) layer.cross = loadAttention(l + "crossattention", encoderWidth);
        layer.intermediate = Linear::load(w, l + "intermediate_query.dense", d, c.intermediate, true, dtype);
        layer.output = Linear::load(w, l + "output_query.dense", c.intermediate, d, true, dtype);
        layer.outputNorm = LayerNorm::load(w, l + "output_query.LayerNorm", d, c.lnEps, dtype);
        layers_.push_back(std::move(layer));
    }
}

// BertAttention: scores / sqrt(Dh) (the masks are all ones, so the additive mask is zero),
// softmax, context, then LN(dense(ctx) + h).
at::Tensor QFormer::attend(const Attention &a, const at::Tensor &h, const at::Tensor &kv) const {
    const int64_t B = h.size(0), Q = h.size(1), H = c_.heads, Dh = c_.hidden / c_.heads;
    auto heads = [&](const at::Tensor &t) { // [B, L, D] -> [B, H, L, Dh]
        return t.view({B, t.size(1), H, Dh}).permute({0, 2, 1, 3});
    };
    at::Tensor q = heads(a.query(h)), k = heads(a.key(kv)), v = heads(a.value(kv));
    at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(Dh));
    at::Tensor ctx =
        at::matmul(scores.softmax(-1), v).permute({0, 2, 1, 3}).contiguous().view({B, Q, c_.hidden});
    return a.norm(a.dense(ctx) + h);
}

at::Tensor QFormer::forward(const at::Tensor &image) const {
    const int64_t B = image.size(0);
    at::Tensor img = image.to(queryTokens_.scalar_type());
    at::Tensor h = embNorm_(queryTokens_.expand({B, -1, -1})); // [B, Q, D]
    for (const Layer &l : layers_) {
        h = attend(l.self, h, h);
        if (l.hasCross) h = attend(l.cross, h, img);
        at::Tensor f = l.output(at::gelu(l.intermediate(h)));
        h = l.outputNorm(f + h);
    }
    return h;
}

std::vector<std::pair<std::string, at::Tensor>> QFormer::namedParameters() const {
    const std::string p = "Qformer.bert.";
    std::vector<std::pair<std::string, at::Tensor>> out{{"query_tokens", queryTokens_},
                                                        {p + "embeddings.LayerNorm.weight", embNorm_.weight},
                                                        {p + "embeddings.LayerNorm.bias", embNorm_.bias}};
    auto linear = [&](const std::string &n, const Linear &l) {
        out.emplace_back(n + ".weight", l.weight);
        out.emplace_back(n + ".bias", l.bias);
    };
    auto norm = [&](const std::string &n, const LayerNorm &l) {
        out.emplace_back(n + ".weight", l.weight);
        out.emplace_back(n + ".bias", l.bias);
    };
    auto attention = [&](const std::string &pre, const Attention &a) {
        linear(pre + ".self.query", a.query);
        linear(pre + ".self.key", a.key);
        linear(pre + ".self.value", a.value);
        linear(pre + ".output.dense", a.dense);
        norm(pre + ".output.LayerNorm", a.norm);
    };
    for (size_t i = 0; i < layers_.size(); ++i) {
        const std::string l = p + "encoder.layer." + std::to_string(i) + ".";
        const Layer &L = layers_[i];
        attention(l + "attention", L.self);
        if (L.hasCross) attention(l + "crossattention", L.cross);
        linear(l + "intermediate_query.dense", L.intermediate);
        linear(l + "output_query.dense", L.output);
        norm(l + "output_query.LayerNorm", L.outputNorm);
    }
    return out;
}

} // namespace mgd
