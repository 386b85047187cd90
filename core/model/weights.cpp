#include "core/model/weights.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/model/safetensors.h"
#include "core/util/error.h"
#include "core/util/hasher.h"

namespace mgd {

namespace fs = std::filesystem;

namespace {

std::string shapeStr(at::IntArrayRef s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

// peft wraps the LLM: llama_model.base_model.model.model.X -> llama_model.model.X.
std::string canonicalName(const std::string &key) {
    static const std::string peft = "llama_model.base_model.model.";
    if (key.rfind(peft, 0) == 0) return "llama_model." + key.substr(peft.size());
    return key;
}

} // namespace

Weights Weights::openFiles(const std::vector<std::string> &files) {
    Weights w;
    for (const auto &path : files) {
        auto f = std::make_shared<SafetensorsFile>(path);
        w.files_.push_back(f);
        for (const auto &[key, info] : f->tensors()) {
            const std::string name = canonicalName(key);
            if (w.index_.count(name))
                throw Error("weights: tensor '" + name + "' appears twice (in '" +
                            w.index_[name].file->path() + "' and '" + path + "')");
            w.index_[name] = Source{f, key};
        }
    }
    if (w.index_.empty()) throw Error("weights: no tensors found in " + w.describe());
    return w;
}

Weights Weights::openFolder(const std::string &dir) {
    std::vector<std::string> files;
    const fs::path index = fs::path(dir) / "model.safetensors.index.json";
    if (fs::exists(index)) {
        std::ifstream f(index);
        nlohmann::json j;
        try {
            f >> j;
        } catch (const nlohmann::json::exception &e) {
            throw Error("weights index '" + index.string() + "': " + e.what());
        }
        std::set<std::string> shards;
        if (!j.contains("weight_map") || !j["weight_map"].is_object())
            throw Error("weights index '" + index.string() + "': missing weight_map");
        for (auto &[k, v] : j["weight_map"].items())
            if (v.is_string()) shards.insert(v.get<std::string>());
        for (const auto &s : shards) {
            if (s.find('/') != std::string::npos || s.find("..") != std::string::npos)
                throw Error("weights index '" + index.string() + "': bad shard name '" + s + "'");
            files.push_back((fs::path(dir) / s).string());
        }
    } else {
        std::error_code ec;
        for (const auto &e : fs::directory_iterator(dir, ec)) {
            const std::string n = e.path().filename().string();
            if (e.path().extension() == ".safetensors" &&
                (n.rfind("weights", 0) == 0 || n.rfind("model", 0) == 0))
                files.push_back(e.path().string());
        }
        if (ec) throw Error("model folder '" + dir + "': " + ec.message());
        std::sort(files.begin(), files.end());
    }
    if (files.empty())
        throw Error("model folder '" + dir + "': no weights (*.safetensors named weights* or model*)");
    return openFiles(files);
}

void Weights::releasePages() const {
    for (const auto &f : files_) f->releaseAll();
}

void Weights::release(const std::string &name) const {
    if (const Source *s = find(name)) s->file->release(s->key);
}

bool Weights::has(const std::string &name) const {
    return index_.count(name) != 0;
}

const Weights::Source *Weights::find(const std::string &name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &it->second;
}

std::string Weights::describe() const {
    std::string out;
    for (const auto &f : files_) out += (out.empty() ? "'" : ", '") + f->path() + "'";
    return out.empty() ? "(no files)" : out;
}

at::Tensor Weights::loadRaw(const std::string &name) const {
    const Source *s = find(name);
    at::Tensor t = s->file->load(s->key);
    // LoRA (MiniGPT-v2): W' = W + (alpha / r) * B A; alpha 16, r 64 as in minigptv2_eval.yaml.
    const std::string stem = name.substr(0, name.size() - std::string(".weight").size());
    if (name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0 && has(stem + ".lora_A.weight") &&
        has(stem + ".lora_B.weight")) {
        at::Tensor a = loadRaw(stem + ".lora_A.weight").to(at::kFloat);
        at::Tensor b = loadRaw(stem + ".lora_B.weight").to(at::kFloat);
        if (b.dim() != 2 || a.dim() != 2 || b.size(1) != a.size(0) || b.size(0) != t.size(0) ||
            a.size(1) != t.size(1))
            throw Error("weights: LoRA factors of '" + name + "' do not match its shape");
        const double scale = 16.0 / static_cast<double>(a.size(0));
        t = (t.to(at::kFloat) + at::matmul(b, a) * scale).to(t.scalar_type());
    }
    return t;
}

uint64_t Weights::loadedBytes(at::ScalarType dtype, bool int8Llm) const {
    uint64_t total = 0;
    for (const auto &[name, src] : index_) {
        const TensorInfo &t = src.file->info(src.key);
        uint64_t n = 1;
        for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
        const bool q8 = int8Llm && t.shape.size() == 2 && name.rfind("llama_model.model.layers.", 0) == 0;
        total += q8 ? n + n / 32 * 4 : n * at::elementSize(dtype);
    }
    return total;
}

std::string Weights::fingerprint(const std::string &salt, const std::vector<std::string> &prefixes) const {
    Hasher128 h;
    h.add(salt);
    for (const auto &[name, src] : index_) {
        bool match = false;
        for (const auto &p : prefixes) match = match || name.rfind(p, 0) == 0;
        if (!match) continue;
        const auto &info = src.file->info(src.key);
        h.add(name).add(src.file->data(src.key), info.end - info.begin);
    }
    // Hashing touched every byte of those tensors; what the modules hold is already copied
    // or viewed, so the pages the hash alone brought in are dropped again.
    for (const auto &f : files_) f->releaseAll();
    return h.digest().hex();
}

at::Tensor Weights::take(const std::string &name, const std::vector<int64_t> &shape,
                         at::ScalarType dtype) const {
    const Source *s = find(name);
    if (!s) throw Error("weights " + describe() + ": missing tensor '" + name + "'");
    const auto &info = s->file->info(s->key);
    if (info.shape != shape)
        throw Error("weights '" + s->file->path() + "': tensor '" + name + "' has shape " +
                    shapeStr(info.shape) + " but the config expects " + shapeStr(shape));
    if (info.dtype == DType::I64 && dtype != at::kLong)
        throw Error("weights '" + s->file->path() + "': tensor '" + name +
                    "' is I64 but a floating-point tensor is expected");
    const bool lora = has(name.substr(0, name.size() - std::string(".weight").size()) + ".lora_A.weight");
    if (!lora && scalarTypeOf(info.dtype) == dtype) {
        // Stored as computed: the tensor is the mapped bytes themselves (one copy in memory).
        at::Tensor v = SafetensorsFile::view(s->file, s->key);
        if (v.defined()) return v;
    }
    at::Tensor t = loadRaw(name).to(dtype).contiguous();
    s->file->release(s->key); // the copy is what stays; the mapped source pages go
    return t;
}

at::Tensor Weights::takeOptional(const std::string &name, const std::vector<int64_t> &shape,
                                 at::ScalarType dtype) const {
    return has(name) ? take(name, shape, dtype) : at::Tensor();
}

} // namespace mgd
