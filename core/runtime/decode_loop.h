#pragma once
// The decode loop of a turn: sample, stream, feed back, until end of sequence, a stop
// string, the token budget or a cancel. Nothing else of a turn happens here.
#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/metrics/turn_stats.h"
#include "core/runtime/sampling.h"

namespace mgd {

class Llama;
class Session;
class Tokenizer;
struct ModelConfig;

struct DecodeOutcome {
    std::vector<int32_t> generated; // every sampled token
    std::string text;               // the streamed text, stop string cut
    std::vector<int32_t> keptIds;   // what the conversation keeps as the answer's tokens
    StopReason stop = StopReason::MaxTokens;
    double firstTokenAtMs = 0; // clock value when the first token was sampled (0: none)
};

// Starts from `logits` (the prompt's last position, [1, vocab]) and runs at most maxNew steps
// on `session`. onToken receives text as it becomes final; `cancel` is polled every step.
DecodeOutcome decodeAnswer(Session &session, const Llama &llm, const Tokenizer &tok, const ModelConfig &cfg,
                           const SamplingParams &sp, int maxNew, at::Tensor logits,
                           const std::atomic<bool> &cancel,
                           const std::function<void(const std::string &)> &onToken,
                           const std::function<double()> &clockMs);

} // namespace mgd
