#pragma once
// Renders a conversation the way the original Conversation.get_prompt() does (SINGLE style),
// split into chunks at images and at answers we keep as generated token ids.
#include <cstdint>
#include <string>
#include <vector>

#include "core/model/model_config.h"

namespace mgd {

class Tokenizer;

struct ChatMessage {
    bool fromUser = true;
    std::string text;
    std::vector<int> images;        // user: indices into the conversation's images
    std::vector<int32_t> answerIds; // assistant: the tokens the model generated (may be empty)
};

struct PromptChunk {
    enum class Kind { Text, Ids, Image } kind = Kind::Text;
    std::string text;          // Text
    bool continuation = false; // Text right after generated ids: no dummy prefix
    std::vector<int32_t> ids;  // Ids, and Text after tokenize()
    int image = -1;            // Image
};

// Vicuna v0:  system###Human: <Img><ImageHere></Img> q###Assistant: a###Human: q2###Assistant:
// LLaMA-2:    system<s>[INST] <Img><ImageHere></Img> q [/INST] a<s>[INST] q2 [/INST]
// MiniGPT-v2: <s>[INST] <Img><ImageHere></Img> q [/INST]a<s>[INST] q2 [/INST]
// The last message must be the user's; the assistant role prefix is appended.
std::vector<PromptChunk> renderPrompt(const ModelConfig &config, const std::vector<ChatMessage> &messages);

// The full prompt text with <ImageHere> placeholders (answers as text), as the original.
std::string promptText(const ModelConfig &config, const std::vector<ChatMessage> &messages);

// Tokenizes Text chunks in place as the original get_context_emb does: each segment between
// images separately, bos only on the first.
void tokenizeChunks(const Tokenizer &tok, std::vector<PromptChunk> &chunks);

} // namespace mgd
