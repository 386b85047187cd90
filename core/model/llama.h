#pragma once
// LLaMA decoder with Hugging Face semantics (modeling_llama.py as MiniGPT-4 ships it):
// RMSNorm, rotate-half RoPE, SiLU-gated MLP, grouped-query heads, causal attention over a
// KvCache that persists across calls.
#include <ATen/core/Tensor.h>
#include <vector>

#include "core/model/kv_cache.h"
#include "core/model/layers.h"
#include "core/model/model_config.h"

namespace mgd {

class Llama {
public:
    Llama(const Weights &w, const LlamaConfig &c, at::ScalarType dtype);

    // ids [n] -> [1, n, hidden]
    at::Tensor embed(const at::Tensor &ids) const;
    // Runs embeds [1, n, hidden] at positions cache.length .. cache.length+n-1, appends their
    // keys/values to the cache and returns fp32 logits [n, vocab] (allLogits) or [1, vocab]
    // for the last position only. hidden (optional) gets HF's output_hidden_states tuple.
    at::Tensor forward(const at::Tensor &embeds, KvCache &cache, bool allLogits,
                       std::vector<at::Tensor> *hidden = nullptr) const;
    KvShape kvShape() const;

    const LlamaConfig &config() const { return c_; }
    const at::Tensor &ropeCos() const { return cos_; }
    const at::Tensor &ropeSin() const { return sin_; }
    size_t weightBytes() const;
    // Weights one decode step reads: every matrix, one row of the embedding table.
    size_t decodeBytesPerToken() const;

private:
    struct Layer {
        at::Tensor inputNorm, postNorm;
        Linear q, k, v, o, gate, up, down;
    };
    at::Tensor rmsNorm(const at::Tensor &x, const at::Tensor &w) const;
    LlamaConfig c_;
    at::ScalarType dtype_;
    at::Tensor embedTokens_, finalNorm_;
    Linear lmHead_;
    std::vector<Layer> layers_;
    at::Tensor cos_, sin_; // [maxPositions, headDim]
};

} // namespace mgd
