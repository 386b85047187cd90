#include "core/runtime/reference_check.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "core/image/preprocess.h"
#include "core/model/minigpt_model.h"
#include "core/model/safetensors.h"
#include "core/runtime/prompt_template.h"
#include "core/runtime/session.h"
#include "core/util/error.h"

namespace mgd {

namespace fs = std::filesystem;

bool ReferenceReport::ok() const {
    for (const auto &d : diffs)
        if (!d.ok) return false;
    return !diffs.empty();
}

namespace {

struct Checker {
    const SafetensorsFile &ref;
    ReferenceReport &report;
    const std::function<void(const ReferenceDiff &)> &progress;

    void add(ReferenceDiff d) {
        if (progress) progress(d);
        report.diffs.push_back(std::move(d));
    }
    void tensor(const std::string &name, const at::Tensor &ours) {
        if (!ref.contains(name)) return; // not recorded for this variant
        at::Tensor theirs = ref.load(name).to(at::kFloat);
        ReferenceDiff d;
        d.name = name;
        at::Tensor o = ours.detach().to(at::kFloat).cpu();
        if (o.sizes() != theirs.sizes()) {
            if (o.numel() == theirs.numel()) {
                o = o.reshape(theirs.sizes());
            } else {
                d.ok = false;
                d.maxAbs = INFINITY;
                d.note = "shape differs";
                add(d);
                return;
            }
        }
        d.maxAbs = (o - theirs).abs().max().item<double>();
        d.ok = d.maxAbs <= report.tolerance;
        add(d);
    }
    void ids(const std::string &name, const std::vector<int64_t> &ours) {
        if (!ref.contains(name)) return;
        at::Tensor t = ref.load(name).to(at::kLong).reshape({-1});
        std::vector<int64_t> theirs(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
        ReferenceDiff d;
        d.name = name;
        d.ok = ours == theirs;
        d.note = d.ok ? "ids equal" : "ids differ";
        d.maxAbs = d.ok ? 0 : INFINITY;
        add(d);
    }
};

std::vector<int64_t> layoutOf(const std::vector<PromptChunk> &chunks, int imageTokens) {
    std::vector<int64_t> out;
    for (const auto &c : chunks) {
        if (c.kind == PromptChunk::Kind::Image)
            out.insert(out.end(), imageTokens, -1);
        else
            out.insert(out.end(), c.ids.begin(), c.ids.end());
    }
    return out;
}

} // namespace

ReferenceReport checkReference(const std::string &dir, double tolerance,
                               const std::function<void(const ReferenceDiff &)> &progress) {
    return checkReference(dir, dir, tolerance, "", progress);
}

ReferenceReport checkReference(const std::string &dir, const std::string &modelDir, double tolerance,
                               const std::string &dtype,
                               const std::function<void(const ReferenceDiff &)> &progress, bool int8Kv) {
    c10::InferenceMode guard;
    ReferenceReport report;
    report.tolerance = tolerance;
    auto model = MiniGptModel::load(modelDir, dtype);
    const ModelConfig &cfg = model->config();
    const fs::path d(dir);
    SafetensorsFile ref((d / "reference.safetensors").string());
    Checker check{ref, report, progress};

    std::ifstream jf(d / "config.json");
    nlohmann::json j = nlohmann::json::parse(jf, nullptr, false);
    const auto questions = j.value("questions", nlohmann::json::object());
    const std::string q1 = questions.value("Q1", "What is in this image?");
    const std::string a1 = questions.value("A1_turn1_answer", "A red square and a blue circle.");
    const std::string q2 = questions.value("Q2", "What color is the background?");

    // Image -> pixels exactly as Blip2ImageEvalProcessor.
    PreprocessParams pp;
    pp.size = cfg.vision.imageSize;
    pp.mean = cfg.imageMean;
    pp.std = cfg.imageStd;
    at::Tensor pixels;
#ifdef MGD_WITH_OPENCV
    pixels = preprocessImage(decodeImageFile((d / "image.png").string()), pp);
    check.tensor("pixel_values", pixels);
#else
    pixels = ref.load("pixel_values"); // no image decoding in this build: use the recorded pixels
#endif

    VisionTrace trace;
    at::Tensor img = model->encodeImage(pixels.to(model->dtype()), &trace);
    for (size_t i = 0; i < trace.vitBlocks.size(); ++i)
        check.tensor("vit_block" + std::to_string(i) + "_out", trace.vitBlocks[i]);
    check.tensor("vit_out", trace.vitOut);
    check.tensor("ln_vision_out", trace.lnVisionOut);
    if (trace.qformerOut.defined()) check.tensor("qformer_out", trace.qformerOut);
    if (trace.projInGrouped.defined()) check.tensor("proj_in_grouped", trace.projInGrouped);
    check.tensor("img_embeds", img);
    if (ref.contains("rope_cos")) {
        const int64_t n = ref.info("rope_cos").shape[0];
        check.tensor("rope_cos", model->llm().ropeCos().narrow(0, 0, n));
        check.tensor("rope_sin", model->llm().ropeSin().narrow(0, 0, n));
    }

    const int imageTokens = cfg.imageTokens();
    auto imageKey = [](int) { return uint64_t{0x1234}; };
    auto imageEmbeds = [&](int) { return img; };
    const Llama &llm = model->llm();

    std::vector<ChatMessage> msgs;
    ChatMessage u1;
    u1.text = q1;
    u1.images = {0};
    msgs.push_back(u1);

    Session session;
    session.setKvInt8(int8Kv); // the conversation's KV; the full prefills stay at full width
    double decodeMs = 0;
    int decodeSteps = 0;
    for (int turn = 1; turn <= 2; ++turn) {
        const std::string tp = "turn" + std::to_string(turn) + ".";
        if (turn == 2) {
            ChatMessage a;
            a.fromUser = false;
            a.text = a1; // the original stores the answer text and re-tokenizes it
            msgs.push_back(a);
            ChatMessage u2;
            u2.text = q2;
            msgs.push_back(u2);
        }
        std::vector<PromptChunk> chunks = renderPrompt(cfg, msgs);
        tokenizeChunks(model->tokenizer(), chunks);
        int seg = 0;
        for (const auto &c : chunks)
            if (c.kind == PromptChunk::Kind::Text)
                check.ids(tp + "seg" + std::to_string(seg++) + "_ids",
                          std::vector<int64_t>(c.ids.begin(), c.ids.end()));
        check.ids(tp + "layout", layoutOf(chunks, imageTokens));

        // Full prefill of the whole prompt on a fresh KV: what the original computes.
        Session fresh;
        std::vector<at::Tensor> hidden;
        PrefillResult full =
            fresh.prefill(llm, chunks, imageKey, imageEmbeds, imageTokens, false, true, &hidden);
        check.tensor(tp + "input_embeds", hidden.front());
        check.tensor(tp + "logits", full.logits.unsqueeze(0));
        for (size_t h = 0; h < hidden.size(); ++h)
            check.tensor(tp + "llama_hidden" + std::to_string(h), hidden[h]);

        // The conversation's own KV: turn 2 reuses turn 1's prompt + generated tokens.
        PrefillResult pr = session.prefill(llm, chunks, imageKey, imageEmbeds, imageTokens, true, true);
        if (turn == 2) {
            report.turn2Prompt = pr.promptTokens;
            report.turn2Reused = pr.reusedTokens;
            report.turn2Prefilled = pr.prefilledTokens;
            if (ref.contains(tp + "logits")) {
                at::Tensor theirs = ref.load(tp + "logits").to(at::kFloat).squeeze(0);
                at::Tensor tail = theirs.narrow(0, pr.reusedTokens, pr.prefilledTokens);
                ReferenceDiff dd;
                dd.name = tp + "logits[reused KV, " + std::to_string(pr.prefilledTokens) + " of " +
                          std::to_string(pr.promptTokens) + " prefilled]";
                dd.maxAbs = (pr.logits - tail).abs().max().item<double>();
                dd.ok = dd.maxAbs <= tolerance && pr.reusedTokens > 0;
                check.add(dd);
            }
        }
        // Greedy decode with the KV cache, as HF greedy_search.
        at::Tensor logits = pr.logits.narrow(0, pr.logits.size(0) - 1, 1);
        const int steps =
            ref.contains(tp + "greedy_ids") ? static_cast<int>(ref.info(tp + "greedy_ids").shape.back()) : 8;
        std::vector<int64_t> greedy;
        std::vector<at::Tensor> stepLogits;
        for (int s = 0; s < steps; ++s) {
            stepLogits.push_back(logits.reshape({-1}));
            const int32_t id = static_cast<int32_t>(logits.argmax(-1).item<int64_t>());
            greedy.push_back(id);
            if (s + 1 < steps) {
                const auto t0 = std::chrono::steady_clock::now();
                logits = session.step(llm, id);
                decodeMs +=
                    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
                ++decodeSteps;
            }
        }
        check.tensor(tp + "greedy_step_logits", at::stack(stepLogits));
        check.ids(tp + "greedy_ids", greedy);
    }
    report.decodeTokensPerSecond = decodeSteps ? 1000.0 * decodeSteps / decodeMs : 0;
    return report;
}

} // namespace mgd
