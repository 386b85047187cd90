#include "core/import/hf_llm_folder.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/util/error.h"

namespace mgd {

namespace fs = std::filesystem;

namespace {

nlohmann::json readJson(const fs::path &p) {
    std::ifstream f(p);
    if (!f) throw Error("cannot read '" + p.string() + "'");
    try {
        return nlohmann::json::parse(f);
    } catch (const nlohmann::json::exception &e) {
        throw Error("'" + p.string() + "' is not valid JSON: " + e.what());
    }
}

// Shard names listed by an HF index (weight_map values), as files of `dir`.
std::vector<std::string> shardsOfIndex(const fs::path &index) {
    const nlohmann::json j = readJson(index);
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
        throw Error("'" + index.string() + "': missing weight_map");
    std::set<std::string> names;
    for (const auto &[k, v] : j["weight_map"].items()) {
        if (!v.is_string())
            throw Error("'" + index.string() + "': weight_map['" + k + "'] is not a file name");
        const std::string s = v.get<std::string>();
        if (s.empty() || s.find('/') != std::string::npos || s.find("..") != std::string::npos)
            throw Error("'" + index.string() + "': bad shard name '" + s + "'");
        names.insert(s);
    }
    std::vector<std::string> out;
    for (const auto &n : names) {
        const fs::path p = index.parent_path() / n;
        if (!fs::exists(p))
            throw Error("'" + index.string() + "' lists '" + n +
                        "', which is not in the folder (download incomplete?)");
        out.push_back(p.string());
    }
    return out;
}

int intField(const nlohmann::json &j, const std::string &key, const std::string &file, int fallback = -1) {
    if (!j.contains(key) || j[key].is_null()) {
        if (fallback >= 0) return fallback;
        throw Error("'" + file + "': missing \"" + key + "\"");
    }
    if (!j[key].is_number_integer() || j[key].get<int64_t>() <= 0 || j[key].get<int64_t>() > (1 << 24))
        throw Error("'" + file + "': \"" + key + "\" must be a positive integer");
    return j[key].get<int>();
}

} // namespace

HfLlmFolder openHfLlmFolder(const std::string &dirIn) {
    HfLlmFolder f;
    f.dir = dirIn;
    const fs::path dir(dirIn);
    if (!fs::is_directory(dir)) throw Error("LLM folder '" + dirIn + "' does not exist or is not a folder");

    const fs::path cfgPath = dir / "config.json";
    if (!fs::exists(cfgPath)) throw Error("LLM folder '" + dirIn + "': missing config.json");
    const nlohmann::json c = readJson(cfgPath);
    const std::string cf = cfgPath.string();
    if (c.contains("model_type") && c["model_type"].is_string() && c["model_type"] != "llama")
        throw Error("'" + cf + "': model_type is \"" + c["model_type"].get<std::string>() +
                    "\"; MiniGPT-4 and MiniGPT-v2 use a LLaMA (Vicuna or Llama-2-chat)");
    LlamaConfig &l = f.config;
    l.hidden = intField(c, "hidden_size", cf);
    l.intermediate = intField(c, "intermediate_size", cf);
    l.layers = intField(c, "num_hidden_layers", cf);
    l.heads = intField(c, "num_attention_heads", cf);
    l.kvHeads = intField(c, "num_key_value_heads", cf, l.heads);
    l.vocabSize = intField(c, "vocab_size", cf);
    l.maxPositions = intField(c, "max_position_embeddings", cf, 2048);
    l.rmsEps = c.value("rms_norm_eps", 1e-6);
    l.ropeTheta =
        c.contains("rope_theta") && c["rope_theta"].is_number() ? c["rope_theta"].get<double>() : 10000.0;
    if (c.contains("rope_scaling") && !c["rope_scaling"].is_null())
        throw Error("'" + cf + "': rope_scaling is set; MiniGPT-4's LLaMA has none (not supported)");
    if (l.hidden % l.heads != 0 || l.heads % l.kvHeads != 0)
        throw Error("'" + cf + "': hidden_size / num_attention_heads / num_key_value_heads do not divide");

    // Weights: an index names the shards; otherwise one file or every shard of one kind.
    const fs::path stIndex = dir / "model.safetensors.index.json";
    const fs::path binIndex = dir / "pytorch_model.bin.index.json";
    if (fs::exists(stIndex)) {
        f.weightsFormat = "safetensors";
        f.weightFiles = shardsOfIndex(stIndex);
    } else if (fs::exists(binIndex)) {
        f.weightsFormat = "pytorch .bin";
        f.weightFiles = shardsOfIndex(binIndex);
    } else {
        std::vector<std::string> st, bin;
        for (const auto &e : fs::directory_iterator(dir)) {
            const std::string n = e.path().filename().string();
            if (e.path().extension() == ".safetensors") st.push_back(e.path().string());
            if (e.path().extension() == ".bin" && n.rfind("pytorch_model", 0) == 0)
                bin.push_back(e.path().string());
        }
        std::sort(st.begin(), st.end());
        std::sort(bin.begin(), bin.end());
        if (!st.empty()) {
            f.weightsFormat = "safetensors";
            f.weightFiles = st;
        } else if (!bin.empty()) {
            f.weightsFormat = "pytorch .bin";
            f.weightFiles = bin;
        } else {
            throw Error("LLM folder '" + dirIn +
                        "': no weights (model*.safetensors, pytorch_model*.bin or their index)");
        }
    }
    std::set<std::string> seen;
    for (const auto &file : f.weightFiles) {
        SourceDict d = f.weightsFormat == "safetensors" ? listSafetensors(file) : listTorchFile(file, "");
        for (auto &kv : d.tensors) {
            if (!seen.insert(kv.first).second)
                throw Error("LLM folder '" + dirIn + "': tensor '" + kv.first + "' appears in two shards");
            f.weights.tensors.push_back(std::move(kv));
        }
        for (auto &k : d.otherKeys) f.weights.otherKeys.push_back(k);
    }

    const fs::path tok = dir / "tokenizer.model";
    if (!fs::exists(tok))
        throw Error("LLM folder '" + dirIn +
                    "': missing tokenizer.model (the SentencePiece model of the LLM)");
    f.tokenizerPath = tok.string();
    return f;
}

} // namespace mgd
