#include "core/import/importer.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/import/original_layout.h"
#include "core/model/tokenizer.h"
#include "core/util/error.h"
#include "core/util/sha256.h"

namespace mgd {

namespace fs = std::filesystem;

namespace {

struct Input {
    std::string role, path;
};

void requireFile(const std::string &path, const std::string &option, const std::string &what) {
    if (path.empty()) throw Error(option + " is required: " + what);
    if (!fs::exists(path)) throw Error(option + " '" + path + "': no such file");
    if (!fs::is_regular_file(path)) throw Error(option + " '" + path + "': not a file");
}

Architecture parseArch(const std::string &a) {
    if (a == "minigpt4") return Architecture::MiniGPT4;
    if (a == "minigpt4-llama2") return Architecture::MiniGPT4Llama2;
    if (a == "minigptv2") return Architecture::MiniGPTv2;
    throw Error("--arch '" + a + "': expected minigpt4, minigpt4-llama2 or minigptv2");
}

// Removes the temporary folder unless the import got to the final rename.
struct TempFolder {
    fs::path path;
    bool keep = false;
    ~TempFolder() {
        std::error_code ec;
        if (!keep && !path.empty()) fs::remove_all(path, ec);
    }
};

// A killed import leaves its temporary folder (it never loads: config.json comes last); the
// next import to the same name removes those whose process is gone.
void removeStaleImports(const fs::path &parent, const std::string &prefix) {
    std::error_code ec;
    for (const auto &e : fs::directory_iterator(parent, ec)) {
        const std::string n = e.path().filename().string();
        if (n.rfind(prefix, 0) != 0) continue;
        const std::string pid = n.substr(prefix.size());
        if (pid.empty() || pid.size() > 9 || pid.find_first_not_of("0123456789") != std::string::npos)
            continue;
        if (::kill(static_cast<pid_t>(std::stol(pid)), 0) != 0 && errno == ESRCH)
            fs::remove_all(e.path(), ec);
    }
}

} // namespace

ImportSummary importModel(const ImportOptions &o, const std::function<void(const ImportProgress &)> &progress,
                          const std::atomic<bool> *cancel) {
    c10::InferenceMode guard;
    const auto t0 = std::chrono::steady_clock::now();
    auto report = [&](const std::string &stage, const std::string &detail, double fraction) {
        if (progress) progress({stage, detail, fraction});
    };
    auto cancelled = [&] { return cancel && cancel->load(); };

    OriginalFiles files;
    files.options = o;
    files.arch = parseArch(o.arch);
    requireFile(o.vit, "--vit", "the EVA ViT-g weights (eva_vit_g.pth)");
    requireFile(o.ckpt, "--ckpt",
                "the MiniGPT checkpoint (pretrained_minigpt4*.pth or minigptv2_checkpoint.pth)");
    if (o.llamaModel.empty())
        throw Error("--llama-model is required: the LLM's Hugging Face folder (Vicuna or Llama-2-chat)");
    if (files.arch == Architecture::MiniGPT4)
        requireFile(o.qformer, "--q-former-model",
                    "MiniGPT-4 (Vicuna) takes its Q-Former from blip2_pretrained_flant5xxl.pth");
    if (o.out.empty()) throw Error("--out is required: the model folder to create");
    const fs::path out = fs::absolute(o.out);
    if (fs::exists(out))
        throw Error("--out '" + o.out + "' already exists: choose a new folder (nothing was written)");
    if (!fs::is_directory(out.parent_path()))
        throw Error("--out '" + o.out + "': the folder '" + out.parent_path().string() + "' does not exist");

    report("checking", o.llamaModel, 0);
    files.llm = openHfLlmFolder(o.llamaModel);
    const Tokenizer tok = Tokenizer::fromFile(files.llm.tokenizerPath);
    files.tokenizerPieces = tok.vocabSize();
    files.bos = tok.bosId();
    files.eos = tok.eosId();
    report("checking", o.vit, 0);
    files.vit = listTorchFile(o.vit, "auto");
    ImportSummary summary;
    if (files.arch == Architecture::MiniGPT4) {
        report("checking", o.qformer, 0);
        files.qformer = listTorchFile(o.qformer, "model");
    } else if (!o.qformer.empty()) {
        summary.notes.push_back("--q-former-model ignored: " + o.arch + " has no Q-Former");
    }
    report("checking", o.ckpt, 0);
    files.ckpt = listTorchFile(o.ckpt, "model");
    files.ckptLoraAlpha = torchFileConfigNumber(o.ckpt, {"model", "lora_alpha"});
    files.ckptLoraR = torchFileConfigNumber(o.ckpt, {"model", "lora_r"});
    if (std::isnan(files.ckptLoraAlpha)) files.ckptLoraAlpha = 0;
    if (std::isnan(files.ckptLoraR)) files.ckptLoraR = 0;

    ImportPlan plan = planImport(files);
    for (auto &n : plan.notes) summary.notes.push_back(n);
    summary.ignoredKeys = plan.ignoredKeys;

    // Inputs, for the provenance record: every file the folder's bytes come from.
    std::vector<Input> inputs{{"vit", o.vit}};
    if (files.arch == Architecture::MiniGPT4) inputs.push_back({"q_former_model", o.qformer});
    for (const auto &w : files.llm.weightFiles) inputs.push_back({"llama_model", w});
    inputs.push_back({"tokenizer", files.llm.tokenizerPath});
    inputs.push_back({"ckpt", o.ckpt});
    uint64_t inputBytes = 0, outputBytes = 0;
    for (const auto &in : inputs) inputBytes += fs::file_size(in.path);
    for (const auto &t : plan.tensors) outputBytes += t.bytes();
    // Hashing reads the inputs once; writing reads them again and writes the output.
    const double total = static_cast<double>(inputBytes) + 2.0 * static_cast<double>(outputBytes);

    TempFolder tmp;
    const std::string tmpPrefix = "." + out.filename().string() + ".importing-";
    removeStaleImports(out.parent_path(), tmpPrefix);
    tmp.path = out.parent_path() / (tmpPrefix + std::to_string(::getpid()));
    fs::remove_all(tmp.path);
    fs::create_directory(tmp.path);

    nlohmann::json sources = nlohmann::json::array();
    uint64_t hashed = 0;
    for (const auto &in : inputs) {
        const uint64_t before = hashed;
        const std::string digest = sha256File(in.path, [&](uint64_t n) {
            report("hashing", fs::path(in.path).filename().string(), static_cast<double>(before + n) / total);
            return !cancelled();
        });
        const uint64_t size = fs::file_size(in.path);
        hashed += size;
        sources.push_back({{"role", in.role},
                           {"file", fs::path(in.path).filename().string()},
                           {"path", fs::absolute(in.path).string()},
                           {"bytes", size},
                           {"sha256", digest}});
    }

    const size_t count = plan.tensors.size();
    const WrittenShards shards = writeModelShards(
        tmp.path.string(), std::move(plan.tensors), o.shardBytes,
        [&](size_t i, const std::string &name, uint64_t done) {
            report("writing", name,
                   (static_cast<double>(inputBytes) + 2.0 * static_cast<double>(done)) / total);
            return !cancelled();
        });
    fs::copy_file(files.llm.tokenizerPath, tmp.path / "tokenizer.model");

    // config.json last: a folder without it never loads, whatever stopped the import.
    nlohmann::json cfg = nlohmann::json::parse(plan.config.toJsonText());
    nlohmann::json opts = {
        {"arch", o.arch}, {"dtype", o.dtype}, {"image_size", plan.config.vision.imageSize}};
    if (o.vitHeads) opts["vit_heads"] = o.vitHeads;
    if (o.qformerHeads) opts["q_former_heads"] = o.qformerHeads;
    if (o.loraAlpha > 0) opts["lora_alpha"] = o.loraAlpha;
    cfg["provenance"] = {{"tool", "minigpt-cli import"}, {"options", opts},
                         {"sources", sources},           {"llm_weights_format", files.llm.weightsFormat},
                         {"notes", summary.notes},       {"ignored_keys", summary.ignoredKeys.size()}};
    {
        std::ofstream f(tmp.path / "config.json");
        f << cfg.dump(1) << "\n";
        if (!f) throw Error("cannot write config.json in '" + tmp.path.string() + "'");
    }
    if (cancelled()) throw Error("import cancelled");
    fs::rename(tmp.path, out);
    tmp.keep = true;

    summary.outDir = out.string();
    summary.tensors = static_cast<int64_t>(count);
    summary.bytesWritten = shards.bytes;
    summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    report("done", out.string(), 1.0);
    return summary;
}

} // namespace mgd
