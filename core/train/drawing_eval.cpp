#include "core/train/drawing_eval.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/runtime/engine.h"
#include "core/util/error.h"

namespace mgd::demo {

DrawingReport evaluateDrawings(const std::string &modelDir, const std::string &listFile,
                               const std::string &set, int threads) {
    std::ifstream f(listFile);
    if (!f) throw Error("cannot open '" + listFile + "'");
    nlohmann::json list;
    try {
        f >> list;
    } catch (const std::exception &e) {
        throw Error("'" + listFile + "' is not valid JSON: " + e.what());
    }
    const std::filesystem::path dir = std::filesystem::path(listFile).parent_path();
    EngineSettings es;
    es.threads = threads;
    es.featureCache = false; // nothing on disk
    es.responseCache = false;
    Engine e(es);
    e.loadModel(modelDir);
    DrawingReport r;
    for (const auto &d : list) {
        if (!set.empty() && d.value("set", "") != set) continue;
        const std::string image = d.at("image").get<std::string>();
        const int conv = e.newConversation();
        bool first = true;
        for (const auto &q : d.at("questions")) {
            TurnRequest req;
            req.text = q.at("q").get<std::string>();
            if (first) req.images.push_back(ImageInput::fromFile((dir / image).string()));
            req.sampling.greedy = true;
            req.sampling.repetitionPenalty = 1.0f;
            req.sampling.maxNewTokens = 96;
            const TurnResult res = e.submitTurn(conv, req);
            const auto &accept = q.at("accept");
            const bool ok = std::any_of(accept.begin(), accept.end(), [&](const nlohmann::json &a) {
                return a.get<std::string>() == res.answer;
            });
            r.total++;
            r.correct += ok;
            if (first) {
                r.firstTotal++;
                r.firstCorrect += ok;
            }
            r.transcript.push_back(image + " | " + req.text + " -> " + res.answer + (ok ? "" : "   [WRONG]"));
            if (!ok)
                r.failures.push_back(image + " | " + req.text + " | " + accept.front().get<std::string>() +
                                     " | " + res.answer);
            first = false;
        }
        e.deleteConversation(conv);
    }
    return r;
}

} // namespace mgd::demo
