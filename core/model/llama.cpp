#include "core/model/llama.h"

#include <ATen/ATen.h>
#include <cmath>
#include <limits>

#include "core/model/decode_attention.h"
#include "core/model/decode_linear.h"
#include "core/kernels/gemv.h"
#include "core/memory/weight_arena.h"
#include "core/model/weights.h"
#include "core/util/error.h"

namespace mgd {

Llama::Llama(const Weights &w, const LlamaConfig &c, at::ScalarType dtype, bool int8) : c_(c), dtype_(dtype) {
    const int64_t d = c.hidden, dh = c.headDim(), kvd = c.kvHeads * dh;
    const std::string p = "llama_model.model.";
    embedTokens_ = w.take(p + "embed_tokens.weight", {c.vocabSize, d}, dtype);
    finalNorm_ = w.take(p + "norm.weight", {d}, dtype);
    // Decode's matrices on huge pages, one copy: sizes first, then each moves in as it loads
    // (int8 ones are quantized straight into their slot).
    size_t arenaBytes = 0;
    {
        const size_t e = at::elementSize(dtype);
        auto add = [&](int64_t rows, int64_t cols) {
            arenaBytes += WeightArena::slot(int8 ? kernels::PackedQ8::bytesFor(rows, cols) : rows * cols * e);
        };
        add(c.vocabSize, d);
        for (int i = 0; i < c.layers; ++i) {
            add(d, d), add(kvd, d), add(kvd, d), add(d, d);
            add(c.intermediate, d), add(c.intermediate, d), add(d, c.intermediate);
        }
    }
    WeightArena arena(arenaBytes);
    auto load = [&](const std::string &prefix, int64_t in, int64_t out) {
        Linear l = Linear::load(w, prefix, in, out, false, dtype, int8, &arena);
        if (!int8) {
            l.weight = arena.adopt(l.weight);
            w.release(prefix + ".weight");
        }
        return l;
    };
    lmHead_ = load("llama_model.lm_head", d, c.vocabSize);
    at::Tensor invFreq;
    for (int i = 0; i < c.layers; ++i) {
        const std::string l = p + "layers." + std::to_string(i) + ".";
        Layer layer;
        layer.inputNorm = w.take(l + "input_layernorm.weight", {d}, dtype);
        layer.postNorm = w.take(l + "post_attention_layernorm.weight", {d}, dtype);
        layer.q = load(l + "self_attn.q_proj", d, d);
        layer.k = load(l + "self_attn.k_proj", d, kvd);
        layer.v = load(l + "self_attn.v_proj", d, kvd);
        layer.o = load(l + "self_attn.o_proj", d, d);
        layer.gate = load(l + "mlp.gate_proj", d, c.intermediate);
        layer.up = load(l + "mlp.up_proj", d, c.intermediate);
        layer.down = load(l + "mlp.down_proj", c.intermediate, d);
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
    size_t n = embedTokens_.nbytes() + finalNorm_.nbytes() + lmHead_.weightBytes();
    for (const auto &l : layers_)
        for (const Linear *x : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) n += x->weightBytes();
    return n;
}

size_t Llama::decodeBytesPerToken() const {
    return weightBytes() - embedTokens_.nbytes() + embedTokens_[0].nbytes();
}

at::Tensor Llama::embed(const at::Tensor &ids) const {
    return at::embedding(embedTokens_, ids.to(at::kLong)).unsqueeze(0);
}

at::Tensor Llama::rmsNorm(const at::Tensor &x, const at::Tensor &w) const {
    at::Tensor var = x.to(at::kFloat).pow(2).mean(-1, true);
    at::Tensor h = x * at::rsqrt(var + c_.rmsEps);
    return w * h.to(w.scalar_type());
}

KvShape Llama::kvShape() const {
    KvShape s;
    s.layers = c_.layers;
    s.kvHeads = c_.kvHeads;
    s.headDim = c_.headDim();
    s.maxPositions = c_.maxPositions;
    s.dtype = dtype_;
    s.device = embedTokens_.device();
    return s;
}

at::Tensor Llama::layerForward(const Layer &l, const at::Tensor &x, const at::Tensor &cos,
                               const at::Tensor &sin, const at::Tensor &mask, const KvFn &kv) const {
    const int64_t B = x.size(0), n = x.size(1);
    const int64_t H = c_.heads, KvH = c_.kvHeads, G = H / KvH, Dh = c_.headDim(), D = c_.hidden;
    const double invSqrt = std::sqrt(static_cast<double>(Dh));
    auto rope = [&](const at::Tensor &t) { // t [B, heads, n, Dh]; rotate_half = cat(-x2, x1)
        at::Tensor x1 = t.narrow(-1, 0, Dh / 2), x2 = t.narrow(-1, Dh / 2, Dh / 2);
        return t * cos + at::cat({-x2, x1}, -1) * sin;
    };
    at::Tensor h = rmsNorm(x, l.inputNorm);
    // One decoded token: q, k and v in one pass over their rows (the same for gate and up).
    std::vector<at::Tensor> qkv = decodeEligible({&l.q, &l.k, &l.v}, h)
                                      ? decodeLinear({&l.q, &l.k, &l.v}, h)
                                      : std::vector<at::Tensor>{l.q(h), l.k(h), l.v(h)};
    at::Tensor q = rope(qkv[0].view({B, n, H, Dh}).transpose(1, 2));   // [B, H, n, Dh]
    at::Tensor k = rope(qkv[1].view({B, n, KvH, Dh}).transpose(1, 2)); // [B, KvH, n, Dh]
    at::Tensor v = qkv[2].view({B, n, KvH, Dh}).transpose(1, 2);
    KvRead read = kv(k, v);
    if (read.cache && !mask.defined() && decodeAttentionEligible(q, *read.cache)) {
        at::Tensor ctx = decodeAttention(q, *read.cache, read.layer, read.total).view({B, 1, D});
        return mlpBlock(l, x + l.o(ctx));
    }
    if (read.cache) {
        auto [K, V] = read.cache->gathered(read.layer, read.total);
        read.segments.emplace_back(K.unsqueeze(0), V.unsqueeze(0));
    }
    const auto &segs = read.segments;
    // Grouped heads: the G query heads of one kv head share its keys. [B, KvH, G*n, Dh]
    at::Tensor qg = q.reshape({B, KvH, G * n, Dh});
    std::vector<at::Tensor> parts; // per KV segment: [B, KvH, G*n, len]
    for (const auto &s : segs) parts.push_back(at::matmul(qg, s.first.transpose(-2, -1)));
    at::Tensor scores = (parts.size() == 1 ? parts[0] : at::cat(parts, -1)) / invSqrt;
    const int64_t total = scores.size(-1);
    if (mask.defined()) scores = scores.view({B, KvH, G, n, total}) + mask.to(scores.scalar_type());
    at::Tensor probs = scores.to(at::kFloat).softmax(-1).to(dtype_).view({B, KvH, G * n, total});
    at::Tensor ctx;
    int64_t off = 0;
    for (const auto &s : segs) { // sum over segments of probs[..., seg] @ V_seg
        const int64_t len = s.second.size(-2);
        at::Tensor part = at::matmul(probs.narrow(-1, off, len), s.second);
        ctx = ctx.defined() ? ctx.add_(part) : part;
        off += len;
    }
    ctx = ctx.view({B, H, n, Dh}).transpose(1, 2).reshape({B, n, D});
    return mlpBlock(l, x + l.o(ctx));
}

at::Tensor Llama::mlpBlock(const Layer &l, const at::Tensor &y) const {
    at::Tensor h = rmsNorm(y, l.postNorm);
    std::vector<at::Tensor> gu = decodeEligible({&l.gate, &l.up}, h)
                                     ? decodeLinear({&l.gate, &l.up}, h)
                                     : std::vector<at::Tensor>{l.gate(h), l.up(h)};
    return y + l.down(at::silu(gu[0]) * gu[1]);
}

at::Tensor Llama::forward(const at::Tensor &embeds, KvCache &cache, bool allLogits,
                          std::vector<at::Tensor> *hidden) const {
    const int64_t n = embeds.size(1), start = cache.length(), total = start + n;
    const int64_t D = c_.hidden;
    if (total > c_.maxPositions)
        throw Error("context overflow: " + std::to_string(total) + " positions exceed the model's " +
                    std::to_string(c_.maxPositions));
    cache.reserve(kvShape(), total);
    if (n == 1 && !hidden && oneTokenEligible(embeds, cache)) return forwardOneToken(embeds, cache);
    at::Tensor cos = cos_.narrow(0, start, n), sin = sin_.narrow(0, start, n); // [n, Dh]
    at::Tensor mask; // [n, total]: -inf where key position > query position
    if (n > 1)
        mask = at::full({n, total}, -std::numeric_limits<float>::infinity(), at::kFloat).triu(start + 1);

    at::Tensor x = embeds.to(dtype_).reshape({1, n, D});
    if (hidden) hidden->push_back(x);
    for (int li = 0; li < c_.layers; ++li) {
        x = layerForward(layers_[li], x, cos, sin, mask, [&](const at::Tensor &k, const at::Tensor &v) {
            cache.write(li, start, k[0], v[0]);
            return KvRead{{}, &cache, li, total};
        });
        if (hidden && li + 1 < c_.layers) hidden->push_back(x);
    }
    cache.commit(total);
    x = x.reshape({n, D});
    at::Tensor out = allLogits ? x : x.narrow(0, n - 1, 1);
    out = rmsNorm(out, finalNorm_);
    if (hidden) hidden->push_back((allLogits ? out : rmsNorm(x, finalNorm_)).unsqueeze(0));
    return lmHead_(out).to(at::kFloat);
}

at::Tensor Llama::forwardTrain(const at::Tensor &embeds, int64_t shared) const {
    const int64_t B = embeds.size(0), n = embeds.size(1), P = shared;
    if (n > c_.maxPositions)
        throw Error("context overflow: " + std::to_string(n) + " positions exceed the model's " +
                    std::to_string(c_.maxPositions));
    if (P < 0 || P >= n) throw Error("forwardTrain: shared prefix out of range");
    const float inf = std::numeric_limits<float>::infinity();
    // Row 0's prefix stands for every row's; the causal mask of the rest is offset by P.
    at::Tensor xp = embeds.narrow(0, 0, 1).narrow(1, 0, P).to(dtype_);
    at::Tensor x = embeds.narrow(1, P, n - P).to(dtype_);
    at::Tensor maskP = at::full({P, P}, -inf, at::kFloat).triu(1);
    at::Tensor mask = at::full({n - P, n}, -inf, at::kFloat).triu(P + 1);
    at::Tensor cosP = cos_.narrow(0, 0, P), sinP = sin_.narrow(0, 0, P);
    at::Tensor cos = cos_.narrow(0, P, n - P), sin = sin_.narrow(0, P, n - P);
    for (const Layer &l : layers_) {
        at::Tensor kp, vp;
        if (P > 0)
            xp = layerForward(l, xp, cosP, sinP, maskP, [&](const at::Tensor &k, const at::Tensor &v) {
                kp = k;
                vp = v;
                return KvRead{{{k, v}}};
            });
        x = layerForward(l, x, cos, sin, mask, [&](const at::Tensor &k, const at::Tensor &v) {
            KvRead r;
            if (P > 0) r.segments.emplace_back(kp.expand({B, -1, -1, -1}), vp.expand({B, -1, -1, -1}));
            r.segments.emplace_back(k, v);
            return r;
        });
    }
    return lmHead_(rmsNorm(x, finalNorm_)).to(at::kFloat);
}

std::vector<std::pair<std::string, at::Tensor>> Llama::namedParameters() const {
    const std::string p = "llama_model.model.";
    std::vector<std::pair<std::string, at::Tensor>> out{{p + "embed_tokens.weight", embedTokens_}};
    for (size_t i = 0; i < layers_.size(); ++i) {
        const std::string l = p + "layers." + std::to_string(i) + ".";
        const Layer &L = layers_[i];
        out.emplace_back(l + "input_layernorm.weight", L.inputNorm);
        out.emplace_back(l + "post_attention_layernorm.weight", L.postNorm);
        out.emplace_back(l + "self_attn.q_proj.weight", L.q.weight);
        out.emplace_back(l + "self_attn.k_proj.weight", L.k.weight);
        out.emplace_back(l + "self_attn.v_proj.weight", L.v.weight);
        out.emplace_back(l + "self_attn.o_proj.weight", L.o.weight);
        out.emplace_back(l + "mlp.gate_proj.weight", L.gate.weight);
        out.emplace_back(l + "mlp.up_proj.weight", L.up.weight);
        out.emplace_back(l + "mlp.down_proj.weight", L.down.weight);
    }
    out.emplace_back(p + "norm.weight", finalNorm_);
    out.emplace_back("llama_model.lm_head.weight", lmHead_.weight);
    return out;
}

} // namespace mgd
