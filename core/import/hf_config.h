#pragma once
// A Hugging Face LLaMA config.json (the LLM folder users download next to the checkpoint).
#include <string>

#include "core/model/model_config.h"

namespace mgd {

// The LLaMA shape from the text of an HF config.json; `file` names it in messages. Absent
// optional keys take LLaMA's defaults (kv heads = heads, 2048 positions, eps 1e-6, theta
// 1e4). Throws mgd::Error naming the file and the key at fault.
LlamaConfig hfLlamaConfigFromText(const std::string &text, const std::string &file);

} // namespace mgd
