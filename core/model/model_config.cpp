#include "core/model/model_config.h"

#include <cmath>
#include <limits>
#include <type_traits>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/util/error.h"

namespace mgd {

using nlohmann::json;

namespace {

const char *kVicunaSystem =
    "Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I "
    "provide it to you. Please answer my questions.";

// Reads obj[key] as T, with an error naming the file and the key path on absence or type.
struct Reader {
    const std::string &label;
    template <typename T> T get(const json &obj, const std::string &path, const char *key) const {
        if (!obj.is_object() || !obj.contains(key))
            throw Error("config '" + label + "': missing key '" + path + key + "'");
        const json &v = obj.at(key);
        const auto wrongType = [&] {
            return Error("config '" + label + "': key '" + path + key + "' has the wrong type");
        };
        // nlohmann converts any number to any arithmetic type, undefined when out of range
        // (3e48 as int): integers must be integers that fit, reals finite numbers.
        if constexpr (std::is_same_v<T, bool>) {
            if (!v.is_boolean()) throw wrongType();
        } else if constexpr (std::is_integral_v<T>) {
            if (!v.is_number_integer()) throw wrongType();
            const bool fits = v.is_number_unsigned()
                                  ? v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                                  : v.get<int64_t>() >= std::numeric_limits<T>::min() &&
                                        v.get<int64_t>() <= std::numeric_limits<T>::max();
            if (!fits) throw Error("config '" + label + "': key '" + path + key + "' is out of range");
        } else if constexpr (std::is_floating_point_v<T>) {
            if (!v.is_number() || !std::isfinite(v.get<double>())) throw wrongType();
        }
        try {
            return v.get<T>();
        } catch (const json::exception &) {
            throw wrongType();
        }
    }
    template <typename T>
    T opt(const json &obj, const char *key, T fallback, const std::string &path = "") const {
        if (!obj.is_object() || !obj.contains(key) || obj.at(key).is_null()) return fallback;
        return get<T>(obj, path, key);
    }
    const json &section(const json &obj, const char *key) const {
        if (!obj.contains(key) || !obj.at(key).is_object())
            throw Error("config '" + label + "': missing section '" + key + "'");
        return obj.at(key);
    }
};

int positive(const Reader &r, int v, const char *what) {
    if (v <= 0) throw Error("config '" + r.label + "': '" + what + "' must be positive");
    return v;
}

void validate(const ModelConfig &c, const Reader &r) {
    const auto &v = c.vision;
    positive(r, v.imageSize, "vision.image_size");
    positive(r, v.patchSize, "vision.patch_size");
    positive(r, v.width, "vision.width");
    positive(r, v.depth, "vision.depth");
    positive(r, v.heads, "vision.heads");
    positive(r, v.mlpHidden, "vision.mlp_hidden");
    if (v.imageSize % v.patchSize)
        throw Error("config '" + r.label + "': image_size is not a multiple of patch_size");
    if (v.width % v.heads) throw Error("config '" + r.label + "': vision width is not divisible by heads");
    const auto &l = c.llm;
    positive(r, l.vocabSize, "llm.vocab_size");
    positive(r, l.hidden, "llm.hidden");
    positive(r, l.layers, "llm.layers");
    positive(r, l.heads, "llm.heads");
    positive(r, l.kvHeads, "llm.kv_heads");
    positive(r, l.maxPositions, "llm.max_positions");
    if (l.hidden % l.heads || l.heads % l.kvHeads || l.headDim() % 2)
        throw Error("config '" + r.label + "': llm hidden/heads/kv_heads are inconsistent");
    if (c.qformer) {
        positive(r, c.qformer->hidden, "qformer.hidden");
        positive(r, c.qformer->heads, "qformer.heads");
        positive(r, c.qformer->numQueryTokens, "qformer.num_query_tokens");
        positive(r, c.qformer->crossAttentionFreq, "qformer.cross_attention_freq");
        if (c.qformer->hidden % c.qformer->heads)
            throw Error("config '" + r.label + "': qformer hidden is not divisible by heads");
    } else {
        const int grid = v.imageSize / v.patchSize;
        if ((grid * grid) % 4)
            throw Error("config '" + r.label +
                        "': patch count must be divisible by 4 for the 4-patch projector");
    }
    if (c.dtype != "float32" && c.dtype != "bfloat16" && c.dtype != "float16")
        throw Error("config '" + r.label + "': dtype must be float32, bfloat16 or float16");
}

std::array<float, 3> triple(const Reader &r, const json &obj, const char *key, std::array<float, 3> fb) {
    if (!obj.contains(key)) return fb;
    const json &v = obj.at(key);
    if (!v.is_array() || v.size() != 3)
        throw Error("config '" + r.label + "': image." + key + " needs 3 values");
    std::array<float, 3> out{};
    for (size_t i = 0; i < 3; ++i) {
        // Preprocessing constants: well inside float's range, or not ours.
        if (!v[i].is_number() || !(std::fabs(v[i].get<double>()) < 1e6))
            throw Error("config '" + r.label + "': image." + key + " values must be numbers below 1e6");
        out[i] = static_cast<float>(v[i].get<double>());
    }
    return out;
}

} // namespace

void applyTemplateDefaults(ModelConfig &c) {
    switch (c.promptTemplate) {
    case PromptTemplate::Vicuna0:
        c.systemPrompt = kVicunaSystem;
        c.stopStrings = {"###"};
        break;
    case PromptTemplate::Llama2:
        c.systemPrompt = kVicunaSystem;
        c.stopStrings = {};
        break;
    case PromptTemplate::MiniGPTv2:
        c.systemPrompt = "";
        c.stopStrings = {};
        break;
    }
}

namespace {

// The reference fixtures' own config.json (kind + vision_encoder + llama + ...).
ModelConfig fromReferenceLayout(const json &j, const Reader &r) {
    ModelConfig c;
    c.name = r.opt<std::string>(j, "name", "model");
    const std::string kind = r.get<std::string>(j, "", "kind");
    const json &ve = r.section(j, "vision_encoder");
    c.vision.imageSize = r.get<int>(ve, "vision_encoder.", "img_size");
    c.vision.patchSize = r.get<int>(ve, "vision_encoder.", "patch_size");
    c.vision.width = r.get<int>(ve, "vision_encoder.", "embed_dim");
    c.vision.depth = r.get<int>(ve, "vision_encoder.", "depth");
    c.vision.heads = r.get<int>(ve, "vision_encoder.", "num_heads");
    c.vision.mlpHidden = r.get<int>(ve, "vision_encoder.", "mlp_hidden");
    c.vision.lnEps = r.get<double>(ve, "vision_encoder.", "ln_eps");
    c.vision.lnVisionEps = r.get<double>(r.section(j, "ln_vision"), "ln_vision.", "eps");
    c.projIn = r.get<int>(r.section(j, "llama_proj"), "llama_proj.", "in");
    if (kind == "minigpt4") {
        c.arch = Architecture::MiniGPT4;
        c.promptTemplate = PromptTemplate::Vicuna0;
        const json &q = r.section(j, "qformer");
        QFormerConfig qc;
        qc.hidden = r.get<int>(q, "qformer.", "hidden_size");
        qc.layers = r.get<int>(q, "qformer.", "num_hidden_layers");
        qc.heads = r.get<int>(q, "qformer.", "num_attention_heads");
        qc.intermediate = r.get<int>(q, "qformer.", "intermediate_size");
        qc.lnEps = r.get<double>(q, "qformer.", "layer_norm_eps");
        qc.crossAttentionFreq = r.get<int>(q, "qformer.", "cross_attention_freq");
        qc.numQueryTokens = r.get<int>(q, "qformer.", "query_length");
        c.qformer = qc;
    } else if (kind == "minigptv2") {
        c.arch = Architecture::MiniGPTv2;
        c.promptTemplate = PromptTemplate::MiniGPTv2;
    } else if (kind == "minigpt4_llama2") {
        c.arch = Architecture::MiniGPT4Llama2;
        c.promptTemplate = PromptTemplate::Llama2;
    } else {
        throw Error("config '" + r.label + "': unknown kind '" + kind + "'");
    }
    const json &l = r.section(j, "llama");
    c.llm.vocabSize = r.get<int>(l, "llama.", "vocab_size");
    c.llm.hidden = r.get<int>(l, "llama.", "hidden_size");
    c.llm.intermediate = r.get<int>(l, "llama.", "intermediate_size");
    c.llm.layers = r.get<int>(l, "llama.", "num_hidden_layers");
    c.llm.heads = r.get<int>(l, "llama.", "num_attention_heads");
    c.llm.kvHeads = r.opt<int>(l, "num_key_value_heads", c.llm.heads);
    c.llm.rmsEps = r.get<double>(l, "llama.", "rms_norm_eps");
    c.llm.ropeTheta = r.opt<double>(l, "rope_theta", 10000.0);
    c.llm.maxPositions = r.get<int>(l, "llama.", "max_position_embeddings");
    c.llm.bos = r.opt<int>(l, "bos_token_id", 1);
    c.llm.eos = r.opt<int>(l, "eos_token_id", 2);
    applyTemplateDefaults(c);
    if (j.contains("image")) {
        c.imageMean = triple(r, j["image"], "mean", c.imageMean);
        c.imageStd = triple(r, j["image"], "std", c.imageStd);
    }
    c.dtype = r.opt<std::string>(j, "dtype", "float32");
    return c;
}

ModelConfig fromOwnLayout(const json &j, const Reader &r) {
    ModelConfig c;
    c.name = r.opt<std::string>(j, "name", "model");
    const std::string arch = r.get<std::string>(j, "", "architecture");
    if (arch == "minigpt4")
        c.arch = Architecture::MiniGPT4;
    else if (arch == "minigpt4-llama2")
        c.arch = Architecture::MiniGPT4Llama2;
    else if (arch == "minigptv2")
        c.arch = Architecture::MiniGPTv2;
    else
        throw Error("config '" + r.label + "': unknown architecture '" + arch + "'");
    c.dtype = r.opt<std::string>(j, "dtype", "float32");
    const json &v = r.section(j, "vision");
    c.vision.imageSize = r.get<int>(v, "vision.", "image_size");
    c.vision.patchSize = r.get<int>(v, "vision.", "patch_size");
    c.vision.width = r.get<int>(v, "vision.", "width");
    c.vision.depth = r.get<int>(v, "vision.", "depth");
    c.vision.heads = r.get<int>(v, "vision.", "heads");
    c.vision.mlpHidden = r.get<int>(v, "vision.", "mlp_hidden");
    c.vision.lnEps = r.opt<double>(v, "ln_eps", 1e-6);
    c.vision.lnVisionEps = r.opt<double>(v, "ln_vision_eps", 1e-5);
    if (c.arch == Architecture::MiniGPT4) {
        const json &q = r.section(j, "qformer");
        QFormerConfig qc;
        qc.hidden = r.get<int>(q, "qformer.", "hidden");
        qc.layers = r.get<int>(q, "qformer.", "layers");
        qc.heads = r.get<int>(q, "qformer.", "heads");
        qc.intermediate = r.get<int>(q, "qformer.", "intermediate");
        qc.lnEps = r.opt<double>(q, "ln_eps", 1e-12);
        qc.crossAttentionFreq = r.opt<int>(q, "cross_attention_freq", 2);
        qc.numQueryTokens = r.get<int>(q, "qformer.", "num_query_tokens");
        c.qformer = qc;
        c.projIn = qc.hidden;
    } else {
        c.projIn = 4 * c.vision.width;
    }
    const json &l = r.section(j, "llm");
    c.llm.vocabSize = r.get<int>(l, "llm.", "vocab_size");
    c.llm.hidden = r.get<int>(l, "llm.", "hidden");
    c.llm.intermediate = r.get<int>(l, "llm.", "intermediate");
    c.llm.layers = r.get<int>(l, "llm.", "layers");
    c.llm.heads = r.get<int>(l, "llm.", "heads");
    c.llm.kvHeads = r.opt<int>(l, "kv_heads", c.llm.heads);
    c.llm.rmsEps = r.get<double>(l, "llm.", "rms_eps");
    c.llm.ropeTheta = r.opt<double>(l, "rope_theta", 10000.0);
    c.llm.maxPositions = r.get<int>(l, "llm.", "max_positions");
    c.llm.bos = r.opt<int>(l, "bos", 1);
    c.llm.eos = r.opt<int>(l, "eos", 2);
    const json &p = r.section(j, "prompt");
    const std::string t = r.get<std::string>(p, "prompt.", "template");
    if (t == "vicuna0")
        c.promptTemplate = PromptTemplate::Vicuna0;
    else if (t == "llama2")
        c.promptTemplate = PromptTemplate::Llama2;
    else if (t == "minigptv2")
        c.promptTemplate = PromptTemplate::MiniGPTv2;
    else
        throw Error("config '" + r.label + "': unknown prompt.template '" + t + "'");
    applyTemplateDefaults(c);
    c.systemPrompt = r.opt<std::string>(p, "system", c.systemPrompt);
    c.stopStrings = r.opt<std::vector<std::string>>(p, "stop", c.stopStrings);
    if (j.contains("image")) {
        c.imageMean = triple(r, j["image"], "mean", c.imageMean);
        c.imageStd = triple(r, j["image"], "std", c.imageStd);
    }
    return c;
}

} // namespace

int ModelConfig::imageTokens() const {
    if (qformer) return qformer->numQueryTokens;
    const int grid = vision.imageSize / vision.patchSize;
    return grid * grid / 4;
}

ModelConfig ModelConfig::fromJsonText(const std::string &text, const std::string &label) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception &e) {
        throw Error("config '" + label + "': not valid JSON: " + e.what());
    }
    if (!j.is_object()) throw Error("config '" + label + "': not a JSON object");
    Reader r{label};
    ModelConfig c = j.contains("format") ? fromOwnLayout(j, r) : fromReferenceLayout(j, r);
    if (j.contains("format") && j["format"] != "minigpt-desk/1")
        throw Error("config '" + label + "': unsupported format " + j["format"].dump());
    validate(c, r);
    return c;
}

ModelConfig ModelConfig::fromFile(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error("config '" + path + "': cannot open");
    std::stringstream ss;
    ss << f.rdbuf();
    return fromJsonText(ss.str(), path);
}

const char *architectureName(Architecture a) {
    switch (a) {
    case Architecture::MiniGPT4: return "minigpt4";
    case Architecture::MiniGPT4Llama2: return "minigpt4-llama2";
    case Architecture::MiniGPTv2: return "minigptv2";
    }
    return "?";
}

const char *templateName(PromptTemplate t) {
    switch (t) {
    case PromptTemplate::Vicuna0: return "vicuna0";
    case PromptTemplate::Llama2: return "llama2";
    case PromptTemplate::MiniGPTv2: return "minigptv2";
    }
    return "?";
}

std::string ModelConfig::toJsonText() const {
    json j;
    j["format"] = "minigpt-desk/1";
    j["name"] = name;
    j["architecture"] = architectureName(arch);
    j["dtype"] = dtype;
    j["vision"] = {{"image_size", vision.imageSize}, {"patch_size", vision.patchSize},
                   {"width", vision.width},          {"depth", vision.depth},
                   {"heads", vision.heads},          {"mlp_hidden", vision.mlpHidden},
                   {"ln_eps", vision.lnEps},         {"ln_vision_eps", vision.lnVisionEps}};
    if (qformer)
        j["qformer"] = {{"hidden", qformer->hidden},
                        {"layers", qformer->layers},
                        {"heads", qformer->heads},
                        {"intermediate", qformer->intermediate},
                        {"ln_eps", qformer->lnEps},
                        {"cross_attention_freq", qformer->crossAttentionFreq},
                        {"num_query_tokens", qformer->numQueryTokens}};
    j["llm"] = {{"vocab_size", llm.vocabSize},
                {"hidden", llm.hidden},
                {"intermediate", llm.intermediate},
                {"layers", llm.layers},
                {"heads", llm.heads},
                {"kv_heads", llm.kvHeads},
                {"rms_eps", llm.rmsEps},
                {"rope_theta", llm.ropeTheta},
                {"max_positions", llm.maxPositions},
                {"bos", llm.bos},
                {"eos", llm.eos}};
    j["prompt"] = {
        {"template", templateName(promptTemplate)}, {"system", systemPrompt}, {"stop", stopStrings}};
    j["image"] = {{"mean", imageMean}, {"std", imageStd}};
    return j.dump(2);
}

} // namespace mgd
