#include "core/model/llama.h"

#include <ATen/ATen.h>
#include <cmath>
#include <limits>

#include "core/model/weights.h"
#include "core/util/error.h"

namespace mgd {

size_t KvCache::bytes() const {
    size_t n = 0;
    for (const auto &t : keys) n += t.numel() * t.element_size();
    for (const auto &t : values) n += t.numel() * t.element_size();
    return n;
}

Llama::Llama(const Weights &w, const LlamaConfig &c, at::ScalarType dtype) : c_(c), dtype_(dtype) {
    const int64_t d = c.hidden, dh = c.headDim(), kvd = c.kvHeads * dh;
    const std::string p = "llama_model.model.";
    embedTokens_ = w.take(p + "embed_tokens.weight", {c.vocabSize, d}, dtype);
    finalNorm_ = w.take(p + "norm.weight", {d}, dtype);
    lmHead_ = Linear::load(w, "llama_model.lm_head", d, c.vocabSize, false, dtype);
    at::Tensor invFreq;
    for (int i = 0; i < c.layers; ++i) {
        const std::string l = p + "layers." + std::to_string(i) + ".";
        Layer layer;
        layer.inputNorm = w.take(l + "input_layernorm.weight", {d}, dtype);
        layer.postNorm = w.take(l + "post_attention_layernorm.weight", {d}, dtype);
        layer.q = Linear::load(w, l + "self_attn.q_proj", d, d, false, dtype);
        layer.k = Linear::load(w, l + "self_attn.k_proj", d, kvd, false, dtype);
        layer.v = Linear::load(w, l + "self_attn.v_proj", d, kvd, false, dtype);
        layer.o = Linear::load(w, l + "self_attn.o_proj", d, d, false, dtype);
        layer.gate = Linear::load(w, l + "mlp.gate_proj", d, c.intermediate, false, dtype);
        layer.up = Linear::load(w, l + "mlp.up_proj", d, c.intermediate, false, dtype);
        layer.down = Linear::load(w, l + "mlp.down_proj", c.intermediate, d, false, dtype);
        if (!invFreq.defined())
            invFreq = w.takeOptional(l + "self_attn.rotary_emb.inv_freq", {dh / 2}, at::kFloat);
        layers_.push_back(std::move(layer));
    }
    // HF: inv_freq = 1 / base^(arange(0, dim, 2) / dim); cos/sin of cat(t x inv_freq, same).
    if (!invFreq.defined())
        invFreq = 1.0 / at::pow(c.ropeTheta, at::arange(0, dh, 2, at::kFloat) / static_cast<double>(dh));
    at::Tensor t = at::arange(c.maxPositions, at::kFloat);
    at::Tensor freqs = at::outer(t, invFreq);
    at::Tensor emb = at::cat({freqs, freqs}, -1);
    cos_ = emb.cos().to(dtype);
    sin_ = emb.sin().to(dtype);
}

size_t Llama::weightBytes() const {
    size_t n = embedTokens_.nbytes() + finalNorm_.nbytes() + lmHead_.weight.nbytes();
    for (const auto &l : layers_)
        for (const Linear *x : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) n += x->weight.nbytes();
    return n;
}

at::Tensor Llama::embed(const at::Tensor &ids) const {
    return at::embedding(embedTokens_, ids.to(at::kLong)).unsqueeze(0);
}

at::Tensor Llama::rmsNorm(const at::Tensor &x, const at::Tensor &w) const {
    at::Tensor var = x.to(at::kFloat).pow(2).mean(-1, true);
    at::Tensor h = x * at::rsqrt(var + c_.rmsEps);
    return w * h.to(w.scalar_type());
}

void Llama::reserve(KvCache &cache, int64_t positions) const {
    if (positions <= cache.capacity()) return;
    // Grow geometrically (bounded by the context) so a conversation pays O(log n) copies.
    int64_t cap = std::max<int64_t>(positions, std::min<int64_t>(2 * cache.capacity(), c_.maxPositions));
    cap = std::max<int64_t>(cap, std::min<int64_t>(256, c_.maxPositions));
    const auto opts = at::TensorOptions().dtype(dtype_).device(embedTokens_.device());
    for (int i = 0; i < c_.layers; ++i) {
        at::Tensor k = at::empty({c_.kvHeads, cap, c_.headDim()}, opts);
        at::Tensor v = at::empty({c_.kvHeads, cap, c_.headDim()}, opts);
        if (cache.length > 0 && i < static_cast<int>(cache.keys.size())) {
            k.narrow(1, 0, cache.length).copy_(cache.keys[i].narrow(1, 0, cache.length));
            v.narrow(1, 0, cache.length).copy_(cache.values[i].narrow(1, 0, cache.length));
        }
        if (i < static_cast<int>(cache.keys.size())) {
            cache.keys[i] = k;
            cache.values[i] = v;
        } else {
            cache.keys.push_back(k);
            cache.values.push_back(v);
        }
    }
}

at::Tensor Llama::forward(const at::Tensor &embeds, KvCache &cache, bool allLogits,
                          std::vector<at::Tensor> *hidden) const {
    const int64_t n = embeds.size(1), start = cache.length, total = start + n;
    const int64_t H = c_.heads, KvH = c_.kvHeads, G = H / KvH, Dh = c_.headDim(), D = c_.hidden;
    if (total > c_.maxPositions)
        throw Error("context overflow: " + std::to_string(total) + " positions exceed the model's " +
                    std::to_string(c_.maxPositions));
    reserve(cache, total);
    const double invSqrt = std::sqrt(static_cast<double>(Dh));
    at::Tensor cos = cos_.narrow(0, start, n), sin = sin_.narrow(0, start, n); // [n, Dh]
    auto rope = [&](const at::Tensor &x) { // x [heads, n, Dh]; rotate_half = cat(-x2, x1)
        at::Tensor x1 = x.narrow(-1, 0, Dh / 2), x2 = x.narrow(-1, Dh / 2, Dh / 2);
        return x * cos + at::cat({-x2, x1}, -1) * sin;
    };
    at::Tensor mask; // [n, total]: -inf where key position > query position
    if (n > 1)
        mask = at::full({n, total}, -std::numeric_limits<float>::infinity(), at::kFloat).triu(start + 1);

    at::Tensor x = embeds.to(dtype_).reshape({n, D});
    if (hidden) hidden->push_back(x.unsqueeze(0));
    for (int li = 0; li < c_.layers; ++li) {
        const Layer &l = layers_[li];
        at::Tensor h = rmsNorm(x, l.inputNorm);
        at::Tensor q = rope(l.q(h).view({n, H, Dh}).transpose(0, 1));   // [H, n, Dh]
        at::Tensor k = rope(l.k(h).view({n, KvH, Dh}).transpose(0, 1)); // [KvH, n, Dh]
        at::Tensor v = l.v(h).view({n, KvH, Dh}).transpose(0, 1);
        cache.keys[li].narrow(1, start, n).copy_(k);
        cache.values[li].narrow(1, start, n).copy_(v);
        at::Tensor K = cache.keys[li].narrow(1, 0, total), V = cache.values[li].narrow(1, 0, total);
        // Grouped heads: the G query heads of one kv head share its keys. [KvH, G*n, Dh]
        at::Tensor qg = q.reshape({KvH, G * n, Dh});
        at::Tensor scores = at::matmul(qg, K.transpose(1, 2)) / invSqrt; // [KvH, G*n, total]
        if (mask.defined()) scores = scores.view({KvH, G, n, total}) + mask.to(scores.scalar_type());
        at::Tensor probs = scores.to(at::kFloat).softmax(-1).to(dtype_).view({KvH, G * n, total});
        at::Tensor ctx = at::matmul(probs, V).view({H, n, Dh}).transpose(0, 1).reshape({n, D});
        x = x + l.o(ctx);
        h = rmsNorm(x, l.postNorm);
        x = x + l.down(at::silu(l.gate(h)) * l.up(h));
        if (hidden && li + 1 < c_.layers) hidden->push_back(x.unsqueeze(0));
    }
    cache.length = total;
    at::Tensor out = allLogits ? x : x.narrow(0, n - 1, 1);
    out = rmsNorm(out, finalNorm_);
    if (hidden) hidden->push_back((allLogits ? out : rmsNorm(x, finalNorm_)).unsqueeze(0));
    return lmHead_(out).to(at::kFloat);
}

} // namespace mgd
