#include "core/model/decode_attention.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/kernels/attention_rows.h"
#include "core/model/kv_cache.h"

namespace mgd {

bool decodeAttentionEligible(const at::Tensor &q, const KvCache &cache) {
    if (q.dim() != 4 || q.size(0) != 1 || q.size(2) != 1 || !q.device().is_cpu()) return false;
    if (q.requires_grad() && at::GradMode::is_enabled()) return false;
    const at::ScalarType dt = q.scalar_type();
    const KvElement e = cache.element();
    const bool match = (e == KvElement::F32 && dt == at::kFloat) ||
                       (e == KvElement::Bf16 && dt == at::kBFloat16) ||
                       (e == KvElement::Int8 && (dt == at::kFloat || dt == at::kBFloat16));
    return match && cache.kvHeads() > 0 && q.size(1) % cache.kvHeads() == 0 && q.size(3) == cache.headDim();
}

void decodeAttentionInto(const float *q, int64_t H, const KvCache &cache, int64_t layer, int64_t total,
                         float *out) {
    const KvElement type = cache.element();
    const int64_t Dh = cache.headDim(), G = H / cache.kvHeads();
    // Reused from token to token (the engine decodes on one thread at a time); the workers use
    // the calling thread's buffers through these pointers.
    thread_local std::vector<KvSpan> spanStore;
    thread_local std::vector<float> scoreStore;
    spanStore.clear();
    cache.spans(layer, total, spanStore);
    if (scoreStore.size() < static_cast<size_t>(H * total)) scoreStore.resize(static_cast<size_t>(H * total));
    const std::vector<KvSpan> &spans = spanStore;
    // bf16 keys against a q that is all bf16 values (a bf16 model's): in the keys' own format.
    thread_local std::vector<uint16_t> qbStore;
    const uint16_t *qb = nullptr;
    if (type == KvElement::Bf16) {
        qbStore.resize(static_cast<size_t>(H * Dh));
        bool exact = true;
        for (int64_t i = 0; i < H * Dh && exact; ++i) {
            uint32_t b;
            std::memcpy(&b, q + i, 4);
            exact = (b & 0xffffu) == 0;
            qbStore[static_cast<size_t>(i)] = static_cast<uint16_t>(b >> 16);
        }
        if (exact) qb = qbStore.data();
    }
    float *sp = scoreStore.data();
    const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
    // Block by block, each thread over its heads: a block's keys (then values) of consecutive
    // heads lie next to each other, so a thread reads one run per block, not one per head.
    at::parallel_for(0, H, 1, [&](int64_t h0, int64_t h1) {
        int64_t off = 0;
        for (const KvSpan &s : spans) { // scores = K q
            for (int64_t h = h0; h < h1; ++h) {
                const int64_t kvh = h / G, head = kvh * s.headStride;
                const float *qh = q + h * Dh;
                float *row = sp + h * total + off;
                if (type == KvElement::Bf16 && qb)
                    kernels::dotRowsBf16(static_cast<const uint16_t *>(s.k) + head, Dh, s.len, Dh,
                                         qb + h * Dh, row);
                else if (type == KvElement::Bf16)
                    kernels::dotRowsBf16(static_cast<const uint16_t *>(s.k) + head, Dh, s.len, Dh, qh, row);
                else if (type == KvElement::F32)
                    kernels::dotRowsF32(static_cast<const float *>(s.k) + head, Dh, s.len, Dh, qh, row);
                else
                    kernels::dotRowsI8(static_cast<const int8_t *>(s.k) + head, Dh, s.len, Dh,
                                       s.kScale + kvh * s.scaleHeadStride, qh, row);
            }
            off += s.len;
        }
        for (int64_t h = h0; h < h1; ++h) {
            kernels::softmaxRow(sp + h * total, total, scale);
            std::fill(out + h * Dh, out + (h + 1) * Dh, 0.0f);
        }
        off = 0;
        for (const KvSpan &s : spans) { // out = sum_t p[t] V[t]
            for (int64_t h = h0; h < h1; ++h) {
                const int64_t kvh = h / G, head = kvh * s.headStride;
                const float *p = sp + h * total + off;
                float *o = out + h * Dh;
                if (type == KvElement::Bf16)
                    kernels::addRowsBf16(static_cast<const uint16_t *>(s.v) + head, Dh, s.len, Dh, p, o);
                else if (type == KvElement::F32)
                    kernels::addRowsF32(static_cast<const float *>(s.v) + head, Dh, s.len, Dh, p, o);
                else
                    kernels::addRowsI8(static_cast<const int8_t *>(s.v) + head, Dh, s.len, Dh,
                                       s.vScale + kvh * s.scaleHeadStride, p, o);
            }
            off += s.len;
        }
    });
}

at::Tensor decodeAttention(const at::Tensor &qIn, const KvCache &cache, int64_t layer, int64_t total) {
    const int64_t H = qIn.size(1);
    at::Tensor q = qIn.to(at::kFloat).contiguous(); // [1, H, 1, Dh]
    at::Tensor out = at::empty({1, H, 1, cache.headDim()}, q.options());
    decodeAttentionInto(q.data_ptr<float>(), H, cache, layer, total, out.data_ptr<float>());
    return qIn.scalar_type() == at::kBFloat16 ? out.to(at::kBFloat16) : out;
}

} // namespace mgd
