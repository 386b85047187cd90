#include "core/import/hf_llm_folder.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/import/hf_config.h"
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

} // namespace

HfLlmFolder openHfLlmFolder(const std::string &dirIn) {
    HfLlmFolder f;
    f.dir = dirIn;
    const fs::path dir(dirIn);
    if (!fs::is_directory(dir)) throw Error("LLM folder '" + dirIn + "' does not exist or is not a folder");

    const fs::path cfgPath = dir / "config.json";
    if (!fs::exists(cfgPath)) throw Error("LLM folder '" + dirIn + "': missing config.json");
    {
        std::ifstream in(cfgPath, std::ios::binary);
        if (!in) throw Error("cannot read '" + cfgPath.string() + "'");
        f.config =
            hfLlamaConfigFromText(std::string(std::istreambuf_iterator<char>(in), {}), cfgPath.string());
    }

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
