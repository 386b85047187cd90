// The tokenizer against the reference segment ids and, differentially, against Debian's
// spm_encode / spm_decode command-line tools (libsentencepiece in its own process).
#include "core/model/tokenizer.h"
#include "core/util/error.h"

#include <QProcess>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

using mgd::Tokenizer;

namespace {

const std::string kDataDir = MGD_TEST_DATA;

std::string modelPath() { return kDataDir + "/minigpt4-tiny-hi/tokenizer.model"; }

std::string readFile(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void writeFile(const std::string &path, const std::string &bytes) {
    std::ofstream out(path, std::ios::binary);
    out << bytes;
}

std::string formatIds(const std::vector<int32_t> &ids) {
    std::string s = "[";
    for (size_t i = 0; i < ids.size(); ++i)
        s += (i ? " " : "") + std::to_string(ids[i]);
    return s + "]";
}

// Printable form of arbitrary bytes for failure messages.
std::string escaped(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
        const auto b = static_cast<uint8_t>(c);
        if (b < 0x20 || b == 0x7f || c == '"' || c == '\\') {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02X", b);
            out += buf;
        } else {
            out += c; // UTF-8 passes through; invalid bytes show as they are
        }
    }
    return out + "\"";
}

std::string formatPieces(const Tokenizer &tok, const std::vector<int32_t> &ids) {
    std::string s;
    for (int32_t id : ids)
        s += (s.empty() ? "" : " ") +
             (id >= 0 && id < tok.vocabSize() ? tok.piece(id) : "#" + std::to_string(id));
    return s;
}

// Long values are cut around the first difference so a failure stays readable.
std::string clipped(std::string_view s, size_t around = 0) {
    constexpr size_t kKeep = 160;
    if (s.size() <= kKeep)
        return escaped(s);
    const size_t from = around > kKeep / 2 ? std::min(around - kKeep / 2, s.size() - kKeep) : 0;
    return (from ? "..." : "") + escaped(s.substr(from, kKeep)) +
           (from + kKeep < s.size() ? "..." : "") + " (" + std::to_string(s.size()) + " bytes)";
}

std::string describeIdDiff(const Tokenizer &tok, const std::vector<int32_t> &ours,
                           const std::vector<int32_t> &spm) {
    size_t at = 0;
    while (at < ours.size() && at < spm.size() && ours[at] == spm[at])
        ++at;
    const size_t from = at > 8 ? at - 8 : 0;
    const auto window = [&](const std::vector<int32_t> &ids) {
        const std::vector<int32_t> part(ids.begin() + std::min(from, ids.size()),
                                        ids.begin() + std::min(at + 8, ids.size()));
        return (from ? "... " : "") + formatIds(part) + " = " + formatPieces(tok, part);
    };
    return "first difference at id #" + std::to_string(at) + " (" + std::to_string(ours.size()) +
           " ids ours, " + std::to_string(spm.size()) + " spm)\n  ours: " + window(ours) +
           "\n  spm:  " + window(spm);
}

void appendUtf8(std::string &out, char32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xc0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xe0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
        out += static_cast<char>(0xf0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    }
}

// Deterministic, varied single-line test strings (std::mt19937 is fully specified, and only
// its raw output is used, so every platform makes the same strings).
class TextGenerator {
public:
    explicit TextGenerator(uint32_t seed) : rng_(seed) {}

    // Valid UTF-8 without '\n' (the spm tools are line-based).
    std::string next() {
        const uint32_t kind = counter_++ % 11;
        std::string s;
        switch (kind) {
        case 0: // a sentence
            for (uint32_t i = 0, n = 1 + below(12); i < n; ++i)
                s += (i ? " " : "") + word() + (below(6) == 0 ? pick(kPunct) : "");
            break;
        case 1: // whitespace runs, tabs, leading and trailing spaces
            s += std::string(below(4), ' ');
            for (uint32_t i = 0, n = 1 + below(6); i < n; ++i)
                s += word() + space();
            break;
        case 2: // digit runs
            for (uint32_t i = 0, n = 1 + below(5); i < n; ++i) {
                s += below(2) ? word() : "";
                for (uint32_t d = 0, m = 1 + below(12); d < m; ++d)
                    s += static_cast<char>('0' + below(10));
                s += below(3) ? " " : pick(kPunct);
            }
            break;
        case 3: // non-Latin scripts, emoji, combining marks mixed with words
            for (uint32_t i = 0, n = 1 + below(8); i < n; ++i)
                s += (below(2) ? word() : pick(kUnicode)) + (below(3) ? " " : "");
            break;
        case 4: // random code points
            for (uint32_t i = 0, n = 1 + below(30); i < n; ++i)
                appendUtf8(s, codePoint());
            break;
        case 5: // nothing but whitespace, or nothing at all
            for (uint32_t i = 0, n = below(6); i < n; ++i)
                s += below(4) ? " " : "\t";
            break;
        case 6: // punctuation and symbols the vocabulary lacks
            for (uint32_t i = 0, n = 1 + below(20); i < n; ++i)
                s += below(4) ? pick(kPunct) : std::string(1, "~`^|\\@$%&*_+=\"'"[below(15)]);
            break;
        case 7: // long text
            for (uint32_t i = 0, n = 50 + below(400); i < n; ++i)
                s += (below(5) ? word() : pick(kUnicode)) + space();
            break;
        case 8: // prompt markup and special-token literals (plain text for encodePlain)
            for (uint32_t i = 0, n = 1 + below(6); i < n; ++i)
                s += pick(kMarkup) + (below(2) ? " " : "") + (below(2) ? word() : "");
            break;
        case 9: // ASCII control characters and DEL
            for (uint32_t i = 0, n = 1 + below(10); i < n; ++i) {
                const char c = static_cast<char>(below(8) ? 1 + below(31) : 0x7f);
                s += c == '\n' ? '\r' : c;
                s += below(2) ? word() : "";
            }
            break;
        default: // everything mixed
            for (uint32_t i = 0, n = 1 + below(15); i < n; ++i) {
                switch (below(5)) {
                case 0:
                    appendUtf8(s, codePoint());
                    break;
                case 1:
                    s += pick(kUnicode);
                    break;
                case 2:
                    s += pick(kPunct);
                    break;
                default:
                    s += word();
                }
                s += space();
            }
        }
        return s;
    }

    // Malformed UTF-8 (stray continuation bytes, cut sequences, overlong forms, surrogates).
    std::string nextInvalid() {
        static const std::string kBad[] = {
            "\x80",     "\xbf",         "\xc3",         "\xe6\x97",         "\xf0\x9f\x98",
            "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80",
            "\xfe\xff"};
        std::string s = next();
        for (uint32_t i = 0, n = 1 + below(3); i < n; ++i) {
            const std::string bad =
                below(3) ? pick(kBad) : std::string(1, static_cast<char>(0x80 + below(0x80)));
            s.insert(below(static_cast<uint32_t>(s.size()) + 1), bad);
        }
        return s;
    }

    std::string word() {
        std::string w = pick(kWords);
        if (below(8) == 0)
            w[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(w[0])));
        return w;
    }

    uint32_t below(uint32_t n) { return n == 0 ? 0 : rng_() % n; }

private:
    template <size_t N> std::string pick(const char *const (&list)[N]) { return list[below(N)]; }
    template <size_t N> std::string pick(const std::string (&list)[N]) { return list[below(N)]; }

    std::string space() {
        switch (below(10)) {
        case 0:
            return std::string(2 + below(4), ' ');
        case 1:
            return "\t";
        case 2:
            return "";
        default:
            return " ";
        }
    }

    char32_t codePoint() {
        static const char32_t kRanges[][2] = {
            {0x21, 0x7e},     {0xa0, 0x2ff},      {0x300, 0x36f},     {0x370, 0x52f},
            {0x590, 0x6ff},   {0x900, 0x97f},     {0x2000, 0x206f},   {0x2500, 0x25ff},
            {0x3000, 0x30ff}, {0x4e00, 0x9fff},   {0xac00, 0xd7a3},   {0xe000, 0xf8ff},
            {0xfb00, 0xfffd}, {0x1f300, 0x1faff}, {0x10000, 0x10ffff}};
        const auto &r = kRanges[below(std::size(kRanges))];
        return r[0] + below(r[1] - r[0] + 1);
    }

    static constexpr const char *kWords[] = {
        "the",        "image",  "is",        "a",        "this",      "what",      "color",
        "background", "see",    "in",        "on",       "and",       "of",        "you",
        "will",       "be",     "able",      "to",       "once",      "I",         "provide",
        "it",         "please", "answer",    "my",       "questions", "Give",      "following",
        "The",        "What",   "there",     "quite",    "tan",       "green",     "window",
        "sound",      "ground", "action",    "question", "hello",     "world",     "MiniGPT",
        "Vicuna",     "LLaMA",  "tokenizer", "zebra",    "xylophone", "jumps",     "quickly",
        "über",       "naïve",  "café",      "Straße",   "résumé",    "coöperate", "don't",
        "it's",       "e.g.",   "U.S.A.",    "C++20",    "x86_64",    "v1.2.3",    "a-b-c",
        "snake_case"};
    static constexpr const char *kPunct[] = {".",  ",", "?", "!", ":",   ";", "...",
                                             "--", "(", ")", "[", "]",   "{", "}",
                                             "<",  ">", "/", "#", "###", "'s"};
    static constexpr const char *kMarkup[] = {
        "<Img>",  "</Img>",    "<ImageHere>", "###Human:", "###Assistant:", "[INST]", "[/INST]",
        "<s>",    "</s>",      "<unk>",       "<0x41>",    "<pad>",         "<<s>>",  "</s</s>>",
        "<s><s>", "<unk></s>", "▁",           "▁▁the"};
    static constexpr const char *kUnicode[] = {"é",
                                               "ñ",
                                               "ü",
                                               "Ø",
                                               "ß",
                                               "日本語",
                                               "中文字符",
                                               "한국어",
                                               "😀",
                                               "👍🏽",
                                               "👨‍👩‍👧",
                                               "🇩🇪",
                                               "Привет",
                                               "мир",
                                               "Ελληνικά",
                                               "مرحبا",
                                               "हिन्दी",
                                               "e\u0301",
                                               "\u2581",
                                               "\uFFFD",
                                               "\u00A0",
                                               "\u3000",
                                               "\uFEFF",
                                               "\u200B",
                                               "ｆｕｌｌ",
                                               "①②③",
                                               "ﬁﬂ",
                                               "Å",
                                               "™",
                                               "½",
                                               "Ⅻ",
                                               "ｶﾀｶﾅ",
                                               "\u0130",
                                               "ǅ",
                                               "𝔘𝔫𝔦"};

    std::mt19937 rng_;
    uint32_t counter_ = 0;
};

struct ToolRun {
    std::vector<std::string> lines; // stdout split on '\n'
    std::string error;              // empty when it ran fine
};

// Runs a sentencepiece command-line tool once over a whole input file.
ToolRun runTool(const QString &program, const QStringList &args) {
    QProcess proc;
    proc.start(program, args);
    ToolRun run;
    if (!proc.waitForFinished(300000) || proc.exitStatus() != QProcess::NormalExit ||
        proc.exitCode() != 0) {
        run.error = (program + " " + args.join(' ')).toStdString() +
                    " failed: " + proc.readAllStandardError().right(2000).toStdString();
        return run;
    }
    const QByteArray out = proc.readAllStandardOutput();
    std::string_view rest(out.constData(), static_cast<size_t>(out.size()));
    while (!rest.empty()) {
        const size_t nl = rest.find('\n');
        run.lines.emplace_back(rest.substr(0, nl));
        rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    }
    return run;
}

std::vector<int32_t> parseIds(const std::string &line) {
    std::vector<int32_t> ids;
    std::istringstream in(line);
    for (int32_t id; in >> id;)
        ids.push_back(id);
    return ids;
}

std::string joinIds(const std::vector<int32_t> &ids) {
    std::string s;
    for (size_t i = 0; i < ids.size(); ++i)
        s += (i ? " " : "") + std::to_string(ids[i]);
    return s;
}

struct DiffCounts {
    size_t encoded = 0;
    size_t decoded = 0;
};

// Encodes `strings` with spm_encode and decodes those ids plus random id sequences with
// spm_decode, comparing with `tok` line by line. Returns an error message, empty on success.
std::string diffAgainstSpm(const Tokenizer &tok, const std::string &model,
                           const std::vector<std::string> &strings, const QString &spmEncode,
                           const QString &spmDecode, const QString &tmpDir, uint32_t seed,
                           DiffCounts &counts) {
    const std::string textFile = tmpDir.toStdString() + "/strings.txt";
    std::string text;
    for (const std::string &s : strings)
        text += s + "\n";
    writeFile(textFile, text);

    const ToolRun enc =
        runTool(spmEncode, {"--model=" + QString::fromStdString(model), "--output_format=id",
                            QString::fromStdString(textFile)});
    if (!enc.error.empty())
        return enc.error;
    if (enc.lines.size() != strings.size())
        return "spm_encode gave " + std::to_string(enc.lines.size()) + " lines for " +
               std::to_string(strings.size()) + " strings";

    std::string failures;
    int shown = 0;
    std::vector<std::vector<int32_t>> idLines;
    for (size_t i = 0; i < strings.size(); ++i) {
        const std::vector<int32_t> want = parseIds(enc.lines[i]);
        const std::vector<int32_t> got = tok.encodePlain(strings[i]);
        if (got != want && shown++ < 5) // all mismatches are counted, the first few shown
            failures +=
                "\nencodePlain(" + clipped(strings[i]) + "): " + describeIdDiff(tok, got, want);
        idLines.push_back(want);
    }
    counts.encoded = strings.size();
    if (shown > 0)
        failures = "\n" + std::to_string(shown) + " of " + std::to_string(strings.size()) +
                   " encodings differ from spm_encode:" + failures;

    // Random id sequences too: byte pieces (never 0x0A, the tools are line-based), controls,
    // unk and ordinary pieces in any order.
    std::mt19937 rng(seed);
    const int32_t newline = tok.pieceToId("<0x0A>");
    for (int i = 0; i < 1500; ++i) {
        std::vector<int32_t> ids;
        for (uint32_t k = 0, n = rng() % 24; k < n; ++k) {
            int32_t id = static_cast<int32_t>(rng() % static_cast<uint32_t>(tok.vocabSize()));
            if (rng() % 8 == 0)
                id = rng() % 2 ? tok.bosId() : tok.unkId();
            if (id < 0 || id == newline)
                continue;
            ids.push_back(id);
        }
        idLines.push_back(ids);
    }
    const std::string idFile = tmpDir.toStdString() + "/ids.txt";
    std::string idText;
    for (const auto &ids : idLines)
        idText += joinIds(ids) + "\n";
    writeFile(idFile, idText);

    const ToolRun dec = runTool(spmDecode, {"--model=" + QString::fromStdString(model),
                                            "--input_format=id", QString::fromStdString(idFile)});
    if (!dec.error.empty())
        return failures + "\n" + dec.error;
    if (dec.lines.size() != idLines.size())
        return failures + "\nspm_decode gave " + std::to_string(dec.lines.size()) + " lines for " +
               std::to_string(idLines.size()) + " id lists";
    shown = 0;
    std::string decodeFailures;
    for (size_t i = 0; i < idLines.size(); ++i) {
        const std::string got = tok.decode(idLines[i]);
        if (got != dec.lines[i] && shown++ < 5) {
            size_t at = 0;
            while (at < got.size() && at < dec.lines[i].size() && got[at] == dec.lines[i][at])
                ++at;
            decodeFailures += "\ndecode(" + formatPieces(tok, idLines[i]).substr(0, 400) +
                              "): first difference at byte " + std::to_string(at) +
                              "\n  ours: " + clipped(got, at) +
                              "\n  spm:  " + clipped(dec.lines[i], at);
        }
    }
    counts.decoded = idLines.size();
    if (shown > 0)
        failures += "\n" + std::to_string(shown) + " of " + std::to_string(idLines.size()) +
                    " decodings differ from spm_decode:" + decodeFailures;
    return failures;
}

// The tokenizer must either load or fail with mgd::Error; a loaded one must then work.
bool loadsOrThrowsCleanly(std::string_view bytes, std::string &why, bool *loaded = nullptr) {
    try {
        const Tokenizer tok = Tokenizer::fromBytes(bytes, "fuzz.model");
        if (loaded)
            *loaded = true;
        for (const char *s : {"Hello  world", " <s>é😀\xff", "", "123 456", "ｆｕｌｌ ﬁ ① Å\t"}) {
            const auto ids = tok.encode(s, true);
            tok.decode(ids);
            for (int32_t id : ids)
                tok.tokenBytes(id);
        }
        return true;
    } catch (const mgd::Error &e) {
        if (loaded)
            *loaded = false;
        if (std::string(e.what()).find("fuzz.model") == std::string::npos) {
            why = std::string("error does not name the file: ") + e.what();
            return false;
        }
        return true;
    } catch (const std::exception &e) {
        why = std::string("unexpected exception type: ") + e.what();
        return false;
    }
}

std::string varintBytes(uint64_t v) {
    std::string s;
    do {
        s += static_cast<char>((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return s;
}

std::string key(uint32_t field, uint32_t wire) { return varintBytes((field << 3) | wire); }

// Test-only protobuf surgery on a well-formed model: re-serializes it with the NORMAL pieces
// that `pick` selects turned UNUSED (5), as SentencePieceProcessor::SetVocabulary does.
std::string markUnused(const std::string &model,
                       const std::function<bool(int32_t, const std::string &)> &pick) {
    const auto readVarint = [](const std::string &b, size_t &p) {
        uint64_t v = 0;
        for (int shift = 0;; shift += 7) {
            const auto c = static_cast<uint8_t>(b.at(p++));
            v |= static_cast<uint64_t>(c & 0x7f) << shift;
            if ((c & 0x80) == 0)
                return v;
        }
    };
    std::string out;
    int32_t index = 0;
    for (size_t pos = 0; pos < model.size();) {
        const uint64_t k = readVarint(model, pos); // top-level fields are all length-delimited
        const uint64_t len = readVarint(model, pos);
        std::string body = model.substr(pos, len);
        pos += len;
        if (k >> 3 == 1) {
            std::string piece, score;
            uint64_t type = 1;
            for (size_t p = 0; p < body.size();) {
                const uint64_t f = readVarint(body, p);
                if (f >> 3 == 1) {
                    const uint64_t n = readVarint(body, p);
                    piece = body.substr(p, n);
                    p += n;
                } else if (f >> 3 == 2) {
                    score = body.substr(p, 4);
                    p += 4;
                } else {
                    type = readVarint(body, p);
                }
            }
            if (type == 1 && pick(index, piece))
                body = key(1, 2) + varintBytes(piece.size()) + piece + key(2, 5) + score +
                       key(3, 0) + varintBytes(5);
            ++index;
        }
        out += varintBytes(k) + varintBytes(body.size()) + body;
    }
    return out;
}

} // namespace

class TestTokenizer : public QObject {
    Q_OBJECT

private slots:
    void matchesReferenceSegmentIds() {
        const Tokenizer tok = Tokenizer::fromFile(modelPath());
        QCOMPARE(tok.vocabSize(), 384);
        QCOMPARE(tok.unkId(), 0);
        QCOMPARE(tok.bosId(), 1);
        QCOMPARE(tok.eosId(), 2);
        int compared = 0;
        for (const char *dir : {"minigpt4-tiny-hi", "minigptv2-tiny-hi"}) {
            const auto config =
                nlohmann::json::parse(readFile(kDataDir + "/" + dir + "/config.json"));
            for (const char *turn : {"turn1", "turn2"}) {
                const auto &prompt = config.at("prompts").at(turn);
                const auto &segments = prompt.at("segments");
                QCOMPARE(segments.size(), prompt.at("segment_ids").size());
                for (size_t k = 0; k < segments.size(); ++k) {
                    const auto text = segments[k].get<std::string>();
                    const auto want = prompt.at("segment_ids")[k].get<std::vector<int32_t>>();
                    const auto got = tok.encode(text, k == 0);
                    QVERIFY2(got == want, (std::string(dir) + " " + turn + " segment " +
                                           std::to_string(k) + " " + escaped(text) + "\n  ours: " +
                                           formatIds(got) + "\n  want: " + formatIds(want))
                                              .c_str());
                    const auto pieces =
                        prompt.at("segment_pieces")[k].get<std::vector<std::string>>();
                    for (size_t i = 0; i < pieces.size(); ++i)
                        QCOMPARE(tok.piece(got[i]), pieces[i]);
                    ++compared;
                }
            }
        }
        QCOMPARE(compared, 8);
    }

    void encodeSplitsOnSpecialTokenLiterals() {
        const Tokenizer tok = Tokenizer::fromFile(modelPath());
        const auto plain = [&](const char *s) { return tok.encodePlain(s); };
        std::vector<int32_t> want = {tok.bosId()};
        for (const auto &part : {plain("a"), std::vector<int32_t>{1}, plain(" b"),
                                 std::vector<int32_t>{2, 0}, plain("c "), std::vector<int32_t>{1}})
            want.insert(want.end(), part.begin(), part.end());
        QCOMPARE(tok.encode("a<s> b</s><unk>c <s>", true), want);
        QCOMPARE(tok.encode("", false), std::vector<int32_t>{});
        QCOMPARE(tok.encode("", true), std::vector<int32_t>{1});
        QCOMPARE(tok.encode("<s></s>", false), (std::vector<int32_t>{1, 2}));
        // Not special: a lookalike stays plain text.
        QCOMPARE(tok.encode("<s >", false), plain("<s >"));
    }

    void matchesSpmEncodeOnThousandsOfStrings() {
        const QString spmEncode = QStandardPaths::findExecutable("spm_encode");
        const QString spmDecode = QStandardPaths::findExecutable("spm_decode");
        if (spmEncode.isEmpty() || spmDecode.isEmpty())
            QSKIP("spm_encode/spm_decode not installed (Debian package 'sentencepiece')");
        const Tokenizer tok = Tokenizer::fromFile(modelPath());
        TextGenerator gen(20240903);
        std::vector<std::string> strings;
        for (int i = 0; i < 4000; ++i)
            strings.push_back(gen.next());
        for (int i = 0; i < 400; ++i)
            strings.push_back(gen.nextInvalid());

        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        DiffCounts counts;
        const std::string failures =
            diffAgainstSpm(tok, modelPath(), strings, spmEncode, spmDecode, tmp.path(), 7, counts);
        if (!failures.empty())
            QFAIL(failures.c_str());
        QVERIFY(counts.encoded >= 4400);
        QVERIFY(counts.decoded >= 5900);
        qInfo("compared %zu encodings and %zu decodings with spm", counts.encoded, counts.decoded);

        // Decoding the encoding gives the text back (minus U+2581, which decodes to ' ').
        size_t roundTrips = 0;
        for (int i = 0; i < 4000; ++i) {
            if (strings[i].find("\u2581") != std::string::npos)
                continue;
            QCOMPARE(tok.decode(tok.encodePlain(strings[i])), strings[i]);
            ++roundTrips;
        }
        QVERIFY(roundTrips > 3000);
    }

    // Other normalizer settings than the LLaMA model's: models trained on the spot by spm_train
    // (NFKC charsmap, remove_extra_whitespaces, user-defined symbols, no byte fallback).
    void matchesSpmOnTrainedModelVariants() {
        const QString spmTrain = QStandardPaths::findExecutable("spm_train");
        const QString spmEncode = QStandardPaths::findExecutable("spm_encode");
        const QString spmDecode = QStandardPaths::findExecutable("spm_decode");
        if (spmTrain.isEmpty() || spmEncode.isEmpty() || spmDecode.isEmpty())
            QSKIP("spm_train/spm_encode/spm_decode not installed (Debian package 'sentencepiece')");
        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());

        TextGenerator corpusGen(1);
        std::string corpus;
        for (int i = 0; i < 3000; ++i) {
            std::string line;
            for (uint32_t w = 0, n = 3 + corpusGen.below(12); w < n; ++w)
                line += (w ? (corpusGen.below(10) ? " " : "  ") : "") + corpusGen.word();
            corpus += line + (i % 7 ? " 12345 ①②③ ｆｕｌｌ Å\n" : "\n");
        }
        const std::string corpusFile = tmp.path().toStdString() + "/corpus.txt";
        writeFile(corpusFile, corpus);

        const QStringList common = {"--input=" + QString::fromStdString(corpusFile),
                                    "--model_type=bpe", "--character_coverage=1.0",
                                    "--minloglevel=2", "--num_threads=1"};
        const std::vector<std::pair<QString, QStringList>> variants = {
            {"nfkc_strip_userdef_unk",
             {"--vocab_size=200", "--normalization_rule_name=nmt_nfkc",
              "--remove_extra_whitespaces=true", "--byte_fallback=false",
              "--user_defined_symbols=<Img>,<ImageHere>,@@,ima"}},
            {"nfkc_cf_bytes_noprefix",
             {"--vocab_size=420", "--normalization_rule_name=nfkc_cf",
              "--remove_extra_whitespaces=false", "--add_dummy_prefix=false",
              "--byte_fallback=true", "--split_digits=true"}},
            {"identity_strip_bytes",
             {"--vocab_size=400", "--normalization_rule_name=identity",
              "--remove_extra_whitespaces=true", "--byte_fallback=true",
              "--user_defined_symbols=[INST],[/INST]", "--control_symbols=<ctl>"}},
        };
        uint32_t seed = 100;
        for (const auto &[name, flags] : variants) {
            const QString prefix = tmp.path() + "/" + name;
            QProcess train;
            train.start(spmTrain, common + flags + QStringList{"--model_prefix=" + prefix});
            QVERIFY(train.waitForFinished(300000));
            QVERIFY2(train.exitCode() == 0, train.readAllStandardError().right(2000).constData());
            const std::string model = (prefix + ".model").toStdString();
            const Tokenizer tok = Tokenizer::fromFile(model);

            TextGenerator gen(seed++);
            std::vector<std::string> strings;
            for (int i = 0; i < 1500; ++i)
                strings.push_back(gen.next());
            for (int i = 0; i < 100; ++i)
                strings.push_back(gen.nextInvalid());
            DiffCounts counts;
            const std::string failures =
                diffAgainstSpm(tok, model, strings, spmEncode, spmDecode, tmp.path(), seed, counts);
            if (!failures.empty())
                QFAIL((name.toStdString() + ":" + failures).c_str());
            qInfo("%s: compared %zu encodings and %zu decodings with spm", qPrintable(name),
                  counts.encoded, counts.decoded);

            // A damaged charsmap trie (most of these files) must not be read out of bounds.
            const std::string real = readFile(model);
            std::mt19937 rng(seed);
            std::string why;
            for (int i = 0; i < 200; ++i) {
                // A few random bytes anywhere, or the tail (the charsmap) riddled.
                std::string bytes = real;
                const bool riddle = i % 2 == 1;
                const size_t from = riddle ? bytes.size() / 8 : 0;
                for (uint32_t k = 0, n = riddle ? 20000 : 1 + rng() % 8; k < n; ++k)
                    bytes[from + rng() % (bytes.size() - from)] = static_cast<char>(rng());
                QVERIFY2(loadsOrThrowsCleanly(bytes, why), why.c_str());
            }
        }
    }

    // UNUSED pieces may be merged into but are then split back (bpe_model.cc's resegment).
    void matchesSpmWithUnusedPieces() {
        const QString spmEncode = QStandardPaths::findExecutable("spm_encode");
        const QString spmDecode = QStandardPaths::findExecutable("spm_decode");
        if (spmEncode.isEmpty() || spmDecode.isEmpty())
            QSKIP("spm_encode/spm_decode not installed (Debian package 'sentencepiece')");
        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        int unused = 0;
        const std::string bytes =
            markUnused(readFile(modelPath()), [&](int32_t i, const std::string &piece) {
                const bool pick = piece.size() > 1 && piece != "\u2581" && i % 2 == 0;
                unused += pick;
                return pick;
            });
        QVERIFY(unused > 20);
        const std::string model = tmp.path().toStdString() + "/unused.model";
        writeFile(model, bytes);
        const Tokenizer tok = Tokenizer::fromFile(model);

        TextGenerator gen(5);
        std::vector<std::string> strings;
        for (int i = 0; i < 1500; ++i)
            strings.push_back(gen.next());
        DiffCounts counts;
        const std::string failures =
            diffAgainstSpm(tok, model, strings, spmEncode, spmDecode, tmp.path(), 11, counts);
        if (!failures.empty())
            QFAIL(failures.c_str());
        // The reference prompt does reach an UNUSED piece and splits it again.
        const Tokenizer plain = Tokenizer::fromFile(modelPath());
        QVERIFY(tok.encodePlain("What is in this image?") !=
                plain.encodePlain("What is in this image?"));
    }

    void rejectsCorruptModelFiles() {
        const std::string real = readFile(modelPath());
        QVERIFY(real.size() > 1000);
        std::string why;

        // Empty and missing files.
        QVERIFY_THROWS_EXCEPTION(mgd::Error, Tokenizer::fromBytes("", "empty.model"));
        QVERIFY_THROWS_EXCEPTION(mgd::Error, Tokenizer::fromFile(kDataDir + "/no-such.model"));
        QVERIFY_THROWS_EXCEPTION(mgd::Error, Tokenizer::fromFile(kDataDir));

        // Each of these names the file and what is wrong with it.
        const auto errorOf = [](const std::string &bytes) -> std::string {
            try {
                Tokenizer::fromBytes(bytes, "bad.model");
            } catch (const mgd::Error &e) {
                return e.what();
            }
            return "(no error)";
        };
        using namespace std::string_literals; // the cases hold NUL bytes
        const std::pair<std::string, const char *> cases[] = {
            {std::string(20, '\xff'), "varint longer than 10 bytes"}, // a key that never ends
            {"\x0a" + std::string(20, '\x80'), "varint"},             // a length that never ends
            {"\x0a\x85"s, "truncated varint"},
            {"\x0a\xff\xff\xff\xff\x0f"s, "runs past the end"},
            {"\x0a\x05\x0a\x03<s"s, "runs past the end"}, // a piece cut short
            {"\x12\x02\x18\x02\x0a\x05\x0a\x01\x61\x18\x09"s, "unknown type 9"},
            {"\x12\x02\x18\x02\x0a\x00"s, "piece #0 is empty"},
            {"\x0a\x03\x0a\x01\x61"s, "model_type 1 is not BPE"},
            {"\x0a\x03\x0a\x01\x61\x12\x02\x18\x02"s, "unk is not defined"},
            {"\x0a\x05\x0a\x01\x61\x18\x02\x12\x05\x18\x02\x98\x02\x01"s, "256 byte pieces"},
            {"\x00"s, "invalid field number 0"},
        };
        for (const auto &[bytes, expected] : cases) {
            const std::string message = errorOf(bytes);
            QVERIFY2(message.find("bad.model") != std::string::npos &&
                         message.find(expected) != std::string::npos,
                     (escaped(bytes) + " -> " + message).c_str());
        }
        // Wire types 6 and 7 do not exist; an end-group needs a start.
        QVERIFY_THROWS_EXCEPTION(mgd::Error, Tokenizer::fromBytes(real + key(9, 6), "x"));
        QVERIFY_THROWS_EXCEPTION(mgd::Error, Tokenizer::fromBytes(real + key(9, 7), "x"));
        QVERIFY_THROWS_EXCEPTION(mgd::Error, Tokenizer::fromBytes(real + key(9, 4), "x"));
        QVERIFY_THROWS_EXCEPTION(mgd::Error, Tokenizer::fromBytes(real + key(9, 3), "x"));
        // A known field with the wrong wire type.
        QVERIFY_THROWS_EXCEPTION(mgd::Error, Tokenizer::fromBytes(real + key(1, 0) + "\x01", "x"));

        // Cut at every offset: an error, or (at a top-level field boundary that only drops
        // trailing optional messages) a model with every piece.
        int loadedCuts = 0;
        for (size_t cut = 0; cut < real.size(); ++cut) {
            bool loaded = false;
            QVERIFY2(loadsOrThrowsCleanly(std::string_view(real).substr(0, cut), why, &loaded),
                     (std::to_string(cut) + ": " + why).c_str());
            if (loaded) {
                QCOMPARE(Tokenizer::fromBytes(real.substr(0, cut), "cut").vocabSize(), 384);
                ++loadedCuts;
            }
        }
        QVERIFY(loadedCuts <= 1);

        // Random bytes, and the real model with random bytes overwritten.
        std::mt19937 rng(99);
        for (int i = 0; i < 2000; ++i) {
            std::string bytes(rng() % 4096, '\0');
            for (char &c : bytes)
                c = static_cast<char>(rng());
            QVERIFY2(loadsOrThrowsCleanly(bytes, why), why.c_str());
        }
        int mutantsLoaded = 0;
        for (int i = 0; i < 3000; ++i) {
            std::string bytes = real;
            for (uint32_t k = 0, n = 1 + rng() % 4; k < n; ++k)
                bytes[rng() % bytes.size()] = static_cast<char>(rng());
            bool loaded = false;
            QVERIFY2(loadsOrThrowsCleanly(bytes, why, &loaded), why.c_str());
            mutantsLoaded += loaded;
        }
        qInfo("%d of 3000 mutated models still loaded (and then encoded cleanly)", mutantsLoaded);
    }

    void skipsUnknownFieldsOfEveryWireType() {
        const std::string real = readFile(modelPath());
        const std::string unknown = key(100, 0) + varintBytes(~0ull) + key(101, 1) +
                                    std::string(8, '\x7f') + key(102, 2) + varintBytes(3) + "abc" +
                                    key(103, 3) + key(1, 0) + "\x05" + key(2, 3) + key(7, 5) +
                                    "abcd" + key(2, 4) + key(103, 4) + key(104, 5) + "wxyz";
        const Tokenizer plain = Tokenizer::fromBytes(real, "real");
        const Tokenizer extended = Tokenizer::fromBytes(unknown + real + unknown, "extended");
        QCOMPARE(extended.vocabSize(), plain.vocabSize());
        for (const char *s : {"What is in this image?", "  ünïcødé 123  "})
            QCOMPARE(extended.encodePlain(s), plain.encodePlain(s));
        // A group left open is an error.
        QVERIFY_THROWS_EXCEPTION(mgd::Error, Tokenizer::fromBytes(real + key(103, 3), "x"));
    }

    void decodeRoundTripsText() {
        const Tokenizer tok = Tokenizer::fromFile(modelPath());
        for (const char *s :
             {"What is in this image?", " leading space", "trailing space  ", "  two  gaps  ",
              "tab\there", "emoji 😀 and 中文 via byte fallback", "digits 0123456789",
              "<Img><ImageHere></Img>", "", " ", "\x01\x7f controls"}) {
            const auto ids = tok.encodePlain(s);
            QCOMPARE(tok.decode(ids), std::string(s));
            // Control tokens around the text change nothing.
            std::vector<int32_t> wrapped = {tok.bosId()};
            wrapped.insert(wrapped.end(), ids.begin(), ids.end());
            wrapped.push_back(tok.eosId());
            QCOMPARE(tok.decode(wrapped), std::string(s));
        }
        QCOMPARE(tok.decode({tok.unkId()}), std::string(" \u2047 "));
        // A lone byte of a multi-byte character decodes to U+FFFD, as in sentencepiece.
        QCOMPARE(tok.decode({tok.pieceToId("<0xE4>"), tok.pieceToId("▁t")}),
                 std::string("\uFFFD t"));
        QVERIFY_THROWS_EXCEPTION(mgd::Error, tok.decode({tok.vocabSize()}));
        QVERIFY_THROWS_EXCEPTION(mgd::Error, tok.decode({-1}));
    }

    void tokenBytesConcatenateToDecode() {
        const Tokenizer tok = Tokenizer::fromFile(modelPath());
        for (const char *s :
             {"What is in this image?", "emoji 😀 and 中文", "  spaced  out ", "Ünïcödé 123"}) {
            const auto ids = tok.encodePlain(s);
            std::string joined;
            for (int32_t id : ids)
                joined += tok.tokenBytes(id);
            // The dummy prefix is the one difference: decode drops it, streaming keeps it.
            QCOMPARE(joined, " " + tok.decode(ids));
        }
        QCOMPARE(tok.tokenBytes(tok.bosId()), std::string());
        QCOMPARE(tok.tokenBytes(tok.pieceToId("<0xE4>")), std::string("\xe4"));
        QCOMPARE(tok.tokenBytes(tok.pieceToId("▁the")), std::string(" the"));
        QCOMPARE(tok.pieceToId("no such piece"), -1);
        QVERIFY(tok.isControl(tok.eosId()));
        QVERIFY(!tok.isControl(tok.vocabSize()));
        QVERIFY_THROWS_EXCEPTION(mgd::Error, tok.tokenBytes(tok.vocabSize()));
    }
};

QTEST_APPLESS_MAIN(TestTokenizer)
#include "test_tokenizer.moc"
