#pragma once
// A Hugging Face LLaMA / Vicuna folder as users download it: config.json, the weights as
// pytorch_model-0000N-of-0000M.bin (+ index), *.safetensors shards (+ index) or one file,
// and tokenizer.model.
#include <string>
#include <vector>

#include "core/import/source_tensor.h"
#include "core/model/model_config.h"

namespace mgd {

struct HfLlmFolder {
    std::string dir;
    LlamaConfig config;        // from config.json (bos/eos left to the tokenizer)
    std::string weightsFormat; // "safetensors" | "pytorch .bin"
    std::vector<std::string> weightFiles;
    SourceDict weights; // keys as in the files: model.layers.N..., lm_head.weight
    std::string tokenizerPath;
};

// Throws mgd::Error naming the folder and the file or key at fault.
HfLlmFolder openHfLlmFolder(const std::string &dir);

} // namespace mgd
