#include "core/model/decode_attention.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "core/kernels/gemv.h"

namespace mgd {

namespace {

inline float bf16ToFloat(uint16_t h) {
    const uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

} // namespace

bool decodeAttentionEligible(const at::Tensor &q,
                             const std::vector<std::pair<at::Tensor, at::Tensor>> &segments) {
    if (q.dim() != 4 || q.size(0) != 1 || q.size(2) != 1 || !q.device().is_cpu() || segments.empty())
        return false;
    if (q.requires_grad() && at::GradMode::is_enabled()) return false;
    const at::ScalarType dt = q.scalar_type();
    if (dt != at::kFloat && dt != at::kBFloat16) return false;
    const int64_t H = q.size(1), Dh = q.size(3);
    for (const auto &[k, v] : segments) {
        for (const at::Tensor *t : {&k, &v})
            if (t->dim() != 4 || t->size(0) != 1 || t->scalar_type() != dt || t->size(3) != Dh ||
                t->stride(3) != 1 || t->stride(2) != Dh || !t->device().is_cpu())
                return false;
        if (k.size(1) == 0 || H % k.size(1) != 0 || v.size(1) != k.size(1) || v.size(2) != k.size(2))
            return false;
    }
    return true;
}

at::Tensor decodeAttention(const at::Tensor &qIn,
                           const std::vector<std::pair<at::Tensor, at::Tensor>> &segments) {
    const bool bf16 = qIn.scalar_type() == at::kBFloat16;
    const int64_t H = qIn.size(1), Dh = qIn.size(3), KvH = segments.front().first.size(1), G = H / KvH;
    int64_t total = 0;
    for (const auto &s : segments) total += s.first.size(2);
    at::Tensor q = qIn.to(at::kFloat).contiguous(); // [1, H, 1, Dh]
    at::Tensor scores = at::empty({H, total}, q.options());
    at::Tensor out = at::empty({1, H, 1, Dh}, q.options());
    const float *qp = q.data_ptr<float>();
    float *sp = scores.data_ptr<float>(), *op = out.data_ptr<float>();
    const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
    at::parallel_for(0, H, 1, [&](int64_t h0, int64_t h1) {
        for (int64_t h = h0; h < h1; ++h) {
            const int64_t kvh = h / G;
            float *row = sp + h * total;
            int64_t off = 0;
            for (const auto &[k, v] : segments) { // scores = K q over each block
                const int64_t len = k.size(2);
                if (bf16) {
                    const auto *kp = static_cast<const uint16_t *>(k.data_ptr()) + kvh * k.stride(1);
                    kernels::gemvBf16(kernels::PackedBf16(kp, len, Dh, Dh), qp + h * Dh, row + off, nullptr,
                                      0, len);
                } else {
                    const float *kp = k.data_ptr<float>() + kvh * k.stride(1);
                    kernels::gemvF32(kernels::PackedF32(kp, len, Dh, Dh), qp + h * Dh, row + off, nullptr, 0,
                                     len);
                }
                off += len;
            }
            float mx = -std::numeric_limits<float>::infinity();
            for (int64_t t = 0; t < total; ++t) mx = std::max(mx, row[t] * scale);
            float sum = 0;
            for (int64_t t = 0; t < total; ++t) sum += (row[t] = std::exp(row[t] * scale - mx));
            const float inv = 1.0f / sum;
            float *o = op + h * Dh;
            for (int64_t d = 0; d < Dh; ++d) o[d] = 0;
            off = 0;
            for (const auto &[k, v] : segments) { // out = sum_t p[t] V[t]
                const int64_t len = v.size(2);
                for (int64_t t = 0; t < len; ++t) {
                    const float p = row[off + t] * inv;
                    if (bf16) {
                        const auto *vr =
                            static_cast<const uint16_t *>(v.data_ptr()) + kvh * v.stride(1) + t * Dh;
                        for (int64_t d = 0; d < Dh; ++d) o[d] += p * bf16ToFloat(vr[d]);
                    } else {
                        const float *vr = v.data_ptr<float>() + kvh * v.stride(1) + t * Dh;
                        for (int64_t d = 0; d < Dh; ++d) o[d] += p * vr[d];
                    }
                }
                off += len;
            }
        }
    });
    return bf16 ? out.to(at::kBFloat16) : out;
}

} // namespace mgd
