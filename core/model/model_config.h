#pragma once
// The model folder's config.json, in our own schema ("format": "minigpt-desk/1"). The
// loader also accepts the layout of the reference fixtures (shared/reference/*/config.json)
// and maps it onto the same struct, so any directory of that layout loads.
#include <array>
#include <optional>
#include <string>
#include <vector>

namespace mgd {

enum class Architecture { MiniGPT4, MiniGPT4Llama2, MiniGPTv2 };
enum class PromptTemplate { Vicuna0, Llama2, MiniGPTv2 };

struct VisionConfig {
    int imageSize = 224;
    int patchSize = 14;
    int width = 1408;
    int depth = 39;
    int heads = 16;
    int mlpHidden = 6144;
    double lnEps = 1e-6;
    double lnVisionEps = 1e-5;
};

struct QFormerConfig {
    int hidden = 768;
    int layers = 12;
    int heads = 12;
    int intermediate = 3072;
    double lnEps = 1e-12;
    int crossAttentionFreq = 2;
    int numQueryTokens = 32;
};

struct LlamaConfig {
    int vocabSize = 32000;
    int hidden = 4096;
    int intermediate = 11008;
    int layers = 32;
    int heads = 32;
    int kvHeads = 32;
    double rmsEps = 1e-6;
    double ropeTheta = 10000.0;
    int maxPositions = 2048;
    int bos = 1;
    int eos = 2;
    int headDim() const { return hidden / heads; }
};

struct ModelConfig {
    std::string name;
    Architecture arch = Architecture::MiniGPT4;
    std::string dtype = "float32"; // float32 | bfloat16 | float16 (weights are cast on load)
    VisionConfig vision;
    std::optional<QFormerConfig> qformer; // only for the Q-Former projector
    int projIn = 768;                     // llama_proj input width
    LlamaConfig llm;
    PromptTemplate promptTemplate = PromptTemplate::Vicuna0;
    std::string systemPrompt;             // text before the first turn
    std::vector<std::string> stopStrings; // e.g. "###"
    std::array<float, 3> imageMean{0.48145466f, 0.4578275f, 0.40821073f};
    std::array<float, 3> imageStd{0.26862954f, 0.26130258f, 0.27577711f};

    // Number of visual tokens one image contributes to the LLM.
    int imageTokens() const;
    // Throws mgd::Error naming the file and key.
    static ModelConfig fromFile(const std::string &path);
    static ModelConfig fromJsonText(const std::string &text, const std::string &label);
    std::string toJsonText() const;
};

const char *architectureName(Architecture a);
// The original's system prompt and stop strings for a template.
void applyTemplateDefaults(ModelConfig &c);
const char *templateName(PromptTemplate t);

} // namespace mgd
