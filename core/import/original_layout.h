#pragma once
// How the original files map onto our model folder: which key of which file becomes which
// tensor, what the shapes say about the model (widths, depths, query count, LLM size), what
// must be transformed (LoRA folded, pos_embed interpolated, inv_freq recomputed), and which
// keys the original ignores. Checked before anything is written.
#include <string>
#include <vector>

#include "core/import/hf_llm_folder.h"
#include "core/import/import_options.h"
#include "core/import/model_folder_writer.h"
#include "core/import/source_tensor.h"
#include "core/model/model_config.h"

namespace mgd {

struct OriginalFiles {
    ImportOptions options;
    Architecture arch = Architecture::MiniGPT4;
    SourceDict vit;     // eva_vit_g.pth (keys without "visual_encoder.")
    SourceDict qformer; // blip2 ["model"] (minigpt4 only)
    SourceDict ckpt;    // MiniGPT checkpoint ["model"]
    HfLlmFolder llm;
    int tokenizerPieces = 0, bos = -1, eos = -1;
    double ckptLoraAlpha = 0, ckptLoraR = 0; // from the checkpoint's config; 0 when absent
};

struct ImportPlan {
    ModelConfig config;
    std::vector<PlannedTensor> tensors;
    std::vector<std::string> ignoredKeys; // "file: key"
    std::vector<std::string> notes;
};

// Throws mgd::Error naming the file, the key and both shapes on any mismatch.
ImportPlan planImport(const OriginalFiles &files);

} // namespace mgd
