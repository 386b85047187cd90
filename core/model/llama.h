#pragma once
// LLaMA decoder with Hugging Face semantics (modeling_llama.py as MiniGPT-4 ships it):
// RMSNorm, rotate-half RoPE, SiLU-gated MLP, grouped-query heads, causal attention over a
// KvCache that persists across calls.
#include <ATen/core/Tensor.h>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/model/kv_cache.h"
#include "core/model/layers.h"
#include "core/model/model_config.h"

namespace mgd {

class Llama {
public:
    // int8: every matrix (q/k/v/o, gate/up/down, lm_head) quantized to int8 with 32-value group
    // scales as it loads; activations, norms, the embedding table and the KV cache stay in dtype.
    Llama(const Weights &w, const LlamaConfig &c, at::ScalarType dtype, bool int8 = false);

    // ids [n] -> [1, n, hidden]
    at::Tensor embed(const at::Tensor &ids) const;
    // Runs embeds [1, n, hidden] at positions cache.length .. cache.length+n-1, appends their
    // keys/values to the cache and returns fp32 logits [n, vocab] (allLogits) or [1, vocab]
    // for the last position only. hidden (optional) gets HF's output_hidden_states tuple.
    at::Tensor forward(const at::Tensor &embeds, KvCache &cache, bool allLogits,
                       std::vector<at::Tensor> *hidden = nullptr) const;
    KvShape kvShape() const;
    // True when forward() runs a one-token call (embeds [1, 1, hidden], a reserved cache) on raw
    // buffers (core/model/llama_decode.cpp): the same arithmetic as the tensor path, rounded to
    // dtype where its ops round, without ~40 small tensor ops per layer. Not while training.
    bool oneTokenEligible(const at::Tensor &embeds, const KvCache &cache) const;
    // Training (core/train): embeds [B, n, hidden] at positions 0..n-1, causal, no cache;
    // right padding is harmless under the causal mask. fp32 logits [B, n - shared, vocab] for
    // positions shared..n-1. The first `shared` positions must be the same in every row (a
    // system prompt): they run once, as one row, and the rest attend to their keys. Same layer
    // code as forward().
    at::Tensor forwardTrain(const at::Tensor &embeds, int64_t shared = 0) const;
    // The trainable tensors under their original state-dict names; handles, so in-place
    // updates reach the model.
    std::vector<std::pair<std::string, at::Tensor>> namedParameters() const;

    const LlamaConfig &config() const { return c_; }
    const at::Tensor &ropeCos() const { return cos_; }
    const at::Tensor &ropeSin() const { return sin_; }
    size_t weightBytes() const;
    bool int8() const { return lmHead_.q8 != nullptr; }
    // Weights one decode step reads: every matrix, one row of the embedding table.
    size_t decodeBytesPerToken() const;

private:
    struct Layer {
        at::Tensor inputNorm, postNorm;
        Linear q, k, v, o, gate, up, down;
    };
    at::Tensor rmsNorm(const at::Tensor &x, const at::Tensor &w) const;
    // What a layer attends over: (K, V) segments in position order, each [B, kvHeads, len,
    // headDim], or positions [0, total) of a cache's layer read in place (one-token decode).
    struct KvRead {
        std::vector<std::pair<at::Tensor, at::Tensor>> segments;
        const KvCache *cache = nullptr;
        int64_t layer = 0, total = 0;
    };
    // kv(k, v) stores this call's keys/values [B, kvHeads, n, headDim] and returns what to
    // attend over.
    using KvFn = std::function<KvRead(const at::Tensor &, const at::Tensor &)>;
    // One decoder layer on x [B, n, hidden]; mask [n, total] or undefined.
    at::Tensor layerForward(const Layer &l, const at::Tensor &x, const at::Tensor &cos, const at::Tensor &sin,
                            const at::Tensor &mask, const KvFn &kv) const;
    // y + MLP(RMSNorm(y)): the second half of a layer.
    at::Tensor mlpBlock(const Layer &l, const at::Tensor &y) const;
    at::Tensor forwardOneToken(const at::Tensor &embeds, KvCache &cache) const;
    LlamaConfig c_;
    at::ScalarType dtype_;
    at::Tensor embedTokens_, finalNorm_;
    Linear lmHead_;
    std::vector<Layer> layers_;
    at::Tensor cos_, sin_; // [maxPositions, headDim]
};

} // namespace mgd
