#include "app/cli/demo_commands.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "app/cli/arg_cursor.h"
#include "core/train/demo_train.h"
#include "core/train/drawing_eval.h"
#include "core/util/error.h"

namespace mgd::cli {

namespace {

double secondsSince(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

} // namespace

int cmdTrainDemo(int argc, char **argv) {
    demo::TrainOptions o;
    std::string loss = o.lossPerAnswer ? "answer" : "token";
    ArgCursor c(argc, argv, 2);
    while (c.next()) {
        if (c.is("--out"))
            o.out = c.value();
        else if (c.is("--seed"))
            o.seed = static_cast<uint64_t>(c.number());
        else if (c.is("--minutes"))
            o.minutes = c.number();
        else if (c.is("--stage1-share"))
            o.stage1Share = std::clamp(c.number(), 0.0, 1.0);
        else if (c.is("--eval-every"))
            o.evalEverySeconds = c.number();
        else if (c.is("--threads"))
            o.threads = std::max(1, c.integer());
        else if (c.is("--vocab"))
            o.vocabSize = c.integer();
        else if (c.is("--lr1"))
            o.lr1 = c.number();
        else if (c.is("--lr2"))
            o.lr2 = c.number();
        else if (c.is("--batch1"))
            o.batch1 = std::max(1, c.integer());
        else if (c.is("--batch2"))
            o.batch2 = std::max(1, c.integer());
        else if (c.is("--seq-tokens"))
            o.seqTokens = std::max(0, c.integer());
        else if (c.is("--pack-from"))
            o.packFrom = std::clamp(c.number(), 0.0, 1.0);
        else if (c.is("--workers"))
            o.workers = std::clamp(c.integer(), 1, 64);
        else if (c.is("--llm-init"))
            o.llmInit = c.value();
        else if (c.is("--curriculum"))
            o.curriculum = std::max(0.0, c.number());
        else if (c.is("--patch"))
            o.patchSize = c.integer();
        else if (c.is("--llm-layers"))
            o.llmLayers = std::clamp(c.integer(), 1, 32);
        else if (c.is("--loss"))
            loss = c.value();
        else if (c.is("--restart-stage2"))
            o.restartStage2 = true;
        else if (c.is("--continue-stage2"))
            o.continueStage2 = true;
        else if (c.is("--no-align"))
            o.alignStart = false;
        else
            c.unknown();
    }
    if (loss != "answer" && loss != "token") throw Error("--loss: answer or token");
    o.lossPerAnswer = loss == "answer";
    if (o.llmInit != "xavier" && o.llmInit != "gpt") throw Error("--llm-init: xavier or gpt");
    return demo::trainDemo(o);
}

int cmdEvalDemo(int argc, char **argv) {
    std::string model, dtype, kvDtype;
    int questions = 500, threads = 1, later = 0, show = 10;
    uint64_t seed = 12345;
    ArgCursor c(argc, argv, 2);
    while (c.next()) {
        if (c.is("--model"))
            model = c.value();
        else if (c.is("--questions"))
            questions = std::max(1, c.integer());
        else if (c.is("--seed"))
            seed = static_cast<uint64_t>(c.number());
        else if (c.is("--threads"))
            threads = std::max(1, c.integer());
        else if (c.is("--later"))
            later = std::max(0, c.integer());
        else if (c.is("--show-errors"))
            show = c.integer();
        else if (c.is("--dtype"))
            dtype = c.value();
        else if (c.is("--kv-dtype"))
            kvDtype = c.value();
        else
            c.unknown();
    }
    if (model.empty()) throw Error("eval-demo: --model DIR is required");
    const auto t0 = std::chrono::steady_clock::now();
    const demo::EvalReport r = demo::evaluateDemoModel(model, questions, seed, threads, later, dtype,
                                                       kvDtype == "model" ? "" : kvDtype);
    std::printf("eval-demo: %s, %d held-out questions (seed %llu), greedy, exact match, %.1f s\n",
                model.c_str(), r.allTotal(), static_cast<unsigned long long>(seed), secondsSince(t0));
    std::printf("%s", r.table().c_str());
    for (int i = 0; i < show && i < int(r.errors.size()); ++i) std::printf("  ERR %s\n", r.errors[i].c_str());
    return 0;
}

int cmdEvalDrawings(int argc, char **argv) {
    std::string model, list, set;
    int threads = 1, show = 20;
    bool transcript = false;
    ArgCursor c(argc, argv, 2);
    while (c.next()) {
        if (c.is("--model"))
            model = c.value();
        else if (c.is("--list"))
            list = c.value();
        else if (c.is("--set"))
            set = c.value();
        else if (c.is("--threads"))
            threads = std::max(1, c.integer());
        else if (c.is("--show-errors"))
            show = c.integer();
        else if (c.is("--transcript"))
            transcript = true;
        else
            c.unknown();
    }
    if (model.empty() || list.empty())
        throw Error("eval-drawings: --model DIR and --list drawings.json are required");
    const demo::DrawingReport r = demo::evaluateDrawings(model, list, set, threads);
    if (transcript)
        for (const auto &t : r.transcript) std::printf("  %s\n", t.c_str());
    std::printf("eval-drawings: %s on %s: %d of %d right (%.1f%%); first questions %d of %d\n", model.c_str(),
                list.c_str(), r.correct, r.total, 100 * r.accuracy(), r.firstCorrect, r.firstTotal);
    for (int i = 0; i < show && i < int(r.failures.size()); ++i)
        std::printf("  ERR %s\n", r.failures[i].c_str());
    return 0;
}

int cmdDemoSamples(int argc, char **argv) {
    std::string out;
    int count = 24;
    uint64_t seed = 1;
    ArgCursor c(argc, argv, 2);
    while (c.next()) {
        if (c.is("--out"))
            out = c.value();
        else if (c.is("--count"))
            count = std::max(1, c.integer());
        else if (c.is("--seed"))
            seed = static_cast<uint64_t>(c.number());
        else
            c.unknown();
    }
    if (out.empty()) throw Error("demo-samples: --out DIR is required");
    demo::writeDemoSamples(out, count, seed);
    std::printf("%d samples in %s (scenes and Q&A in samples.txt)\n", count, out.c_str());
    return 0;
}

} // namespace mgd::cli
