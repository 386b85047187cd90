#pragma once
// The one facade every caller uses (CLI now, the UI's worker later). Not thread-safe except
// cancel(), which any thread may call while submitTurn() runs on another; threading lives
// with the caller (ui/).
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/cache/prefix_blocks.h"
#include "core/image/image_decode.h"
#include "core/import/import_options.h"
#include "core/metrics/metrics.h"
#include "core/metrics/turn_stats.h"
#include "core/runtime/sampling.h"

namespace at {
class Tensor;
}

namespace mgd {

class MiniGptModel;
class MemoryPool;
class PrefixBlocks;
class FeatureCache;
class RemoteFeatureTier;
class ResponseCache;
class ConversationKvStore;
struct ConversationKvStats;
struct Conversation;
struct ConvImage;
struct ModelConfig;
struct KvShape;
struct PromptPlan;
struct DecodeOutcome;

enum class EvictionPolicy { Lru, Lfu };

// Everything configurable flows in through this one struct (CLI flags, the UI's settings).
struct EngineSettings {
    int threads = 0;              // 0: one per core (Debian's libtorch defaults to 1)
    std::string device = "cpu";   // "cpu" or "cuda" (when libtorch was built with CUDA)
    std::string dtype;            // "": the model folder's; float32 | bfloat16 | float16 | int8 | auto
    bool kvReuse = true;          // off: re-prefill the whole conversation every turn (the original)
    bool featureCache = true;     // image-feature cache (tiers below)
    bool prefixCache = true;      // a new conversation reuses the KV of a shared prefix
    bool responseCache = true;    // exact repeats of greedy requests
    bool memoryPool = true;       // KV + cached features in one pre-allocated arena
    uint64_t memoryPoolBytes = 0; // 0: a sensible default for the model and machine
    // Positions per KV block and layer: the unit in which conversations share a prefix (only
    // whole blocks are shared; the rest is copied), so small, as vLLM's 16.
    int64_t kvBlockPositions = 16;
    // How attention state is kept: "" (the model's compute dtype) or "int8" (one float scale
    // per head and position; about 1/4 of float32's bytes, 1/2 of bfloat16's).
    std::string kvDtype;
    uint64_t featureDeviceBytes = 256ull << 20;
    uint64_t featureHostBytes = 256ull << 20;
    uint64_t featureDiskBytes = 2ull << 30;
    std::string featureDiskDir; // empty: $XDG_CACHE_HOME/minigpt-desk/features
    // The shared tier behind host and disk: redis://[:password@]host:port[/db] or
    // unix:///path; empty: off. Needs featureCache.
    std::string redisUrl;
    int redisTtlSeconds = 0; // 0: entries never expire (give Redis a maxmemory + LRU policy)
    EvictionPolicy eviction = EvictionPolicy::Lru;
    // Conversation state on disk (KV + answer token ids of conversations created with a
    // tag), so a restarted app continues them without prefilling their history. 0: off.
    uint64_t kvDiskBytes = 2ull << 30;
    std::string kvDiskDir; // empty: $XDG_CACHE_HOME/minigpt-desk/conversation-state
    // The original's memory behaviour (HF generate): logits for every prompt position, of
    // which only the last is used. Off except to reproduce the original in the benchmark.
    bool allPromptLogits = false;
    // The text before the first turn; empty: the model's own (its template's) system prompt.
    std::string systemPrompt;
    ImageLimits imageLimits;

    bool operator==(const EngineSettings &) const = default;
};

struct ImageInput {
    std::string path;                    // a file, or
    std::vector<uint8_t> bytes;          // encoded bytes (clipboard, drop), or
    std::shared_ptr<const RgbImage> rgb; // already-decoded pixels
    std::string label;                   // for messages
    static ImageInput fromFile(const std::string &p) { return ImageInput{p, {}, nullptr, p}; }
};

struct TurnRequest {
    std::string text;
    std::vector<ImageInput> images;
    SamplingParams sampling;
};

struct TurnResult {
    std::string answer;          // post-processed as the original demo does
    std::vector<int32_t> tokens; // everything the model generated
    TurnStats stats;
};

struct ModelSummary {
    std::string dir, name, architecture, promptTemplate, dtype, systemPrompt;
    int imageSize = 0, imageTokens = 0, contextLength = 0, vocabSize = 0;
    int64_t parameters = 0;
};

struct MessageView {
    bool fromUser = true;
    std::string text;
    std::vector<std::string> imageHashes;
};

// A message of a saved conversation, for Engine::restoreConversation.
struct HistoryMessage {
    bool fromUser = true;
    std::string text;
    std::vector<ImageInput> images; // user messages
};

// Receives the answer as it streams: UTF-8 text pieces, stop strings held back.
using TokenCallback = std::function<void(const std::string &piece)>;

class Engine {
public:
    explicit Engine(EngineSettings settings = {});
    ~Engine();

    void loadModel(const std::string &dir); // throws mgd::Error; keeps the old model on failure
    bool hasModel() const { return model_ != nullptr; }
    ModelSummary modelSummary() const;
    const MiniGptModel &model() const;
    EngineSettings &settings() { return settings_; }

    // `tag`: the caller's lasting id for the conversation (the UI's conversation id); with
    // one, its state is saved after each turn and found again by restoreConversation.
    int newConversation(const std::string &tag = {});
    void deleteConversation(int id);
    void resetConversation(int id);
    std::vector<MessageView> messages(int id) const;

    // Runs one turn; throws mgd::Error for bad input (the conversation is left unchanged).
    TurnResult submitTurn(int conversation, const TurnRequest &req, const TokenCallback &onToken = {});
    // Drops the last answer and answers the same question again.
    TurnResult regenerate(int conversation, const SamplingParams &sampling,
                          const TokenCallback &onToken = {});
    // Replaces the last question (and its answer) with `req`.
    TurnResult editLast(int conversation, const TurnRequest &req, const TokenCallback &onToken = {});
    // Recreates a saved conversation (after a restart or a model reload) so it can go on:
    // images are decoded and hashed now and encoded, or found in the feature cache, when a
    // turn needs them. With a tag whose state was saved for this model, the KV and the
    // answers' token ids come back too, so the next turn prefills only its question;
    // otherwise answers are tokenized from their text and the history prefilled. Bad images
    // throw mgd::Error and create nothing.
    int restoreConversation(const std::vector<HistoryMessage> &history, const std::string &tag = {});
    // Deletes the saved state of a conversation the user deleted.
    void forgetSavedState(const std::string &tag);
    // Counters and size of the conversation-state tier (zeros when off); waits for nothing.
    ConversationKvStats savedStateStats() const;
    // Waits until every queued state write is on disk (tests, shutdown).
    void flushSavedState();

    void cancel() { cancel_.store(true); }

    // Applies new settings without reloading the model where possible (cache budgets and
    // toggles, pool size, eviction policy, threads).
    void applySettings(const EngineSettings &s);
    // Thread-safe: may be called from any thread while a turn runs.
    // With the shared Redis tier on: its counters ("remote_hits", "remote_misses",
    // "remote_errors", "remote_rejected", "remote_bytes_read", "remote_bytes_written"), gauges
    // ("remote_enabled", "remote_reachable") and latency "remote_rtt".
    MetricsSnapshot metricsSnapshot() const;
    // Why the Redis tier is off or last failed ("" when fine or not asked for), with its URL.
    std::string remoteStatus() const;
    // Computes and caches the features of the given image files (skipping ones already
    // cached); returns how many were computed. Blocking: run it on a worker thread.
    int preloadImages(const std::vector<std::string> &paths);

    // Figures the benchmark needs: bytes of weights one decode step reads, and the pool's
    // capacity (0 without a pool).
    uint64_t llmWeightBytes() const;
    uint64_t llmDecodeBytesPerToken() const;
    // Bytes of KV state one sequence position takes (all layers, keys and values).
    uint64_t kvBytesPerPosition() const;
    uint64_t poolCapacityBytes() const;
    // KV blocks shared between conversations (zeros without a memory pool).
    PrefixBlockStats sharedKvStats() const;
    // Drops every cached feature (all tiers) and response; used between benchmark modes.
    void clearCaches();
    // Idle (no turn running): hands back the heap memory the last turn freed (heap_trim.h).
    // The window calls it a few seconds after a turn; returns how much the RSS fell.
    uint64_t releaseIdleMemory();

private:
    Conversation &conv(int id) const;
    // One turn's steps, in the order generate() runs them.
    TurnResult generate(Conversation &c, const SamplingParams &sp, const TokenCallback &onToken,
                        TurnStats stats, double t0);
    ModelConfig turnConfig() const; // the model's, with the settings' system prompt
    PromptPlan fitContext(const Conversation &c, const ModelConfig &cfg, const SamplingParams &sp,
                          TurnStats &stats) const;
    std::optional<TurnResult> answerFromResponseCache(Conversation &c, const std::string &key,
                                                      const PromptPlan &plan, const TokenCallback &onToken,
                                                      TurnStats stats, double t0);
    bool startFromSharedPrefix(Conversation &c, const PromptPlan &plan);
    at::Tensor prefill(Conversation &c, const PromptPlan &plan, TurnStats &stats);
    TurnResult finishTurn(Conversation &c, const SamplingParams &sp, const PromptPlan &plan,
                          DecodeOutcome out, const std::string &responseKey, TurnStats stats, double t0);
    at::Tensor imageFeatures(Conversation &c, int image, TurnStats &stats);
    ConvImage prepareConvImage(const ImageInput &in) const; // decode, preprocess, hash
    void buildCaches();
    void attachStorage(Conversation &c);
    KvShape kvShape() const; // the model's KV layout, with the settings' storage precision
    bool freePoolMemory(const Conversation *active);
    void pushPoolStats();
    EngineSettings settings_;
    std::unique_ptr<MiniGptModel> model_;
    std::map<int, std::unique_ptr<Conversation>> conversations_;
    int nextId_ = 1;
    uint64_t useClock_ = 0;
    std::atomic<bool> cancel_{false};
    std::unique_ptr<Metrics> metrics_;
    std::unique_ptr<MemoryPool> pool_;
    std::unique_ptr<PrefixBlocks> prefixBlocks_; // full KV blocks shared between conversations
    std::unique_ptr<FeatureCache> features_;
    // Shared with metricsSnapshot(), which the UI calls from its own thread.
    std::shared_ptr<RemoteFeatureTier> remote_;
    std::string remoteError_; // a URL that did not parse
    mutable std::mutex remoteMutex_;
    std::shared_ptr<RemoteFeatureTier> remoteTier() const;
    void setupRemote();
    std::unique_ptr<ResponseCache> responses_;
    // Conversation state on disk (core/runtime/saved_state.cpp).
    std::unique_ptr<ConversationKvStore> kvStore_;
    void setupKvStore();
    void saveState(const Conversation &c);
    void restoreSavedState(Conversation &c);
};

// The dtype a model loads in for `requested` (EngineSettings::dtype) on `device`: "auto" is
// bfloat16 on a CPU that computes it natively (AVX512-BF16: decode reads half the bytes of
// float32 and oneDNN's bf16 prefill runs 3x faster), else the folder's (""); anything else as is.
std::string resolveDtype(const std::string &requested, const std::string &device);

// Makes a model folder from the original MiniGPT-4 / MiniGPT-v2 downloads (File > Import
// model..., `minigpt-cli import`). Blocking: call it off the UI thread. `cancel` may be set
// from another thread. Throws mgd::Error naming the file and key at fault; a failed or
// cancelled import leaves no folder behind.
ImportSummary importOriginalModel(const ImportOptions &options,
                                  const std::function<void(const ImportProgress &)> &progress = {},
                                  const std::atomic<bool> *cancel = nullptr);

} // namespace mgd
