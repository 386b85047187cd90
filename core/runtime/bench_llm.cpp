#include "core/runtime/bench_llm.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/import/model_folder_writer.h"
#include "core/kernels/cpu_features.h"
#include "core/kernels/gemm.h"
#include "core/kernels/gemv.h"
#include "core/kernels/stream_read.h"
#include "core/memory/heap_trim.h"
#include "core/metrics/metrics.h"
#include "core/model/decode_linear.h"
#include "core/model/kv_cache.h"
#include "core/model/llama.h"
#include "core/model/weights.h"
#include "core/util/error.h"

namespace mgd {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

Spread spreadOf(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    Spread s;
    if (v.empty()) return s;
    s.min = v.front();
    s.max = v.back();
    s.median = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
    return s;
}

LlamaConfig shapeConfig(const std::string &shape) {
    LlamaConfig c;
    c.vocabSize = 32000;
    c.maxPositions = 2048;
    c.rmsEps = 1e-6;
    if (shape == "bench") { // the scripted benchmark's LLM (random_model.cpp)
        c.hidden = 1024, c.intermediate = 2816, c.layers = 16, c.heads = 16, c.kvHeads = 16;
    } else if (shape == "tinyllama") { // TinyLlama-1.1B
        c.hidden = 2048, c.intermediate = 5632, c.layers = 22, c.heads = 32, c.kvHeads = 4;
    } else if (shape == "7b") { // LLaMA / Vicuna / Llama-2 7B
        c.hidden = 4096, c.intermediate = 11008, c.layers = 32, c.heads = 32, c.kvHeads = 32;
    } else {
        throw Error("--shape '" + shape + "': expected bench, tinyllama or 7b");
    }
    return c;
}

// int8 runs the bf16 weights quantized at load, as `--dtype int8` does for a model.
at::ScalarType parseDtype(const std::string &d) {
    if (d == "bfloat16" || d == "int8") return at::kBFloat16;
    if (d == "float32") return at::kFloat;
    throw Error("bench-llm --dtype '" + d + "': expected bfloat16, float32 or int8");
}

// Random LLaMA weights (N(0, 0.02), norms 1) under the original names, written once.
std::string ensureRandomLlm(const std::string &dir, const LlamaConfig &c, at::ScalarType dt,
                            const std::function<void(const std::string &)> &log) {
    if (fs::exists(fs::path(dir) / "model.safetensors.index.json")) return dir;
    const std::string tmp = dir + ".writing";
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    if (log) log("writing random weights to " + dir + " (once)");
    const int64_t D = c.hidden, I = c.intermediate, kvd = c.hidden / c.heads * c.kvHeads;
    std::vector<PlannedTensor> plan;
    int64_t seed = 1;
    auto matrix = [&](const std::string &name, int64_t rows, int64_t cols) {
        const int64_t s = seed++;
        plan.push_back({name, dt, {rows, cols}, [rows, cols, s, dt] {
                            at::Generator g = at::detail::createCPUGenerator(static_cast<uint64_t>(s));
                            return at::normal(0.0, 0.02, {rows, cols}, g).to(dt);
                        }});
    };
    auto ones = [&](const std::string &name, int64_t n) {
        plan.push_back({name, dt, {n}, [n, dt] { return at::ones({n}, at::TensorOptions().dtype(dt)); }});
    };
    const std::string p = "llama_model.model.";
    matrix(p + "embed_tokens.weight", c.vocabSize, D);
    for (int l = 0; l < c.layers; ++l) {
        const std::string L = p + "layers." + std::to_string(l) + ".";
        matrix(L + "self_attn.q_proj.weight", D, D);
        matrix(L + "self_attn.k_proj.weight", kvd, D);
        matrix(L + "self_attn.v_proj.weight", kvd, D);
        matrix(L + "self_attn.o_proj.weight", D, D);
        matrix(L + "mlp.gate_proj.weight", I, D);
        matrix(L + "mlp.up_proj.weight", I, D);
        matrix(L + "mlp.down_proj.weight", D, I);
        ones(L + "input_layernorm.weight", D);
        ones(L + "post_attention_layernorm.weight", D);
    }
    ones(p + "norm.weight", D);
    matrix("llama_model.lm_head.weight", c.vocabSize, D);
    writeModelShards(tmp, std::move(plan), 4ull << 30, {});
    fs::rename(tmp, dir);
    return dir;
}

} // namespace

std::string describeKernels(const std::string &dtype) {
    const bool bf16 = dtype == "bfloat16";
    const std::string mv = dtype == "int8" ? (kernels::useAvx512Vnni() ? " (int8 vpdpbusd)" : " (int8)")
                           : bf16 ? (kernels::useAvx512Bf16() ? " (vdpbf16ps)" : " (bf16 -> fp32 FMA)")
                                  : " (fp32 FMA)";
    return std::string("matrix-vector: ") + kernels::levelName(kernels::activeLevel()) + mv +
           (dtype == "int8" ? "; prefill: int8 tiles -> libtorch GEMM"
            : kernels::gemmAvailable() && !bf16
                ? "; prefill: few-row tiles up to " + std::to_string(kFewRowsMax) +
                      " tokens, then libtorch GEMM"
                : "; prefill: libtorch GEMM");
}

Spread measureReadBandwidth(uint64_t bytes, int passes) {
    const int64_t chunks = static_cast<int64_t>(bytes >> 20); // whole MiB
    bytes = static_cast<uint64_t>(chunks) << 20;
    // On transparent huge pages where the kernel allows it, as the KV pool: the best a read gets.
    kernels::AlignedBuffer<char> buf(bytes);
    std::memset(buf.data(), 1, bytes); // touch every page before timing
    const char *p = buf.data();
    std::vector<double> gbs;
    volatile uint64_t sink = 0;
    for (int i = 0; i < passes; ++i) {
        std::atomic<uint64_t> total{0};
        const auto t0 = Clock::now();
        // Whole 1 MiB chunks per task: each thread reads long sequential runs.
        at::parallel_for(0, chunks, 1, [&](int64_t b, int64_t e) {
            total += kernels::streamRead(p + (b << 20), static_cast<size_t>(e - b) << 20);
        });
        const double s = seconds(t0, Clock::now());
        sink = sink + total.load();
        gbs.push_back(static_cast<double>(bytes) / s / 1e9);
    }
    (void)sink;
    return spreadOf(gbs);
}

LlmBenchResult runLlmBench(const LlmBenchOptions &o, const std::function<void(const std::string &)> &log) {
    c10::InferenceMode guard;
    // As the app does: one thread per core unless told (Debian's libtorch defaults to 1).
    at::set_num_threads(o.threads > 0 ? o.threads
                                      : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    const LlamaConfig c = shapeConfig(o.shape);
    const at::ScalarType dt = parseDtype(o.dtype);
    if (o.prefillTokens < 1 || o.decodeTokens < 1 || o.repetitions < 1 ||
        o.prefillTokens + o.decodeTokens > c.maxPositions)
        throw Error("bench-llm: token counts must be positive and fit the context (2048)");
    const std::string dir = ensureRandomLlm(
        (fs::path(o.cacheDir) / ("bench-llm-" + o.shape + "-" + (o.dtype == "int8" ? "bfloat16" : o.dtype)))
            .string(),
        c, dt, log);

    LlmBenchResult r;
    r.shape = o.shape;
    r.dtype = o.dtype;
    r.threads = at::get_num_threads();
    r.cpu = kernels::describeCpu();
    r.kernels = describeKernels(o.dtype);
    Weights w = Weights::openFolder(dir);
    Llama llm(w, c, dt, o.dtype == "int8");
    r.weightBytes = llm.weightBytes();
    r.decodeWeightBytesPerToken = llm.decodeBytesPerToken();
    // Each decoded token also reads the keys and values of every earlier position (all layers);
    // over the run that averages the positions at its middle.
    const double kvPerPosition = static_cast<double>(KvCache::bytesPerPosition(llm.kvShape()));
    r.decodeKvBytesPerToken =
        static_cast<uint64_t>(kvPerPosition * (o.prefillTokens + (o.decodeTokens + 1) / 2.0));
    r.decodeBytesPerToken = r.decodeWeightBytesPerToken + r.decodeKvBytesPerToken;

    if (log) log("measuring read bandwidth (1 GiB, all threads, 5 passes; 3 more before each decode)");
    std::vector<double> bandwidth, efficiency;
    auto measure = [&](int passes) {
        const Spread b = measureReadBandwidth(1ull << 30, passes);
        bandwidth.push_back(b.median); // one value per measurement, not its extremes
        return b.median;
    };
    measure(5);
    std::vector<double> prefill, decode;
    at::Generator g = at::detail::createCPUGenerator(7);
    for (int rep = 0; rep < o.repetitions; ++rep) {
        KvCache cache;
        at::Tensor embeds = at::normal(0.0, 1.0, {1, o.prefillTokens, c.hidden}, g).to(dt);
        auto t0 = Clock::now();
        at::Tensor logits = llm.forward(embeds, cache, false);
        prefill.push_back(o.prefillTokens / seconds(t0, Clock::now()));
        // The VM's bandwidth changes from minute to minute: each decode run is set against the
        // bandwidth measured right before it.
        const double bw = measure(3);
        t0 = Clock::now();
        for (int i = 0; i < o.decodeTokens; ++i) {
            const int64_t id = logits.argmax(-1).item<int64_t>();
            logits = llm.forward(llm.embed(at::tensor({id})), cache, false);
        }
        decode.push_back(o.decodeTokens / seconds(t0, Clock::now()));
        efficiency.push_back(decode.back() * static_cast<double>(r.decodeBytesPerToken) / 1e9 / bw);
        if (log)
            log("repetition " + std::to_string(rep + 1) + ": prefill " + std::to_string(prefill.back()) +
                " tok/s, decode " + std::to_string(decode.back()) + " tok/s");
    }
    if (kernels::gemmAvailable() && o.dtype != "int8") {
        KvCache context;
        llm.forward(at::normal(0.0, 1.0, {1, 100, c.hidden}, g).to(dt), context, false);
        for (int n : {2, 4, 8, 12, 18, 32}) {
            ShortPrefill sp;
            sp.tokens = n;
            const at::Tensor embeds = at::normal(0.0, 1.0, {1, n, c.hidden}, g).to(dt);
            for (bool ours : {true, false}) {
                setFewRowKernels(ours ? FewRows::Always : FewRows::Off);
                std::vector<double> ms;
                for (int rep = 0; rep < std::max(3, o.repetitions); ++rep) {
                    context.truncate(100);
                    const auto t0 = Clock::now();
                    llm.forward(embeds, context, false);
                    ms.push_back(1000 * seconds(t0, Clock::now()));
                }
                (ours ? sp.kernelsMs : sp.libtorchMs) = spreadOf(ms).median;
            }
            setFewRowKernels(FewRows::Default);
            if (log)
                log("short prefill " + std::to_string(n) + " tokens: " + std::to_string(sp.kernelsMs) +
                    " ms few-row kernels, " + std::to_string(sp.libtorchMs) + " ms libtorch GEMM");
            r.shortPrefills.push_back(sp);
        }
    }
    r.prefillTokensPerSecond = spreadOf(prefill);
    r.decodeTokensPerSecond = spreadOf(decode);
    r.bandwidthGbs = spreadOf(bandwidth);
    r.decodeEfficiency = spreadOf(efficiency).median;
    r.rssBytes = currentRssBytes();
    r.rssParts = currentRssParts();
    releaseFreeHeapMemory();
    r.rssAfterIdleReleaseBytes = currentRssBytes();
    {
        KvCache cache;
        at::Tensor embeds = at::normal(0.0, 1.0, {1, o.prefillTokens, c.hidden}, g).to(dt);
        const auto t0 = Clock::now();
        llm.forward(embeds, cache, false);
        r.prefillAfterIdleRelease = o.prefillTokens / seconds(t0, Clock::now());
    }
    return r;
}

std::string LlmBenchResult::toJson() const {
    auto sp = [](const Spread &s) {
        return nlohmann::json{{"median", s.median}, {"min", s.min}, {"max", s.max}};
    };
    nlohmann::json j = {{"shape", shape},
                        {"dtype", dtype},
                        {"threads", threads},
                        {"cpu", cpu},
                        {"kernels", kernels},
                        {"prefill_tokens_per_second", prefillTokensPerSecond.median},
                        {"decode_tokens_per_second", decodeTokensPerSecond.median},
                        {"decode_bytes_per_token", decodeBytesPerToken},
                        {"decode_weight_bytes_per_token", decodeWeightBytesPerToken},
                        {"decode_kv_bytes_per_token", decodeKvBytesPerToken},
                        {"memory_bandwidth_gbs", bandwidthGbs.median},
                        {"decode_efficiency", decodeEfficiency},
                        {"weight_bytes", weightBytes},
                        {"rss_bytes", rssBytes},
                        {"rss_anon_bytes", rssParts.anonBytes},
                        {"rss_file_bytes", rssParts.fileBytes},
                        {"malloc_free_held_bytes", rssParts.mallocFreeHeldBytes},
                        {"rss_after_idle_release_bytes", rssAfterIdleReleaseBytes},
                        {"prefill_after_idle_release_tokens_per_second", prefillAfterIdleRelease},
                        {"spread",
                         {{"prefill_tokens_per_second", sp(prefillTokensPerSecond)},
                          {"decode_tokens_per_second", sp(decodeTokensPerSecond)},
                          {"memory_bandwidth_gbs", sp(bandwidthGbs)}}}};
    for (const ShortPrefill &p : shortPrefills)
        j["short_prefill"].push_back(
            {{"tokens", p.tokens}, {"kernels_ms", p.kernelsMs}, {"libtorch_ms", p.libtorchMs}});
    return j.dump(1);
}

std::string LlmBenchResult::table() const {
    char buf[2048];
    std::snprintf(
        buf, sizeof buf,
        "shape %s, %s, %d threads\ncpu: %s\nkernels: %s\n"
        "read bandwidth   %7.1f GB/s (min %.1f, max %.1f)  <- this VM switches between two "
        "bandwidth states; compare ratios within one run\n"
        "prefill          %7.1f tok/s (min %.1f, max %.1f)\n"
        "decode           %7.2f tok/s (min %.2f, max %.2f)\n"
        "bytes per token  %7.1f MB (weights %.1f MB + KV %.1f MB);  efficiency %.2f (bytes x tok/s / "
        "the bandwidth right before, median of the runs)\n"
        "weights          %7.1f MB;  RSS after %.1f MB (RSS - weights %.1f MB; anonymous %.1f MB, "
        "file-backed %.1f MB; malloc holds %.1f MB free)\n"
        "idle release     RSS %.1f MB (RSS / weights %.3f); the next prefill %.1f tok/s\n",
        shape.c_str(), dtype.c_str(), threads, cpu.c_str(), kernels.c_str(), bandwidthGbs.median,
        bandwidthGbs.min, bandwidthGbs.max, prefillTokensPerSecond.median, prefillTokensPerSecond.min,
        prefillTokensPerSecond.max, decodeTokensPerSecond.median, decodeTokensPerSecond.min,
        decodeTokensPerSecond.max, decodeBytesPerToken / 1e6, decodeWeightBytesPerToken / 1e6,
        decodeKvBytesPerToken / 1e6, decodeEfficiency, weightBytes / 1e6, rssBytes / 1e6,
        (static_cast<double>(rssBytes) - static_cast<double>(weightBytes)) / 1e6, rssParts.anonBytes / 1e6,
        rssParts.fileBytes / 1e6, rssParts.mallocFreeHeldBytes / 1e6, rssAfterIdleReleaseBytes / 1e6,
        weightBytes ? static_cast<double>(rssAfterIdleReleaseBytes) / static_cast<double>(weightBytes) : 0.0,
        prefillAfterIdleRelease);
    std::string out = buf;
    if (!shortPrefills.empty())
        out += "short prefill after 100 tokens (ms: few-row kernels / libtorch GEMM):";
    for (const ShortPrefill &p : shortPrefills) {
        std::snprintf(buf, sizeof buf, " %d: %.1f/%.1f", p.tokens, p.kernelsMs, p.libtorchMs);
        out += buf;
    }
    if (!shortPrefills.empty()) out += "\n";
    return out;
}

} // namespace mgd
