#include "core/model/random_model.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include "core/model/safetensors.h"
#include "core/util/error.h"

namespace mgd {

namespace fs = std::filesystem;

ModelConfig benchModelConfig() {
    ModelConfig c;
    c.name = "bench-minigpt4-random";
    c.arch = Architecture::MiniGPT4;
    c.vision = VisionConfig{224, 14, 768, 12, 12, 3072, 1e-6, 1e-5};
    c.qformer = QFormerConfig{768, 6, 12, 3072, 1e-12, 2, 32};
    c.projIn = 768;
    c.llm.vocabSize = 32000;
    c.llm.hidden = 1024;
    c.llm.intermediate = 2816;
    c.llm.layers = 16;
    c.llm.heads = 16;
    c.llm.kvHeads = 16;
    c.llm.rmsEps = 1e-6;
    c.llm.maxPositions = 2048;
    c.promptTemplate = PromptTemplate::Vicuna0;
    applyTemplateDefaults(c);
    return c;
}

void writeRandomModel(const std::string &dir, const ModelConfig &c, const std::string &tokenizerPath,
                      uint64_t seed, double std) {
    fs::create_directories(dir);
    at::manual_seed(seed);
    std::vector<std::pair<std::string, at::Tensor>> ts;
    auto rnd = [&](const std::string &name, std::vector<int64_t> shape) {
        ts.emplace_back(name, at::randn(shape) * std);
    };
    auto ones = [&](const std::string &name, int64_t n) { ts.emplace_back(name, at::ones({n})); };
    auto zeros = [&](const std::string &name, int64_t n) { ts.emplace_back(name, at::zeros({n})); };
    auto linear = [&](const std::string &p, int64_t in, int64_t out, bool bias) {
        rnd(p + ".weight", {out, in});
        if (bias) zeros(p + ".bias", out);
    };
    auto layerNorm = [&](const std::string &p, int64_t d) {
        ones(p + ".weight", d);
        zeros(p + ".bias", d);
    };
    const auto &v = c.vision;
    const int64_t d = v.width, n = (v.imageSize / v.patchSize) * (v.imageSize / v.patchSize);
    rnd("visual_encoder.patch_embed.proj.weight", {d, 3, v.patchSize, v.patchSize});
    zeros("visual_encoder.patch_embed.proj.bias", d);
    rnd("visual_encoder.cls_token", {1, 1, d});
    rnd("visual_encoder.pos_embed", {1, n + 1, d});
    for (int i = 0; i < v.depth; ++i) {
        const std::string b = "visual_encoder.blocks." + std::to_string(i) + ".";
        layerNorm(b + "norm1", d);
        layerNorm(b + "norm2", d);
        rnd(b + "attn.qkv.weight", {3 * d, d});
        zeros(b + "attn.q_bias", d);
        zeros(b + "attn.v_bias", d);
        linear(b + "attn.proj", d, d, true);
        linear(b + "mlp.fc1", d, v.mlpHidden, true);
        linear(b + "mlp.fc2", v.mlpHidden, d, true);
    }
    layerNorm("ln_vision", d);
    int64_t projIn = 4 * d;
    if (c.qformer) {
        const auto &q = *c.qformer;
        const int64_t h = q.hidden;
        projIn = h;
        rnd("query_tokens", {1, q.numQueryTokens, h});
        layerNorm("Qformer.bert.embeddings.LayerNorm", h);
        for (int i = 0; i < q.layers; ++i) {
            const std::string l = "Qformer.bert.encoder.layer." + std::to_string(i) + ".";
            auto attention = [&](const std::string &p, int64_t kvIn) {
                linear(p + ".self.query", h, h, true);
                linear(p + ".self.key", kvIn, h, true);
                linear(p + ".self.value", kvIn, h, true);
                linear(p + ".output.dense", h, h, true);
                layerNorm(p + ".output.LayerNorm", h);
            };
            attention(l + "attention", h);
            if (i % q.crossAttentionFreq == 0) attention(l + "crossattention", d);
            linear(l + "intermediate_query.dense", h, q.intermediate, true);
            linear(l + "output_query.dense", q.intermediate, h, true);
            layerNorm(l + "output_query.LayerNorm", h);
        }
    }
    linear("llama_proj", projIn, c.llm.hidden, true);
    const auto &l = c.llm;
    const int64_t kvd = l.kvHeads * l.headDim();
    rnd("llama_model.model.embed_tokens.weight", {l.vocabSize, l.hidden});
    for (int i = 0; i < l.layers; ++i) {
        const std::string p = "llama_model.model.layers." + std::to_string(i) + ".";
        ones(p + "input_layernorm.weight", l.hidden);
        ones(p + "post_attention_layernorm.weight", l.hidden);
        linear(p + "self_attn.q_proj", l.hidden, l.hidden, false);
        linear(p + "self_attn.k_proj", l.hidden, kvd, false);
        linear(p + "self_attn.v_proj", l.hidden, kvd, false);
        linear(p + "self_attn.o_proj", l.hidden, l.hidden, false);
        linear(p + "mlp.gate_proj", l.hidden, l.intermediate, false);
        linear(p + "mlp.up_proj", l.hidden, l.intermediate, false);
        linear(p + "mlp.down_proj", l.intermediate, l.hidden, false);
    }
    ones("llama_model.model.norm.weight", l.hidden);
    rnd("llama_model.lm_head.weight", {l.vocabSize, l.hidden});
    writeSafetensors((fs::path(dir) / "weights.safetensors").string(), ts);
    {
        std::ofstream f(fs::path(dir) / "config.json");
        f << c.toJsonText();
        if (!f) throw Error("cannot write '" + dir + "/config.json'");
    }
    fs::copy_file(tokenizerPath, fs::path(dir) / "tokenizer.model", fs::copy_options::overwrite_existing);
}

} // namespace mgd
