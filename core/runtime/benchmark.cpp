#include "core/runtime/benchmark.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <malloc.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/kernels/cpu_features.h"
#include "core/model/model_config.h"
#include "core/model/random_model.h"
#include "core/runtime/bench_llm.h"
#include "core/runtime/engine.h"
#include "core/util/error.h"

namespace mgd {

namespace fs = std::filesystem;

namespace {

// Realistic questions about one picture (the 10-turn script), then a second conversation.
const char *kQuestions[10] = {
    "What is in this image? Please describe it.",
    "What color is the largest shape, and where is it in the picture?",
    "Is there anything round in the picture?",
    "How many objects can you count in total?",
    "Which object is closest to the top left corner?",
    "Describe the background in a few words.",
    "Are any of the shapes overlapping each other?",
    "What would you call the style of this picture?",
    "If you had to give this image a title, what would it be?",
    "Summarise our conversation about the image in one sentence.",
};
const char *kNewConversationQuestion = "Tell me what you see in this picture.";
const char *kRestartQuestion = "Back again: what did we say about the colours?";

// A deterministic test pattern: gradient, a rectangle and a disc (like the reference image).
std::shared_ptr<RgbImage> testPattern() {
    auto img = std::make_shared<RgbImage>();
    img->width = 320;
    img->height = 240;
    img->rgb.resize(320 * 240 * 3);
    for (int y = 0; y < 240; ++y)
        for (int x = 0; x < 320; ++x) {
            uint8_t *p = &img->rgb[(y * 320 + x) * 3];
            p[0] = static_cast<uint8_t>(x * 255 / 319);
            p[1] = static_cast<uint8_t>(y * 255 / 239);
            p[2] = 128;
            if (y > 30 && y < 120 && x > 40 && x < 140) p[0] = 230, p[1] = 20, p[2] = 20;
            if ((x - 230) * (x - 230) + (y - 150) * (y - 150) < 50 * 50) p[0] = 20, p[1] = 40, p[2] = 220;
        }
    return img;
}

uint64_t statusField(const char *key) {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind(key, 0) == 0) return std::stoull(line.substr(std::string(key).size())) * 1024;
    return 0;
}

// Resets VmHWM to the current RSS (Linux >= 4.0), so each mode's peak is its own.
void resetPeakRss() {
    std::ofstream("/proc/self/clear_refs") << "5";
}

EngineSettings modeSettings(const std::string &mode, const BenchOptions &o, const std::string &featureDir) {
    EngineSettings s;
    s.dtype = o.dtype;
    s.kvDtype = o.kvDtype;
    s.threads = o.threads;
    s.featureDiskDir = featureDir;
    s.kvDiskDir = (fs::path(featureDir).parent_path() / "bench-state").string();
    s.memoryPoolBytes = o.poolBytes;
    if (o.kvBlockPositions > 0) s.kvBlockPositions = o.kvBlockPositions;
    const bool all = mode == "all";
    s.featureCache = all || mode == "feature_cache";
    s.kvReuse = all || mode == "kv_reuse";
    s.prefixCache = s.kvReuse;
    s.memoryPool = all || mode == "pool";
    s.responseCache = all;
    // The original materialises logits for every prompt position (HF generate); not
    // materialising unused intermediates belongs to the memory optimisations.
    s.allPromptLogits = !s.memoryPool;
    if (mode != "original" && mode != "feature_cache" && mode != "kv_reuse" && mode != "pool" && !all)
        throw Error("unknown benchmark mode '" + mode + "'");
    return s;
}

BenchTurn toTurn(const TurnStats &s) {
    BenchTurn t;
    t.ttftS = s.ttftMs / 1000.0;
    t.turnS = s.totalMs / 1000.0;
    t.prefillS = s.prefillMs / 1000.0;
    t.encodeS = s.encodeMs / 1000.0;
    t.prefillTokens = static_cast<long>(s.prefillTokens);
    t.promptTokens = static_cast<long>(s.promptTokens);
    t.imagesEncoded = s.imagesEncoded;
    return t;
}

} // namespace

double measureMemoryBandwidth(int threads) {
    if (threads > 0) at::set_num_threads(threads);
    // The same streaming read bench-llm sets its decode against (widest vectors, all threads).
    return measureReadBandwidth(512ull << 20, 5).median;
}

namespace {

// The model to measure: o.modelDir, or the generated bench model (made once in o.cacheDir).
std::string benchModelDir(const BenchOptions &o, const std::function<void(const std::string &)> &log) {
    std::string dir = o.modelDir;
    if (dir.empty()) {
        const ModelConfig cfg = benchModelConfig();
        dir = (fs::path(o.cacheDir) / "bench-model-v1").string();
        const fs::path stamp = fs::path(dir) / "config.json";
        bool fresh = false;
        if (fs::exists(stamp)) {
            std::ifstream f(stamp);
            std::stringstream ss;
            ss << f.rdbuf();
            fresh = ss.str() == cfg.toJsonText() && fs::exists(fs::path(dir) / "weights.safetensors");
        }
        if (!fresh) {
            log("generating the bench model (random weights) in " + dir + " ...");
            writeRandomModel(dir, cfg, o.tokenizerPath);
        }
    }
    return dir;
}

ImageInput benchImage(const BenchOptions &o) {
    ImageInput image;
    if (o.imagePath.empty()) {
        image.rgb = testPattern();
        image.label = "test pattern";
    } else {
        image = ImageInput::fromFile(o.imagePath);
    }
    return image;
}

} // namespace

BenchReport runBenchmark(const BenchOptions &o, const std::function<void(const std::string &)> &log) {
    // Large blocks go back to the OS when freed, so RSS follows what is live.
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 20);
    const std::string dir = benchModelDir(o, log);
    const std::string featureDir = (fs::path(o.cacheDir) / "bench-features").string();

    BenchReport rep;
    rep.answerTokens = o.answerTokens;
    EngineSettings off = modeSettings("original", o, featureDir);
    Engine engine(off);
    log("loading " + dir + " ...");
    engine.loadModel(dir);
    const ModelSummary ms = engine.modelSummary();
    rep.model = ms.name + " (" + dir + ")";
    rep.weightBytes = engine.llmWeightBytes();
    // One decode step reads every LLM matrix once; of the embedding table, one row.
    rep.decodeBytesPerToken = engine.llmDecodeBytesPerToken();
    {
        // The engine keeps KV at the compute dtype's width or as int8; the other widths
        // follow from the same layout.
        // What the engine loaded (auto resolved); int8 weights compute, and keep KV, in bf16.
        const std::string loaded = engine.modelSummary().dtype;
        const std::string compute = loaded == "int8" ? "bfloat16" : loaded;
        rep.dtype = loaded;
        rep.cpu = kernels::describeCpu();
        rep.kernels = describeKernels(loaded);
        rep.kvDtype = o.kvDtype.empty() ? compute : o.kvDtype;
        rep.kvBlockPositions = modeSettings("all", o, featureDir).kvBlockPositions;
        EngineSettings probe = off;
        probe.kvDtype = "";
        engine.applySettings(probe);
        const uint64_t full = engine.kvBytesPerPosition(), width = compute == "float32" ? 4 : 2;
        rep.kvBytesPerPosition = {
            {"float32", full / width * 4}, {"bfloat16", full / width * 2}, {"float16", full / width * 2}};
        probe.kvDtype = "int8";
        engine.applySettings(probe);
        rep.kvBytesPerPosition["int8"] = engine.kvBytesPerPosition();
        engine.applySettings(off);
    }
    log("measuring memory bandwidth ...");
    rep.memoryBandwidthGBs = measureMemoryBandwidth(o.threads);

    const ImageInput image = benchImage(o);
    SamplingParams sp;
    sp.greedy = true;
    sp.repetitionPenalty = 1.0f;
    sp.maxNewTokens = o.answerTokens;
    sp.ignoreEos = true;

    // The pool's budget: what the scripted conversation needs (its longest context, whole
    // blocks, plus room for the image features), known once `original` ran.
    uint64_t poolBytes = o.poolBytes;
    auto sizedPool = [&](const BenchMode &orig) {
        const uint64_t positions = static_cast<uint64_t>(orig.turns.back().promptTokens + o.answerTokens);
        // + a second conversation's own tail (its question and answer; the image prefix it
        // shares) and a partial block.
        const uint64_t per = static_cast<uint64_t>(modeSettings("all", o, featureDir).kvBlockPositions);
        const uint64_t tail = static_cast<uint64_t>(o.answerTokens) + 64;
        const uint64_t blocks = (positions + per - 1) / per + (tail + per - 1) / per + 1;
        return blocks * per * engine.kvBytesPerPosition() + (8ull << 20);
    };

    for (const std::string &mode : o.modes) {
        // Start each mode from a clean slate: no caches, no pool, memory returned to the OS.
        engine.applySettings(off);
        engine.clearCaches();
        std::error_code ec;
        fs::remove_all(featureDir, ec);
        malloc_trim(0);
        const uint64_t base = statusField("VmRSS:");
        resetPeakRss();
        EngineSettings s = modeSettings(mode, o, featureDir);
        s.memoryPoolBytes = poolBytes;
        engine.applySettings(s);
        BenchMode bm;
        bm.name = mode;
        bm.poolCapacityBytes = engine.poolCapacityBytes();
        log("mode " + mode + " ...");
        // Tagged: in "all" its state is saved after each turn, for the restart below.
        const int c1 = engine.newConversation("bench-conversation");
        std::vector<HistoryMessage> history;
        double decodeMs = 0;
        int decoded = 0;
        for (int t = 0; t < 10; ++t) {
            TurnRequest req;
            req.text = kQuestions[t];
            if (t == 0) req.images.push_back(image);
            req.sampling = sp;
            const TurnResult r = engine.submitTurn(c1, req);
            history.push_back({true, req.text, req.images});
            history.push_back({false, r.answer, {}});
            bm.turns.push_back(toTurn(r.stats));
            bm.totalS += r.stats.totalMs / 1000.0;
            decodeMs += r.stats.decodeMs;
            decoded += std::max(0, r.stats.generatedTokens - 1);
            char line[200];
            std::snprintf(
                line, sizeof line,
                "  turn %2d: TTFT %7.1f ms (encode %6.1f, prefill %4ld tokens in %7.1f ms), turn %7.1f ms",
                t + 1, r.stats.ttftMs, r.stats.encodeMs, static_cast<long>(r.stats.prefillTokens),
                r.stats.prefillMs, r.stats.totalMs);
            log(line);
        }
        // Decode rate excludes the first token (it comes from the prefill).
        bm.decodeTokensPerSecond = decoded > 0 && decodeMs > 0 ? 1000.0 * decoded / decodeMs : 0;
        TurnRequest second;
        second.text = kNewConversationQuestion;
        second.images.push_back(image);
        second.sampling = sp;
        const int c2 = engine.newConversation();
        bm.newConversation = toTurn(engine.submitTurn(c2, second).stats);
        const int c3 = engine.newConversation();
        bm.repeat = toTurn(engine.submitTurn(c3, second).stats);
        const MetricsSnapshot snap = engine.metricsSnapshot();
        auto rate = [&](const char *k) {
            auto it = snap.hitRates.find(k);
            return it == snap.hitRates.end() ? 0.0 : it->second.lifetime();
        };
        bm.featureHitRate = rate("feature");
        bm.prefixHitRate = rate("prefix");
        bm.responseHitRate = rate("response");
        const uint64_t peak = statusField("VmHWM:");
        bm.peakRssBytes = peak;
        bm.peakExtraBytes = peak > base ? peak - base : 0;
        // The pool counts at its full capacity: add the part of the arena never touched
        // (blocks are reused last-freed-first, so the touched part is the high-water mark).
        if (snap.memory.poolCapacityBytes > snap.memory.poolHighWaterBytes)
            bm.peakExtraBytes += snap.memory.poolCapacityBytes - snap.memory.poolHighWaterBytes;
        bm.budgetBytes = bm.poolCapacityBytes;
        if (mode == "all") {
            // A restart: a second engine (the app started again) continues the conversation,
            // from its saved state and, for contrast, from its text alone; then the same turn
            // in the engine that never stopped.
            TurnRequest next;
            next.text = kRestartQuestion;
            next.sampling = sp;
            engine.flushSavedState();
            for (bool withState : {true, false}) {
                EngineSettings rs = s;
                if (!withState) rs.kvDiskBytes = 0;
                // Timed, not weighed: the engine's own pool size (re-tokenized from text, the
                // answers may take more positions than the scripted conversation did).
                rs.memoryPoolBytes = 0;
                Engine restarted(rs);
                restarted.loadModel(dir);
                const int c = restarted.restoreConversation(history, "bench-conversation");
                (withState ? bm.restarted : bm.restartedFromText) =
                    toTurn(restarted.submitTurn(c, next).stats);
            }
            bm.warmTurn11 = toTurn(engine.submitTurn(c1, next).stats);
            log("  restart: turn 11 TTFT " + std::to_string(bm.restarted.ttftS * 1000) +
                " ms with saved state, " + std::to_string(bm.restartedFromText.ttftS * 1000) +
                " ms from text, " + std::to_string(bm.warmTurn11.ttftS * 1000) + " ms warm");
            fs::remove_all(s.kvDiskDir, ec);
        }
        engine.deleteConversation(c1);
        engine.deleteConversation(c2);
        engine.deleteConversation(c3);
        rep.modes.push_back(bm);
        if (mode == "original" && poolBytes == 0) poolBytes = sizedPool(rep.modes.back());
    }

    const BenchMode *orig = nullptr, *all = nullptr;
    for (const auto &m : rep.modes) {
        if (m.name == "original") orig = &m;
        if (m.name == "all") all = &m;
    }
    if (orig && all) {
        rep.ttftSpeedupTurn10 = orig->turns.back().ttftS / all->turns.back().ttftS;
        rep.totalSpeedup = orig->totalS / all->totalS;
        rep.peakExtraRatio =
            static_cast<double>(all->peakExtraBytes) / static_cast<double>(orig->peakExtraBytes);
    }
    if (all) {
        rep.newConversationTtftSpeedup = all->turns.front().ttftS / all->newConversation.ttftS;
        double lo = 1e30, hi = 0;
        for (size_t i = 1; i < all->turns.size(); ++i) {
            lo = std::min(lo, all->turns[i].ttftS);
            hi = std::max(hi, all->turns[i].ttftS);
        }
        rep.ttftFlatness = lo > 0 ? hi / lo : 0;
        rep.decodeEfficiency = static_cast<double>(rep.decodeBytesPerToken) * all->decodeTokensPerSecond /
                               (rep.memoryBandwidthGBs * 1e9);
        if (all->warmTurn11.ttftS > 0) {
            rep.restartTtftRatio = all->restarted.ttftS / all->warmTurn11.ttftS;
            rep.restartWithoutStateTtftRatio = all->restartedFromText.ttftS / all->warmTurn11.ttftS;
        }
    }
    return rep;
}

std::string BenchReport::table() const {
    std::ostringstream s;
    char buf[512];
    s << "model: " << model << " in " << dtype << "\ncpu: " << cpu << "\nkernels: " << kernels << "\n";
    std::snprintf(buf, sizeof buf,
                  "LLM weights %.0f MB, read per decoded token %.0f MB; answers %d tokens\n\n",
                  weightBytes / 1e6, decodeBytesPerToken / 1e6, answerTokens);
    s << buf;
    s << "mode           peak extra  process peak  turn mean  10-turn total  TTFT t1/t2/t10 (ms)   prefill "
         "t10  "
         "new-conv TTFT  repeat TTFT  hit feat/prefix/resp\n";
    for (const auto &m : modes) {
        double mean = 0;
        for (const auto &t : m.turns) mean += t.turnS;
        mean /= std::max<size_t>(1, m.turns.size());
        std::snprintf(
            buf, sizeof buf,
            "%-14s %7.0f MB  %9.0f MB  %7.0f ms  %11.2f s  %6.0f/%5.0f/%6.0f  %11ld  %10.0f ms  %8.0f ms  "
            "%.2f/%.2f/%.2f\n",
            m.name.c_str(), m.peakExtraBytes / 1e6, m.peakRssBytes / 1e6, mean * 1000, m.totalS,
            m.turns[0].ttftS * 1000, m.turns[1].ttftS * 1000, m.turns.back().ttftS * 1000,
            m.turns.back().prefillTokens, m.newConversation.ttftS * 1000, m.repeat.ttftS * 1000,
            m.featureHitRate, m.prefixHitRate, m.responseHitRate);
        s << buf;
    }
    std::snprintf(
        buf, sizeof buf,
        "\nall vs original: TTFT at turn 10 %.1fx lower | 10-turn total %.2fx faster | peak memory beyond "
        "weights %.2fx\nnew conversation on a seen image: TTFT %.1fx lower than its first turn | TTFT "
        "turns 2-10 max/min %.2f\ndecode: %.1f tokens/s x %.0f MB/token = %.1f GB/s of %.1f GB/s measured "
        "bandwidth (efficiency %.2f)\nrestart: turn 11 TTFT %.2fx the warm engine's with the saved state, "
        "%.2fx "
        "without it\nKV per position: %.0f KB in %s\n",
        ttftSpeedupTurn10, totalSpeedup, peakExtraRatio, newConversationTtftSpeedup, ttftFlatness,
        modes.empty() ? 0.0 : modes.back().decodeTokensPerSecond, decodeBytesPerToken / 1e6,
        decodeBytesPerToken * (modes.empty() ? 0.0 : modes.back().decodeTokensPerSecond) / 1e9,
        memoryBandwidthGBs, decodeEfficiency, restartTtftRatio, restartWithoutStateTtftRatio,
        kvBytesPerPosition.count(kvDtype) ? kvBytesPerPosition.at(kvDtype) / 1024.0 : 0.0, kvDtype.c_str());
    s << buf;
    s << "Note: long answers are decode-bound; caching removes prefill and vision work but cannot shorten "
         "decoding, so the total speed-up shrinks as answers grow (try --answer-tokens 8 / 32 / 128).\n";
    return s.str();
}

std::string BenchReport::json() const {
    nlohmann::json j;
    j["model"] = model;
    j["dtype"] = dtype;
    j["cpu"] = cpu;
    j["kernels"] = kernels;
    j["answer_tokens"] = answerTokens;
    j["weight_bytes"] = weightBytes;
    j["decode_bytes_per_token"] = decodeBytesPerToken;
    for (const auto &m : modes) {
        nlohmann::json mj;
        mj["total_s"] = m.totalS;
        auto turn = [](const BenchTurn &t) {
            return nlohmann::json{{"ttft_s", t.ttftS},
                                  {"turn_s", t.turnS},
                                  {"prefill_tokens", t.prefillTokens},
                                  {"prefill_s", t.prefillS},
                                  {"encode_s", t.encodeS},
                                  {"prompt_tokens", t.promptTokens},
                                  {"images_encoded", t.imagesEncoded}};
        };
        for (const auto &t : m.turns) mj["turns"].push_back(turn(t));
        mj["new_conversation"] = turn(m.newConversation);
        if (m.warmTurn11.ttftS > 0) {
            mj["restart"] = {{"with_saved_state", turn(m.restarted)},
                             {"from_text", turn(m.restartedFromText)},
                             {"warm", turn(m.warmTurn11)}};
        }
        mj["repeat"] = turn(m.repeat);
        mj["peak_extra_bytes"] = m.peakExtraBytes;
        mj["peak_rss_bytes"] = m.peakRssBytes;
        mj["pool_capacity_bytes"] = m.poolCapacityBytes;
        mj["decode_tokens_per_second"] = m.decodeTokensPerSecond;
        mj["hit_rates"] = {
            {"feature", m.featureHitRate}, {"prefix", m.prefixHitRate}, {"response", m.responseHitRate}};
        j["modes"][m.name] = mj;
    }
    j["ttft_speedup_turn10"] = ttftSpeedupTurn10;
    j["total_speedup"] = totalSpeedup;
    j["new_conversation_ttft_speedup"] = newConversationTtftSpeedup;
    j["peak_extra_ratio"] = peakExtraRatio;
    j["ttft_flatness_turns_2_10"] = ttftFlatness;
    j["memory_bandwidth_gbs"] = memoryBandwidthGBs;
    j["decode_efficiency"] = decodeEfficiency;
    j["restart_ttft_ratio"] = restartTtftRatio;
    j["restart_without_state_ttft_ratio"] = restartWithoutStateTtftRatio;
    j["kv_dtype"] = kvDtype; // what the modes ran with
    j["kv_block_positions"] = kvBlockPositions;
    j["kv_bytes_per_position"] = kvBytesPerPosition;
    return j.dump(2);
}

} // namespace mgd

namespace mgd {

namespace {

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

} // namespace

std::string RemoteBenchReport::table() const {
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "model %s\nfirst turn on an image another desk encoded, %zu fresh engines each:\n"
                  "  with the Redis tier     TTFT median %.1f ms (min %.1f, max %.1f)\n"
                  "  without                 TTFT median %.1f ms (min %.1f, max %.1f)\n"
                  "  ratio (without / with)  %.2fx\n  Redis round trip        p50 %.2f ms, p95 %.2f ms\n",
                  model.c_str(), withMs.size(), median(withMs),
                  *std::min_element(withMs.begin(), withMs.end()),
                  *std::max_element(withMs.begin(), withMs.end()), median(withoutMs),
                  *std::min_element(withoutMs.begin(), withoutMs.end()),
                  *std::max_element(withoutMs.begin(), withoutMs.end()), median(withoutMs) / median(withMs),
                  rttP50Ms, rttP95Ms);
    return buf;
}

std::string RemoteBenchReport::json() const {
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "{\"model\": \"%s\", \"repetitions\": %zu, \"ttft_with_redis_ms\": %.3f, "
                  "\"ttft_without_redis_ms\": %.3f, \"ttft_ratio\": %.3f, \"redis_rtt_p50_ms\": %.3f, "
                  "\"redis_rtt_p95_ms\": %.3f}",
                  model.c_str(), withMs.size(), median(withMs), median(withoutMs),
                  median(withoutMs) / median(withMs), rttP50Ms, rttP95Ms);
    return buf;
}

RemoteBenchReport runRemoteBenchmark(const BenchOptions &o, const std::string &redisUrl, int repetitions,
                                     const std::function<void(const std::string &)> &log) {
    if (redisUrl.empty()) throw Error("the Redis benchmark needs --redis URL");
    const std::string dir = benchModelDir(o, log);
    const ImageInput image = benchImage(o);
    EngineSettings without;
    without.threads = o.threads;
    without.dtype = o.dtype;
    without.featureDiskBytes = 0; // local disk off: a fresh engine is a desk that never saw it
    without.responseCache = false;
    EngineSettings with = without;
    with.redisUrl = redisUrl;
    SamplingParams sp;
    sp.greedy = true;
    sp.maxNewTokens = 1;
    auto firstTurn = [&](Engine &e) {
        TurnRequest r;
        r.text = "Describe the image.";
        r.images.push_back(image);
        r.sampling = sp;
        return e.submitTurn(e.newConversation(), r).stats;
    };
    {
        log("the first desk encodes the image and shares it ...");
        Engine first(with);
        first.loadModel(dir);
        firstTurn(first);
    } // its destructor finishes the write
    RemoteBenchReport rep;
    std::vector<double> rtt;
    for (int i = 0; i < repetitions; ++i) {
        Engine a(with), b(without);
        a.loadModel(dir);
        b.loadModel(dir);
        rep.model = a.modelSummary().name + " (" + dir + ")";
        // Alternate which goes first: the second runs on warmer caches.
        const TurnStats sa = i % 2 ? firstTurn(a) : TurnStats{}, sb = firstTurn(b);
        const TurnStats sa2 = i % 2 ? sa : firstTurn(a);
        if (sa2.imagesEncoded != 0)
            throw Error("the Redis tier did not serve the image (is the server at " + redisUrl +
                        " reachable?)");
        rep.withMs.push_back(sa2.ttftMs);
        rep.withoutMs.push_back(sb.ttftMs);
        const MetricsSnapshot m = a.metricsSnapshot();
        if (auto it = m.latency.find("remote_rtt"); it != m.latency.end() && it->second.count)
            rtt.push_back(it->second.last);
        log("repetition " + std::to_string(i + 1) + ": TTFT " + std::to_string(sa2.ttftMs) + " ms with, " +
            std::to_string(sb.ttftMs) + " ms without");
    }
    std::sort(rtt.begin(), rtt.end());
    rep.rttP50Ms = rtt.empty() ? 0 : rtt[rtt.size() / 2];
    rep.rttP95Ms = rtt.empty() ? 0 : rtt[std::min(rtt.size() - 1, size_t(0.95 * double(rtt.size())))];
    return rep;
}

} // namespace mgd
