#pragma once
// Sampling settings and the sampler (HF order: repetition penalty, temperature, top-k, top-p).
#include <cstdint>
#include <random>
#include <vector>

namespace at {
class Tensor;
}

namespace mgd {

struct SamplingParams {
    bool greedy = false; // or temperature <= 0
    float temperature = 1.0f;
    int topK = 0;      // 0: off
    float topP = 0.9f; // 1: off
    float repetitionPenalty = 1.05f;
    int64_t seed = -1; // -1: from the clock
    int maxNewTokens = 300;
    bool ignoreEos = false; // benchmarks: fixed-length answers (no EOS / stop strings)
    bool isGreedy() const { return greedy || temperature <= 0.0f; }
};

class Sampler {
public:
    explicit Sampler(const SamplingParams &p);
    // logits [vocab] fp32 (any layout); `history` = tokens generated so far.
    int32_t sample(const at::Tensor &logits, const std::vector<int32_t> &history);

private:
    SamplingParams p_;
    std::mt19937_64 rng_;
};

} // namespace mgd
