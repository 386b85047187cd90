// One decoded token through the LLaMA layers on raw buffers: RMSNorm, q/k/v in one pass of the
// matrix-vector kernels, RoPE, the KV write, attention over the cache in place, o, residual,
// RMSNorm, gate/up in one pass, SiLU * up, down, residual; then the final norm and the logits.
// It rounds where layerForward's bf16 tensor ops round (each op's result to bf16), so a bf16
// model decodes as it does through tensors; fp32 does not round. Per token: 5 parallel passes
// per layer and no tensor op (an int8 KV cache still quantizes through tensors), against ~40
// small ops per layer through ATen (10-15% of a bf16 decode step on the bench shape).
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/kernels/activation_rows.h"
#include "core/kernels/gemv.h"
#include "core/model/decode_attention.h"
#include "core/model/decode_linear.h"
#include "core/model/llama.h"

namespace mgd {

namespace {

float fromBf16(uint16_t h) {
    const uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// Round to nearest even, as c10::BFloat16 does (NaN stays NaN).
uint16_t toBf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// The value a bf16 op would have stored (identity in fp32).
struct Rounder {
    bool bf16;
    float operator()(float v) const { return bf16 ? fromBf16(toBf16(v)) : v; }
};

// A 1-D weight (norm) or one row of a 2-D table (cos/sin) in the model's dtype, as fp32.
void readRow(const at::Tensor &t, int64_t offset, int64_t n, float *out) {
    if (t.scalar_type() == at::kFloat) {
        std::memcpy(out, t.data_ptr<float>() + offset, static_cast<size_t>(n) * 4);
    } else {
        const auto *p = static_cast<const uint16_t *>(t.data_ptr()) + offset;
        for (int64_t i = 0; i < n; ++i) out[i] = fromBf16(p[i]);
    }
}

// HF's RMSNorm in dtype: h = x * rsqrt(mean(x^2) + eps) in fp32, rounded to dtype, times w.
void rmsNormRow(const float *x, const float *w, int64_t n, double eps, Rounder r, float *out) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
    for (int64_t i = 0; i < n; ++i) out[i] = r(w[i] * r(x[i] * inv));
}

// rotate_half RoPE on `heads` rows of Dh: t * cos + cat(-t2, t1) * sin, each product rounded.
void rope(float *t, int64_t heads, int64_t Dh, const float *cos, const float *sin, Rounder r) {
    const int64_t half = Dh / 2;
    for (int64_t h = 0; h < heads; ++h) {
        float *v = t + h * Dh;
        for (int64_t i = 0; i < half; ++i) {
            const float a = v[i], b = v[i + half];
            v[i] = r(r(a * cos[i]) + r(-b * sin[i]));
            v[i + half] = r(r(b * cos[i + half]) + r(a * sin[i + half]));
        }
    }
}

// What one token needs, grown once per thread and reused.
struct Scratch {
    std::vector<float> x, h, qkv, ctx, y, gu, act, cos, sin, norm;
    std::vector<uint16_t> bits, kvBits;
    kernels::Q8Activation q8;
};

} // namespace

bool Llama::oneTokenEligible(const at::Tensor &embeds, const KvCache &cache) const {
    if (!decodeKernelsEnabled() || !embeds.device().is_cpu() || embeds.numel() != c_.hidden) return false;
    if (dtype_ != at::kFloat && dtype_ != at::kBFloat16) return false;
    // Training: gradients would have to flow through tensors.
    if (at::GradMode::is_enabled() && (embeds.requires_grad() || lmHead_.weight.requires_grad() ||
                                       layers_.front().q.weight.requires_grad()))
        return false;
    const KvElement e = cache.element();
    const bool kvOk = e == KvElement::Int8 || (e == KvElement::F32 && dtype_ == at::kFloat) ||
                      (e == KvElement::Bf16 && dtype_ == at::kBFloat16);
    if (!kvOk || cache.kvHeads() != c_.kvHeads || cache.headDim() != c_.headDim()) return false;
    auto ok = [&](const Linear &l) {
        if (l.bias.defined()) return false;
        if (l.q8) return true;
        return l.weight.defined() && l.weight.device().is_cpu() && l.weight.is_contiguous() &&
               l.weight.scalar_type() == dtype_;
    };
    if (!ok(lmHead_)) return false;
    for (const Layer &l : layers_)
        for (const Linear *x : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down})
            if (!ok(*x)) return false;
    return true;
}

at::Tensor Llama::forwardOneToken(const at::Tensor &embeds, KvCache &cache) const {
    const int64_t D = c_.hidden, H = c_.heads, KvH = c_.kvHeads, Dh = c_.headDim(), kvd = KvH * Dh;
    const int64_t I = c_.intermediate, pos = cache.length(), total = pos + 1;
    const bool bf16 = dtype_ == at::kBFloat16;
    const Rounder r{bf16};
    thread_local Scratch s;
    auto grow = [](auto &v, int64_t n) {
        if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
    };
    grow(s.x, D), grow(s.h, std::max(D, I)), grow(s.qkv, D + 2 * kvd), grow(s.ctx, D), grow(s.y, D);
    grow(s.gu, 2 * I), grow(s.act, I), grow(s.cos, Dh), grow(s.sin, Dh), grow(s.norm, D);
    grow(s.bits, std::max(D, I)), grow(s.kvBits, 2 * kvd);
    float *x = s.x.data(), *h = s.h.data();
    readRow(embeds.contiguous().to(dtype_), 0, D, x);
    readRow(cos_, pos * Dh, Dh, s.cos.data());
    readRow(sin_, pos * Dh, Dh, s.sin.data());
    const bool q8 = int8();

    // y = layers(v) in one pass; v holds dtype values (already rounded), n of them.
    auto matvec = [&](std::initializer_list<const Linear *> layers, const float *v, int64_t n, float *y) {
        const void *in = v;
        if (q8) {
            kernels::quantizeActivationQ8(v, n, s.q8);
        } else if (bf16) {
            kernels::toBf16Row(v, n, s.bits.data());
            in = s.bits.data();
        }
        decodeLinearInto({layers.begin(), layers.size()}, in, bf16, q8 ? &s.q8 : nullptr, {}, y);
    };

    for (int64_t li = 0; li < c_.layers; ++li) {
        const Layer &l = layers_[li];
        // Read every token, not cached as fp32: training updates the norms in place between
        // evaluations in one process.
        readRow(l.inputNorm, 0, D, s.norm.data());
        rmsNormRow(x, s.norm.data(), D, c_.rmsEps, r, h);
        float *q = s.qkv.data(), *k = q + D, *v = k + kvd;
        matvec({&l.q, &l.k, &l.v}, h, D, q);
        if (bf16) kernels::roundBf16Row(q, D + 2 * kvd);
        rope(q, H, Dh, s.cos.data(), s.sin.data(), r);
        rope(k, KvH, Dh, s.cos.data(), s.sin.data(), r);
        // The cache takes [kvHeads, Dh] in dtype; int8 caches quantize it through tensors.
        const void *kp = k, *vp = v;
        if (bf16) {
            kernels::toBf16Row(k, 2 * kvd, s.kvBits.data());
            kp = s.kvBits.data(), vp = s.kvBits.data() + kvd;
        }
        if (cache.element() != KvElement::Int8) {
            cache.writeOne(li, pos, kp, vp);
        } else {
            const auto opts = at::TensorOptions().dtype(dtype_);
            cache.write(li, pos, at::from_blob(const_cast<void *>(kp), {KvH, 1, Dh}, opts),
                        at::from_blob(const_cast<void *>(vp), {KvH, 1, Dh}, opts));
        }
        decodeAttentionInto(q, H, cache, li, total, s.ctx.data());
        if (bf16) kernels::roundBf16Row(s.ctx.data(), D);
        matvec({&l.o}, s.ctx.data(), D, s.y.data());
        for (int64_t i = 0; i < D; ++i) x[i] = r(x[i] + r(s.y[i]));

        readRow(l.postNorm, 0, D, s.norm.data());
        rmsNormRow(x, s.norm.data(), D, c_.rmsEps, r, h);
        matvec({&l.gate, &l.up}, h, D, s.gu.data());
        kernels::siluMulRow(s.gu.data(), s.gu.data() + I, I, bf16, s.act.data());
        matvec({&l.down}, s.act.data(), I, s.y.data());
        for (int64_t i = 0; i < D; ++i) x[i] = r(x[i] + r(s.y[i]));
    }
    cache.commit(total);
    readRow(finalNorm_, 0, D, s.norm.data());
    rmsNormRow(x, s.norm.data(), D, c_.rmsEps, r, h);
    at::Tensor logits = at::empty({1, c_.vocabSize}, at::TensorOptions().dtype(at::kFloat));
    matvec({&lmHead_}, h, D, logits.data_ptr<float>());
    if (bf16)
        kernels::roundBf16Row(logits.data_ptr<float>(), c_.vocabSize); // as the tensor path's bf16 lm_head
    return logits;
}

} // namespace mgd
