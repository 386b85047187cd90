#pragma once
// The benchmark: one scripted conversation run, in one process, under the original
// MiniGPT-4 demo's behaviour and with each optimisation, reporting ratios against the
// original. Answers have a fixed length (random-weight models never stop by themselves).
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace mgd {

struct BenchOptions {
    std::string modelDir;      // empty: generate (once) the bench model into cacheDir
    std::string cacheDir;      // where the generated bench model and feature cache live
    std::string tokenizerPath; // tokenizer.model for the generated model
    std::string imagePath;     // empty: a generated test pattern
    int answerTokens = 32;
    int threads = 0;
    std::string dtype;   // every mode computes in it ("": the model folder's)
    std::string kvDtype; // "" (the compute dtype) or "int8", in every mode
    std::vector<std::string> modes{"original", "feature_cache", "kv_reuse", "pool", "all"};
    uint64_t poolBytes = 0;       // 0: sized to the scripted conversation
    int64_t kvBlockPositions = 0; // 0: the engine's default
};

struct BenchTurn {
    double ttftS = 0, turnS = 0, prefillS = 0, encodeS = 0;
    long prefillTokens = 0, promptTokens = 0;
    int imagesEncoded = 0;
};

struct BenchMode {
    std::string name;
    std::vector<BenchTurn> turns; // the 10-turn conversation
    BenchTurn newConversation;    // a second conversation on the same image
    BenchTurn repeat;             // an exact repeat of a greedy turn
    double totalS = 0;            // the 10 turns
    double decodeTokensPerSecond = 0;
    uint64_t peakExtraBytes = 0, peakRssBytes = 0, poolCapacityBytes = 0, budgetBytes = 0;
    double featureHitRate = 0, prefixHitRate = 0, responseHitRate = 0;
    // Only where the mode keeps conversation state ("all"): turn 11 of the conversation in a
    // restarted engine, with its saved state and without it, and the same turn warm.
    BenchTurn restarted, restartedFromText, warmTurn11;
};

struct BenchReport {
    std::string model;
    std::string cpu, kernels, dtype; // what ran: the CPU, the kernels chosen, the compute dtype
    uint64_t weightBytes = 0, decodeBytesPerToken = 0;
    int answerTokens = 0;
    std::vector<BenchMode> modes;
    double memoryBandwidthGBs = 0;
    double ttftSpeedupTurn10 = 0, totalSpeedup = 0, newConversationTtftSpeedup = 0;
    double peakExtraRatio = 0, decodeEfficiency = 0, ttftFlatness = 0;
    // First turn after a restart over the warm TTFT of the same turn (saved state / none).
    double restartTtftRatio = 0, restartWithoutStateTtftRatio = 0;
    // KV state per sequence position (all layers, K and V) in the model's dtype and others.
    std::string kvDtype;                                // what the modes kept it in
    int64_t kvBlockPositions = 0;                       // positions per KV block
    std::map<std::string, uint64_t> kvBytesPerPosition; // float32, bfloat16, float16, int8
    std::string table() const;
    std::string json() const;
};

// Measures read bandwidth of this machine (GB/s) by streaming a buffer well above the L3.
double measureMemoryBandwidth(int threads);

BenchReport runBenchmark(const BenchOptions &o, const std::function<void(const std::string &)> &log);

// The shared Redis tier: the first turn, on an image another desk has already encoded and
// shared, of a fresh engine with the tier against one without it (local disk tier off, a new
// pair of engines per repetition).
struct RemoteBenchReport {
    std::string model;
    std::vector<double> withMs, withoutMs; // TTFT per repetition
    double rttP50Ms = 0, rttP95Ms = 0;     // the lookups' round trips
    std::string table() const;
    std::string json() const;
};
RemoteBenchReport runRemoteBenchmark(const BenchOptions &o, const std::string &redisUrl, int repetitions,
                                     const std::function<void(const std::string &)> &log);

} // namespace mgd
