#include "core/runtime/answer_text.h"

#include "core/model/tokenizer.h"

namespace mgd {

namespace {

// Length of the longest prefix of s that does not end inside a UTF-8 sequence.
size_t completeUtf8(const std::string &s, size_t end) {
    size_t i = end, back = 0;
    while (i > 0 && back < 4) {
        const unsigned char c = static_cast<unsigned char>(s[i - 1]);
        if ((c & 0xC0) != 0x80) {
            const size_t need = c < 0x80         ? 1
                                : (c >> 5) == 6  ? 2
                                : (c >> 4) == 14 ? 3
                                : (c >> 3) == 30 ? 4
                                                 : 1;
            return back + 1 >= need ? end : i - 1;
        }
        --i;
        ++back;
    }
    return end;
}

} // namespace

AnswerStream::AnswerStream(const Tokenizer &tok, std::vector<std::string> stops)
    : tok_(tok), stops_(std::move(stops)) {}

std::string AnswerStream::push(int32_t id) {
    if (stopped()) return {};
    ids_.push_back(id);
    text_ = tok_.decode(ids_);
    size_t safe = text_.size();
    for (const std::string &s : stops_) {
        if (s.empty()) continue;
        const size_t at = text_.find(s);
        if (at != std::string::npos && at < stopPos_) stopPos_ = at;
        // Hold back a tail that is a proper prefix of a stop string.
        for (size_t k = std::min(s.size() - 1, text_.size()); k > 0; --k)
            if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
                safe = std::min(safe, text_.size() - k);
                break;
            }
    }
    if (stopped())
        safe = stopPos_;
    else
        safe = completeUtf8(text_, safe);
    if (safe <= emitted_) return {};
    std::string out = text_.substr(emitted_, safe - emitted_);
    emitted_ = safe;
    return out;
}

std::string AnswerStream::flush() {
    const size_t end = stopped() ? stopPos_ : text_.size();
    if (end <= emitted_) return {};
    std::string out = text_.substr(emitted_, end - emitted_);
    emitted_ = end;
    return out;
}

std::vector<int32_t> AnswerStream::idsBeforeStop() const {
    if (!stopped()) return ids_;
    std::vector<int32_t> keep = ids_;
    while (!keep.empty() && tok_.decode(keep).size() > stopPos_) keep.pop_back();
    return keep;
}

std::string postProcessAnswer(const std::string &text) {
    std::string s = text.substr(0, text.find("###"));
    const size_t a = s.rfind("Assistant:");
    if (a != std::string::npos) s = s.substr(a + std::string("Assistant:").size());
    const char *ws = " \t\n\r\f\v";
    const size_t b = s.find_first_not_of(ws);
    if (b == std::string::npos) return {};
    return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

} // namespace mgd
