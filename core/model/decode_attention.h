#pragma once
// Attention of one new token over the KV cache, in one pass per head: scores as a
// matrix-vector product over each KV block (no transposed copy of K, which libtorch's matmul
// made every token), softmax and the weighted sum of V in fp32. Grouped heads share their
// KV head.
#include <ATen/core/Tensor.h>

#include <utility>
#include <vector>

namespace mgd {

// True for one token (q [1, H, 1, Dh]) on the CPU with no gradient needed, segments of q's
// dtype (bf16 or fp32) laid out [1, KvH, len, Dh] with unit stride along Dh.
bool decodeAttentionEligible(const at::Tensor &q,
                             const std::vector<std::pair<at::Tensor, at::Tensor>> &segments);

// q [1, H, 1, Dh] (RoPE applied), segments (K, V) in position order -> context [1, H, 1, Dh]
// in q's dtype: softmax(q K^T / sqrt(Dh)) V with no mask (a new token sees every earlier one).
at::Tensor decodeAttention(const at::Tensor &q,
                           const std::vector<std::pair<at::Tensor, at::Tensor>> &segments);

} // namespace mgd
