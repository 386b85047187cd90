#include "core/runtime/decode_loop.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/model/model_config.h"
#include "core/model/tokenizer.h"
#include "core/runtime/answer_text.h"
#include "core/runtime/session.h"

namespace mgd {

DecodeOutcome decodeAnswer(Session &session, const Llama &llm, const Tokenizer &tok, const ModelConfig &cfg,
                           const SamplingParams &sp, int maxNew, at::Tensor logits,
                           const std::atomic<bool> &cancel,
                           const std::function<void(const std::string &)> &onToken,
                           const std::function<double()> &clockMs) {
    DecodeOutcome out;
    Sampler sampler(sp);
    AnswerStream stream(tok, sp.ignoreEos ? std::vector<std::string>{} : cfg.stopStrings);
    const int64_t vocab = tok.vocabSize();
    const int32_t eos = tok.eosId();
    for (int i = 0; i < maxNew; ++i) {
        if (cancel.load()) {
            out.stop = StopReason::Cancelled;
            break;
        }
        // Never emit an id the tokenizer cannot decode (random or padded vocabularies).
        at::Tensor l = logits.size(-1) > vocab ? logits.narrow(-1, 0, vocab) : logits;
        if (sp.ignoreEos && eos >= 0 && eos < vocab)
            l = l.clone().index_fill_(-1, at::tensor({int64_t{eos}}), -INFINITY);
        const int32_t id = sampler.sample(l, out.generated);
        if (i == 0) out.firstTokenAtMs = clockMs();
        out.generated.push_back(id);
        if (!sp.ignoreEos && (id == eos || id == cfg.llm.eos)) {
            out.stop = StopReason::Eos;
            break;
        }
        const std::string piece = stream.push(id);
        if (!piece.empty() && onToken) onToken(piece);
        if (stream.stopped()) {
            out.stop = StopReason::StopString;
            break;
        }
        if (i + 1 < maxNew) logits = session.step(llm, id);
    }
    const std::string tail = stream.flush();
    if (!tail.empty() && onToken) onToken(tail);
    out.text = stream.text();
    // Keep the tokens the model actually produced, so the next turn reuses their KV. The
    // LLaMA-2 style templates end an answer with </s>; Vicuna's separator is text.
    out.keptIds = stream.idsBeforeStop();
    if (out.stop == StopReason::Eos && cfg.promptTemplate != PromptTemplate::Vicuna0)
        out.keptIds.push_back(out.generated.back());
    return out;
}

} // namespace mgd
