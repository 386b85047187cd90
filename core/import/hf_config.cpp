#include "core/import/hf_config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/util/error.h"

namespace mgd {

namespace {

int intField(const nlohmann::json &j, const std::string &key, const std::string &file, int fallback = -1) {
    if (!j.contains(key) || j[key].is_null()) {
        if (fallback >= 0) return fallback;
        throw Error("'" + file + "': missing \"" + key + "\"");
    }
    if (!j[key].is_number_integer() || j[key].get<int64_t>() <= 0 || j[key].get<int64_t>() > (1 << 24))
        throw Error("'" + file + "': \"" + key + "\" must be a positive integer");
    return j[key].get<int>();
}

// A positive finite number, or `fallback` when absent/null.
double realField(const nlohmann::json &j, const std::string &key, const std::string &file, double fallback) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_number() || !(j[key].get<double>() > 0) || !std::isfinite(j[key].get<double>()))
        throw Error("'" + file + "': \"" + key + "\" must be a positive number");
    return j[key].get<double>();
}

} // namespace

LlamaConfig hfLlamaConfigFromText(const std::string &text, const std::string &cf) {
    nlohmann::json c;
    try {
        c = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception &e) {
        throw Error("'" + cf + "' is not valid JSON: " + e.what());
    }
    if (!c.is_object()) throw Error("'" + cf + "' is not a JSON object");
    if (c.contains("model_type") && c["model_type"].is_string() && c["model_type"] != "llama")
        throw Error("'" + cf + "': model_type is \"" + c["model_type"].get<std::string>() +
                    "\"; MiniGPT-4 and MiniGPT-v2 use a LLaMA (Vicuna or Llama-2-chat)");
    LlamaConfig l;
    l.hidden = intField(c, "hidden_size", cf);
    l.intermediate = intField(c, "intermediate_size", cf);
    l.layers = intField(c, "num_hidden_layers", cf);
    l.heads = intField(c, "num_attention_heads", cf);
    l.kvHeads = intField(c, "num_key_value_heads", cf, l.heads);
    l.vocabSize = intField(c, "vocab_size", cf);
    l.maxPositions = intField(c, "max_position_embeddings", cf, 2048);
    l.rmsEps = realField(c, "rms_norm_eps", cf, 1e-6);
    l.ropeTheta = realField(c, "rope_theta", cf, 10000.0);
    if (c.contains("rope_scaling") && !c["rope_scaling"].is_null())
        throw Error("'" + cf + "': rope_scaling is set; MiniGPT-4's LLaMA has none (not supported)");
    if (l.hidden % l.heads != 0 || l.heads % l.kvHeads != 0)
        throw Error("'" + cf + "': hidden_size / num_attention_heads / num_key_value_heads do not divide");
    return l;
}

} // namespace mgd
