#pragma once
// What `minigpt-cli import` and File > Import model... ask for: the original MiniGPT-4 /
// MiniGPT-v2 files a user downloaded (option names follow the original's configs:
// q_former_model, llama_model, ckpt), and what an import reports back. No torch here: the
// window includes it through the engine facade.
#include <cstdint>
#include <string>
#include <vector>

namespace mgd {

struct ImportOptions {
    std::string arch;                 // minigpt4 | minigpt4-llama2 | minigptv2
    std::string vit;                  // eva_vit_g.pth
    std::string qformer;              // blip2_pretrained_flant5xxl.pth (minigpt4 only)
    std::string llamaModel;           // Hugging Face LLaMA / Vicuna folder
    std::string ckpt;                 // pretrained_minigpt4*.pth or minigptv2_checkpoint.pth
    std::string out;                  // model folder to create
    std::string dtype = "bfloat16";   // bfloat16 | float16 | float32
    int imageSize = 0;                // 0: 224 (minigpt4, minigpt4-llama2) or 448 (minigptv2)
    int vitHeads = 0;                 // 0: 16 when the ViT is EVA ViT-g's width, otherwise required
    int qformerHeads = 0;             // 0: 12 when the Q-Former is BERT-base's width, otherwise required
    double loraAlpha = 0;             // 0: the checkpoint's config, else 16 (minigptv2_eval.yaml)
    std::string name;                 // display name; default: the output folder's name
    uint64_t shardBytes = 4ull << 30; // safetensors shard size
};

struct ImportProgress {
    std::string stage;   // "checking", "hashing", "writing", "done"
    std::string detail;  // file or tensor being worked on
    double fraction = 0; // of the whole import, 0..1
};

struct ImportSummary {
    std::string outDir;
    int64_t tensors = 0;
    uint64_t bytesWritten = 0;
    std::vector<std::string> ignoredKeys; // "file: key", keys the original ignores too
    std::vector<std::string> notes;       // decisions a user should know (defaults taken, hints)
    double seconds = 0;
};

} // namespace mgd
