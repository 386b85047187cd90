#include "core/model/decode_linear.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "core/kernels/gemm.h"
#include "core/kernels/gemv.h"
#include "core/model/layers.h"
#include "core/util/error.h"

namespace mgd {

namespace {
std::atomic<FewRows> fewRowMode{FewRows::Default};

bool fewRowsWanted(int64_t rows, at::ScalarType dt) {
    switch (fewRowMode.load()) {
    case FewRows::Off: return false;
    case FewRows::Always: return rows <= 64;
    default: return rows <= kFewRowsMax && dt == at::kFloat;
    }
}
} // namespace

void setFewRowKernels(FewRows mode) {
    fewRowMode.store(mode);
}

bool decodeEligible(const std::vector<const Linear *> &layers, const at::Tensor &x) {
    if (!decodeKernelsEnabled()) return false;
    if (!x.device().is_cpu() || x.dim() == 0 || x.size(-1) == 0 || !x.is_contiguous()) return false;
    // Training: gradients flow through x (a frozen LLM under a trained projection), which these
    // kernels do not record.
    if (x.requires_grad() && at::GradMode::is_enabled()) return false;
    const int64_t rows = x.numel() / x.size(-1);
    const at::ScalarType dt = x.scalar_type();
    if (dt != at::kFloat && dt != at::kBFloat16) return false;
    // int8 layers (all of a group or none): the activation is quantized once for the group.
    const bool q8 = layers.front()->q8 != nullptr;
    if (rows != 1 && (rows < 1 || q8 || !fewRowsWanted(rows, dt) || !kernels::gemmAvailable())) return false;
    for (const Linear *l : layers) {
        if (q8 || l->q8) {
            if (!q8 || !l->q8 || l->q8->cols != x.size(-1)) return false;
            if (l->bias.defined() && (l->bias.numel() != l->q8->rows || !l->bias.is_contiguous()))
                return false;
            continue;
        }
        const at::Tensor &w = l->weight;
        if (!w.defined() || w.dim() != 2 || w.scalar_type() != dt || !w.is_contiguous() ||
            !w.device().is_cpu() || w.size(1) != x.size(-1))
            return false;
        if (w.requires_grad() && at::GradMode::is_enabled()) return false; // training: autograd path
        if (l->bias.defined() && (l->bias.numel() != w.size(0) || !l->bias.is_contiguous())) return false;
    }
    return true;
}

namespace {

// A few rows: per layer an fp32 [rows, out_i], the weight rows of all layers split across
// threads in one pass.
std::vector<at::Tensor> fewRowsLinear(const std::vector<const Linear *> &layers, const at::Tensor &x) {
    const bool bf16 = x.scalar_type() == at::kBFloat16;
    const int64_t in = x.size(-1), rows = x.numel() / in;
    std::vector<int64_t> start{0};
    for (const Linear *l : layers) start.push_back(start.back() + l->outFeatures());
    std::vector<at::Tensor> ys, biases(layers.size());
    for (size_t i = 0; i < layers.size(); ++i) {
        ys.push_back(at::empty({rows, layers[i]->outFeatures()}, at::TensorOptions().dtype(at::kFloat)));
        if (layers[i]->bias.defined()) biases[i] = layers[i]->bias.to(at::kFloat).contiguous();
    }
    const void *xp = x.data_ptr();
    // Chunks of whole 4-row tiles so a thread's tiles never straddle two threads.
    at::parallel_for(0, (start.back() + 3) / 4, 8, [&](int64_t b, int64_t e) {
        for (size_t i = 0; i < layers.size(); ++i) {
            const int64_t lo = std::max(4 * b, start[i]), hi = std::min(4 * e, start[i + 1]);
            if (lo >= hi) continue;
            const at::Tensor &w = layers[i]->weight;
            const int64_t out = w.size(0);
            float *y = ys[i].data_ptr<float>();
            const float *bias = biases[i].defined() ? biases[i].data_ptr<float>() : nullptr;
            if (bf16)
                kernels::gemmBf16(kernels::PackedBf16(static_cast<const uint16_t *>(w.data_ptr()), out, in),
                                  static_cast<const uint16_t *>(xp), rows, in, y, out, bias, lo - start[i],
                                  hi - start[i]);
            else
                kernels::gemmF32(kernels::PackedF32(w.data_ptr<float>(), out, in),
                                 static_cast<const float *>(xp), rows, in, y, out, bias, lo - start[i],
                                 hi - start[i]);
        }
    });
    std::vector<at::Tensor> outs;
    for (size_t i = 0; i < layers.size(); ++i) {
        auto shape = x.sizes().vec();
        shape.back() = layers[i]->outFeatures();
        outs.push_back((bf16 ? ys[i].to(at::kBFloat16) : ys[i]).view(shape));
    }
    return outs;
}

} // namespace

bool decodeKernelsEnabled() {
    // MGD_DECODE_KERNELS=0 runs libtorch's linear instead (for A/B measurements).
    static const bool enabled = [] {
        const char *e = std::getenv("MGD_DECODE_KERNELS");
        return !(e && std::string(e) == "0");
    }();
    return enabled;
}

void decodeLinearInto(std::span<const Linear *const> layers, const void *x, bool bf16,
                      const kernels::Q8Activation *act, std::span<const float *const> biases, float *y) {
    if (layers.empty() || layers.size() > 7) throw Error("decodeLinearInto: 1 to 7 layers");
    const int64_t in = layers.front()->inFeatures();
    // Row offsets of each layer in y: one parallel pass over all rows.
    int64_t start[8] = {0};
    for (size_t i = 0; i < layers.size(); ++i) start[i + 1] = start[i] + layers[i]->outFeatures();
    const int64_t total = start[layers.size()];
    // Chunks of whole rows; with the default grain libtorch gives each thread one contiguous run.
    at::parallel_for(0, total, 64, [&](int64_t b, int64_t e) {
        for (size_t i = 0; i < layers.size(); ++i) {
            const int64_t lo = std::max(b, start[i]), hi = std::min(e, start[i + 1]);
            if (lo >= hi) continue;
            const Linear &l = *layers[i];
            float *yi = y + start[i]; // the kernels index y and bias by row
            const float *bias = biases.empty() ? nullptr : biases[i];
            if (l.q8) {
                kernels::gemvQ8(*l.q8, *act, yi, bias, lo - start[i], hi - start[i]);
            } else if (bf16) {
                const kernels::PackedBf16 pw(static_cast<const uint16_t *>(l.weight.data_ptr()),
                                             l.weight.size(0), in);
                kernels::gemvBf16(pw, static_cast<const uint16_t *>(x), yi, bias, lo - start[i],
                                  hi - start[i]);
            } else {
                const kernels::PackedF32 pw(l.weight.data_ptr<float>(), l.weight.size(0), in);
                kernels::gemvF32(pw, static_cast<const float *>(x), yi, bias, lo - start[i], hi - start[i]);
            }
        }
    });
}

std::vector<at::Tensor> decodeLinear(const std::vector<const Linear *> &layers, const at::Tensor &x) {
    if (x.numel() != x.size(-1)) return fewRowsLinear(layers, x);
    const bool bf16 = x.scalar_type() == at::kBFloat16;
    const int64_t in = x.size(-1);
    const bool q8 = layers.front()->q8 != nullptr;
    // Grows once, reused every token.
    thread_local kernels::Q8Activation act;
    if (q8) {
        at::Tensor xf = x.to(at::kFloat).contiguous();
        kernels::quantizeActivationQ8(xf.data_ptr<float>(), in, act);
    }
    std::vector<int64_t> start{0};
    for (const Linear *l : layers) start.push_back(start.back() + l->outFeatures());
    at::Tensor y = at::empty({start.back()}, at::TensorOptions().dtype(at::kFloat));
    // fp32 biases (the kernels add them in fp32); bf16 biases are converted once per call.
    std::vector<at::Tensor> biasStore(layers.size());
    std::vector<const float *> biases(layers.size(), nullptr);
    for (size_t i = 0; i < layers.size(); ++i)
        if (layers[i]->bias.defined()) {
            biasStore[i] = layers[i]->bias.to(at::kFloat).contiguous();
            biases[i] = biasStore[i].data_ptr<float>();
        }
    decodeLinearInto(layers, x.data_ptr(), bf16, q8 ? &act : nullptr, biases, y.data_ptr<float>());
    std::vector<at::Tensor> outs;
    for (size_t i = 0; i < layers.size(); ++i) {
        auto shape = x.sizes().vec();
        shape.back() = layers[i]->outFeatures();
        at::Tensor o = y.narrow(0, start[i], start[i + 1] - start[i]);
        outs.push_back((bf16 ? o.to(at::kBFloat16) : o).view(shape));
    }
    return outs;
}

} // namespace mgd
