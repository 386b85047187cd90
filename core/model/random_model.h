#pragma once
// Writes a model folder with random weights under the original key names, for benchmarks and
// tests: config.json (our schema), weights.safetensors, and a copy of a tokenizer.model.
#include <string>

#include "core/model/model_config.h"

namespace mgd {

// Parameters ~ N(0, std), norm weights 1, biases 0, as a freshly initialised model.
void writeRandomModel(const std::string &dir, const ModelConfig &config, const std::string &tokenizerPath,
                      uint64_t seed = 1234, double std = 0.02);

// The benchmark's own MiniGPT-4 (Vicuna v0 template): a ViT-B/14-sized vision encoder, a
// 6-layer Q-Former and a 0.27B-parameter LLaMA (hidden 1024, 16 layers, MHA, vocab 32000),
// big enough that a 10-turn conversation takes tens of seconds on 2 CPU cores.
ModelConfig benchModelConfig();

} // namespace mgd
