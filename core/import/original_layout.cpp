#include "core/import/original_layout.h"

#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <set>

#include "core/import/lora_fold.h"
#include "core/import/pos_embed_interp.h"
#include "core/util/error.h"

namespace mgd {

namespace {

std::string baseName(const std::string &p) {
    return std::filesystem::path(p).filename().string();
}

// The keys of one input, with the ones the plan takes marked, so the rest can be listed as
// ignored.
struct Table {
    std::string label; // file name shown in messages
    std::map<std::string, const SourceTensor *> byKey;
    std::set<std::string> used;

    Table(std::string l, const SourceDict &d) : label(std::move(l)) {
        for (const auto &[k, t] : d.tensors) byKey[k] = &t;
    }
    const SourceTensor *peek(const std::string &k) const {
        auto it = byKey.find(k);
        return it == byKey.end() ? nullptr : it->second;
    }
    const SourceTensor *take(const std::string &k) {
        const SourceTensor *t = peek(k);
        if (t) used.insert(k);
        return t;
    }
    // Highest N of keys "<prefix>N.", or -1.
    int maxIndex(const std::string &prefix) const {
        int best = -1;
        for (const auto &[k, t] : byKey) {
            if (k.rfind(prefix, 0) != 0) continue;
            size_t i = prefix.size(), j = i;
            while (j < k.size() && std::isdigit(static_cast<unsigned char>(k[j]))) ++j;
            if (j > i && j < k.size() && k[j] == '.') best = std::max(best, std::stoi(k.substr(i, j - i)));
        }
        return best;
    }
};

struct Planner {
    const OriginalFiles &f;
    ImportPlan plan;
    Table vit, qf, ckpt, llm;
    at::ScalarType target = at::kBFloat16;

    explicit Planner(const OriginalFiles &files)
        : f(files), vit(baseName(files.options.vit), files.vit),
          qf(baseName(files.options.qformer), files.qformer), ckpt(baseName(files.options.ckpt), files.ckpt),
          llm(baseName(files.llm.dir) + "/", files.llm.weights) {}

    // Where a target name may come from, the later file winning as in the original's load
    // order (LLM folder, ViT, BLIP-2, MiniGPT checkpoint).
    std::vector<std::pair<Table *, std::string>> candidates(const std::string &name) {
        std::vector<std::pair<Table *, std::string>> c;
        c.push_back({&ckpt, name});
        static const std::string llmPrefix = "llama_model.";
        if (name.rfind(llmPrefix, 0) == 0) {
            const std::string rest = name.substr(llmPrefix.size());
            c.push_back({&ckpt, "llama_model.base_model.model." + rest});
            c.push_back({&llm, rest});
        } else if (name.rfind("visual_encoder.", 0) == 0) {
            c.push_back({&vit, name.substr(std::string("visual_encoder.").size())});
        } else {
            c.push_back({&qf, name});
        }
        return c;
    }

    // The first candidate found wins; the others it replaces count as used, not ignored.
    const SourceTensor *find(const std::string &name) {
        const SourceTensor *found = nullptr;
        for (auto &[t, k] : candidates(name)) {
            const SourceTensor *s = t->take(k);
            if (!found) found = s;
        }
        return found;
    }

    std::string lookedIn(const std::string &name) {
        std::string out;
        for (auto &[t, k] : candidates(name))
            if (!t->label.empty() && t->label != "/")
                out += (out.empty() ? "" : ", ") + t->label + " ('" + k + "')";
        return out;
    }

    // The tensor `name` with `shape`, or an error naming the file, the key and both shapes.
    const SourceTensor &need(const std::string &name, const std::vector<int64_t> &shape,
                             const std::string &hint = "") {
        const SourceTensor *s = find(name);
        if (!s) throw Error("missing tensor '" + name + "': looked in " + lookedIn(name) + hint);
        if (s->shape != shape)
            throw Error("'" + s->file + "': '" + s->key + "' has shape " + shapeString(s->shape) +
                        " but the model needs " + shapeString(shape) + " for '" + name + "'" + hint);
        return *s;
    }

    at::ScalarType outDtype(const std::string &name, const SourceTensor &s,
                            const std::vector<int64_t> &shape) {
        if (s.dtype == at::kLong || s.dtype == at::kInt) return at::kLong;
        // Kept in fp32 as the original keeps them (LayerNorms, biases, pos_embed, cls_token
        // stay fp32 when it converts the ViT to fp16; ln_vision computes in fp32): all small.
        const bool small = shape.size() <= 1 || name == "query_tokens" ||
                           name == "visual_encoder.pos_embed" || name == "visual_encoder.cls_token" ||
                           name.rfind("ln_vision.", 0) == 0;
        return small ? at::kFloat : target;
    }

    void copy(const std::string &name, const std::vector<int64_t> &shape, const std::string &hint = "") {
        const SourceTensor &s = need(name, shape, hint);
        const SourceTensor *sp = &s;
        plan.tensors.push_back({name, outDtype(name, s, shape), shape, [sp] { return sp->read(); }});
    }

    void linear(const std::string &stem, int64_t in, int64_t out, bool bias) {
        copy(stem + ".weight", {out, in});
        if (bias) copy(stem + ".bias", {out});
    }
    void norm(const std::string &stem, int64_t d) {
        copy(stem + ".weight", {d});
        copy(stem + ".bias", {d});
    }

    void vision(VisionConfig &v);
    void lnVision(int64_t width);
    void qformer(QFormerConfig &q, int64_t encoderWidth);
    void projection(ModelConfig &c);
    void language(LlamaConfig &l);
    void ignored(Table &t, const SourceDict &d);
};

void Planner::vision(VisionConfig &v) {
    const std::string fileLabel = "'" + f.options.vit + "'";
    const SourceTensor *cls = vit.peek("cls_token");
    const SourceTensor *proj = vit.peek("patch_embed.proj.weight");
    const SourceTensor *pos = vit.peek("pos_embed");
    if (!cls || !proj || !pos)
        throw Error(fileLabel +
                    " is not an EVA ViT state dict (no cls_token / pos_embed / patch_embed.proj.weight)" +
                    (vit.byKey.empty() ? std::string(": it holds no tensors") : ""));
    if (cls->shape.size() != 3 || proj->shape.size() != 4 || pos->shape.size() != 3)
        throw Error(fileLabel + ": cls_token / patch_embed.proj.weight / pos_embed have unexpected ranks");
    v.width = static_cast<int>(cls->shape[2]);
    v.patchSize = static_cast<int>(proj->shape[2]);
    const int fileBlocks = vit.maxIndex("blocks.") + 1;
    if (fileBlocks < 2) throw Error(fileLabel + ": fewer than 2 transformer blocks (blocks.N.*)");
    // MiniGPT-4 (after BLIP-2) uses the second-last layer: the file's last block is not built.
    v.depth = fileBlocks - 1;
    plan.notes.push_back("ViT: " + std::to_string(fileBlocks) +
                         " blocks in the file, the last one unused as in the original (depth " +
                         std::to_string(v.depth) + ")");
    const SourceTensor *fc1 = vit.peek("blocks.0.mlp.fc1.weight");
    if (!fc1 || fc1->shape.size() != 2) throw Error(fileLabel + ": missing blocks.0.mlp.fc1.weight");
    v.mlpHidden = static_cast<int>(fc1->shape[0]);
    if (f.options.vitHeads > 0) {
        v.heads = f.options.vitHeads;
    } else if (v.width == 1408) {
        v.heads = 16; // EVA ViT-g: 1408 / 88
    } else {
        throw Error(
            fileLabel + ": the ViT is " + std::to_string(v.width) +
            " wide, not EVA ViT-g's 1408, and a .pth does not store the head count: give --vit-heads N");
    }
    if (v.width % v.heads != 0)
        throw Error("--vit-heads " + std::to_string(v.heads) + " does not divide the ViT width " +
                    std::to_string(v.width));
    const bool v2 = f.arch == Architecture::MiniGPTv2;
    v.imageSize = f.options.imageSize > 0 ? f.options.imageSize : (v2 ? 448 : 224);
    if (v.imageSize % v.patchSize != 0)
        throw Error("image size " + std::to_string(v.imageSize) + " is not a multiple of the ViT patch (" +
                    std::to_string(v.patchSize) + ")");
    const int64_t grid = v.imageSize / v.patchSize;
    if (f.arch != Architecture::MiniGPT4 && grid % 4 != 0)
        throw Error("image size " + std::to_string(v.imageSize) + ": the patch grid (" +
                    std::to_string(grid) + ") must be a multiple of 4 for the 4-patch projection");
    v.lnEps = 1e-6;
    v.lnVisionEps = 1e-5;

    const int64_t W = v.width, M = v.mlpHidden, P = v.patchSize;
    copy("visual_encoder.cls_token", {1, 1, W});
    {
        const SourceTensor *p = find("visual_encoder.pos_embed");
        const int64_t tokens = p->shape[1] - 1;
        const auto fileGrid =
            static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(std::max<int64_t>(tokens, 0)))));
        if (p->shape[0] != 1 || p->shape[2] != W || fileGrid * fileGrid != tokens)
            throw Error("'" + p->file + "': '" + p->key + "' has shape " + shapeString(p->shape) +
                        ", not [1, 1 + grid^2, " + std::to_string(W) + "]");
        if (fileGrid != grid)
            plan.notes.push_back("pos_embed interpolated from " + std::to_string(fileGrid) + "x" +
                                 std::to_string(fileGrid) + " to " + std::to_string(grid) + "x" +
                                 std::to_string(grid) +
                                 " (bicubic, as the original's interpolate_pos_embed)");
        plan.tensors.push_back({"visual_encoder.pos_embed", at::kFloat, {1, 1 + grid * grid, W}, [p, grid] {
                                    return interpolatePosEmbed(p->read(), grid);
                                }});
    }
    copy("visual_encoder.patch_embed.proj.weight", {W, 3, P, P});
    copy("visual_encoder.patch_embed.proj.bias", {W});
    for (int i = 0; i < v.depth; ++i) {
        const std::string b = "visual_encoder.blocks." + std::to_string(i) + ".";
        norm(b + "norm1", W);
        copy(b + "attn.q_bias", {W});
        copy(b + "attn.v_bias", {W});
        copy(b + "attn.qkv.weight", {3 * W, W});
        linear(b + "attn.proj", W, W, true);
        norm(b + "norm2", W);
        linear(b + "mlp.fc1", W, M, true);
        linear(b + "mlp.fc2", M, W, true);
    }
}

void Planner::lnVision(int64_t width) {
    if (find("ln_vision.weight")) {
        norm("ln_vision", width);
        return;
    }
    // MiniGPT-4 LLaMA-2 and MiniGPT-v2 load no BLIP-2 file and do not save the frozen
    // ln_vision: the original runs it at its initial values.
    plan.notes.push_back("ln_vision not in the inputs: weight 1, bias 0 (the original's initial values)");
    plan.tensors.push_back({"ln_vision.weight", at::kFloat, {width}, [width] { return at::ones({width}); }});
    plan.tensors.push_back({"ln_vision.bias", at::kFloat, {width}, [width] { return at::zeros({width}); }});
}

void Planner::qformer(QFormerConfig &q, int64_t encWidth) {
    const std::string label = "'" + f.options.qformer + "'";
    const SourceTensor *qt = find("query_tokens");
    if (!qt)
        throw Error(label +
                    ": no query_tokens: this is not a BLIP-2 checkpoint (blip2_pretrained_flant5xxl.pth)");
    if (qt->shape.size() != 3 || qt->shape[0] != 1)
        throw Error(label + ": query_tokens has shape " + shapeString(qt->shape) +
                    ", not [1, queries, hidden]");
    q.numQueryTokens = static_cast<int>(qt->shape[1]);
    q.hidden = static_cast<int>(qt->shape[2]);
    const std::string lp = "Qformer.bert.encoder.layer.";
    q.layers = std::max(qf.maxIndex(lp), ckpt.maxIndex(lp)) + 1;
    if (q.layers < 1) throw Error(label + ": no Q-Former layers (Qformer.bert.encoder.layer.N.*)");
    auto hasCross = [&](int i) {
        return find(lp + std::to_string(i) + ".crossattention.self.query.weight") != nullptr;
    };
    int freq = 0;
    for (int i = 1; i < q.layers && !freq; ++i)
        if (hasCross(i)) freq = i;
    if (!freq) freq = 2; // BLIP-2's cross_attention_freq; with <= 2 layers only layer 0 shows it
    for (int i = 0; i < q.layers; ++i)
        if (hasCross(i) != (i % freq == 0))
            throw Error(label + ": Q-Former layer " + std::to_string(i) + (hasCross(i) ? " has" : " lacks") +
                        " cross-attention, which does not fit every " + std::to_string(freq) + " layers");
    q.crossAttentionFreq = freq;
    const SourceTensor *inter = find(lp + "0.intermediate_query.dense.weight");
    if (!inter || inter->shape.size() != 2)
        throw Error(label + ": missing " + lp + "0.intermediate_query.dense.weight");
    q.intermediate = static_cast<int>(inter->shape[0]);
    if (f.options.qformerHeads > 0)
        q.heads = f.options.qformerHeads;
    else if (q.hidden == 768)
        q.heads = 12; // BERT-base
    else
        throw Error(label + ": the Q-Former is " + std::to_string(q.hidden) +
                    " wide, not BERT-base's 768, and the file does not store the head count: give "
                    "--q-former-heads N");
    if (q.hidden % q.heads != 0)
        throw Error("--q-former-heads " + std::to_string(q.heads) + " does not divide the Q-Former width " +
                    std::to_string(q.hidden));
    q.lnEps = 1e-12;

    const int64_t H = q.hidden, I = q.intermediate;
    copy("query_tokens", {1, q.numQueryTokens, H});
    norm("Qformer.bert.embeddings.LayerNorm", H);
    if (const SourceTensor *pid = find("Qformer.bert.embeddings.position_ids"))
        plan.tensors.push_back(
            {"Qformer.bert.embeddings.position_ids", at::kLong, pid->shape, [pid] { return pid->read(); }});
    auto attention = [&](const std::string &pre, int64_t kvIn) {
        linear(pre + ".self.query", H, H, true);
        linear(pre + ".self.key", kvIn, H, true);
        linear(pre + ".self.value", kvIn, H, true);
        linear(pre + ".output.dense", H, H, true);
        norm(pre + ".output.LayerNorm", H);
    };
    for (int i = 0; i < q.layers; ++i) {
        const std::string l = lp + std::to_string(i) + ".";
        attention(l + "attention", H);
        if (i % freq == 0) attention(l + "crossattention", encWidth);
        linear(l + "intermediate_query.dense", H, I, true);
        linear(l + "output_query.dense", I, H, true);
        norm(l + "output_query.LayerNorm", H);
    }
}

void Planner::projection(ModelConfig &c) {
    const SourceTensor *p = ckpt.peek("llama_proj.weight");
    const std::string label = "'" + f.options.ckpt + "'";
    if (!p)
        throw Error(label + ": no llama_proj.weight: this is not a MiniGPT-4 / MiniGPT-v2 checkpoint "
                            "(pretrained_minigpt4*.pth or minigptv2_checkpoint.pth)");
    if (p->shape.size() != 2) throw Error(label + ": llama_proj.weight is not a matrix");
    const int64_t in = p->shape[1], out = p->shape[0];
    const int64_t want = c.qformer ? c.qformer->hidden : 4 * c.vision.width;
    if (in != want) {
        std::string hint;
        if (c.qformer && in == 4 * c.vision.width)
            hint = ": the checkpoint projects 4 ViT patches (" + std::to_string(in) + " = 4 x " +
                   std::to_string(c.vision.width) +
                   "), not the Q-Former: it is a MiniGPT-4 LLaMA-2 checkpoint, import it with --arch "
                   "minigpt4-llama2 "
                   "(MiniGPT-v2: --arch minigptv2) and without --q-former-model";
        else if (!c.qformer)
            hint = ": the checkpoint expects the Q-Former's output (" + std::to_string(in) +
                   " wide): it is a MiniGPT-4 (Vicuna) checkpoint, import it with --arch minigpt4 and "
                   "--q-former-model blip2_pretrained_flant5xxl.pth";
        throw Error(label + ": llama_proj.weight has shape " + shapeString(p->shape) + " but " +
                    (c.qformer ? "the Q-Former gives " : "4 ViT patches give ") + std::to_string(want) +
                    " inputs" + hint);
    }
    if (out != c.llm.hidden) {
        auto size = [](int64_t h) {
            return h == 4096 ? std::string(" (7B)") : h == 5120 ? std::string(" (13B)") : std::string();
        };
        throw Error(label + ": llama_proj.weight has shape " + shapeString(p->shape) + ": it feeds a " +
                    std::to_string(out) + "-wide LLM" + size(out) + ", but the LLM folder '" + f.llm.dir +
                    "' is " + std::to_string(c.llm.hidden) + " wide" + size(c.llm.hidden) +
                    ": use the checkpoint made for this LLM (pretrained_minigpt4.pth is for Vicuna 13B, "
                    "prerained_minigpt4_7b.pth for Vicuna 7B)");
    }
    c.projIn = static_cast<int>(in);
    linear("llama_proj", in, out, true);
}

void Planner::language(LlamaConfig &l) {
    l = f.llm.config;
    const std::string label = "LLM folder '" + f.llm.dir + "'";
    const SourceTensor *emb = llm.peek("model.embed_tokens.weight");
    if (!emb || emb->shape.size() != 2)
        throw Error(label + ": no model.embed_tokens.weight: not a LLaMA checkpoint in Hugging Face layout");
    const auto rows = static_cast<int>(emb->shape[0]);
    if (rows != l.vocabSize)
        plan.notes.push_back("LLM: config.json says vocab_size " + std::to_string(l.vocabSize) +
                             ", the embedding has " + std::to_string(rows) + " rows: using the rows");
    l.vocabSize = rows;
    if (rows < f.tokenizerPieces)
        throw Error(label + ": the embedding has " + std::to_string(rows) + " rows but tokenizer.model has " +
                    std::to_string(f.tokenizerPieces) + " pieces: the tokenizer does not belong to this LLM");
    if (rows > f.tokenizerPieces)
        plan.notes.push_back("LLM: " + std::to_string(rows - f.tokenizerPieces) +
                             " embedding rows beyond the tokenizer's pieces (Vicuna v0 has 32001 for 32000): "
                             "they are never produced");
    if (f.bos < 0 || f.eos < 0) throw Error(label + ": tokenizer.model has no <s> / </s> control pieces");
    l.bos = f.bos;
    l.eos = f.eos;

    const int64_t D = l.hidden, I = l.intermediate, V = rows, hd = l.hidden / l.heads;
    const int64_t kvd = hd * l.kvHeads;
    const std::string p = "llama_model.model.";
    copy(p + "embed_tokens.weight", {V, D});
    // LoRA factors in the checkpoint (peft 0.2 "lora_A.weight", newer "lora_A.default.weight").
    double alpha = f.options.loraAlpha > 0 ? f.options.loraAlpha
                   : f.ckptLoraAlpha > 0   ? f.ckptLoraAlpha
                                           : 16.0;
    std::string alphaFrom = f.options.loraAlpha > 0 ? "--lora-alpha"
                            : f.ckptLoraAlpha > 0   ? "the checkpoint's config"
                                                    : "MiniGPT-v2's eval config (default)";
    int folded = 0;
    int64_t loraR = 0;
    auto loraOf = [&](const std::string &stem, const char *which) -> const SourceTensor * {
        const std::string base =
            "llama_model.base_model.model." + stem.substr(std::string("llama_model.").size());
        for (const std::string &k : {base + "." + which + ".weight", base + "." + which + ".default.weight"})
            if (const SourceTensor *t = ckpt.take(k)) return t;
        return nullptr;
    };
    auto proj = [&](const std::string &stem, int64_t in, int64_t out) {
        const SourceTensor *a = loraOf(stem, "lora_A"), *b = loraOf(stem, "lora_B");
        if (!a && !b) {
            copy(stem + ".weight", {out, in});
            return;
        }
        if (!a || !b)
            throw Error("'" + f.options.ckpt + "': LoRA of '" + stem + "' has only one of lora_A / lora_B");
        if (f.arch != Architecture::MiniGPTv2)
            throw Error("'" + f.options.ckpt + "' carries LoRA factors ('" + a->key +
                        "'): it is a MiniGPT-v2 checkpoint, import it with --arch minigptv2");
        const SourceTensor &w = need(stem + ".weight", {out, in});
        if (a->shape.size() != 2 || b->shape.size() != 2 || a->shape[1] != in || b->shape[0] != out ||
            b->shape[1] != a->shape[0])
            throw Error("'" + f.options.ckpt + "': LoRA of '" + stem + "': lora_A " + shapeString(a->shape) +
                        " and lora_B " + shapeString(b->shape) + " do not fit the weight " +
                        shapeString({out, in}));
        loraR = a->shape[0];
        ++folded;
        const SourceTensor *wp = &w;
        const std::string name = stem + ".weight";
        plan.tensors.push_back({name, target, {out, in}, [wp, a, b, alpha, name] {
                                    return foldLora(wp->read(), a->read(), b->read(), alpha, name);
                                }});
    };
    for (int i = 0; i < l.layers; ++i) {
        const std::string L = p + "layers." + std::to_string(i) + ".";
        proj(L + "self_attn.q_proj", D, D);
        proj(L + "self_attn.k_proj", D, kvd);
        proj(L + "self_attn.v_proj", D, kvd);
        proj(L + "self_attn.o_proj", D, D);
        proj(L + "mlp.gate_proj", D, I);
        proj(L + "mlp.up_proj", D, I);
        proj(L + "mlp.down_proj", I, D);
        copy(L + "input_layernorm.weight", {D});
        copy(L + "post_attention_layernorm.weight", {D});
        // RoPE frequencies: the file's when it has them in fp32, else recomputed as HF does.
        const std::string inv = L + "self_attn.rotary_emb.inv_freq";
        const SourceTensor *src = find(inv);
        const double theta = l.ropeTheta;
        if (src && src->dtype == at::kFloat && src->shape == std::vector<int64_t>{hd / 2}) {
            plan.tensors.push_back({inv, at::kFloat, {hd / 2}, [src] { return src->read(); }});
        } else {
            plan.tensors.push_back({inv, at::kFloat, {hd / 2}, [hd, theta] {
                                        at::Tensor e = at::arange(0, hd, 2, at::kLong).to(at::kFloat) /
                                                       static_cast<double>(hd);
                                        return at::reciprocal(at::pow(theta, e));
                                    }});
        }
    }
    if (l.layers > 0 && llm.maxIndex("model.layers.") + 1 != l.layers)
        throw Error(label + ": config.json says " + std::to_string(l.layers) +
                    " layers but the weights have " + std::to_string(llm.maxIndex("model.layers.") + 1));
    copy(p + "norm.weight", {D});
    copy("llama_model.lm_head.weight", {V, D});
    if (folded) {
        plan.notes.push_back("LoRA folded into " + std::to_string(folded) + " projections (r " +
                             std::to_string(loraR) + ", alpha " +
                             std::to_string(alpha).substr(0, std::to_string(alpha).find('.') + 3) + " from " +
                             alphaFrom + ", scale alpha/r)");
        if (f.ckptLoraR > 0 && static_cast<int64_t>(f.ckptLoraR) != loraR)
            throw Error("'" + f.options.ckpt + "': config says lora_r " +
                        std::to_string(static_cast<int64_t>(f.ckptLoraR)) + " but the factors have rank " +
                        std::to_string(loraR));
    } else if (f.arch == Architecture::MiniGPTv2) {
        plan.notes.push_back("no LoRA factors in the checkpoint: the LLM is used as it is");
    }
}

void Planner::ignored(Table &t, const SourceDict &d) {
    for (const auto &[k, s] : t.byKey)
        if (!t.used.count(k)) plan.ignoredKeys.push_back(t.label + ": " + k);
    for (const auto &k : d.otherKeys) plan.ignoredKeys.push_back(t.label + ": " + k);
}

} // namespace

ImportPlan planImport(const OriginalFiles &files) {
    Planner p(files);
    const ImportOptions &o = files.options;
    if (o.dtype == "bfloat16")
        p.target = at::kBFloat16;
    else if (o.dtype == "float16")
        p.target = at::kHalf;
    else if (o.dtype == "float32")
        p.target = at::kFloat;
    else
        throw Error("--dtype '" + o.dtype + "': expected bfloat16, float16 or float32");

    ModelConfig &c = p.plan.config;
    c.arch = files.arch;
    c.dtype = o.dtype;
    c.name = !o.name.empty() ? o.name : std::filesystem::path(o.out).filename().string();
    c.promptTemplate = files.arch == Architecture::MiniGPT4         ? PromptTemplate::Vicuna0
                       : files.arch == Architecture::MiniGPT4Llama2 ? PromptTemplate::Llama2
                                                                    : PromptTemplate::MiniGPTv2;
    applyTemplateDefaults(c);
    // The LLM's width decides the projection's check, so read its config first.
    c.llm = files.llm.config;
    p.vision(c.vision);
    p.lnVision(c.vision.width);
    if (files.arch == Architecture::MiniGPT4) {
        c.qformer = QFormerConfig{};
        p.qformer(*c.qformer, c.vision.width);
    }
    // The projection first: its shape tells a wrong --arch or a checkpoint for another LLM.
    p.projection(c);
    p.language(c.llm);
    p.ignored(p.vit, files.vit);
    p.ignored(p.qf, files.qformer);
    p.ignored(p.ckpt, files.ckpt);
    p.ignored(p.llm, files.llm.weights);
    return std::move(p.plan);
}

} // namespace mgd
