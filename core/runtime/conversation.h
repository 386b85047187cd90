#pragma once
// The engine's own record of a conversation (engine.cpp and the files that implement parts of
// Engine; callers see only its id).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/runtime/prompt_template.h"
#include "core/runtime/session.h"

namespace mgd {

// An image of a conversation: its preprocessed pixels' identity and, without a feature
// cache, its visual tokens kept for the conversation (as the original demo's img_list).
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
    uint64_t lastUsed = 0;
    bool busy = false;
    std::string tag; // the app's id for it: its KV is saved under it (empty: not saved)
};

} // namespace mgd
