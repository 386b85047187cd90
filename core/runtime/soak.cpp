#include "core/runtime/soak.h"

#include <malloc.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <deque>

#include "core/metrics/metrics.h"
#include "core/runtime/engine.h"
#include "core/util/error.h"

namespace mgd {

namespace {

const char *kQuestions[] = {
    "Describe the image.",       "How many shapes are there?", "What shape is at the top left?",
    "What color is the circle?", "Is there a red square?",     "Where is the blue star?"};

// RSS with freed memory handed back first, so the figure is what is live.
uint64_t liveRss() {
    malloc_trim(0);
    return currentRssBytes();
}

} // namespace

std::string SoakReport::json() const {
    nlohmann::json j = {{"turns", turns},
                        {"cancelled", cancelled},
                        {"regenerated", regenerated},
                        {"edited", edited},
                        {"conversations_opened", conversationsOpened},
                        {"conversations_deleted", conversationsDeleted},
                        {"rss_after_warmup_bytes", rssAfterWarmupBytes},
                        {"rss_end_bytes", rssEndBytes},
                        {"rss_growth_ratio", rssGrowthRatio},
                        {"pool_capacity_bytes", poolCapacityBytes},
                        {"pool_high_water_bytes", poolHighWaterBytes},
                        {"budget_violations", budgetViolations},
                        {"errors", errors}};
    return j.dump(1);
}

std::string SoakReport::table() const {
    char buf[640];
    std::snprintf(buf, sizeof buf,
                  "turns %d (cancelled %d, regenerated %d, edited %d), conversations opened %d, deleted %d\n"
                  "RSS after warm-up %.1f MiB, at the end %.1f MiB: growth %+.2f%%\n"
                  "pool high water %.1f of %.1f MiB, budget violations %d, errors %zu\n%s\n",
                  turns, cancelled, regenerated, edited, conversationsOpened, conversationsDeleted,
                  rssAfterWarmupBytes / 1048576.0, rssEndBytes / 1048576.0, 100 * rssGrowthRatio,
                  poolHighWaterBytes / 1048576.0, poolCapacityBytes / 1048576.0, budgetViolations,
                  errors.size(), passed() ? "PASS" : "FAIL");
    return buf;
}

SoakReport runSoak(const SoakOptions &o, const std::function<void(const std::string &)> &log) {
    if (o.images.empty()) throw Error("soak: no images");
    EngineSettings s;
    s.threads = o.threads;
    s.featureDiskDir = o.featureDir;
    s.featureDiskBytes = o.featureDir.empty() ? 0 : 64ull << 20;
    Engine e(s);
    e.loadModel(o.modelDir);
    SoakReport r;
    r.poolCapacityBytes = e.poolCapacityBytes();
    const int warmup = o.warmupTurns > 0 ? o.warmupTurns : std::max(20, o.turns / 10);
    std::deque<int> open;
    size_t nextImage = 0;
    int turnsInConv = 0;
    for (int t = 1; t <= o.turns; ++t) {
        try {
            // A new conversation every 12 turns; at most 4 kept, the oldest deleted.
            if (open.empty() || turnsInConv >= 12) {
                open.push_back(e.newConversation());
                ++r.conversationsOpened;
                turnsInConv = 0;
                if (open.size() > 4) {
                    e.deleteConversation(open.front());
                    open.pop_front();
                    ++r.conversationsDeleted;
                }
            }
            const int conv = open.back();
            TurnRequest req;
            req.text = kQuestions[t % std::size(kQuestions)];
            // A picture on a conversation's first turn, and now and then another one.
            if (turnsInConv == 0 || t % 5 == 0) {
                ImageInput in;
                in.rgb = o.images[nextImage++ % o.images.size()];
                in.label = "soak";
                req.images.push_back(in);
            }
            req.sampling.greedy = t % 3 != 0; // some sampled turns too
            req.sampling.seed = t;
            req.sampling.maxNewTokens = 48;
            if (t % 10 == 0) { // cancelled at its first token, as Stop does
                e.submitTurn(conv, req, [&](const std::string &) { e.cancel(); });
                ++r.cancelled;
            } else if (t % 7 == 0 && turnsInConv > 0) {
                if (t % 14 == 0) {
                    e.editLast(conv, req);
                    ++r.edited;
                } else {
                    e.regenerate(conv, req.sampling);
                    ++r.regenerated;
                }
            } else {
                e.submitTurn(conv, req);
            }
            ++turnsInConv;
        } catch (const std::exception &ex) {
            r.errors.push_back("turn " + std::to_string(t) + ": " + ex.what());
            if (r.errors.size() > 20) break;
        }
        const MetricsSnapshot m = e.metricsSnapshot();
        if (m.memory.poolCapacityBytes > 0 && m.memory.poolUsedBytes > m.memory.poolCapacityBytes)
            ++r.budgetViolations;
        r.poolHighWaterBytes = m.memory.poolHighWaterBytes;
        r.turns = t;
        if (t == warmup) r.rssAfterWarmupBytes = liveRss();
        if (log && t % 100 == 0)
            log("turn " + std::to_string(t) + ", RSS " + std::to_string(currentRssBytes() >> 20) + " MiB");
    }
    r.rssEndBytes = liveRss();
    if (r.rssAfterWarmupBytes == 0) r.rssAfterWarmupBytes = r.rssEndBytes;
    r.rssGrowthRatio = double(r.rssEndBytes) / double(r.rssAfterWarmupBytes) - 1;
    return r;
}

} // namespace mgd
