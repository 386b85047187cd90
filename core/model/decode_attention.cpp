#include "core/model/decode_attention.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/kernels/gemv.h"
#include "core/model/kv_cache.h"

namespace mgd {

namespace {

inline float bf16ToFloat(uint16_t h) {
    const uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

// row[t] = scale[t] * (q . k[t]) over int8 rows of Dh values.
void scoresInt8(const float *q, const int8_t *k, const float *scale, int64_t len, int64_t Dh, float *row) {
    for (int64_t t = 0; t < len; ++t) {
        const int8_t *kr = k + t * Dh;
        float s = 0;
        for (int64_t d = 0; d < Dh; ++d) s += q[d] * static_cast<float>(kr[d]);
        row[t] = s * scale[t];
    }
}

} // namespace

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

at::Tensor decodeAttention(const at::Tensor &qIn, const KvCache &cache, int64_t layer, int64_t total) {
    const KvElement type = cache.element();
    const int64_t H = qIn.size(1), Dh = qIn.size(3), G = H / cache.kvHeads();
    // Reused from token to token (the engine decodes on one thread at a time).
    thread_local std::vector<KvSpan> spans;
    spans.clear();
    cache.spans(layer, total, spans);
    at::Tensor q = qIn.to(at::kFloat).contiguous(); // [1, H, 1, Dh]
    at::Tensor scores = at::empty({H, total}, q.options());
    at::Tensor out = at::empty({1, H, 1, Dh}, q.options());
    const float *qp = q.data_ptr<float>();
    float *sp = scores.data_ptr<float>(), *op = out.data_ptr<float>();
    const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
    // Block by block, each thread over its heads: a block's keys (then values) of consecutive
    // heads lie next to each other, so a thread reads one run per block, not one per head.
    at::parallel_for(0, H, 1, [&](int64_t h0, int64_t h1) {
        int64_t off = 0;
        for (const KvSpan &s : spans) { // scores = K q
            for (int64_t h = h0; h < h1; ++h) {
                const int64_t kvh = h / G, head = kvh * s.headStride;
                const float *qh = qp + h * Dh;
                float *row = sp + h * total + off;
                if (type == KvElement::Bf16)
                    kernels::gemvBf16(
                        kernels::PackedBf16(static_cast<const uint16_t *>(s.k) + head, s.len, Dh, Dh), qh,
                        row, nullptr, 0, s.len);
                else if (type == KvElement::F32)
                    kernels::gemvF32(
                        kernels::PackedF32(static_cast<const float *>(s.k) + head, s.len, Dh, Dh), qh, row,
                        nullptr, 0, s.len);
                else
                    scoresInt8(qh, static_cast<const int8_t *>(s.k) + head,
                               s.kScale + kvh * s.scaleHeadStride, s.len, Dh, row);
            }
            off += s.len;
        }
        for (int64_t h = h0; h < h1; ++h) { // softmax, scaled by 1/sum
            float *row = sp + h * total;
            float mx = -std::numeric_limits<float>::infinity();
            for (int64_t t = 0; t < total; ++t) mx = std::max(mx, row[t] * scale);
            float sum = 0;
            for (int64_t t = 0; t < total; ++t) sum += (row[t] = std::exp(row[t] * scale - mx));
            const float inv = 1.0f / sum;
            for (int64_t t = 0; t < total; ++t) row[t] *= inv;
            for (int64_t d = 0; d < Dh; ++d) op[h * Dh + d] = 0;
        }
        off = 0;
        for (const KvSpan &s : spans) { // out = sum_t p[t] V[t]
            for (int64_t h = h0; h < h1; ++h) {
                const int64_t kvh = h / G, head = kvh * s.headStride;
                const float *p = sp + h * total + off;
                float *o = op + h * Dh;
                for (int64_t t = 0; t < s.len; ++t) {
                    if (type == KvElement::Bf16) {
                        const auto *vr = static_cast<const uint16_t *>(s.v) + head + t * Dh;
                        for (int64_t d = 0; d < Dh; ++d) o[d] += p[t] * bf16ToFloat(vr[d]);
                    } else if (type == KvElement::F32) {
                        const float *vr = static_cast<const float *>(s.v) + head + t * Dh;
                        for (int64_t d = 0; d < Dh; ++d) o[d] += p[t] * vr[d];
                    } else {
                        const int8_t *vr = static_cast<const int8_t *>(s.v) + head + t * Dh;
                        const float w = p[t] * s.vScale[kvh * s.scaleHeadStride + t];
                        for (int64_t d = 0; d < Dh; ++d) o[d] += w * static_cast<float>(vr[d]);
                    }
                }
            }
            off += s.len;
        }
    });
    return qIn.scalar_type() == at::kBFloat16 ? out.to(at::kBFloat16) : out;
}

} // namespace mgd
