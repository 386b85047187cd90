#include "core/model/minigpt_model.h"

#include <ATen/ATen.h>
#include <cstdio>
#include <filesystem>

#include "core/metrics/metrics.h"
#include "core/model/qformer.h"
#include "core/model/vision_encoder.h"
#include "core/model/weights.h"
#include "core/util/error.h"

namespace mgd {

namespace fs = std::filesystem;

MiniGptModel::~MiniGptModel() = default;

void checkFitsInMemory(const std::string &dir, const std::string &dtype, uint64_t weightBytes,
                       uint64_t int8Bytes, uint64_t availableBytes) {
    if (availableBytes == 0 || weightBytes + kWorkingBytes <= availableBytes) return;
    const double gb = 1e9;
    char hint[160] = "";
    if (dtype != "int8" && int8Bytes + kWorkingBytes <= availableBytes)
        std::snprintf(hint, sizeof hint,
                      ", or load it in int8 (about %.1f GB: Settings > Precision, or --dtype int8)",
                      double(int8Bytes + kWorkingBytes) / gb);
    char msg[768];
    std::snprintf(
        msg, sizeof msg,
        "model folder '%s' needs about %.1f GB of memory in %s (%.1f GB of weights + %.1f GB to work "
        "in), but this machine has only %.1f GB available (MemAvailable): close other programs%s",
        dir.c_str(), double(weightBytes + kWorkingBytes) / gb, dtype.c_str(), double(weightBytes) / gb,
        double(kWorkingBytes) / gb, double(availableBytes) / gb, hint);
    throw Error(msg);
}

std::unique_ptr<MiniGptModel> MiniGptModel::load(const std::string &dir, const std::string &dtype) {
    if (!fs::is_directory(dir)) throw Error("model folder '" + dir + "' does not exist");
    std::unique_ptr<MiniGptModel> m(new MiniGptModel());
    m->dir_ = dir;
    const fs::path d(dir);
    m->config_ = ModelConfig::fromFile((d / "config.json").string());
    const ModelConfig &c = m->config_;
    const fs::path tok = d / "tokenizer.model";
    if (!fs::exists(tok)) throw Error("model folder '" + dir + "': missing tokenizer.model");
    m->tokenizer_ = Tokenizer::fromFile(tok.string());
    if (m->tokenizer_->vocabSize() > c.llm.vocabSize)
        throw Error("model folder '" + dir + "': tokenizer.model has " +
                    std::to_string(m->tokenizer_->vocabSize()) + " pieces but the LLM vocab is " +
                    std::to_string(c.llm.vocabSize));
    if (!dtype.empty()) {
        if (dtype != "float32" && dtype != "bfloat16" && dtype != "float16" && dtype != "int8")
            throw Error("dtype '" + dtype + "': expected float32, bfloat16, float16 or int8");
        m->config_.dtype = dtype;
    }
    // fp16 matmul is not implemented on CPU in libtorch 1.13: run fp16 checkpoints in fp32 there.
    // int8: the LLM's matrices in int8, everything else in bf16.
    const bool int8 = c.dtype == "int8";
    m->dtype_ = c.dtype == "bfloat16" || int8 ? at::kBFloat16 : at::kFloat;

    Weights w = Weights::openFolder(dir);
    const at::ScalarType dt = m->dtype_;
    checkFitsInMemory(dir,
                      int8                  ? "int8"
                      : dt == at::kBFloat16 ? "bfloat16"
                                            : "float32",
                      w.loadedBytes(dt, int8), w.loadedBytes(at::kBFloat16, true), availableHostBytes());
    m->vision_ = std::make_unique<VisionEncoder>(w, c.vision, dt);
    // ln_vision computes in fp32 whatever the model dtype (base_model.py LayerNorm subclass).
    m->lnVisionW_ = w.take("ln_vision.weight", {c.vision.width}, at::kFloat);
    m->lnVisionB_ = w.take("ln_vision.bias", {c.vision.width}, at::kFloat);
    if (c.qformer) m->qformer_ = std::make_unique<QFormer>(w, *c.qformer, c.vision.width, dt);
    const int64_t projIn = c.qformer ? c.qformer->hidden : 4 * c.vision.width;
    if (projIn != c.projIn)
        throw Error("config '" + dir + "/config.json': llama_proj input " + std::to_string(c.projIn) +
                    " does not match the projector (" + std::to_string(projIn) + ")");
    m->projW_ = w.take("llama_proj.weight", {c.llm.hidden, projIn}, dt);
    m->projB_ = w.take("llama_proj.bias", {c.llm.hidden}, dt);
    m->llama_ = std::make_unique<Llama>(w, c.llm, dt, int8);

    // Vision identity: config + the bytes of every vision-side tensor (weights change it).
    m->visionIdentity_ = w.fingerprint(
        c.toJsonText(), {"visual_encoder.", "ln_vision.", "Qformer.", "query_tokens", "llama_proj."});
    return m;
}

at::Tensor MiniGptModel::encodeImage(const at::Tensor &pixels, VisionTrace *trace) const {
    const auto &c = config_;
    if (pixels.dim() != 4 || pixels.size(1) != 3 || pixels.size(2) != c.vision.imageSize ||
        pixels.size(3) != c.vision.imageSize)
        throw Error("encodeImage: pixels must be [B, 3, " + std::to_string(c.vision.imageSize) + ", " +
                    std::to_string(c.vision.imageSize) + "]");
    at::Tensor vit = vision_->forward(pixels, trace ? &trace->vitBlocks : nullptr); // [B, 1+N, W]
    at::Tensor ln =
        at::layer_norm(vit.to(at::kFloat), {c.vision.width}, lnVisionW_, lnVisionB_, c.vision.lnVisionEps)
            .to(dtype_);
    if (trace) {
        trace->vitOut = vit;
        trace->lnVisionOut = ln;
    }
    at::Tensor projIn;
    if (qformer_) {
        projIn = qformer_->forward(ln); // [B, Q, hidden]
        if (trace) trace->qformerOut = projIn;
    } else {
        // Drop CLS; 4 row-major-consecutive patches concatenated: [B, N, W] -> [B, N/4, 4W]
        at::Tensor x = ln.narrow(1, 1, ln.size(1) - 1);
        projIn = x.reshape({x.size(0), x.size(1) / 4, 4 * c.vision.width});
        if (trace) trace->projInGrouped = projIn;
    }
    return at::linear(projIn, projW_, projB_);
}

std::vector<std::pair<std::string, at::Tensor>> MiniGptModel::visionParameters() const {
    auto out = vision_->namedParameters();
    out.emplace_back("ln_vision.weight", lnVisionW_);
    out.emplace_back("ln_vision.bias", lnVisionB_);
    if (qformer_)
        for (auto &p : qformer_->namedParameters()) out.push_back(std::move(p));
    return out;
}

std::vector<std::pair<std::string, at::Tensor>> MiniGptModel::languageParameters() const {
    std::vector<std::pair<std::string, at::Tensor>> out{{"llama_proj.weight", projW_},
                                                        {"llama_proj.bias", projB_}};
    for (auto &p : llama_->namedParameters()) out.push_back(std::move(p));
    return out;
}

std::vector<std::pair<std::string, at::Tensor>> MiniGptModel::stateDict() const {
    std::vector<std::pair<std::string, at::Tensor>> out;
    auto all = visionParameters();
    for (auto &p : languageParameters()) all.push_back(std::move(p));
    static const std::string qkv = "attn.qkv_bias";
    for (auto &[name, t] : all) {
        at::Tensor d = t.detach().clone();
        if (name.size() > qkv.size() && name.compare(name.size() - qkv.size(), qkv.size(), qkv) == 0) {
            // cat(q_bias, 0, v_bias) back to the original two tensors
            const std::string stem = name.substr(0, name.size() - qkv.size());
            const int64_t n = d.size(0) / 3;
            out.emplace_back(stem + "attn.q_bias", d.narrow(0, 0, n).clone());
            out.emplace_back(stem + "attn.v_bias", d.narrow(0, 2 * n, n).clone());
        } else {
            out.emplace_back(name, d);
        }
    }
    return out;
}

} // namespace mgd
