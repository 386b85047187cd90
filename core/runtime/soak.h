#pragma once
// A long session in one engine, as a user who keeps the app open for days has it: turns with
// images rotating through a set, a cancel every 10th turn, a regenerate or an edit every 7th,
// new conversations and deletions; RSS after a warm-up against the end, and the pool's budget
// checked after every turn. `minigpt-cli soak` and the ctest labelled "soak" run it.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/image/image_decode.h"

namespace mgd {

struct SoakOptions {
    std::string modelDir;
    int turns = 1000;
    int warmupTurns = 0; // 0: a tenth of the turns (at least 20)
    std::vector<std::shared_ptr<const RgbImage>> images;
    int threads = 1;
    std::string featureDir; // the disk tier's folder ("" : none)
};

struct SoakReport {
    int turns = 0, cancelled = 0, regenerated = 0, edited = 0, conversationsOpened = 0,
        conversationsDeleted = 0;
    uint64_t rssAfterWarmupBytes = 0, rssEndBytes = 0, poolCapacityBytes = 0, poolHighWaterBytes = 0;
    double rssGrowthRatio = 0; // end / after warm-up - 1
    int budgetViolations = 0;  // turns after which the pool held more than its capacity
    std::vector<std::string> errors;
    bool passed(double maxGrowth = 0.02) const {
        return rssGrowthRatio <= maxGrowth && budgetViolations == 0 && errors.empty();
    }
    std::string json() const;
    std::string table() const;
};

SoakReport runSoak(const SoakOptions &o, const std::function<void(const std::string &)> &log = {});

} // namespace mgd
