#pragma once
// SentencePiece-BPE tokenizer (LLaMA style) reading tokenizer.model itself: Debian's
// libsentencepiece cannot share a process with libtorch (design.md, "Facts measured").
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mgd {

class Tokenizer {
public:
    // Parses the ModelProto; throws mgd::Error naming the file on any problem.
    static Tokenizer fromFile(const std::string &path);
    static Tokenizer fromBytes(std::string_view bytes, const std::string &label);

    // Exactly sp.encode(text) (out_type=int) with the model's own normalizer flags.
    std::vector<int32_t> encodePlain(std::string_view text) const;
    // transformers-4.30 slow LlamaTokenizer: split on the literals "<s>", "</s>", "<unk>"
    // (they become bos/eos/unk ids), sp.encode each other chunk (each gets its own dummy
    // prefix), bos first when addBos.
    // dummyPrefix=false: the first chunk continues earlier text (no leading U+2581).
    std::vector<int32_t> encode(std::string_view text, bool addBos, bool dummyPrefix = true) const;
    // Exactly sp.decode(ids): control tokens vanish, byte pieces become raw bytes, U+2581
    // becomes a space and the leading dummy-prefix space is removed. An id outside the
    // vocabulary throws mgd::Error (sentencepiece refuses it too).
    std::string decode(const std::vector<int32_t> &ids) const;
    // Raw bytes a single token contributes in the middle of a text (for streaming; may be an
    // incomplete UTF-8 sequence for byte-fallback tokens; empty for control tokens; the unk
    // surface " U+2047 " for unk).
    std::string tokenBytes(int32_t id) const;

    const std::string &piece(int32_t id) const;
    int32_t pieceToId(std::string_view piece) const; // -1 when absent
    int32_t vocabSize() const { return static_cast<int32_t>(pieces_.size()); }
    int32_t bosId() const { return bos_; } // -1 when the model has no such control piece
    int32_t eosId() const { return eos_; }
    int32_t unkId() const { return unk_; }
    bool isControl(int32_t id) const;

private:
    enum class Kind : uint8_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };
    // Lets the piece maps be searched with a string_view, without building a std::string.
    struct StringHash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    using PieceMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

    std::string normalize(std::string_view text, bool dummyPrefix = true) const;
    std::pair<std::string_view, size_t> normalizePrefix(std::string_view text) const;
    std::pair<size_t, std::string_view> charsMapMatch(std::string_view text) const;
    size_t userDefinedMatch(std::string_view text) const;
    void encodeNormalized(std::string_view normalized, std::vector<int32_t> &ids) const;
    int32_t spmPieceToId(std::string_view piece) const; // like pieceToId, but unk when absent
    int32_t checkedId(int32_t id, const char *what) const;

    std::vector<std::string> pieces_;
    std::vector<float> scores_;
    std::vector<Kind> kinds_;
    // sentencepiece keeps two maps: NORMAL/USER_DEFINED/UNUSED pieces (the only merge targets)
    // and the reserved ones (UNKNOWN/CONTROL/BYTE), which win in piece-to-id lookups.
    PieceMap normalIds_;
    PieceMap reservedIds_;
    std::vector<std::string> userDefined_;
    int32_t byteIds_[256];
    int32_t bos_ = 1, eos_ = 2, unk_ = 0;
    bool addDummyPrefix_ = true;
    bool removeExtraWhitespaces_ = false;
    bool escapeWhitespaces_ = true;
    bool byteFallback_ = true;
    std::string unkSurface_;
    // precompiled_charsmap of a non-identity normalizer: darts-clone double-array units and the
    // NUL-separated replacement strings they point into.
    std::vector<uint32_t> charsTrie_;
    std::string charsReplacements_;
};

} // namespace mgd
