#include "core/model/tokenizer.h"

#include "core/util/error.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <queue>

namespace mgd {
namespace {

constexpr std::string_view kSpaceSymbol = "\xe2\x96\x81";         // U+2581, what ' ' becomes
constexpr std::string_view kReplacementChar = "\xef\xbf\xbd";     // U+FFFD
constexpr std::string_view kDefaultUnkSurface = " \xe2\x81\x87 "; // " U+2047 "
constexpr int kMaxGroupDepth = 100;                               // protobuf's own recursion limit

// sentencepiece_model.proto: SentencePiece.Type and TrainerSpec.ModelType values.
constexpr uint64_t kModelTypeBpe = 2;

// ---------------------------------------------------------------------------------------------
// Protobuf wire format, just enough for ModelProto. Every read is bounds-checked.

enum WireType : uint32_t {
    kVarint = 0,
    kFixed64 = 1,
    kLengthDelimited = 2,
    kStartGroup = 3,
    kEndGroup = 4,
    kFixed32 = 5
};

struct Tag {
    uint32_t field;
    uint32_t wire;
};

class WireReader {
public:
    WireReader(std::string_view data, size_t base, const std::string &label, std::string message)
        : data_(data), base_(base), label_(label), message_(std::move(message)) {}

    bool atEnd() const { return pos_ >= data_.size(); }

    [[noreturn]] void fail(const std::string &what) const {
        throw Error("tokenizer model " + label_ + ": " + what + " in " + message_ + " at byte " +
                    std::to_string(base_ + pos_));
    }

    uint64_t varint() {
        uint64_t value = 0;
        for (int i = 0; i < 10; ++i) {
            if (pos_ >= data_.size()) fail("truncated varint");
            const auto byte = static_cast<uint8_t>(data_[pos_++]);
            value |= static_cast<uint64_t>(byte & 0x7f) << (7 * i);
            if ((byte & 0x80) == 0) return value;
        }
        fail("varint longer than 10 bytes");
    }

    Tag tag() {
        const uint64_t key = varint();
        const uint64_t field = key >> 3;
        if (field == 0 || field > 0x1fffffff) fail("invalid field number " + std::to_string(field));
        return {static_cast<uint32_t>(field), static_cast<uint32_t>(key & 7)};
    }

    void expect(Tag t, uint32_t wire, const char *name) const {
        if (t.wire != wire)
            fail("bad wire type " + std::to_string(t.wire) + " for field " + std::to_string(t.field) + " (" +
                 name + ", expected " + std::to_string(wire) + ")");
    }

    std::string_view lengthDelimited() {
        const uint64_t length = varint();
        if (length > data_.size() - pos_)
            fail("field length " + std::to_string(length) + " runs past the end of the data (" +
                 std::to_string(data_.size() - pos_) + " bytes left; truncated file?)");
        const std::string_view out = data_.substr(pos_, length);
        pos_ += length;
        return out;
    }

    // The embedded message of a length-delimited field, read by its own reader.
    WireReader message(std::string name) {
        const std::string_view body = lengthDelimited();
        return WireReader(body, base_ + pos_ - body.size(), label_, std::move(name));
    }

    uint32_t fixed32() {
        need(4);
        uint32_t v = 0;
        for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(data_[pos_ + i]);
        pos_ += 4;
        return v;
    }

    bool boolean() { return varint() != 0; }
    // int32 fields are sign-extended to 10-byte varints; protobuf keeps the low 32 bits.
    int32_t int32() { return static_cast<int32_t>(static_cast<uint32_t>(varint())); }

    // Skips the value of an unknown field of any wire type, groups included.
    void skip(Tag t, int depth = 0) {
        switch (t.wire) {
        case kVarint: varint(); return;
        case kFixed64:
            need(8);
            pos_ += 8;
            return;
        case kLengthDelimited: lengthDelimited(); return;
        case kFixed32:
            need(4);
            pos_ += 4;
            return;
        case kStartGroup:
            if (depth >= kMaxGroupDepth) fail("groups nested too deeply");
            for (;;) {
                if (atEnd()) fail("unterminated group (field " + std::to_string(t.field) + ")");
                const Tag inner = tag();
                if (inner.wire == kEndGroup) {
                    if (inner.field != t.field)
                        fail("end-group for field " + std::to_string(inner.field) + " closes group " +
                             std::to_string(t.field));
                    return;
                }
                skip(inner, depth + 1);
            }
        case kEndGroup: fail("unexpected end-group (field " + std::to_string(t.field) + ")");
        default: fail("bad wire type " + std::to_string(t.wire) + " (field " + std::to_string(t.field) + ")");
        }
    }

private:
    void need(size_t n) const {
        if (data_.size() - pos_ < n) fail("truncated fixed-width field");
    }

    std::string_view data_;
    size_t pos_ = 0;
    size_t base_;
    const std::string &label_;
    std::string message_;
};

struct RawPiece {
    std::string piece;
    float score = 0.0f;
    uint64_t type = 1; // NORMAL
};

struct RawNormalizer {
    std::string charsmap;
    bool addDummyPrefix = true; // proto2 defaults of NormalizerSpec
    bool removeExtraWhitespaces = true;
    bool escapeWhitespaces = true;
};

struct RawModel {
    std::vector<RawPiece> pieces;
    uint64_t modelType = 1; // UNIGRAM is the proto default
    bool byteFallback = false;
    bool treatWhitespaceAsSuffix = false;
    std::optional<std::string> unkSurface;
    std::string bosPiece = "<s>", eosPiece = "</s>";
    RawNormalizer normalizer;
    RawNormalizer denormalizer;
};

RawPiece parsePiece(WireReader r) {
    RawPiece p;
    while (!r.atEnd()) {
        const Tag t = r.tag();
        switch (t.field) {
        case 1:
            r.expect(t, kLengthDelimited, "piece");
            p.piece = std::string(r.lengthDelimited());
            break;
        case 2:
            r.expect(t, kFixed32, "score");
            p.score = std::bit_cast<float>(r.fixed32());
            break;
        case 3:
            r.expect(t, kVarint, "type");
            p.type = r.varint();
            break;
        default: r.skip(t);
        }
    }
    return p;
}

void parseTrainerSpec(WireReader r, RawModel &m) {
    while (!r.atEnd()) {
        const Tag t = r.tag();
        switch (t.field) {
        case 3:
            r.expect(t, kVarint, "model_type");
            m.modelType = r.varint();
            break;
        case 24:
            r.expect(t, kVarint, "treat_whitespace_as_suffix");
            m.treatWhitespaceAsSuffix = r.boolean();
            break;
        case 35:
            r.expect(t, kVarint, "byte_fallback");
            m.byteFallback = r.boolean();
            break;
        case 40: // unk_id .. pad_id: the ids really used come from the piece types and names
        case 41:
        case 42:
        case 43:
            r.expect(t, kVarint, "unk/bos/eos/pad_id");
            r.int32();
            break;
        case 44:
            r.expect(t, kLengthDelimited, "unk_surface");
            m.unkSurface = std::string(r.lengthDelimited());
            break;
        case 46:
            r.expect(t, kLengthDelimited, "bos_piece");
            m.bosPiece = std::string(r.lengthDelimited());
            break;
        case 47:
            r.expect(t, kLengthDelimited, "eos_piece");
            m.eosPiece = std::string(r.lengthDelimited());
            break;
        default: r.skip(t);
        }
    }
}

void parseNormalizerSpec(WireReader r, RawNormalizer &n) {
    while (!r.atEnd()) {
        const Tag t = r.tag();
        switch (t.field) {
        case 2:
            r.expect(t, kLengthDelimited, "precompiled_charsmap");
            n.charsmap = std::string(r.lengthDelimited());
            break;
        case 3:
            r.expect(t, kVarint, "add_dummy_prefix");
            n.addDummyPrefix = r.boolean();
            break;
        case 4:
            r.expect(t, kVarint, "remove_extra_whitespaces");
            n.removeExtraWhitespaces = r.boolean();
            break;
        case 5:
            r.expect(t, kVarint, "escape_whitespaces");
            n.escapeWhitespaces = r.boolean();
            break;
        default: r.skip(t);
        }
    }
}

RawModel parseModel(std::string_view bytes, const std::string &label) {
    RawModel m;
    WireReader r(bytes, 0, label, "ModelProto");
    while (!r.atEnd()) {
        const Tag t = r.tag();
        switch (t.field) {
        case 1:
            r.expect(t, kLengthDelimited, "pieces");
            m.pieces.push_back(parsePiece(r.message("SentencePiece #" + std::to_string(m.pieces.size()))));
            break;
        case 2:
            r.expect(t, kLengthDelimited, "trainer_spec");
            parseTrainerSpec(r.message("TrainerSpec"), m);
            break;
        case 3:
            r.expect(t, kLengthDelimited, "normalizer_spec");
            parseNormalizerSpec(r.message("NormalizerSpec"), m.normalizer);
            break;
        case 5:
            r.expect(t, kLengthDelimited, "denormalizer_spec");
            parseNormalizerSpec(r.message("denormalizer NormalizerSpec"), m.denormalizer);
            break;
        default: // 4 = self_test_data among others
            r.skip(t);
        }
    }
    return m;
}

// ---------------------------------------------------------------------------------------------
// UTF-8 as sentencepiece's util.cc sees it.

// Length of the character starting with this byte, from the lead byte alone (OneCharLen).
size_t oneCharLen(char c) {
    static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return kLen[static_cast<uint8_t>(c) >> 4];
}

bool isTrail(char c) {
    return (static_cast<uint8_t>(c) & 0xc0) == 0x80;
}

// IsValidDecodeUTF8: is `s` led by one well-formed character (no overlong form, surrogate or
// code point above U+10FFFF)? `length` gets its size, or 1 when it is malformed.
bool validUtf8Prefix(std::string_view s, size_t &length) {
    length = 1;
    const auto b = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
    const auto valid = [](uint32_t cp) { return cp < 0xd800 || (cp >= 0xe000 && cp <= 0x10ffff); };
    if (b(0) < 0x80) return true;
    if (s.size() >= 2 && (b(0) & 0xe0) == 0xc0) {
        const uint32_t cp = ((b(0) & 0x1fu) << 6) | (b(1) & 0x3fu);
        if (isTrail(s[1]) && cp >= 0x80 && valid(cp)) {
            length = 2;
            return true;
        }
    } else if (s.size() >= 3 && (b(0) & 0xf0) == 0xe0) {
        const uint32_t cp = ((b(0) & 0x0fu) << 12) | ((b(1) & 0x3fu) << 6) | (b(2) & 0x3fu);
        if (isTrail(s[1]) && isTrail(s[2]) && cp >= 0x800 && valid(cp)) {
            length = 3;
            return true;
        }
    } else if (s.size() >= 4 && (b(0) & 0xf8) == 0xf0) {
        const uint32_t cp =
            ((b(0) & 0x07u) << 18) | ((b(1) & 0x3fu) << 12) | ((b(2) & 0x3fu) << 6) | (b(3) & 0x3fu);
        if (isTrail(s[1]) && isTrail(s[2]) && isTrail(s[3]) && cp >= 0x10000 && valid(cp)) {
            length = 4;
            return true;
        }
    }
    return false;
}

// "<0x41>" -> 0x41; -1 for anything else (upper-case hex only, as ByteToPiece writes it).
int pieceToByte(std::string_view piece) {
    if (piece.size() != 6 || !piece.starts_with("<0x") || piece[5] != '>') return -1;
    int value = 0;
    for (char c : piece.substr(3, 2)) {
        if (c >= '0' && c <= '9')
            value = value * 16 + (c - '0');
        else if (c >= 'A' && c <= 'F')
            value = value * 16 + (c - 'A' + 10);
        else
            return -1;
    }
    return value;
}

void appendUnescaped(std::string &out, std::string_view piece) {
    for (size_t pos = 0;;) {
        const size_t hit = piece.find(kSpaceSymbol, pos);
        out.append(piece.substr(pos, hit - pos));
        if (hit == std::string_view::npos) return;
        out += ' ';
        pos = hit + kSpaceSymbol.size();
    }
}

[[noreturn]] void modelError(const std::string &label, const std::string &what) {
    throw Error("tokenizer model " + label + ": " + what);
}

} // namespace

// -------------------------------------------------------------------------------------------------
// Loading

Tokenizer Tokenizer::fromFile(const std::string &path) {
    // Real tokenizer.model files are well under 10 MB; a larger one is some other file.
    constexpr uintmax_t kMaxModelBytes = 256u << 20;
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
        throw Error("tokenizer model " + path + ": not a readable file");
    if (const uintmax_t size = std::filesystem::file_size(path, ec); ec || size > kMaxModelBytes)
        throw Error("tokenizer model " + path + ": " +
                    (ec ? ec.message() : std::to_string(size) + " bytes is too large"));
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error("tokenizer model " + path + ": cannot open");
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw Error("tokenizer model " + path + ": read error");
    return fromBytes(bytes, path);
}

Tokenizer Tokenizer::fromBytes(std::string_view bytes, const std::string &label) {
    RawModel m = parseModel(bytes, label);

    if (m.pieces.empty()) modelError(label, "no pieces (not a sentencepiece model?)");
    if (m.modelType != kModelTypeBpe)
        modelError(label, "model_type " + std::to_string(m.modelType) +
                              " is not BPE (2); only BPE models are supported");
    if (m.treatWhitespaceAsSuffix) modelError(label, "treat_whitespace_as_suffix is not supported");
    if (!m.denormalizer.charsmap.empty()) modelError(label, "a denormalizer is not supported");
    if (m.pieces.size() > 0x7fffffff) modelError(label, "too many pieces");

    Tokenizer tok;
    std::fill(std::begin(tok.byteIds_), std::end(tok.byteIds_), -1);
    tok.unk_ = -1;
    tok.byteFallback_ = m.byteFallback;
    tok.addDummyPrefix_ = m.normalizer.addDummyPrefix;
    tok.removeExtraWhitespaces_ = m.normalizer.removeExtraWhitespaces;
    tok.escapeWhitespaces_ = m.normalizer.escapeWhitespaces;
    tok.unkSurface_ = m.unkSurface ? *m.unkSurface : std::string(kDefaultUnkSurface);

    // The checks of sentencepiece's ModelInterface::InitializePieces, same order.
    const auto n = static_cast<int32_t>(m.pieces.size());
    for (int32_t i = 0; i < n; ++i) {
        RawPiece &p = m.pieces[i];
        const std::string where = "piece #" + std::to_string(i);
        if (p.piece.empty()) modelError(label, where + " is empty");
        if (p.piece.find('\0') != std::string::npos) modelError(label, where + " contains a NUL character");
        if (p.type < 1 || p.type > 6)
            modelError(label, where + " '" + p.piece + "' has unknown type " + std::to_string(p.type));
        if (std::isnan(p.score)) modelError(label, where + " '" + p.piece + "' has a NaN score");
        const auto kind = static_cast<Kind>(p.type);
        const bool normal = kind == Kind::Normal || kind == Kind::UserDefined || kind == Kind::Unused;
        if (!(normal ? tok.normalIds_ : tok.reservedIds_).emplace(p.piece, i).second)
            modelError(label, where + " '" + p.piece + "' is already defined");
        if (kind == Kind::UserDefined) tok.userDefined_.push_back(p.piece);
        if (kind == Kind::Unknown) {
            if (tok.unk_ >= 0) modelError(label, where + " '" + p.piece + "': unk is already defined");
            tok.unk_ = i;
        }
        if (kind == Kind::Byte) {
            if (!m.byteFallback)
                modelError(label, "byte " + where + " '" + p.piece + "' although byte_fallback is false");
            const int byte = pieceToByte(p.piece);
            if (byte < 0) modelError(label, "byte " + where + " '" + p.piece + "' is invalid");
            tok.byteIds_[byte] = i;
        }
        tok.pieces_.push_back(std::move(p.piece));
        tok.scores_.push_back(p.score);
        tok.kinds_.push_back(kind);
    }
    if (tok.unk_ < 0) modelError(label, "no piece of type UNKNOWN (unk is not defined)");
    if (m.byteFallback &&
        std::find(std::begin(tok.byteIds_), std::end(tok.byteIds_), -1) != std::end(tok.byteIds_))
        modelError(label, "byte_fallback is set but the 256 byte pieces <0x00>..<0xFF> are not all there");

    // As SentencePieceProcessor::bos_id(): the named piece, when it is a control symbol.
    const auto controlId = [&](const std::string &name) {
        const int32_t id = tok.pieceToId(name);
        return id >= 0 && tok.kinds_[id] == Kind::Control ? id : -1;
    };
    tok.bos_ = controlId(m.bosPiece);
    tok.eos_ = controlId(m.eosPiece);

    if (!m.normalizer.charsmap.empty()) {
        // <uint32 trie size, little-endian><double-array units><replacement strings>
        const std::string &blob = m.normalizer.charsmap;
        if (blob.size() <= 4) modelError(label, "precompiled_charsmap is broken (too short)");
        uint32_t trieSize = 0;
        for (int i = 3; i >= 0; --i) trieSize = (trieSize << 8) | static_cast<uint8_t>(blob[i]);
        if (trieSize > blob.size() - 4) modelError(label, "precompiled_charsmap trie size exceeds the blob");
        tok.charsTrie_.resize(trieSize / 4);
        for (size_t u = 0; u < tok.charsTrie_.size(); ++u) {
            uint32_t v = 0;
            for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(blob[4 + 4 * u + i]);
            tok.charsTrie_[u] = v;
        }
        tok.charsReplacements_ = blob.substr(4 + trieSize);
    }
    return tok;
}

// -------------------------------------------------------------------------------------------------
// Lookups

const std::string &Tokenizer::piece(int32_t id) const {
    return pieces_[checkedId(id, "piece")];
}

int32_t Tokenizer::pieceToId(std::string_view piece) const {
    if (auto it = reservedIds_.find(piece); it != reservedIds_.end()) return it->second;
    if (auto it = normalIds_.find(piece); it != normalIds_.end()) return it->second;
    return -1;
}

int32_t Tokenizer::spmPieceToId(std::string_view piece) const {
    const int32_t id = pieceToId(piece);
    return id >= 0 ? id : unk_;
}

bool Tokenizer::isControl(int32_t id) const {
    return id >= 0 && id < vocabSize() && kinds_[id] == Kind::Control;
}

int32_t Tokenizer::checkedId(int32_t id, const char *what) const {
    if (id < 0 || id >= vocabSize())
        throw Error(std::string("tokenizer ") + what + ": invalid id " + std::to_string(id) +
                    " (vocabulary has " + std::to_string(vocabSize()) + " pieces)");
    return id;
}

// -------------------------------------------------------------------------------------------------
// Normalizer (sentencepiece's normalizer.cc)

size_t Tokenizer::userDefinedMatch(std::string_view text) const {
    size_t longest = 0;
    for (const std::string &s : userDefined_)
        if (s.size() > longest && text.starts_with(s)) longest = s.size();
    return longest;
}

// Longest prefix of `text` with a rule in the charsmap trie: {length, replacement}, or {0, ""}.
// Mirrors darts-clone's commonPrefixSearch, with every unit access bounds-checked.
std::pair<size_t, std::string_view> Tokenizer::charsMapMatch(std::string_view text) const {
    constexpr size_t kMaxResults = 32; // sentencepiece's kMaxTrieResultsSize
    const auto offset = [](uint32_t unit) -> size_t { return (unit >> 10) << ((unit & (1u << 9)) >> 6); };
    std::pair<size_t, std::string_view> best{0, {}};
    if (charsTrie_.empty()) return best;
    size_t node = offset(charsTrie_[0]);
    size_t results = 0;
    for (size_t i = 0; i < text.size() && results < kMaxResults; ++i) {
        const auto c = static_cast<uint8_t>(text[i]);
        node ^= c;
        if (node >= charsTrie_.size()) break;
        const uint32_t unit = charsTrie_[node];
        if ((unit & ((1u << 31) | 0xff)) != c) break;
        node ^= offset(unit);
        if ((unit >> 8) & 1) {
            if (node >= charsTrie_.size()) break;
            ++results;
            const size_t value = charsTrie_[node] & 0x7fffffffu;
            if (value < charsReplacements_.size()) {
                std::string_view rest(charsReplacements_);
                rest.remove_prefix(value);
                best = {i + 1, rest.substr(0, rest.find('\0'))};
            }
        }
    }
    return best;
}

// One normalization step: {replacement, bytes consumed}.
std::pair<std::string_view, size_t> Tokenizer::normalizePrefix(std::string_view text) const {
    if (const size_t n = userDefinedMatch(text))
        return {text.substr(0, n), n}; // user-defined symbols are never normalized
    if (const auto [n, replacement] = charsMapMatch(text); n > 0) return {replacement, n};
    size_t n = 0;
    if (!validUtf8Prefix(text, n)) return {kReplacementChar, 1}; // each malformed byte becomes one U+FFFD
    return {text.substr(0, n), n};
}

std::string Tokenizer::normalize(std::string_view text, bool dummyPrefix) const {
    std::string out;
    if (removeExtraWhitespaces_) {
        while (!text.empty()) {
            const auto [sp, n] = normalizePrefix(text);
            if (sp != " ") break;
            text.remove_prefix(n);
        }
    }
    if (text.empty()) return out;
    const std::string_view space = escapeWhitespaces_ ? kSpaceSymbol : " ";
    if (addDummyPrefix_ && dummyPrefix) out += space;
    bool prevSpace = removeExtraWhitespaces_;
    while (!text.empty()) {
        auto [sp, n] = normalizePrefix(text);
        while (prevSpace && sp.starts_with(' ')) sp.remove_prefix(1);
        if (!sp.empty()) {
            for (char c : sp) {
                if (c == ' ')
                    out += space;
                else
                    out += c;
            }
            prevSpace = sp.back() == ' ';
        }
        text.remove_prefix(n);
        if (!removeExtraWhitespaces_) prevSpace = false;
    }
    if (removeExtraWhitespaces_) {
        while (out.ends_with(space)) out.resize(out.size() - space.size());
    }
    return out;
}

// -------------------------------------------------------------------------------------------------
// Encoding (bpe_model.cc, then SentencePieceProcessor::PopulateSentencePieceText)

void Tokenizer::encodeNormalized(std::string_view text, std::vector<int32_t> &ids) const {
    struct Symbol {
        int prev;
        int next;
        bool freeze; // user-defined symbols are never merged
        std::string_view piece;
    };
    struct Pair {
        float score;
        int left;
        int right;
        size_t size;
    };
    // Highest score first; the leftmost pair on ties.
    const auto lower = [](const Pair &a, const Pair &b) {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
    };
    std::priority_queue<Pair, std::vector<Pair>, decltype(lower)> agenda(lower);
    std::vector<Symbol> symbols;
    // How UNUSED pieces that were merged into get split back: piece -> (left, right).
    std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> revMerge;

    while (!text.empty()) {
        size_t n = userDefinedMatch(text);
        const bool freeze = n > 0;
        if (!freeze) n = std::min(text.size(), oneCharLen(text[0]));
        const int index = static_cast<int>(symbols.size());
        symbols.push_back({index - 1, n == text.size() ? -1 : index + 1, freeze, text.substr(0, n)});
        text.remove_prefix(n);
    }

    const auto maybeAddPair = [&](int left, int right) {
        if (left < 0 || right < 0 || symbols[left].freeze || symbols[right].freeze) return;
        // Symbols are adjacent slices of the normalized text, so the pair is one slice too.
        const std::string_view merged(symbols[left].piece.data(),
                                      symbols[left].piece.size() + symbols[right].piece.size());
        const auto it = normalIds_.find(merged);
        if (it == normalIds_.end()) return;
        agenda.push({scores_[it->second], left, right, merged.size()});
        if (kinds_[it->second] == Kind::Unused)
            revMerge[merged] = {symbols[left].piece, symbols[right].piece};
    };

    for (size_t i = 1; i < symbols.size(); ++i) maybeAddPair(static_cast<int>(i) - 1, static_cast<int>(i));

    while (!agenda.empty()) {
        const Pair top = agenda.top();
        agenda.pop();
        Symbol &left = symbols[top.left];
        Symbol &right = symbols[top.right];
        // Stale: one side was merged away or grew since this pair was queued.
        if (left.piece.empty() || right.piece.empty() || left.piece.size() + right.piece.size() != top.size)
            continue;
        left.piece = std::string_view(left.piece.data(), top.size);
        left.next = right.next;
        if (right.next >= 0) symbols[right.next].prev = top.left;
        right.piece = {};
        maybeAddPair(left.prev, top.left);
        maybeAddPair(top.left, left.next);
    }

    bool prevUnk = false;
    const auto emit = [&](std::string_view w) {
        const int32_t id = spmPieceToId(w);
        const bool isUnk = kinds_[id] == Kind::Unknown;
        if (isUnk && byteFallback_) {
            for (char c : w) ids.push_back(byteIds_[static_cast<uint8_t>(c)]);
        } else if (!(isUnk && prevUnk)) { // a run of unknowns stays a single <unk>
            ids.push_back(id);
        }
        prevUnk = isUnk;
    };
    std::vector<std::string_view> stack;
    for (int i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) {
        stack.push_back(symbols[i].piece);
        while (!stack.empty()) {
            const std::string_view w = stack.back();
            stack.pop_back();
            const int32_t id = spmPieceToId(w);
            const auto it = kinds_[id] == Kind::Unused ? revMerge.find(w) : revMerge.end();
            if (it == revMerge.end()) {
                emit(w);
            } else {
                stack.push_back(it->second.second);
                stack.push_back(it->second.first);
            }
        }
    }
}

std::vector<int32_t> Tokenizer::encodePlain(std::string_view text) const {
    std::vector<int32_t> ids;
    encodeNormalized(normalize(text), ids);
    return ids;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool addBos, bool dummyPrefix) const {
    static constexpr std::string_view kSpecials[] = {"<s>", "</s>", "<unk>"};
    std::vector<int32_t> ids;
    if (addBos) ids.push_back(spmPieceToId(kSpecials[0])); // transformers: piece_to_id(bos_token)
    size_t chunk = 0;
    for (size_t pos = 0; pos < text.size();) {
        const std::string_view *hit = nullptr;
        for (const std::string_view &s : kSpecials)
            if (text.substr(pos).starts_with(s)) hit = &s;
        if (hit == nullptr) {
            ++pos;
            continue;
        }
        if (pos > chunk)
            encodeNormalized(normalize(text.substr(chunk, pos - chunk), dummyPrefix || chunk > 0), ids);
        ids.push_back(spmPieceToId(*hit));
        pos += hit->size();
        chunk = pos;
    }
    if (chunk < text.size()) encodeNormalized(normalize(text.substr(chunk), dummyPrefix || chunk > 0), ids);
    return ids;
}

// -------------------------------------------------------------------------------------------------
// Decoding (SentencePieceProcessor::Decode)

std::string Tokenizer::decode(const std::vector<int32_t> &ids) const {
    std::string text;
    std::string bytes; // a run of byte pieces, turned into text as a whole
    const auto flushBytes = [&] {
        for (size_t pos = 0; pos < bytes.size();) {
            size_t n = 0;
            if (validUtf8Prefix(std::string_view(bytes).substr(pos), n))
                text.append(bytes, pos, n);
            else
                text += kReplacementChar;
            pos += n;
        }
        bytes.clear();
    };
    // Only the dummy prefix of the first visible piece is dropped.
    bool atStart = true;
    bool startSpaceSeen = false;
    for (const int32_t raw : ids) {
        // sentencepiece decodes id -> piece -> id, so a reserved duplicate of a piece wins.
        const int32_t id = spmPieceToId(pieces_[checkedId(raw, "decode")]);
        const Kind kind = kinds_[id];
        if (kind == Kind::Byte) {
            bytes += static_cast<char>(pieceToByte(pieces_[id]));
            continue;
        }
        flushBytes();
        if (startSpaceSeen || !text.empty()) atStart = false;
        startSpaceSeen = false;
        if (kind == Kind::Control) continue;
        if (kind == Kind::Unknown) {
            text += unkSurface_;
            continue;
        }
        std::string_view p = pieces_[id];
        if (atStart && (addDummyPrefix_ || removeExtraWhitespaces_) && p.starts_with(kSpaceSymbol)) {
            p.remove_prefix(kSpaceSymbol.size());
            // With remove_extra_whitespaces every leading space goes, not only the first.
            startSpaceSeen = !removeExtraWhitespaces_;
        }
        appendUnescaped(text, p);
    }
    flushBytes();
    return text;
}

std::string Tokenizer::tokenBytes(int32_t id) const {
    id = spmPieceToId(pieces_[checkedId(id, "tokenBytes")]);
    switch (kinds_[id]) {
    case Kind::Control: return {};
    case Kind::Unknown: return unkSurface_;
    case Kind::Byte: return std::string(1, static_cast<char>(pieceToByte(pieces_[id])));
    default: {
        std::string out;
        appendUnescaped(out, pieces_[id]);
        return out;
    }
    }
}

} // namespace mgd
