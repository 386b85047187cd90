#pragma once
// `minigpt-cli bench-llm`: the LLM alone at a named shape with random weights — a 512-token
// prefill, then 128 decoded tokens, several repetitions — against the memory bandwidth
// measured in the same process right before, so decode efficiency (bytes read per token x
// tokens/s / bandwidth) is comparable across machines whose bandwidth differs (this VM's
// switches between two states minute to minute: read ratios within one run).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/metrics/metrics.h"

namespace mgd {

struct LlmBenchOptions {
    std::string shape = "bench"; // bench (0.27B), tinyllama (1.1B), 7b
    std::string dtype = "bfloat16";
    int threads = 0; // 0: one per core
    int prefillTokens = 512, decodeTokens = 128, repetitions = 3;
    std::string cacheDir; // where the random weights are written once
};

struct Spread {
    double median = 0, min = 0, max = 0;
};

// A short prompt after a 100-token context (a follow-up question): the few-row kernels (at any
// size, whatever the default threshold) against libtorch's GEMM, median ms of the repetitions.
struct ShortPrefill {
    int tokens = 0;
    double kernelsMs = 0, libtorchMs = 0;
};

struct LlmBenchResult {
    std::string shape, dtype, cpu, kernels;
    int threads = 0;
    Spread prefillTokensPerSecond, decodeTokensPerSecond, bandwidthGbs;
    // What one decoded token reads: every weight matrix (and one embedding row), plus the KV of
    // every earlier position (averaged over the decode run); the sum is decodeBytesPerToken.
    uint64_t decodeWeightBytesPerToken = 0, decodeKvBytesPerToken = 0, decodeBytesPerToken = 0;
    uint64_t weightBytes = 0, rssBytes = 0;
    RssParts rssParts; // of rssBytes: anonymous / file-backed, and malloc's free bytes held
    // What the app does when idle after a turn (releaseFreeHeapMemory): the RSS after it, and one
    // more prefill's speed, which faults the released pages back in.
    uint64_t rssAfterIdleReleaseBytes = 0;
    double prefillAfterIdleRelease = 0; // tok/s
    // Median over the repetitions of decode tok/s x bytes per token / the bandwidth measured right
    // before that repetition.
    double decodeEfficiency = 0;
    std::vector<ShortPrefill> shortPrefills; // empty where the few-row kernels do not run
    std::string toJson() const;
    std::string table() const;
};

// One line: the decode and prefill kernels chosen on this CPU for float32 / bfloat16 / int8.
std::string describeKernels(const std::string &dtype);

// Streaming read of a buffer of `bytes` with every thread; GB/s of each of `passes` passes.
Spread measureReadBandwidth(uint64_t bytes = 1ull << 30, int passes = 5);

LlmBenchResult runLlmBench(const LlmBenchOptions &options,
                           const std::function<void(const std::string &)> &log = {});

} // namespace mgd
