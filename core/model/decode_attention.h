#pragma once
// Attention of one new token over the KV cache, read in place (no tensor is built per block):
// scores as a matrix-vector product over each block (no transposed copy of K), softmax and
// the weighted sum of V in fp32; int8 state is dequantized as it is read. Grouped heads share
// their KV head.
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace mgd {

class KvCache;

// True for one token (q [1, H, 1, Dh]) on the CPU with no gradient needed, over a cache on the
// CPU that holds q's dtype (bf16 or fp32) or int8, with H a multiple of its KV heads.
bool decodeAttentionEligible(const at::Tensor &q, const KvCache &cache);

// q [1, H, 1, Dh] (RoPE applied) over positions [0, total) of `layer` -> context [1, H, 1, Dh]
// in q's dtype: softmax(q K^T / sqrt(Dh)) V with no mask (a new token sees every earlier one).
at::Tensor decodeAttention(const at::Tensor &q, const KvCache &cache, int64_t layer, int64_t total);
// The same on raw fp32 rows: q [H * headDim] -> out [H * headDim]; no tensor, no allocation once
// the calling thread's scratch has grown (the one-token layer step, core/model/llama_decode).
void decodeAttentionInto(const float *q, int64_t H, const KvCache &cache, int64_t layer, int64_t total,
                         float *out);

} // namespace mgd
