#include "core/runtime/engine.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <xxhash.h>

#include <chrono>
#include <thread>

#include "core/image/preprocess.h"
#include "core/model/minigpt_model.h"
#include "core/runtime/answer_text.h"
#include "core/runtime/prompt_template.h"
#include "core/runtime/session.h"
#include "core/util/error.h"

namespace mgd {

namespace {

double nowMs() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

} // namespace

// An image of a conversation: its preprocessed pixels' identity and, once computed, its
// projected visual tokens (reused by every later turn that needs them).
struct ConvImage {
    std::string hash; // XXH3-128 hex of pixels + vision identity + preprocessing
    uint64_t key = 0;
    std::string label;
    at::Tensor pixels; // [1, 3, S, S]
    at::Tensor embeds; // [1, T, hidden] or undefined
};

struct Conversation {
    std::vector<ChatMessage> messages;
    std::vector<ConvImage> images;
    Session session;
};

Engine::Engine(EngineSettings settings) : settings_(std::move(settings)) {
    const int n = settings_.threads > 0 ? settings_.threads
                                        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    at::set_num_threads(n);
}

Engine::~Engine() = default;

void Engine::loadModel(const std::string &dir) {
    auto m = MiniGptModel::load(dir); // throws; the current model stays on failure
    conversations_.clear();
    model_ = std::move(m);
}

const MiniGptModel &Engine::model() const {
    if (!model_) throw Error("no model is loaded");
    return *model_;
}

ModelSummary Engine::modelSummary() const {
    const MiniGptModel &m = model();
    const ModelConfig &c = m.config();
    ModelSummary s;
    s.dir = m.dir();
    s.name = c.name;
    s.architecture = architectureName(c.arch);
    s.promptTemplate = templateName(c.promptTemplate);
    s.dtype = c.dtype;
    s.imageSize = c.vision.imageSize;
    s.imageTokens = c.imageTokens();
    s.contextLength = c.llm.maxPositions;
    s.vocabSize = c.llm.vocabSize;
    return s;
}

int Engine::newConversation() {
    model();
    const int id = nextId_++;
    conversations_[id] = std::make_unique<Conversation>();
    return id;
}

void Engine::deleteConversation(int id) { conversations_.erase(id); }

void Engine::resetConversation(int id) { *conversations_.at(id) = Conversation(); }

Conversation &Engine::conv(int id) const {
    auto it = conversations_.find(id);
    if (it == conversations_.end()) throw Error("no conversation with id " + std::to_string(id));
    return *it->second;
}

std::vector<MessageView> Engine::messages(int id) const {
    const Conversation &c = conv(id);
    std::vector<MessageView> out;
    for (const ChatMessage &m : c.messages) {
        MessageView v{m.fromUser, m.text, {}};
        for (int i : m.images) v.imageHashes.push_back(c.images[i].hash);
        out.push_back(std::move(v));
    }
    return out;
}

TurnResult Engine::submitTurn(int conversation, const TurnRequest &req, const TokenCallback &onToken) {
    c10::InferenceMode guard;
    const double t0 = nowMs();
    cancel_.store(false);
    Conversation &c = conv(conversation);
    const ModelConfig &cfg = model().config();
    if (req.text.empty() && req.images.empty()) throw Error("empty message: type a question or add an image");

    // Decode and preprocess every image before touching the conversation, so bad input
    // leaves it exactly as it was.
    PreprocessParams pp;
    pp.size = cfg.vision.imageSize;
    pp.mean = cfg.imageMean;
    pp.std = cfg.imageStd;
    std::vector<ConvImage> fresh;
    for (const ImageInput &in : req.images) {
        RgbImage decoded;
        const RgbImage *img = in.rgb.get();
        if (!img) {
#ifdef MGD_WITH_OPENCV
            decoded = in.bytes.empty() ? decodeImageFile(in.path, settings_.imageLimits)
                                       : decodeImageBytes(in.bytes.data(), in.bytes.size(),
                                                          in.label.empty() ? "image" : in.label,
                                                          settings_.imageLimits);
            img = &decoded;
#else
            throw Error("image '" + in.label + "': this build has no image decoding (built without OpenCV)");
#endif
        }
        ConvImage ci;
        ci.label = in.label.empty() ? in.path : in.label;
        ci.pixels = preprocessImage(*img, pp).to(model().dtype()).contiguous();
        XXH3_state_t *st = XXH3_createState();
        XXH3_128bits_reset(st);
        XXH3_128bits_update(st, ci.pixels.data_ptr(), ci.pixels.nbytes());
        const std::string &vid = model().visionIdentity();
        XXH3_128bits_update(st, vid.data(), vid.size());
        XXH3_128bits_update(st, &pp, sizeof pp);
        const XXH128_hash_t h = XXH3_128bits_digest(st);
        XXH3_freeState(st);
        char buf[40];
        std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                      static_cast<unsigned long long>(h.low64));
        ci.hash = buf;
        ci.key = h.low64 ^ h.high64;
        // The same pixels already in this conversation share their features.
        for (const ConvImage &old : c.images)
            if (old.hash == ci.hash && old.embeds.defined()) ci.embeds = old.embeds;
        fresh.push_back(std::move(ci));
    }
    ChatMessage user;
    user.fromUser = true;
    user.text = req.text;
    for (size_t i = 0; i < fresh.size(); ++i) user.images.push_back(static_cast<int>(c.images.size() + i));
    const size_t oldImages = c.images.size();
    for (auto &ci : fresh) c.images.push_back(std::move(ci));
    c.messages.push_back(std::move(user));
    TurnStats stats;
    try {
        return generate(c, req.sampling, onToken, stats, t0);
    } catch (...) {
        c.messages.pop_back();
        c.images.resize(oldImages);
        throw;
    }
}

TurnResult Engine::regenerate(int conversation, const SamplingParams &sampling, const TokenCallback &onToken) {
    c10::InferenceMode guard;
    const double t0 = nowMs();
    cancel_.store(false);
    Conversation &c = conv(conversation);
    if (c.messages.empty()) throw Error("nothing to regenerate: the conversation is empty");
    ChatMessage last;
    const bool hadAnswer = !c.messages.back().fromUser;
    if (hadAnswer) {
        last = c.messages.back();
        c.messages.pop_back();
    }
    try {
        return generate(c, sampling, onToken, TurnStats{}, t0);
    } catch (...) {
        if (hadAnswer) c.messages.push_back(last);
        throw;
    }
}

TurnResult Engine::editLast(int conversation, const TurnRequest &req, const TokenCallback &onToken) {
    Conversation &c = conv(conversation);
    std::vector<ChatMessage> saved = c.messages;
    while (!c.messages.empty() && !c.messages.back().fromUser) c.messages.pop_back();
    if (c.messages.empty()) throw Error("nothing to edit: the conversation has no question yet");
    c.messages.pop_back();
    try {
        return submitTurn(conversation, req, onToken);
    } catch (...) {
        c.messages = saved;
        throw;
    }
}

TurnResult Engine::generate(Conversation &c, const SamplingParams &sp, const TokenCallback &onToken,
                            TurnStats stats, double t0) {
    const MiniGptModel &m = model();
    const ModelConfig &cfg = m.config();
    const Llama &llm = m.llm();
    const int imageTokens = cfg.imageTokens();
    const int64_t ctx = cfg.llm.maxPositions;

    // Fit the context: drop the oldest whole turns, never the system prompt or the current
    // question with its images (the original cuts from the left, image included).
    std::vector<ChatMessage> window = c.messages;
    std::vector<PromptChunk> chunks;
    int64_t length = 0;
    const int64_t minAnswer = std::min<int64_t>(sp.maxNewTokens, 16);
    for (;;) {
        chunks = renderPrompt(cfg, window);
        tokenizeChunks(m.tokenizer(), chunks);
        length = 0;
        for (const auto &ch : chunks)
            length += ch.kind == PromptChunk::Kind::Image ? imageTokens : static_cast<int64_t>(ch.ids.size());
        if (length + minAnswer <= ctx || window.size() <= 1) break;
        // Drop the oldest question and its answer; its images move to the next question, since
        // later questions are usually about them.
        std::vector<int> carried = window.front().images;
        window.erase(window.begin());
        while (window.size() > 1 && !window.front().fromUser) window.erase(window.begin());
        carried.insert(carried.end(), window.front().images.begin(), window.front().images.end());
        window.front().images = carried;
        ++stats.droppedTurns;
    }
    for (const auto &ch : chunks) stats.contextImages += ch.kind == PromptChunk::Kind::Image;
    if (length + 1 > ctx)
        throw Error("the message is too long for the model's context: " + std::to_string(length) +
                    " tokens, the context holds " + std::to_string(ctx));
    const int maxNew = static_cast<int>(std::min<int64_t>(sp.maxNewTokens, ctx - length));

    auto imageKey = [&](int i) { return c.images.at(i).key; };
    auto imageEmbeds = [&](int i) {
        ConvImage &ci = c.images.at(i);
        if (!ci.embeds.defined()) {
            const double e0 = nowMs();
            ci.embeds = m.encodeImage(ci.pixels);
            stats.encodeMs += nowMs() - e0;
            ++stats.imagesEncoded;
            for (ConvImage &other : c.images)
                if (other.hash == ci.hash && !other.embeds.defined()) other.embeds = ci.embeds;
        }
        return ci.embeds;
    };
    const double p0 = nowMs();
    PrefillResult pr = c.session.prefill(llm, chunks, imageKey, imageEmbeds, imageTokens,
                                         settings_.kvReuse, false);
    stats.prefillMs = nowMs() - p0 - stats.encodeMs;
    stats.promptTokens = pr.promptTokens;
    stats.reusedTokens = pr.reusedTokens;
    stats.prefillTokens = pr.prefilledTokens;

    Sampler sampler(sp);
    AnswerStream stream(m.tokenizer(), cfg.stopStrings);
    std::vector<int32_t> generated;
    at::Tensor logits = pr.logits;
    const int32_t eos = m.tokenizer().eosId();
    const double d0 = nowMs();
    stats.stopReason = "max-tokens";
    for (int i = 0; i < maxNew; ++i) {
        if (cancel_.load()) {
            stats.cancelled = true;
            stats.stopReason = "cancelled";
            break;
        }
        const int32_t id = sampler.sample(logits, generated);
        if (i == 0) stats.ttftMs = nowMs() - t0;
        generated.push_back(id);
        if (id == eos || id == cfg.llm.eos) {
            stats.stopReason = "eos";
            break;
        }
        const std::string piece = stream.push(id);
        if (!piece.empty() && onToken) onToken(piece);
        if (stream.stopped()) {
            stats.stopReason = "stop-string";
            break;
        }
        if (i + 1 < maxNew) logits = c.session.step(llm, id);
    }
    if (generated.size() == static_cast<size_t>(maxNew) && maxNew < sp.maxNewTokens)
        stats.stopReason = "context-full";
    const std::string tail = stream.flush();
    if (!tail.empty() && onToken) onToken(tail);
    stats.decodeMs = nowMs() - d0;
    stats.generatedTokens = static_cast<int>(generated.size());
    stats.decodeMsPerToken = generated.empty() ? 0 : stats.decodeMs / static_cast<double>(generated.size());
    stats.totalMs = nowMs() - t0;

    TurnResult r;
    r.tokens = generated;
    r.answer = postProcessAnswer(stream.text());
    r.stats = stats;
    // Keep the tokens the model actually produced, so the next turn reuses their KV. The
    // LLaMA-2 style templates end an answer with </s>; Vicuna's separator is text.
    ChatMessage answer;
    answer.fromUser = false;
    answer.text = r.answer;
    answer.answerIds = stream.idsBeforeStop();
    if (stats.stopReason == "eos" && cfg.promptTemplate != PromptTemplate::Vicuna0)
        answer.answerIds.push_back(generated.back());
    c.messages.push_back(std::move(answer));
    return r;
}

} // namespace mgd
