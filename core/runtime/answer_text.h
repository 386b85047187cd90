#pragma once
// Turns generated tokens into streamed text: holds back what could still become a stop
// string and never splits a UTF-8 sequence; applies the original demo's post-processing.
#include <cstdint>
#include <string>
#include <vector>

namespace mgd {

class Tokenizer;

class AnswerStream {
public:
    AnswerStream(const Tokenizer &tok, std::vector<std::string> stops);
    // Adds a token; returns the newly releasable text. stopped() tells a stop string was hit.
    std::string push(int32_t id);
    // Everything still held back (call at the end unless stopped).
    std::string flush();
    bool stopped() const { return stopPos_ != std::string::npos; }
    // Generated tokens whose text lies before the stop string.
    std::vector<int32_t> idsBeforeStop() const;
    const std::string &text() const { return text_; }

private:
    const Tokenizer &tok_;
    std::vector<std::string> stops_;
    std::vector<int32_t> ids_;
    std::string text_;
    size_t emitted_ = 0;
    size_t stopPos_ = std::string::npos;
};

// Chat.answer: split('###')[0], then split('Assistant:')[-1], then strip().
std::string postProcessAnswer(const std::string &text);

} // namespace mgd
