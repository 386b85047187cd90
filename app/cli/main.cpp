// minigpt-cli: the core without a window. Commands: ask, chat, verify-reference, info.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "app/cli/arg_cursor.h"
#include "app/cli/demo_commands.h"
#include "core/cache/redis_url.h"
#include "core/import/importer.h"
#include "core/runtime/bench_llm.h"
#include "core/runtime/benchmark.h"
#include "core/runtime/engine.h"
#include "core/runtime/reference_check.h"
#include "core/runtime/soak.h"
#include "core/train/demo_data.h"
#include "core/util/error.h"
#include "core/util/install_paths.h"

#ifndef MGD_DEFAULT_MODEL
#define MGD_DEFAULT_MODEL ""
#endif

namespace {

const char *kUsage = R"(usage: minigpt-cli <command> [options]

commands:
  ask    [--model DIR] [--image FILE]... [sampling] "question"   answer one question, streamed
  chat   [--model DIR] [sampling]      interactive chat; /image FILE, /reset, /regen, /quit
  verify-reference DIR [--model MODELDIR] [--tolerance X] [--kv-dtype int8]
         compare every tensor with the original's reference (on MODELDIR's weights if given)
  import --arch minigpt4|minigpt4-llama2|minigptv2 --vit eva_vit_g.pth
         [--q-former-model blip2_pretrained_flant5xxl.pth] --llama-model LLM_DIR
         --ckpt pretrained_minigpt4.pth|minigptv2_checkpoint.pth --out DIR
         [--dtype bfloat16|float16|float32] [--image-size N] [--vit-heads N]
         [--q-former-heads N] [--lora-alpha A] [--name NAME]
         make a model folder from the original MiniGPT-4 / MiniGPT-v2 downloads
  info   [--model DIR]                 print the model's configuration
  preload [--model DIR] FILE|DIR...    compute and cache the features of images in advance
  stats  [--model DIR]                 print the metrics snapshot (JSON) after loading
  bench  [--model DIR] [--answer-tokens N] [--json FILE] [--modes a,b,..] [--image FILE]
         the scripted 10-turn benchmark: original MiniGPT-4 behaviour vs each optimisation
  bench-llm [--shape bench|tinyllama|7b] [--dtype bfloat16|float32|int8] [--threads N] [--json FILE]
         the LLM alone (random weights): 512-token prefill, 128 decoded tokens, against the
         read bandwidth measured in the same run
  bench-redis --redis URL [--model DIR] [--image FILE] [--repetitions N] [--json FILE]
         first turn of a fresh desk on an image another desk shared through Redis, vs without
  soak   [--model DIR] [--turns N] [--image FILE]... [--json FILE]
         a long session (cancels, regenerates, edits, new and deleted conversations); fails on
         RSS growth over 2% after warm-up, a pool over budget, or an error
  train-demo --out DIR [--seed N] [--minutes M]   train the built-in demo model (resumable)
  eval-drawings --model DIR --list drawings.json [--set S] [--transcript]
         the demo model on drawings made by other means (tests/data/drawings)
  demo-samples --out DIR [--count N] [--seed S]  pictures and Q&A as the demo model is trained on
  --version                           print the version
  eval-demo  --model DIR [--questions N] [--seed S] [--kv-dtype model|int8]
         exact-match accuracy per question type

sampling: --greedy  --temperature T  --top-p P  --top-k K  --repetition-penalty R
          --seed N  --max-new-tokens N
caches:   --no-kv-reuse --no-feature-cache --no-prefix-cache --no-response-cache --no-memory-pool
          --memory-pool-size MB  --feature-cache-dir DIR  --feature-cache-size MB  --eviction lru|lfu
          --redis redis://[:password@]host:port[/db]|unix:///path  (a feature tier shared by desks)
          --redis-ttl SECONDS
          --kv-dtype model|int8 (attention state at the model's width, or int8 with scales)
          --kv-block-positions N (positions per KV block: the unit conversations share; 16)
          --conversation-state-dir DIR  --conversation-state-size MB (saved KV of tagged chats)
other:    --threads N  --device cpu|cuda  --dtype float32|bfloat16|float16|int8|auto (overrides the folder's;
                                  default auto: bfloat16 on a CPU with AVX512-BF16, else the folder's;
                                  verify-reference and import default to the folder's / checkpoint's)
          --stats (per-turn statistics to stderr)
          --metrics-json FILE (write the metrics snapshot at exit)
)";

struct Options {
    std::string command, model = mgd::defaultModelDir(MGD_DEFAULT_MODEL), dir;
    std::vector<std::string> images, positional;
    mgd::SamplingParams sampling;
    mgd::EngineSettings engine;
    double tolerance = 1e-4;
    bool stats = false;
    std::string metricsJson, benchJson, image;
    int answerTokens = 32;
    std::vector<std::string> modes;
    bool modelGiven = false;
    std::string shape = "bench";
    int repetitions = 3;
    int turns = 1000;
    mgd::ImportOptions import;
};

Options parse(int argc, char **argv) {
    Options o;
    if (argc < 2) throw mgd::Error(std::string("missing command\n") + kUsage);
    o.command = argv[1];
    if (o.command == "--version" || o.command == "version") {
        o.command = "version";
        return o;
    }
    mgd::cli::ArgCursor c(argc, argv, 2);
    while (c.next()) {
        const std::string a = c.arg();
        if (a == "--model") {
            o.model = c.value();
            o.modelGiven = true;
        } else if (a == "--arch")
            o.import.arch = c.value();
        else if (a == "--shape")
            o.shape = c.value();
        else if (a == "--turns")
            o.turns = c.integer();
        else if (a == "--repetitions")
            o.repetitions = c.integer();
        else if (a == "--vit")
            o.import.vit = c.value();
        else if (a == "--q-former-model")
            o.import.qformer = c.value();
        else if (a == "--llama-model")
            o.import.llamaModel = c.value();
        else if (a == "--ckpt")
            o.import.ckpt = c.value();
        else if (a == "--out")
            o.import.out = c.value();
        else if (a == "--name")
            o.import.name = c.value();
        else if (a == "--image-size")
            o.import.imageSize = c.integer();
        else if (a == "--vit-heads")
            o.import.vitHeads = c.integer();
        else if (a == "--q-former-heads")
            o.import.qformerHeads = c.integer();
        else if (a == "--lora-alpha")
            o.import.loraAlpha = c.number();
        else if (a == "--dtype") {
            const std::string v = c.value();
            if (v != "float32" && v != "bfloat16" && v != "float16" && v != "int8" && v != "auto")
                throw mgd::Error("--dtype must be float32, bfloat16, float16, int8 or auto");
            o.engine.dtype = v;
            o.import.dtype = v == "auto" ? mgd::resolveDtype(v, o.engine.device) : v;
        } else if (a == "--image") {
            o.images.push_back(c.value());
            o.image = o.images.back();
        } else if (a == "--greedy")
            o.sampling.greedy = true;
        else if (a == "--temperature")
            o.sampling.temperature = static_cast<float>(c.number());
        else if (a == "--top-p")
            o.sampling.topP = static_cast<float>(c.number());
        else if (a == "--top-k")
            o.sampling.topK = c.integer();
        else if (a == "--repetition-penalty")
            o.sampling.repetitionPenalty = static_cast<float>(c.number());
        else if (a == "--seed")
            o.sampling.seed = static_cast<int64_t>(c.number());
        else if (a == "--max-new-tokens")
            o.sampling.maxNewTokens = c.integer();
        else if (a == "--threads")
            o.engine.threads = c.integer();
        else if (a == "--no-kv-reuse")
            o.engine.kvReuse = false;
        else if (a == "--no-feature-cache")
            o.engine.featureCache = false;
        else if (a == "--no-prefix-cache")
            o.engine.prefixCache = false;
        else if (a == "--no-response-cache")
            o.engine.responseCache = false;
        else if (a == "--no-memory-pool")
            o.engine.memoryPool = false;
        else if (a == "--memory-pool-size")
            o.engine.memoryPoolBytes = static_cast<uint64_t>(c.number() * (1 << 20));
        else if (a == "--feature-cache-size")
            o.engine.featureHostBytes = static_cast<uint64_t>(c.number() * (1 << 20));
        else if (a == "--feature-cache-dir")
            o.engine.featureDiskDir = c.value();
        else if (a == "--redis") {
            o.engine.redisUrl = c.value();
            mgd::parseRedisUrl(o.engine.redisUrl); // a bad URL is an error here, not a silent miss
        } else if (a == "--redis-ttl")
            o.engine.redisTtlSeconds = std::max(0, c.integer());
        else if (a == "--device")
            o.engine.device = c.value();
        else if (a == "--kv-dtype") {
            const std::string v = c.value();
            if (v != "model" && v != "int8") throw mgd::Error("--kv-dtype must be model or int8");
            o.engine.kvDtype = v == "int8" ? "int8" : "";
        } else if (a == "--kv-block-positions")
            o.engine.kvBlockPositions = std::max(1, c.integer());
        else if (a == "--conversation-state-dir")
            o.engine.kvDiskDir = c.value();
        else if (a == "--conversation-state-size")
            o.engine.kvDiskBytes = static_cast<uint64_t>(c.number() * (1 << 20));
        else if (a == "--eviction") {
            const std::string v = c.value();
            if (v != "lru" && v != "lfu") throw mgd::Error("--eviction must be lru or lfu");
            o.engine.eviction = v == "lfu" ? mgd::EvictionPolicy::Lfu : mgd::EvictionPolicy::Lru;
        } else if (a == "--metrics-json")
            o.metricsJson = c.value();
        else if (a == "--json")
            o.benchJson = c.value();
        else if (a == "--answer-tokens")
            o.answerTokens = c.integer();
        else if (a == "--modes") {
            std::stringstream ss(c.value());
            std::string m;
            while (std::getline(ss, m, ',')) o.modes.push_back(m);
        } else if (a == "--tolerance")
            o.tolerance = c.number();
        else if (a == "--stats")
            o.stats = true;
        else if (a == "-h" || a == "--help")
            throw mgd::Error(kUsage);
        else if (a.rfind("--", 0) == 0)
            throw mgd::Error("unknown option " + a + "\n" + kUsage);
        else
            o.positional.push_back(a);
    }
    if (o.sampling.maxNewTokens <= 0) throw mgd::Error("--max-new-tokens must be positive");
    if (o.sampling.topP <= 0 || o.sampling.topP > 1) throw mgd::Error("--top-p must be in (0, 1]");
    // Without --dtype, the commands people run compute as the window does: auto (bf16 on a CPU
    // with AVX512-BF16: decode ~1.8x fp32, eval-demo 78.8% vs 78.4%). Parity checks and imports
    // keep the folder's / checkpoint's dtype.
    if (o.engine.dtype.empty() && o.command != "verify-reference" && o.command != "import") o.engine.dtype = "auto";
    return o;
}

void printStats(const mgd::TurnStats &s) {
    std::fprintf(
        stderr,
        "[stats] images encoded %d (%.1f ms) | prompt %lld tok, reused %lld, prefilled %lld "
        "(%.1f ms) | TTFT %.1f ms | %d tok, %.2f ms/tok | total %.1f ms | stop: %s%s\n",
        s.imagesEncoded, s.encodeMs, static_cast<long long>(s.promptTokens),
        static_cast<long long>(s.reusedTokens), static_cast<long long>(s.prefillTokens), s.prefillMs,
        s.ttftMs, s.generatedTokens, s.decodeMsPerToken, s.totalMs, mgd::stopReasonName(s.stopReason),
        s.droppedTurns ? (" | dropped " + std::to_string(s.droppedTurns) + " old turns").c_str() : "");
}

void writeMetrics(const mgd::Engine &e, const Options &o) {
    if (o.metricsJson.empty()) return;
    std::ofstream f(o.metricsJson);
    f << e.metricsSnapshot().toJson() << "\n";
    if (!f) throw mgd::Error("cannot write '" + o.metricsJson + "'");
}

mgd::TurnResult runTurn(mgd::Engine &e, int conv, const mgd::TurnRequest &req, bool stats) {
    auto r = e.submitTurn(conv, req, [](const std::string &piece) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
    });
    std::fputc('\n', stdout);
    if (stats) printStats(r.stats);
    return r;
}

void loadModel(mgd::Engine &e, const Options &o) {
    if (o.model.empty()) throw mgd::Error("no model: pass --model DIR");
    e.loadModel(o.model);
}

int cmdAsk(const Options &o) {
    if (o.positional.size() != 1) throw mgd::Error("ask needs exactly one question (quote it)");
    mgd::Engine e(o.engine);
    loadModel(e, o);
    mgd::TurnRequest req;
    req.text = o.positional[0];
    req.sampling = o.sampling;
    for (const auto &p : o.images) req.images.push_back(mgd::ImageInput::fromFile(p));
    runTurn(e, e.newConversation(), req, o.stats);
    writeMetrics(e, o);
    return 0;
}

int cmdChat(const Options &o) {
    mgd::Engine e(o.engine);
    loadModel(e, o);
    int conv = e.newConversation();
    std::vector<mgd::ImageInput> pending;
    for (const auto &p : o.images) pending.push_back(mgd::ImageInput::fromFile(p));
    std::fprintf(stderr,
                 "model %s loaded. /image FILE attaches an image, /reset starts over, /regen "
                 "answers again, /quit leaves.\n",
                 e.modelSummary().name.c_str());
    std::string line;
    while (std::fprintf(stdout, "> "), std::fflush(stdout), std::getline(std::cin, line)) {
        try {
            if (line == "/quit" || line == "/exit") break;
            if (line == "/reset") {
                e.resetConversation(conv);
                pending.clear();
                continue;
            }
            if (line.rfind("/image ", 0) == 0) {
                pending.push_back(mgd::ImageInput::fromFile(line.substr(7)));
                std::fprintf(stderr, "image attached to the next message\n");
                continue;
            }
            if (line == "/regen") {
                auto r = e.regenerate(conv, o.sampling, [](const std::string &p) {
                    std::fwrite(p.data(), 1, p.size(), stdout);
                    std::fflush(stdout);
                });
                std::fputc('\n', stdout);
                if (o.stats) printStats(r.stats);
                continue;
            }
            if (line.empty()) continue;
            mgd::TurnRequest req;
            req.text = line;
            req.images = pending;
            req.sampling = o.sampling;
            runTurn(e, conv, req, o.stats);
            pending.clear();
        } catch (const mgd::Error &err) {
            std::fprintf(stderr, "error: %s\n", err.what());
            pending.clear();
        }
    }
    writeMetrics(e, o);
    return 0;
}

std::string cacheDir() {
    const char *xdg = std::getenv("XDG_CACHE_HOME");
    const char *home = std::getenv("HOME");
    std::filesystem::path base =
        xdg && *xdg ? xdg : (home && *home ? std::filesystem::path(home) / ".cache" : "/tmp");
    return (base / "minigpt-desk").string();
}

mgd::BenchOptions benchOptions(const Options &o) {
    mgd::BenchOptions b;
    b.modelDir = o.modelGiven ? o.model : ""; // default: the generated bench model
    b.cacheDir = cacheDir();
    b.tokenizerPath = mgd::defaultModelDir(MGD_DEFAULT_MODEL) + "/tokenizer.model";
    b.imagePath = o.image;
    b.answerTokens = o.answerTokens;
    b.threads = o.engine.threads;
    b.dtype = o.engine.dtype;
    b.kvDtype = o.engine.kvDtype;
    b.poolBytes = o.engine.memoryPoolBytes;
    b.kvBlockPositions = o.engine.kvBlockPositions;
    if (!o.modes.empty()) b.modes = o.modes;
    return b;
}

void logLine(const std::string &line) {
    std::fprintf(stderr, "%s\n", line.c_str());
}

// The table on stdout, the JSON into --json FILE.
template <typename Report> int printReport(const Report &report, const Options &o) {
    std::fputs(report.table().c_str(), stdout);
    if (!o.benchJson.empty()) {
        std::ofstream f(o.benchJson);
        f << report.json() << "\n";
        if (!f) throw mgd::Error("cannot write '" + o.benchJson + "'");
    }
    return 0;
}

int cmdBench(const Options &o) {
    return printReport(mgd::runBenchmark(benchOptions(o), logLine), o);
}

int cmdBenchRedis(const Options &o) {
    return printReport(
        mgd::runRemoteBenchmark(benchOptions(o), o.engine.redisUrl, std::max(1, o.repetitions), logLine), o);
}

int cmdSoak(const Options &o) {
    mgd::SoakOptions so;
    so.modelDir = o.model;
    so.turns = std::max(1, o.turns);
    so.threads = o.engine.threads > 0 ? o.engine.threads : 1;
    for (const auto &p : o.images)
        so.images.push_back(std::make_shared<mgd::RgbImage>(mgd::decodeImageFile(p, {})));
    if (so.images.empty()) { // twelve generated drawings, different sizes and shapes
        mgd::demo::DemoGenerator g(20261129);
        for (int i = 0; i < 12; ++i)
            so.images.push_back(std::make_shared<mgd::RgbImage>(g.sample(mgd::demo::QType::Describe).image));
    }
    const mgd::SoakReport r = mgd::runSoak(so, logLine);
    printReport(r, o);
    return r.passed() ? 0 : 1;
}

int cmdPreload(const Options &o) {
    mgd::Engine e(o.engine);
    loadModel(e, o);
    std::vector<std::string> files;
    for (const auto &p : o.positional) {
        if (std::filesystem::is_directory(p)) {
            for (const auto &ent : std::filesystem::directory_iterator(p))
                if (ent.is_regular_file()) files.push_back(ent.path().string());
        } else {
            files.push_back(p);
        }
    }
    int failed = 0, done = 0;
    for (const auto &f : files) {
        try {
            done += e.preloadImages({f});
        } catch (const mgd::Error &err) {
            std::fprintf(stderr, "skipped: %s\n", err.what());
            ++failed;
        }
    }
    std::printf("%d computed, %zu already cached, %d skipped\n", done, files.size() - done - failed, failed);
    writeMetrics(e, o);
    return failed ? 1 : 0;
}

int cmdStats(const Options &o) {
    mgd::Engine e(o.engine);
    loadModel(e, o);
    std::printf("%s\n", e.metricsSnapshot().toJson().c_str());
    writeMetrics(e, o);
    return 0;
}

int cmdVerify(const Options &o) {
    const std::string dir = !o.positional.empty() ? o.positional[0] : o.model;
    if (dir.empty()) throw mgd::Error("verify-reference needs a directory");
    const std::string modelDir = !o.positional.empty() && o.modelGiven ? o.model : dir;
    mgd::Engine e(o.engine); // sets the thread count
    auto report = mgd::checkReference(
        dir, modelDir, o.tolerance, o.engine.dtype,
        [](const mgd::ReferenceDiff &d) {
            std::printf("%-48s %-4s max|diff| %.3g %s\n", d.name.c_str(), d.ok ? "ok" : "FAIL", d.maxAbs,
                        d.note.c_str());
        },
        o.engine.kvDtype == "int8");
    std::printf("turn 2 on turn 1's KV: %ld of %ld prompt tokens reused, %ld prefilled\n", report.turn2Reused,
                report.turn2Prompt, report.turn2Prefilled);
    std::printf("decode: %.0f tokens/s\n", report.decodeTokensPerSecond);
    std::printf("%s (tolerance %.0e, %zu checks)\n", report.ok() ? "PASS" : "FAIL", report.tolerance,
                report.diffs.size());
    return report.ok() ? 0 : 1;
}

int cmdBenchLlm(const Options &o) {
    mgd::LlmBenchOptions b;
    b.shape = o.shape;
    const std::string dt = mgd::resolveDtype(o.engine.dtype, o.engine.device);
    b.dtype = dt.empty() ? "float32" : dt;
    b.threads = o.engine.threads;
    b.repetitions = o.repetitions;
    b.cacheDir = cacheDir();
    const auto r = mgd::runLlmBench(
        b, [](const std::string &s) { std::fprintf(stderr, "[bench-llm] %s\n", s.c_str()); });
    std::printf("%s", r.table().c_str());
    if (!o.benchJson.empty()) {
        std::ofstream f(o.benchJson);
        f << r.toJson() << "\n";
        if (!f) throw mgd::Error("cannot write '" + o.benchJson + "'");
    }
    return 0;
}

int cmdImport(const Options &o) {
    std::string lastStage;
    int lastPercent = -1;
    const auto summary = mgd::importModel(o.import, [&](const mgd::ImportProgress &p) {
        const int pct = static_cast<int>(p.fraction * 100);
        if (p.stage != lastStage || pct / 5 != lastPercent / 5) {
            std::fprintf(stderr, "[import %3d%%] %s %s\n", pct, p.stage.c_str(), p.detail.c_str());
            lastStage = p.stage;
            lastPercent = pct;
        }
    });
    std::printf("imported %lld tensors (%.1f MB) into %s in %.1f s\n",
                static_cast<long long>(summary.tensors), summary.bytesWritten / 1e6, summary.outDir.c_str(),
                summary.seconds);
    for (const auto &n : summary.notes) std::printf("note: %s\n", n.c_str());
    if (!summary.ignoredKeys.empty()) {
        std::printf("%zu keys ignored, as the original ignores them:\n", summary.ignoredKeys.size());
        const size_t show = std::min<size_t>(summary.ignoredKeys.size(), 40);
        for (size_t i = 0; i < show; ++i) std::printf("  %s\n", summary.ignoredKeys[i].c_str());
        if (show < summary.ignoredKeys.size())
            std::printf("  ... and %zu more\n", summary.ignoredKeys.size() - show);
    }
    std::printf("open it with: minigpt-desk --model %s   (or minigpt-cli chat --model %s)\n",
                summary.outDir.c_str(), summary.outDir.c_str());
    return 0;
}

int cmdInfo(const Options &o) {
    mgd::Engine e(o.engine);
    loadModel(e, o);
    const auto s = e.modelSummary();
    std::printf("model        %s\nfolder       %s\narchitecture %s\ntemplate     %s\ndtype        %s\n"
                "image        %d px -> %d tokens\ncontext      %d\nvocab        %d\n",
                s.name.c_str(), s.dir.c_str(), s.architecture.c_str(), s.promptTemplate.c_str(),
                s.dtype.c_str(), s.imageSize, s.imageTokens, s.contextLength, s.vocabSize);
    return 0;
}

} // namespace

int main(int argc, char **argv) {
    try {
        if (argc >= 2 && std::strcmp(argv[1], "train-demo") == 0) return mgd::cli::cmdTrainDemo(argc, argv);
        if (argc >= 2 && std::strcmp(argv[1], "eval-demo") == 0) return mgd::cli::cmdEvalDemo(argc, argv);
        if (argc >= 2 && std::strcmp(argv[1], "eval-drawings") == 0)
            return mgd::cli::cmdEvalDrawings(argc, argv);
        if (argc >= 2 && std::strcmp(argv[1], "demo-samples") == 0)
            return mgd::cli::cmdDemoSamples(argc, argv);
        const Options o = parse(argc, argv);
        if (o.command == "ask") return cmdAsk(o);
        if (o.command == "chat") return cmdChat(o);
        if (o.command == "verify-reference") return cmdVerify(o);
        if (o.command == "import") return cmdImport(o);
        if (o.command == "bench-llm") return cmdBenchLlm(o);
        if (o.command == "version") {
            std::printf("minigpt-cli %s\n", MGD_VERSION);
            return 0;
        }
        if (o.command == "info") return cmdInfo(o);
        if (o.command == "bench") return cmdBench(o);
        if (o.command == "bench-redis") return cmdBenchRedis(o);
        if (o.command == "soak") return cmdSoak(o);
        if (o.command == "preload") return cmdPreload(o);
        if (o.command == "stats") return cmdStats(o);
        if (o.command == "-h" || o.command == "--help" || o.command == "help") {
            std::fputs(kUsage, stdout);
            return 0;
        }
        throw mgd::Error("unknown command '" + o.command + "'\n" + kUsage);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 2;
    }
}
