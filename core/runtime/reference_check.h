#pragma once
// Runs the whole inference path on a directory laid out like shared/reference/*/ (config.json,
// weights.safetensors, tokenizer.model, image.png, reference.safetensors) and compares every
// tensor the original MiniGPT-4 code recorded there.
#include <functional>
#include <string>
#include <vector>

namespace mgd {

struct ReferenceDiff {
    std::string name;
    double maxAbs = 0;
    bool ok = true;
    std::string note; // e.g. "exact", "ids equal", a mismatch description
};

struct ReferenceReport {
    std::vector<ReferenceDiff> diffs;
    double tolerance = 1e-4;
    long turn2Prompt = 0, turn2Reused = 0, turn2Prefilled = 0;
    double decodeTokensPerSecond = 0;
    bool ok() const;
};

// Throws mgd::Error when the directory cannot be loaded at all.
ReferenceReport checkReference(const std::string &dir, double tolerance = 1e-4,
                               const std::function<void(const ReferenceDiff &)> &progress = {});
// The same check with the weights of another model folder (an imported one) against the
// reference recorded in `dir`; `dtype` ("" = the folder's) as MiniGptModel::load takes it.
// int8Kv: the conversation's KV (turn 2's reuse, greedy decoding) is kept as int8, so its
// logits differ slightly from the original's and its greedy ids must not.
ReferenceReport checkReference(const std::string &dir, const std::string &modelDir, double tolerance,
                               const std::string &dtype,
                               const std::function<void(const ReferenceDiff &)> &progress = {},
                               bool int8Kv = false);

} // namespace mgd
