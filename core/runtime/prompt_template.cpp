#include "core/runtime/prompt_template.h"

#include "core/model/tokenizer.h"
#include "core/util/error.h"

namespace mgd {

namespace {

struct Roles {
    std::string user, assistant, sep;
};

Roles rolesFor(PromptTemplate t) {
    switch (t) {
    case PromptTemplate::Vicuna0: return {"Human: ", "Assistant: ", "###"};
    case PromptTemplate::Llama2: return {"<s>[INST] ", " [/INST] ", ""};
    case PromptTemplate::MiniGPTv2: return {"<s>[INST] ", " [/INST]", ""};
    }
    return {};
}

// Chat.upload_img + Chat.ask: "<Img><ImageHere></Img>" per image, then " " + text.
std::string userText(const ChatMessage &m, std::vector<int> *imagesOut) {
    std::string s;
    for (int idx : m.images) {
        s += "<Img><ImageHere></Img>";
        if (imagesOut) imagesOut->push_back(idx);
    }
    if (!m.text.empty()) s += (s.empty() ? "" : " ") + m.text;
    return s;
}

} // namespace

std::vector<PromptChunk> renderPrompt(const ModelConfig &config, const std::vector<ChatMessage> &messages) {
    if (messages.empty() || !messages.back().fromUser)
        throw Error("prompt: the conversation must end with a user message");
    const Roles r = rolesFor(config.promptTemplate);
    std::vector<PromptChunk> chunks;
    std::string text = config.systemPrompt + r.sep;
    bool continuation = false;
    auto flush = [&] {
        PromptChunk c;
        c.text = text;
        c.continuation = continuation;
        chunks.push_back(std::move(c));
        text.clear();
        continuation = false;
    };
    for (const ChatMessage &m : messages) {
        if (m.fromUser) {
            std::vector<int> imgs;
            std::string body = r.user + userText(m, &imgs) + r.sep;
            // Split at the placeholders, in order.
            size_t pos = 0;
            for (int idx : imgs) {
                const size_t at = body.find("<ImageHere>", pos);
                text += body.substr(pos, at - pos);
                flush();
                PromptChunk img;
                img.kind = PromptChunk::Kind::Image;
                img.image = idx;
                chunks.push_back(img);
                pos = at + std::string("<ImageHere>").size();
            }
            text += body.substr(pos);
        } else if (!m.answerIds.empty()) {
            text += r.assistant;
            flush();
            PromptChunk ids;
            ids.kind = PromptChunk::Kind::Ids;
            ids.ids = m.answerIds;
            chunks.push_back(ids);
            continuation = true;
            text += r.sep;
        } else {
            text += r.assistant + m.text + r.sep;
        }
    }
    text += r.assistant;
    flush();
    return chunks;
}

std::string promptText(const ModelConfig &config, const std::vector<ChatMessage> &messages) {
    const Roles r = rolesFor(config.promptTemplate);
    std::string s = config.systemPrompt + r.sep;
    for (const ChatMessage &m : messages)
        s += m.fromUser ? r.user + userText(m, nullptr) + r.sep : r.assistant + m.text + r.sep;
    return s + r.assistant;
}

void tokenizeChunks(const Tokenizer &tok, std::vector<PromptChunk> &chunks) {
    bool first = true;
    for (PromptChunk &c : chunks) {
        if (c.kind != PromptChunk::Kind::Text) continue;
        c.ids = tok.encode(c.text, first, !c.continuation);
        first = false;
    }
}

} // namespace mgd
