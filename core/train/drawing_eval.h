#pragma once
// The demo model on pictures drawn by other means than its generator (tests/data/drawings,
// made with ImageMagick by tests/drawings/make_drawings.py): every question of a drawing is
// asked in one conversation, as a person asks them, through Engine::submitTurn with the
// image file decoded by the app's own decoder.
#include <string>
#include <vector>

namespace mgd::demo {

struct DrawingReport {
    int correct = 0, total = 0;
    int firstCorrect = 0, firstTotal = 0; // the first question of each conversation
    std::vector<std::string> failures;    // "image | question | expected | got"
    std::vector<std::string> transcript;  // every exchange, "image | question -> answer"
    double accuracy() const { return total ? double(correct) / total : 0; }
};

// `listFile`: drawings.json (images beside it). `set`: only drawings of that set ("" = all).
DrawingReport evaluateDrawings(const std::string &modelDir, const std::string &listFile,
                               const std::string &set = "", int threads = 1);

} // namespace mgd::demo
