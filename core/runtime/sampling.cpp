#include "core/runtime/sampling.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

namespace mgd {

Sampler::Sampler(const SamplingParams &p) : p_(p) {
    const uint64_t seed =
        p.seed >= 0 ? static_cast<uint64_t>(p.seed)
                    : static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    rng_.seed(seed);
}

int32_t Sampler::sample(const at::Tensor &logitsIn, const std::vector<int32_t> &history) {
    at::Tensor lt = logitsIn.reshape({-1}).to(at::kFloat).contiguous();
    const int64_t n = lt.numel();
    std::vector<float> l(lt.data_ptr<float>(), lt.data_ptr<float>() + n);
    if (p_.repetitionPenalty != 1.0f) {
        // HF RepetitionPenaltyLogitsProcessor: divide positive scores, multiply negative ones.
        std::vector<char> seen(n, 0);
        for (int32_t id : history)
            if (id >= 0 && id < n && !seen[id]) {
                seen[id] = 1;
                l[id] = l[id] < 0 ? l[id] * p_.repetitionPenalty : l[id] / p_.repetitionPenalty;
            }
    }
    if (p_.isGreedy()) return static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());

    for (float &x : l) x /= p_.temperature;
    std::vector<int32_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    // Highest first; ties by id so the order is reproducible.
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    size_t keep = static_cast<size_t>(n);
    if (p_.topK > 0) keep = std::min<size_t>(keep, static_cast<size_t>(p_.topK));
    const float mx = l[order[0]];
    std::vector<double> prob(keep);
    double sum = 0;
    for (size_t i = 0; i < keep; ++i) sum += prob[i] = std::exp(static_cast<double>(l[order[i]] - mx));
    if (p_.topP < 1.0f) {
        // Smallest prefix whose mass reaches top_p (at least one token).
        double acc = 0;
        size_t cut = keep;
        for (size_t i = 0; i < keep; ++i) {
            acc += prob[i] / sum;
            if (acc >= p_.topP) {
                cut = i + 1;
                break;
            }
        }
        keep = cut;
        sum = std::accumulate(prob.begin(), prob.begin() + keep, 0.0);
    }
    std::uniform_real_distribution<double> u(0.0, sum);
    double r = u(rng_), acc = 0;
    for (size_t i = 0; i < keep; ++i) {
        acc += prob[i];
        if (r < acc) return order[i];
    }
    return order[keep - 1];
}

} // namespace mgd
