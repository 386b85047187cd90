#include "core/metrics/turn_stats.h"

#include <limits>
#include <nlohmann/json.hpp>
#include <type_traits>

namespace mgd {

namespace {

constexpr std::pair<StopReason, const char *> kNames[] = {
    {StopReason::Eos, "eos"},
    {StopReason::StopString, "stop-string"},
    {StopReason::MaxTokens, "max-tokens"},
    {StopReason::ContextFull, "context-full"},
    {StopReason::Cancelled, "cancelled"},
};

// Every field once: name, member. Used both ways so the codec cannot drift.
template <class S, class F> void forEachField(S &s, F &&f) {
    f("imagesEncoded", s.imagesEncoded);
    f("encodeMs", s.encodeMs);
    f("promptTokens", s.promptTokens);
    f("reusedTokens", s.reusedTokens);
    f("prefillTokens", s.prefillTokens);
    f("prefillMs", s.prefillMs);
    f("ttftMs", s.ttftMs);
    f("generatedTokens", s.generatedTokens);
    f("decodeMs", s.decodeMs);
    f("decodeMsPerToken", s.decodeMsPerToken);
    f("totalMs", s.totalMs);
    f("droppedTurns", s.droppedTurns);
    f("contextImages", s.contextImages);
    f("cancelled", s.cancelled);
    f("responseCacheHit", s.responseCacheHit);
    f("prefixFromOtherConversation", s.prefixFromOtherConversation);
}

} // namespace

const char *stopReasonName(StopReason r) {
    for (const auto &[reason, name] : kNames)
        if (reason == r) return name;
    return "";
}

std::optional<StopReason> stopReasonFromName(std::string_view name) {
    for (const auto &[reason, n] : kNames)
        if (name == n) return reason;
    if (name.empty()) return StopReason::None;
    return std::nullopt;
}

std::string turnStatsToJson(const TurnStats &s) {
    nlohmann::json j = nlohmann::json::object();
    forEachField(s, [&](const char *name, const auto &v) { j[name] = v; });
    j["stopReason"] = stopReasonName(s.stopReason);
    return j.dump();
}

std::optional<TurnStats> turnStatsFromJson(std::string_view text) {
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return std::nullopt;
    TurnStats s;
    forEachField(s, [&](const char *name, auto &v) {
        using T = std::decay_t<decltype(v)>;
        const auto it = j.find(name);
        if (it == j.end()) return;
        if constexpr (std::is_same_v<T, bool>) {
            if (it->is_boolean()) v = it->template get<bool>();
        } else if constexpr (std::is_integral_v<T>) {
            if (it->is_number_integer() && it->template get<int64_t>() >= std::numeric_limits<T>::min() &&
                it->template get<int64_t>() <= std::numeric_limits<T>::max())
                v = static_cast<T>(it->template get<int64_t>());
        } else {
            if (it->is_number()) v = it->template get<double>();
        }
    });
    if (const auto it = j.find("stopReason"); it != j.end() && it->is_string())
        s.stopReason = stopReasonFromName(it->get<std::string>()).value_or(StopReason::None);
    return s;
}

} // namespace mgd
