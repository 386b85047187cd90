#pragma once
// What one turn cost and why it stopped: returned with every answer, charted by the panel,
// saved with each answer of a conversation (JSON below, the one codec everyone uses).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mgd {

enum class StopReason { None, Eos, StopString, MaxTokens, ContextFull, Cancelled };

// "eos" | "stop-string" | "max-tokens" | "context-full" | "cancelled" ("" for None).
const char *stopReasonName(StopReason r);
std::optional<StopReason> stopReasonFromName(std::string_view name);

struct TurnStats {
    int imagesEncoded = 0;
    double encodeMs = 0;
    int64_t promptTokens = 0;
    int64_t reusedTokens = 0;
    int64_t prefillTokens = 0;
    double prefillMs = 0;
    double ttftMs = 0; // request start -> first token available
    int generatedTokens = 0;
    double decodeMs = 0;
    double decodeMsPerToken = 0;
    double totalMs = 0;
    int droppedTurns = 0;  // oldest turns dropped to fit the context
    int contextImages = 0; // images in the prompt
    bool cancelled = false;
    bool responseCacheHit = false;            // answered from the response cache
    bool prefixFromOtherConversation = false; // started from another conversation's KV
    StopReason stopReason = StopReason::None;

    bool operator==(const TurnStats &) const = default;
};

// A JSON object with every field (camelCase names, stopReason as its name).
std::string turnStatsToJson(const TurnStats &s);
// Reads what turnStatsToJson wrote; absent or mistyped fields keep their defaults (files
// from older versions, hand edits), so a saved conversation always opens. Not a JSON
// object -> nullopt.
std::optional<TurnStats> turnStatsFromJson(std::string_view json);

} // namespace mgd
