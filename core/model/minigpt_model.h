#pragma once
// The MiniGPT composition: vision encoder -> ln_vision -> (Q-Former | 4-patch concat) ->
// llama_proj -> LLaMA. Loads a model folder: config.json, *.safetensors, tokenizer.model.
#include <ATen/core/Tensor.h>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/model/llama.h"
#include "core/model/model_config.h"
#include "core/model/tokenizer.h"

namespace mgd {

class VisionEncoder;
class QFormer;

// Intermediates of one encodeImage call, for parity checks against the original.
struct VisionTrace {
    std::vector<at::Tensor> vitBlocks;
    at::Tensor vitOut, lnVisionOut, qformerOut, projInGrouped;
};

// Refuses, before anything is loaded, a model whose weights (weightBytes, in `dtype`) and
// working memory do not fit in availableBytes (0: unknown, no check); the error names the
// folder, both figures, and int8 when int8Bytes would fit.
inline constexpr uint64_t kWorkingBytes = 512ull << 20; // activations, KV's first blocks, libraries
void checkFitsInMemory(const std::string &dir, const std::string &dtype, uint64_t weightBytes,
                       uint64_t int8Bytes, uint64_t availableBytes);

class MiniGptModel {
public:
    // Throws mgd::Error naming the file/tensor/key at fault. `dtype` ("", float32, bfloat16,
    // float16) overrides the folder's config.json.
    static std::unique_ptr<MiniGptModel> load(const std::string &dir, const std::string &dtype = "");
    ~MiniGptModel();

    // pixels [1, 3, S, S] -> projected visual tokens [1, T, llm hidden]
    at::Tensor encodeImage(const at::Tensor &pixels, VisionTrace *trace = nullptr) const;

    const ModelConfig &config() const { return config_; }
    const Tokenizer &tokenizer() const { return *tokenizer_; }
    const Llama &llm() const { return *llama_; }
    const std::string &dir() const { return dir_; }
    at::ScalarType dtype() const { return dtype_; }
    // Identity of the vision half (config + weights), for cache keys.
    const std::string &visionIdentity() const { return visionIdentity_; }

    // Training (core/train). Trainable tensors (handles) of the vision half (ViT, ln_vision,
    // Q-Former) and of the projector + LLM; names as VisionEncoder/QFormer/Llama give them.
    std::vector<std::pair<std::string, at::Tensor>> visionParameters() const;
    std::vector<std::pair<std::string, at::Tensor>> languageParameters() const;
    // Every tensor under its original state-dict name (detached copies), for writeSafetensors.
    std::vector<std::pair<std::string, at::Tensor>> stateDict() const;

private:
    MiniGptModel() = default;
    std::string dir_;
    ModelConfig config_;
    at::ScalarType dtype_ = at::kFloat;
    std::optional<Tokenizer> tokenizer_;
    std::unique_ptr<VisionEncoder> vision_;
    at::Tensor lnVisionW_, lnVisionB_;
    std::unique_ptr<QFormer> qformer_;
    at::Tensor projW_, projB_;
    std::unique_ptr<Llama> llama_;
    std::string visionIdentity_;
};

} // namespace mgd
