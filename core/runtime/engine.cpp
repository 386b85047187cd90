#include "core/runtime/engine.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <xxhash.h>

#include <cstdio>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "core/cache/conversation_kv_store.h"
#include "core/cache/feature_cache.h"
#include "core/cache/remote_feature_tier.h"
#include "core/cache/response_cache.h"
#include "core/image/preprocess.h"
#include "core/import/importer.h"
#include "core/memory/heap_trim.h"
#include "core/memory/memory_pool.h"
#include "core/model/minigpt_model.h"
#include "core/runtime/answer_text.h"
#include "core/runtime/conversation.h"
#include "core/runtime/decode_loop.h"
#include "core/cache/prefix_blocks.h"
#include "core/kernels/cpu_features.h"
#include "core/runtime/prefix_sharing.h"
#include "core/runtime/prompt_template.h"
#include "core/runtime/session.h"
#include "core/util/error.h"
#include "core/util/hasher.h"

namespace mgd {

namespace {

double nowMs() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::string defaultFeatureDir() {
    const char *xdg = std::getenv("XDG_CACHE_HOME");
    const char *home = std::getenv("HOME");
    std::filesystem::path base =
        xdg && *xdg ? xdg : (home && *home ? std::filesystem::path(home) / ".cache" : "/tmp");
    return (base / "minigpt-desk" / "features").string();
}

FeatureCacheSettings featureSettings(const EngineSettings &s) {
    FeatureCacheSettings fs;
    fs.enabled = true;
    fs.deviceBytes = s.featureDeviceBytes;
    fs.hostBytes = s.featureHostBytes;
    fs.diskBytes = s.featureDiskBytes;
    // A zero disk budget means no disk tier (tests, private sessions).
    if (s.featureDiskBytes > 0)
        fs.diskDir = s.featureDiskDir.empty() ? defaultFeatureDir() : s.featureDiskDir;
    fs.policy = s.eviction == EvictionPolicy::Lfu ? CachePolicy::Lfu : CachePolicy::Lru;
    fs.device = s.device;
    return fs;
}

} // namespace

Engine::Engine(EngineSettings settings)
    : settings_(std::move(settings)), metrics_(std::make_unique<Metrics>()) {
    const int n = settings_.threads > 0 ? settings_.threads
                                        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    at::set_num_threads(n);
    responses_ = std::make_unique<ResponseCache>();
    if (!settings_.kvDtype.empty() && settings_.kvDtype != "int8")
        throw Error("KV dtype '" + settings_.kvDtype +
                    "': use int8, or leave it empty for the model's dtype");
}

Engine::~Engine() {
    kvStore_.reset();       // finishes its queued writes
    conversations_.clear(); // their KV blocks go back to the pool before it goes
    prefixBlocks_.reset();
    features_.reset();
}

void Engine::loadModel(const std::string &dir) {
    // Throws; the current model stays on failure.
    auto m = MiniGptModel::load(dir, resolveDtype(settings_.dtype, settings_.device));
    conversations_.clear();
    prefixBlocks_.reset();
    features_.reset();
    pool_.reset();
    model_ = std::move(m);
    responses_->clear();
    buildCaches();
}

void Engine::buildCaches() {
    // KV blocks and pool-backed features must go back before their pool goes.
    for (auto &[id, c] : conversations_) c->session.dropState();
    prefixBlocks_.reset();
    features_.reset();
    pool_.reset();
    if (!model_) return;
    if (settings_.memoryPool) {
        const KvShape s = kvShape();
        const uint64_t block = static_cast<uint64_t>(KvCache::blockBytes(s, settings_.kvBlockPositions));
        uint64_t cap = settings_.memoryPoolBytes;
        if (cap == 0) {
            // Two full-context conversations plus the host feature tier, within what is free.
            const uint64_t fullKv = block * static_cast<uint64_t>(s.layers) *
                                    static_cast<uint64_t>((s.maxPositions + settings_.kvBlockPositions - 1) /
                                                          settings_.kvBlockPositions);
            cap = std::min<uint64_t>(2 * fullKv + settings_.featureHostBytes,
                                     MemoryPool::defaultCapacity(settings_.device));
        }
        pool_ = std::make_unique<MemoryPool>(cap, block, settings_.device);
        prefixBlocks_ = std::make_unique<PrefixBlocks>(*pool_);
    }
    if (settings_.featureCache)
        features_ = std::make_unique<FeatureCache>(featureSettings(settings_), pool_.get());
    setupRemote();
    setupKvStore();
    // Existing conversations move to the new storage (they re-prefill on their next turn).
    for (auto &[id, c] : conversations_) attachStorage(*c);
    pushPoolStats();
}

void Engine::setupRemote() {
    std::shared_ptr<RemoteFeatureTier> remote;
    std::string error;
    if (features_ && model_ && !settings_.redisUrl.empty()) {
        try {
            RemoteTierSettings rs;
            rs.url = settings_.redisUrl;
            rs.ttlSeconds = settings_.redisTtlSeconds;
            // Keys carry the vision model's identity: another model's features are never read.
            const std::string &vid = model_->visionIdentity();
            char id[17];
            std::snprintf(id, sizeof id, "%016llx",
                          static_cast<unsigned long long>(XXH3_64bits(vid.data(), vid.size())));
            rs.modelId = id;
            remote = std::make_shared<RemoteFeatureTier>(rs);
        } catch (const std::exception &e) {
            error = e.what();
        }
    }
    std::lock_guard<std::mutex> lock(remoteMutex_);
    remote_ = std::move(remote);
    remoteError_ = error;
}

std::shared_ptr<RemoteFeatureTier> Engine::remoteTier() const {
    std::lock_guard<std::mutex> lock(remoteMutex_);
    return remote_;
}

std::string Engine::remoteStatus() const {
    std::lock_guard<std::mutex> lock(remoteMutex_);
    if (!remoteError_.empty()) return remoteError_;
    if (!remote_)
        return settings_.redisUrl.empty() || settings_.featureCache ? "" : "the image-feature cache is off";
    const RemoteTierStats st = remote_->stats();
    return st.reachable || st.lastError.empty() ? "" : st.lastError;
}

void Engine::attachStorage(Conversation &c) {
    Conversation *raw = &c;
    if (pool_)
        c.session.usePool(
            pool_.get(), settings_.kvBlockPositions, [this, raw] { return freePoolMemory(raw); },
            prefixBlocks_.get());
    else
        c.session.usePool(nullptr, 0, {});
    c.session.setKvInt8(settings_.kvDtype == "int8");
}

void Engine::applySettings(const EngineSettings &s) {
    if (!s.kvDtype.empty() && s.kvDtype != "int8")
        throw Error("KV dtype '" + s.kvDtype + "': use int8, or leave it empty for the model's dtype");
    const bool rebuild = s.memoryPool != settings_.memoryPool || s.kvDtype != settings_.kvDtype ||
                         s.memoryPoolBytes != settings_.memoryPoolBytes ||
                         s.featureCache != settings_.featureCache ||
                         s.featureDiskDir != settings_.featureDiskDir || s.device != settings_.device;
    const EngineSettings old = settings_;
    settings_ = s;
    if (s.threads != old.threads)
        at::set_num_threads(
            s.threads > 0 ? s.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    if (!s.responseCache) responses_->clear();
    if (rebuild) {
        buildCaches(); // sessions lose their KV; the next turn re-prefills
    } else {
        if (features_) features_->applySettings(featureSettings(s));
        if (s.redisUrl != old.redisUrl || s.redisTtlSeconds != old.redisTtlSeconds) setupRemote();
        if (s.kvDiskDir != old.kvDiskDir || s.kvDiskBytes != old.kvDiskBytes || s.kvReuse != old.kvReuse)
            setupKvStore();
    }
}

uint64_t Engine::releaseIdleMemory() {
    return releaseFreeHeapMemory();
}

void Engine::clearCaches() {
    if (features_) features_->clear();
    if (prefixBlocks_) prefixBlocks_->dropUnreferenced();
    responses_->clear();
    metrics_->reset();
    pushPoolStats();
}

MetricsSnapshot Engine::metricsSnapshot() const {
    MetricsSnapshot m = metrics_->snapshot();
    const auto remote = remoteTier();
    m.gauges["remote_enabled"] = remote ? 1 : 0;
    if (remote) {
        const RemoteTierStats st = remote->stats();
        m.gauges["remote_reachable"] = st.reachable ? 1 : 0;
        m.counters["remote_hits"] = st.hits;
        m.counters["remote_misses"] = st.misses;
        m.counters["remote_errors"] = st.errors;
        m.counters["remote_rejected"] = st.rejected;
        m.counters["remote_writes"] = st.writes;
        m.counters["remote_writes_dropped"] = st.droppedWrites;
        m.counters["remote_bytes_read"] = st.bytesRead;
        m.counters["remote_bytes_written"] = st.bytesWritten;
    }
    return m;
}

uint64_t Engine::llmWeightBytes() const {
    return model().llm().weightBytes();
}

uint64_t Engine::llmDecodeBytesPerToken() const {
    return model().llm().decodeBytesPerToken();
}

uint64_t Engine::kvBytesPerPosition() const {
    return static_cast<uint64_t>(KvCache::bytesPerPosition(kvShape()));
}

KvShape Engine::kvShape() const {
    KvShape s = model().llm().kvShape();
    s.int8 = settings_.kvDtype == "int8";
    return s;
}

PrefixBlockStats Engine::sharedKvStats() const {
    return prefixBlocks_ ? prefixBlocks_->stats() : PrefixBlockStats{};
}

uint64_t Engine::poolCapacityBytes() const {
    return pool_ ? pool_->stats().capacityBytes : 0;
}

void Engine::pushPoolStats() {
    if (!pool_) {
        metrics_->setPoolStats(0, 0, 0, 0, 0, 0);
        return;
    }
    const PrefixBlockStats b = prefixBlocks_->stats();
    metrics_->setGauge("kv_shared_blocks", static_cast<double>(b.referenced));
    metrics_->setGauge("kv_shared_references", static_cast<double>(b.references));
    metrics_->setGauge("kv_cached_blocks", static_cast<double>(b.blocks - b.referenced));
    metrics_->setGauge("kv_shared_block_hits", static_cast<double>(b.hits));
    const PoolStats p = pool_->stats();
    metrics_->setPoolStats(p.capacityBytes, p.usedBytes, p.highWaterBytes, p.kvBytes, p.featureBytes,
                           p.allocFailures);
}

// Called when the pool is full: shared KV blocks no conversation uses, then cached features,
// then the least recently used idle conversation's KV (it re-prefills when used again; its
// shared blocks become unused ones). Never the active conversation.
bool Engine::freePoolMemory(const Conversation *active) {
    if (prefixBlocks_ && prefixBlocks_->evictOne()) return true;
    if (features_ && pool_ && features_->evictHost(pool_->blockBytes()) > 0) return true;
    Conversation *victim = nullptr;
    for (auto &[id, c] : conversations_)
        if (c.get() != active && !c->busy && c->session.kvBytes() > 0 &&
            (!victim || c->lastUsed < victim->lastUsed))
            victim = c.get();
    if (!victim) return false;
    victim->session.dropState();
    metrics_->addCounter("kv_evictions");
    return true;
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
    s.systemPrompt = c.systemPrompt;
    s.dtype = c.dtype;
    s.imageSize = c.vision.imageSize;
    s.imageTokens = c.imageTokens();
    s.contextLength = c.llm.maxPositions;
    s.vocabSize = c.llm.vocabSize;
    return s;
}

int Engine::newConversation(const std::string &tag) {
    model();
    const int id = nextId_++;
    auto c = std::make_unique<Conversation>();
    c->tag = tag;
    attachStorage(*c);
    conversations_[id] = std::move(c);
    return id;
}

void Engine::deleteConversation(int id) {
    conversations_.erase(id);
    pushPoolStats();
}

void Engine::resetConversation(int id) {
    Conversation &c = conv(id);
    c.messages.clear();
    c.images.clear();
    c.session.clear();
    pushPoolStats();
}

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

namespace {

struct Prepared {
    std::string hash;
    uint64_t key = 0;
    at::Tensor pixels;
};

Prepared prepareImage(const ImageInput &in, const MiniGptModel &m, const ImageLimits &limits) {
    const ModelConfig &cfg = m.config();
    PreprocessParams pp;
    pp.size = cfg.vision.imageSize;
    pp.mean = cfg.imageMean;
    pp.std = cfg.imageStd;
    RgbImage decoded;
    const RgbImage *img = in.rgb.get();
    if (!img) {
#ifdef MGD_WITH_OPENCV
        decoded = in.bytes.empty() ? decodeImageFile(in.path, limits)
                                   : decodeImageBytes(in.bytes.data(), in.bytes.size(),
                                                      in.label.empty() ? "image" : in.label, limits);
        img = &decoded;
#else
        throw Error("image '" + in.label + "': this build has no image decoding (built without OpenCV)");
#endif
    }
    Prepared p;
    p.pixels = preprocessImage(*img, pp).to(m.dtype()).contiguous();
    // Key: the decoded, preprocessed pixels + the vision model's identity + preprocessing.
    const Digest128 h =
        Hasher128().add(p.pixels.data_ptr(), p.pixels.nbytes()).add(m.visionIdentity()).addValue(pp).digest();
    p.hash = h.hex();
    p.key = h.folded();
    return p;
}

} // namespace

ConvImage Engine::prepareConvImage(const ImageInput &in) const {
    Prepared p = prepareImage(in, model(), settings_.imageLimits);
    ConvImage ci;
    ci.label = in.label.empty() ? in.path : in.label;
    ci.hash = p.hash;
    ci.key = p.key;
    ci.pixels = p.pixels;
    return ci;
}

at::Tensor Engine::imageFeatures(Conversation &c, int image, TurnStats &stats) {
    ConvImage &ci = c.images.at(image);
    if (ci.embeds.defined()) return ci.embeds;
    if (features_) {
        FeatureHandle h = features_->lookup(ci.hash);
        metrics_->recordLookup("feature", static_cast<bool>(h));
        if (h) return h.tensor();
    }
    // Missed here: another desk (or this one before a restart) may have encoded it.
    const auto remote = features_ ? remoteTier() : nullptr;
    if (remote) {
        double rtt = -1;
        at::Tensor t = remote->get(ci.hash, &rtt);
        if (rtt >= 0) metrics_->recordLatency("remote_rtt", rtt);
        metrics_->recordLookup("remote", t.defined());
        if (t.defined()) return features_->insert(ci.hash, t.to(model().dtype())).tensor();
    }
    const double e0 = nowMs();
    at::Tensor e = model().encodeImage(ci.pixels);
    const double ms = nowMs() - e0;
    stats.encodeMs += ms;
    ++stats.imagesEncoded;
    metrics_->recordLatency("image_encode", ms);
    metrics_->addCounter("images_encoded");
    if (remote) remote->put(ci.hash, e); // written on the tier's own thread
    if (features_)
        features_->insert(ci.hash, e);
    else
        for (ConvImage &other : c.images) // no cache: the conversation keeps them, as the demo
            if (other.hash == ci.hash) other.embeds = e;
    return e;
}

int Engine::preloadImages(const std::vector<std::string> &paths) {
    c10::InferenceMode guard;
    if (!features_) throw Error("preload needs the image-feature cache, which is turned off");
    int computed = 0;
    for (const std::string &p : paths) {
        if (cancel_.load()) break;
        Prepared prep = prepareImage(ImageInput::fromFile(p), model(), settings_.imageLimits);
        if (features_->contains(prep.hash)) continue;
        const double e0 = nowMs();
        const at::Tensor e = model().encodeImage(prep.pixels);
        features_->insert(prep.hash, e);
        if (const auto remote = remoteTier()) remote->put(prep.hash, e);
        metrics_->recordLatency("image_encode", nowMs() - e0);
        ++computed;
    }
    pushPoolStats();
    return computed;
}

TurnResult Engine::submitTurn(int conversation, const TurnRequest &req, const TokenCallback &onToken) {
    c10::InferenceMode guard;
    const double t0 = nowMs();
    cancel_.store(false);
    Conversation &c = conv(conversation);
    if (req.text.empty() && req.images.empty()) throw Error("empty message: type a question or add an image");

    // Decode and preprocess every image before touching the conversation, so bad input
    // leaves it exactly as it was.
    std::vector<ConvImage> fresh;
    for (const ImageInput &in : req.images) {
        ConvImage ci = prepareConvImage(in);
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
    try {
        return generate(c, req.sampling, onToken, TurnStats{}, t0);
    } catch (...) {
        c.messages.pop_back();
        c.images.resize(oldImages);
        throw;
    }
}

TurnResult Engine::regenerate(int conversation, const SamplingParams &sampling,
                              const TokenCallback &onToken) {
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

int Engine::restoreConversation(const std::vector<HistoryMessage> &history, const std::string &tag) {
    c10::InferenceMode guard;
    // Prepare every image before creating anything, so a bad one leaves no trace.
    std::vector<ChatMessage> messages;
    std::vector<ConvImage> images;
    for (const HistoryMessage &h : history) {
        ChatMessage m;
        m.fromUser = h.fromUser;
        m.text = h.text;
        for (const ImageInput &in : h.images) {
            m.images.push_back(static_cast<int>(images.size()));
            images.push_back(prepareConvImage(in));
        }
        messages.push_back(std::move(m));
    }
    const int id = newConversation(tag);
    Conversation &c = conv(id);
    c.messages = std::move(messages);
    c.images = std::move(images);
    restoreSavedState(c);
    return id;
}

// The prompt of a turn once it fits the context.
struct PromptPlan {
    std::vector<PromptChunk> chunks;
    std::vector<int64_t> keys; // one per position: token id or image identity (Session's keys)
    int64_t length = 0;
    int maxNew = 0; // answer tokens that still fit
};

// A turn, top to bottom: fit the context -> response cache -> another conversation's prefix
// -> prefill (images encoded or found in the feature cache on the way) -> decode loop ->
// record the stats and keep the answer.
TurnResult Engine::generate(Conversation &c, const SamplingParams &sp, const TokenCallback &onToken,
                            TurnStats stats, double t0) {
    const ModelConfig cfg = turnConfig();
    c.lastUsed = ++useClock_;
    c.busy = true;
    struct Busy {
        Conversation &c;
        ~Busy() { c.busy = false; }
    } busy{c};

    const PromptPlan plan = fitContext(c, cfg, sp, stats);

    std::string responseKey;
    if (settings_.responseCache && sp.isGreedy()) {
        responseKey =
            ResponseCache::keyFor({model().dir() + "|" + model().visionIdentity() + "|" + cfg.toJsonText(),
                                   &plan.keys, plan.maxNew, sp.repetitionPenalty, sp.ignoreEos});
        if (auto hit = answerFromResponseCache(c, responseKey, plan, onToken, stats, t0))
            return std::move(*hit);
    }

    if (settings_.kvReuse && settings_.prefixCache)
        stats.prefixFromOtherConversation = startFromSharedPrefix(c, plan);

    const at::Tensor logits = prefill(c, plan, stats);

    const double d0 = nowMs();
    DecodeOutcome out = decodeAnswer(c.session, model().llm(), model().tokenizer(), cfg, sp, plan.maxNew,
                                     logits, cancel_, onToken, nowMs);
    stats.decodeMs = nowMs() - d0;
    return finishTurn(c, sp, plan, std::move(out), responseKey, stats, t0);
}

ModelConfig Engine::turnConfig() const {
    ModelConfig cfg = model().config();
    if (!settings_.systemPrompt.empty()) cfg.systemPrompt = settings_.systemPrompt;
    return cfg;
}

// Drops the oldest whole turns until the prompt and a short answer fit, never the system
// prompt or the current question (the original cuts from the left, image included).
PromptPlan Engine::fitContext(const Conversation &c, const ModelConfig &cfg, const SamplingParams &sp,
                              TurnStats &stats) const {
    const int imageTokens = cfg.imageTokens();
    const int64_t ctx = cfg.llm.maxPositions;
    const int64_t minAnswer = std::min<int64_t>(sp.maxNewTokens, 16);
    std::vector<ChatMessage> window = c.messages;
    PromptPlan plan;
    for (;;) {
        plan.chunks = renderPrompt(cfg, window);
        tokenizeChunks(model().tokenizer(), plan.chunks);
        plan.length = 0;
        for (const auto &ch : plan.chunks)
            plan.length +=
                ch.kind == PromptChunk::Kind::Image ? imageTokens : static_cast<int64_t>(ch.ids.size());
        if (plan.length + minAnswer <= ctx || window.size() <= 1) break;
        // Drop the oldest question and its answer; its images move to the next question, since
        // later questions are usually about them.
        std::vector<int> carried = window.front().images;
        window.erase(window.begin());
        while (window.size() > 1 && !window.front().fromUser) window.erase(window.begin());
        carried.insert(carried.end(), window.front().images.begin(), window.front().images.end());
        window.front().images = carried;
        ++stats.droppedTurns;
    }
    for (const auto &ch : plan.chunks) stats.contextImages += ch.kind == PromptChunk::Kind::Image;
    if (plan.length + 1 > ctx)
        throw Error("the message is too long for the model's context: " + std::to_string(plan.length) +
                    " tokens, the context holds " + std::to_string(ctx));
    plan.maxNew = static_cast<int>(std::min<int64_t>(sp.maxNewTokens, ctx - plan.length));
    plan.keys = promptKeys(
        plan.chunks, [&](int i) { return c.images.at(i).key; }, imageTokens);
    return plan;
}

// An exact repeat of a deterministic request: the stored answer, streamed at once.
std::optional<TurnResult> Engine::answerFromResponseCache(Conversation &c, const std::string &key,
                                                          const PromptPlan &plan,
                                                          const TokenCallback &onToken, TurnStats stats,
                                                          double t0) {
    CachedResponse hit;
    const bool found = responses_->lookup(key, hit);
    metrics_->recordLookup("response", found);
    if (!found) return std::nullopt;
    if (onToken && !hit.text.empty()) onToken(hit.text);
    stats.ttftMs = stats.totalMs = nowMs() - t0;
    stats.promptTokens = plan.length;
    stats.generatedTokens = static_cast<int>(hit.tokens.size());
    stats.stopReason = hit.stopReason;
    stats.responseCacheHit = true;
    metrics_->recordTurn(stats);
    TurnResult r;
    r.tokens = hit.tokens;
    r.answer = postProcessAnswer(hit.text);
    r.stats = stats;
    c.messages.push_back(ChatMessage{false, r.answer, {}, hit.keptIds});
    return r;
}

bool Engine::startFromSharedPrefix(Conversation &c, const PromptPlan &plan) {
    std::vector<const Session *> others;
    std::map<const Session *, Conversation *> owner;
    for (const auto &[id, other] : conversations_)
        if (other.get() != &c) {
            others.push_back(&other->session);
            owner[&other->session] = other.get();
        }
    // The last prompt position always runs (it gives the first answer token's logits).
    const PrefixSource src = findSharedPrefix(c.session, others, plan.keys, plan.length - 1);
    if (src.length == 0) return false;
    // The source must not be evicted to make room for its own copy.
    Conversation *from = src.session ? owner.at(src.session) : nullptr;
    const bool wasBusy = from && from->busy;
    if (from) from->busy = true;
    const bool started = adoptSharedPrefix(c.session, src, kvShape(), plan.keys);
    if (from) from->busy = wasBusy;
    return started;
}

at::Tensor Engine::prefill(Conversation &c, const PromptPlan &plan, TurnStats &stats) {
    const int imageTokens = model().config().imageTokens();
    auto imageKey = [&](int i) { return c.images.at(i).key; };
    auto imageEmbeds = [&](int i) { return imageFeatures(c, i, stats); };
    const double p0 = nowMs();
    PrefillResult pr = c.session.prefill(model().llm(), plan.chunks, imageKey, imageEmbeds, imageTokens,
                                         settings_.kvReuse, settings_.allPromptLogits);
    stats.prefillMs = nowMs() - p0 - stats.encodeMs;
    stats.promptTokens = pr.promptTokens;
    stats.reusedTokens = pr.reusedTokens;
    stats.prefillTokens = pr.prefilledTokens;
    pushPoolStats();
    return pr.logits.narrow(0, pr.logits.size(0) - 1, 1);
}

TurnResult Engine::finishTurn(Conversation &c, const SamplingParams &sp, const PromptPlan &plan,
                              DecodeOutcome out, const std::string &responseKey, TurnStats stats, double t0) {
    stats.stopReason = out.stop;
    if (out.stop == StopReason::Cancelled) stats.cancelled = true;
    if (out.stop == StopReason::MaxTokens && plan.maxNew < sp.maxNewTokens)
        stats.stopReason = StopReason::ContextFull;
    if (!out.generated.empty()) stats.ttftMs = out.firstTokenAtMs - t0;
    stats.generatedTokens = static_cast<int>(out.generated.size());
    stats.decodeMsPerToken =
        out.generated.empty() ? 0 : stats.decodeMs / static_cast<double>(out.generated.size());
    stats.totalMs = nowMs() - t0;
    // The turn's full KV blocks become shareable (a later conversation on this image, this
    // system prompt, starts from them).
    if (settings_.kvReuse && settings_.prefixCache) c.session.shareBlocks();
    metrics_->recordTurn(stats);
    pushPoolStats();

    TurnResult r;
    r.answer = postProcessAnswer(out.text);
    r.stats = stats;
    if (!responseKey.empty() && !stats.cancelled)
        responses_->insert(responseKey,
                           CachedResponse{out.text, out.generated, out.keptIds, stats.stopReason});
    c.messages.push_back(ChatMessage{false, r.answer, {}, std::move(out.keptIds)});
    r.tokens = std::move(out.generated);
    saveState(c);
    return r;
}

std::string resolveDtype(const std::string &requested, const std::string &device) {
    if (requested != "auto") return requested;
    bool cpu = true;
    try {
        cpu = c10::Device(device).is_cpu();
    } catch (const std::exception &) {
        throw Error("device '" + device + "': use \"cpu\" or \"cuda\"");
    }
    return cpu && kernels::useAvx512Bf16() ? "bfloat16" : "";
}

ImportSummary importOriginalModel(const ImportOptions &options,
                                  const std::function<void(const ImportProgress &)> &progress,
                                  const std::atomic<bool> *cancel) {
    return importModel(options, progress, cancel);
}

} // namespace mgd
