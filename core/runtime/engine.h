#pragma once
// The one facade every caller uses (CLI now, the UI's worker later). Not thread-safe except
// cancel(), which any thread may call while submitTurn() runs on another; threading lives
// with the caller (ui/).
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/image/image_decode.h"
#include "core/runtime/sampling.h"

namespace mgd {

class MiniGptModel;
struct Conversation;

struct EngineSettings {
    int threads = 0;        // 0: one per core (Debian's libtorch defaults to 1)
    bool kvReuse = true;    // off: re-prefill the whole conversation every turn (the original)
    ImageLimits imageLimits;
};

struct ImageInput {
    std::string path;                      // a file, or
    std::vector<uint8_t> bytes;            // encoded bytes (clipboard, drop), or
    std::shared_ptr<const RgbImage> rgb;   // already-decoded pixels
    std::string label;                     // for messages
    static ImageInput fromFile(const std::string &p) { return ImageInput{p, {}, nullptr, p}; }
};

struct TurnRequest {
    std::string text;
    std::vector<ImageInput> images;
    SamplingParams sampling;
};

struct TurnStats {
    int imagesEncoded = 0;
    double encodeMs = 0;
    int64_t promptTokens = 0;
    int64_t reusedTokens = 0;
    int64_t prefillTokens = 0;
    double prefillMs = 0;
    double ttftMs = 0;           // request start -> first token available
    int generatedTokens = 0;
    double decodeMs = 0;
    double decodeMsPerToken = 0;
    double totalMs = 0;
    int droppedTurns = 0;        // oldest turns dropped to fit the context
    int contextImages = 0;       // images in the prompt
    bool cancelled = false;
    std::string stopReason;      // eos | stop-string | max-tokens | context-full | cancelled
};

struct TurnResult {
    std::string answer;              // post-processed as the original demo does
    std::vector<int32_t> tokens;     // everything the model generated
    TurnStats stats;
};

struct ModelSummary {
    std::string dir, name, architecture, promptTemplate, dtype;
    int imageSize = 0, imageTokens = 0, contextLength = 0, vocabSize = 0;
    int64_t parameters = 0;
};

struct MessageView {
    bool fromUser = true;
    std::string text;
    std::vector<std::string> imageHashes;
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

    int newConversation();
    void deleteConversation(int id);
    void resetConversation(int id);
    std::vector<MessageView> messages(int id) const;

    // Runs one turn; throws mgd::Error for bad input (the conversation is left unchanged).
    TurnResult submitTurn(int conversation, const TurnRequest &req, const TokenCallback &onToken = {});
    // Drops the last answer and answers the same question again.
    TurnResult regenerate(int conversation, const SamplingParams &sampling, const TokenCallback &onToken = {});
    // Replaces the last question (and its answer) with `req`.
    TurnResult editLast(int conversation, const TurnRequest &req, const TokenCallback &onToken = {});

    void cancel() { cancel_.store(true); }

private:
    Conversation &conv(int id) const;
    TurnResult generate(Conversation &c, const SamplingParams &sp, const TokenCallback &onToken,
                        TurnStats stats, double t0);
    EngineSettings settings_;
    std::unique_ptr<MiniGptModel> model_;
    std::map<int, std::unique_ptr<Conversation>> conversations_;
    int nextId_ = 1;
    std::atomic<bool> cancel_{false};
};

} // namespace mgd
