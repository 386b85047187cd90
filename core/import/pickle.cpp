#include "core/import/pickle.h"

#include <charconv>
#include <cstring>
#include <deque>
#include <unordered_map>

namespace mgd::pth {

// ---- ScalarKind, Value -----------------------------------------------------------------

size_t elementSize(ScalarKind k) {
    switch (k) {
    case ScalarKind::F64:
    case ScalarKind::I64: return 8;
    case ScalarKind::F32:
    case ScalarKind::I32: return 4;
    case ScalarKind::F16:
    case ScalarKind::BF16:
    case ScalarKind::I16: return 2;
    case ScalarKind::I8:
    case ScalarKind::U8:
    case ScalarKind::Bool: return 1;
    }
    return 0;
}

const char *scalarKindName(ScalarKind k) {
    switch (k) {
    case ScalarKind::F16: return "float16";
    case ScalarKind::BF16: return "bfloat16";
    case ScalarKind::F32: return "float32";
    case ScalarKind::F64: return "float64";
    case ScalarKind::I64: return "int64";
    case ScalarKind::I32: return "int32";
    case ScalarKind::I16: return "int16";
    case ScalarKind::I8: return "int8";
    case ScalarKind::U8: return "uint8";
    case ScalarKind::Bool: return "bool";
    }
    return "?";
}

const char *Value::kindName() const {
    switch (kind_) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::BigInt: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::List: return "list";
    case Kind::Tuple: return "tuple";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Call: return "call";
    case Kind::Persistent: return "persistent id";
    case Kind::Tensor: return "tensor";
    }
    return "?";
}

const std::vector<const Value *> &Value::items() const {
    static const std::vector<const Value *> none;
    return kind_ == Kind::List || kind_ == Kind::Tuple ? items_ : none;
}

const Value *Value::find(std::string_view key) const {
    if (kind_ != Kind::Dict) return nullptr;
    for (const auto &[k, v] : entries_)
        if (k->kind_ == Kind::String && k->text_ == key) return v;
    return nullptr;
}

const Value *Value::attributes() const {
    return kind_ == Kind::Dict && !items_.empty() ? items_[0] : nullptr;
}

const Value *Value::metadata() const {
    const Value *a = attributes();
    return a ? a->find("_metadata") : nullptr;
}

std::string_view Value::module() const {
    return kind_ == Kind::Global ? std::string_view(text_).substr(0, u_.split) : std::string_view();
}

std::string_view Value::name() const {
    return kind_ == Kind::Global ? std::string_view(text_).substr(u_.split + 1) : std::string_view();
}

const Value *Value::callee() const {
    return kind_ == Kind::Call ? items_[0] : nullptr;
}
const Value *Value::args() const {
    return kind_ == Kind::Call ? items_[1] : nullptr;
}
const Value *Value::state() const {
    return kind_ == Kind::Call && items_.size() > 2 ? items_[2] : nullptr;
}
const Value *Value::persistentId() const {
    return kind_ == Kind::Persistent ? items_[0] : nullptr;
}

std::string describe(const Value &v) {
    using K = Value::Kind;
    switch (v.kind()) {
    case K::None: return "None";
    case K::Bool: return v.boolean() ? "True" : "False";
    case K::Int: return std::to_string(v.integer());
    case K::BigInt: return v.text();
    case K::Float: return std::to_string(v.real());
    case K::String: return "'" + (v.text().size() > 60 ? v.text().substr(0, 60) + "..." : v.text()) + "'";
    case K::Bytes: return "<bytes of " + std::to_string(v.text().size()) + ">";
    case K::List: return "<list of " + std::to_string(v.items().size()) + ">";
    case K::Tuple: return "<tuple of " + std::to_string(v.items().size()) + ">";
    case K::Dict: return "<dict of " + std::to_string(v.entries().size()) + ">";
    case K::Global: return "<global " + v.qualifiedName() + ">";
    case K::Call:
        return "<call of " +
               (v.callee()->is(K::Global) ? v.callee()->qualifiedName() : std::string("a value")) + ">";
    case K::Persistent: return "<persistent id>";
    case K::Tensor: {
        std::string s = std::string("<tensor ") + scalarKindName(v.tensor().dtype) + " [";
        for (size_t i = 0; i < v.tensor().shape.size(); ++i)
            s += (i ? ", " : "") + std::to_string(v.tensor().shape[i]);
        return s + "]>";
    }
    }
    return "?";
}

// ---- PickleDocument --------------------------------------------------------------------

struct PickleDocument::Arena {
    std::deque<Value> values; // deque: stable addresses, freed without recursion
    std::deque<TensorRef> tensors;
};

PickleDocument::PickleDocument() : arena_(std::make_unique<Arena>()) {}
PickleDocument::~PickleDocument() = default;
PickleDocument::PickleDocument(PickleDocument &&) noexcept = default;
PickleDocument &PickleDocument::operator=(PickleDocument &&) noexcept = default;
size_t PickleDocument::valueCount() const {
    return arena_->values.size();
}

// ---- Unpickler -------------------------------------------------------------------------

namespace {

using K = Value::Kind;

const char *opcodeName(uint8_t op) {
    switch (op) {
    case 'i': return "INST";
    case 'o': return "OBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return nullptr;
    }
}

bool storageDtype(std::string_view qn, ScalarKind &out) {
    struct Row {
        const char *name;
        ScalarKind kind;
    };
    static const Row rows[] = {
        {"FloatStorage", ScalarKind::F32},
        {"HalfStorage", ScalarKind::F16},
        {"BFloat16Storage", ScalarKind::BF16},
        {"DoubleStorage", ScalarKind::F64},
        {"LongStorage", ScalarKind::I64},
        {"IntStorage", ScalarKind::I32},
        {"ShortStorage", ScalarKind::I16},
        {"CharStorage", ScalarKind::I8},
        {"ByteStorage", ScalarKind::U8},
        {"BoolStorage", ScalarKind::Bool},
        {"float32", ScalarKind::F32},
        {"float", ScalarKind::F32},
        {"float16", ScalarKind::F16},
        {"half", ScalarKind::F16},
        {"bfloat16", ScalarKind::BF16},
        {"float64", ScalarKind::F64},
        {"double", ScalarKind::F64},
        {"int64", ScalarKind::I64},
        {"long", ScalarKind::I64},
        {"int32", ScalarKind::I32},
        {"int", ScalarKind::I32},
        {"int16", ScalarKind::I16},
        {"short", ScalarKind::I16},
        {"int8", ScalarKind::I8},
        {"uint8", ScalarKind::U8},
        {"bool", ScalarKind::Bool},
    };
    std::string_view name;
    if (qn.substr(0, 6) == "torch.")
        name = qn.substr(6);
    else
        return false;
    // Storages saved from GPU tensors by old torch versions: torch.cuda.<X>Storage.
    if (name.substr(0, 5) == "cuda.") name = name.substr(5);
    for (const Row &r : rows)
        if (name == r.name) {
            out = r.kind;
            return true;
        }
    return false;
}

// Appends code point cp as UTF-8.
void putUtf8(std::string &out, uint32_t cp) {
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

int hexDigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

} // namespace

class Unpickler {
public:
    Unpickler(std::string_view in, const PickleOptions &opt) : in_(in), opt_(opt) {}
    PickleDocument run();

private:
    std::string_view in_;
    const PickleOptions &opt_;
    size_t pos_ = 0;   // next byte to read
    size_t opPos_ = 0; // offset of the opcode being executed (for messages)
    PickleDocument doc_;
    std::vector<const Value *> stack_;
    std::vector<size_t> marks_; // stack sizes at each MARK
    std::unordered_map<uint64_t, const Value *> memo_;
    std::unordered_map<const Value *, std::unordered_map<std::string, size_t>> dictIndex_;
    uint64_t refs_ = 0;
    Value *none_ = nullptr;

    std::string where(uint64_t off) const {
        std::string s = opt_.context.empty() ? std::string("pickle") : opt_.context;
        s += ": ";
        if (!opt_.part.empty()) s += opt_.part + " ";
        return s + "byte " + std::to_string(opt_.baseOffset + off);
    }
    [[noreturn]] void fail(const std::string &why) const { throw Error(where(opPos_) + ": " + why); }
    [[noreturn]] void truncated(const std::string &what) const {
        throw PickleTruncated(where(opPos_) + ": " + what + " runs past the end of the data (" +
                              std::to_string(in_.size() - std::min(pos_, in_.size())) +
                              " bytes left); the pickle is truncated");
    }

    // Input.
    uint8_t byte(const char *what) {
        if (pos_ >= in_.size()) truncated(what);
        return static_cast<uint8_t>(in_[pos_++]);
    }
    std::string_view take(uint64_t n, const char *what) {
        if (n > in_.size() - pos_) truncated(std::string(what) + " of " + std::to_string(n) + " bytes");
        std::string_view s = in_.substr(pos_, n);
        pos_ += n;
        return s;
    }
    uint64_t uintLE(int n, const char *what) {
        std::string_view s = take(n, what);
        uint64_t v = 0;
        for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(s[i]);
        return v;
    }
    std::string_view line(const char *what) {
        const size_t nl = in_.find('\n', pos_);
        if (nl == std::string_view::npos) truncated(std::string(what) + " line");
        std::string_view s = in_.substr(pos_, nl - pos_);
        pos_ = nl + 1;
        if (!s.empty() && s.back() == '\r') s.remove_suffix(1);
        return s;
    }

    // Values.
    Value *make(K k) {
        if (doc_.arena_->values.size() >= opt_.limits.maxValues)
            fail("more than " + std::to_string(opt_.limits.maxValues) + " values");
        Value &v = doc_.arena_->values.emplace_back();
        v.kind_ = k;
        return &v;
    }
    Value *makeInt(int64_t i) {
        Value *v = make(K::Int);
        v->u_.i = i;
        return v;
    }
    Value *makeText(K k, std::string_view s) {
        Value *v = make(k);
        v->text_.assign(s);
        return v;
    }
    Value *makeBool(bool b) {
        Value *v = make(K::Bool);
        v->flag_ = b;
        return v;
    }

    // Stack.
    size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
    void push(const Value *v) {
        if (++refs_ > opt_.limits.maxReferences)
            fail("more than " + std::to_string(opt_.limits.maxReferences) + " stack pushes");
        stack_.push_back(v);
    }
    const Value *pop(const char *op) {
        if (stack_.size() <= base()) fail(std::string(op) + " on an empty stack (or below a MARK)");
        const Value *v = stack_.back();
        stack_.pop_back();
        return v;
    }
    const Value *top(const char *op) {
        if (stack_.size() <= base()) fail(std::string(op) + " on an empty stack (or below a MARK)");
        return stack_.back();
    }
    std::vector<const Value *> popMark(const char *op) {
        if (marks_.empty()) fail(std::string(op) + " without a MARK");
        const size_t b = marks_.back();
        marks_.pop_back();
        std::vector<const Value *> items(stack_.begin() + static_cast<std::ptrdiff_t>(b), stack_.end());
        stack_.resize(b);
        return items;
    }

    // Memo.
    void put(uint64_t idx) { memo_[idx] = top("PUT"); }
    void get(uint64_t idx) {
        auto it = memo_.find(idx);
        if (it == memo_.end()) fail("memo index " + std::to_string(idx) + " was never set");
        push(it->second);
    }
    uint64_t decimalIndex(std::string_view s, const char *op) {
        uint64_t v = 0;
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (ec != std::errc() || p != s.data() + s.size()) fail(std::string(op) + " with a bad index");
        return v;
    }

    // Containers.
    static bool keyOf(const Value *k, std::string &out);
    void dictSet(Value *d, const Value *k, const Value *v);
    // Containers are only filled while parsing; every value is a non-const arena object.
    Value *asList(const Value *target, const char *op) {
        if (!target->is(K::List))
            fail(std::string(op) + " on a value of type " + target->kindName() + ", not a list");
        return const_cast<Value *>(target);
    }
    Value *asDict(const Value *target, const char *op) {
        if (!target->is(K::Dict))
            fail(std::string(op) + " on a value of type " + target->kindName() + ", not a dict");
        return const_cast<Value *>(target);
    }

    // Scalars.
    Value *parseDecimal(std::string_view s, const char *op);
    Value *fromLongBytes(std::string_view b);
    std::string decodeEscapedString(std::string_view s);
    std::string decodeRawUnicodeEscape(std::string_view s);
    Value *makeGlobal(std::string module, std::string_view name);

    // Calls.
    const Value *call(const Value *callee, const Value *args, const char *op);
    Value *inertCall(const Value *callee, const Value *args);
    const Value *rebuildTensor(const std::string &fn, const Value *args);
    void finish(const Value *root);

    void step(uint8_t op);
};

bool Unpickler::keyOf(const Value *k, std::string &out) {
    // Python dict semantics for the key kinds checkpoints use: later SETITEM wins, and
    // True == 1 == 1.0 are one key.
    switch (k->kind()) {
    case K::String: out = "s" + k->text(); return true;
    case K::Bytes: out = "b" + k->text(); return true;
    case K::Int: out = "i" + std::to_string(k->integer()); return true;
    case K::BigInt: out = "i" + k->text(); return true;
    case K::Bool: out = k->boolean() ? "i1" : "i0"; return true;
    case K::None: out = "n"; return true;
    case K::Float: {
        const double f = k->real();
        // Range first: casting a double outside int64's range is undefined.
        if (f > -9.2e18 && f < 9.2e18 && f == static_cast<double>(static_cast<int64_t>(f)))
            out = "i" + std::to_string(static_cast<int64_t>(f));
        else
            out = "f" + std::to_string(f);
        return true;
    }
    default: return false; // tuples and others: appended as they come
    }
}

void Unpickler::dictSet(Value *d, const Value *k, const Value *v) {
    std::string key;
    if (keyOf(k, key)) {
        auto &index = dictIndex_[d];
        auto [it, inserted] = index.emplace(std::move(key), d->entries_.size());
        if (!inserted) {
            d->entries_[it->second].second = v;
            return;
        }
    }
    d->entries_.emplace_back(k, v);
}

Value *Unpickler::parseDecimal(std::string_view s, const char *op) {
    // INT / LONG text: optional sign, digits, LONG's optional trailing 'L'.
    if (!s.empty() && s.back() == 'L') s.remove_suffix(1);
    std::string_view digits = s;
    bool neg = false;
    if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) {
        neg = digits[0] == '-';
        digits.remove_prefix(1);
    }
    if (digits.empty()) fail(std::string(op) + " without digits");
    for (char c : digits)
        if (c < '0' || c > '9')
            fail(std::string(op) + " with a non-digit in '" + std::string(s.substr(0, 40)) + "'");
    if (digits.size() > opt_.limits.maxBigIntBytes * 3)
        fail(std::string(op) + " of " + std::to_string(digits.size()) + " digits is too long");
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data() + (s[0] == '+'), s.data() + s.size(), v);
    if (ec == std::errc() && p == s.data() + s.size()) return makeInt(v);
    while (digits.size() > 1 && digits[0] == '0') digits.remove_prefix(1);
    return makeText(K::BigInt, (neg ? "-" : "") + std::string(digits));
}

Value *Unpickler::fromLongBytes(std::string_view b) {
    // Little-endian two's complement of any length; int64 when it fits, else decimal text.
    const size_t n = b.size();
    if (n == 0) return makeInt(0);
    const bool neg = static_cast<uint8_t>(b[n - 1]) & 0x80;
    std::vector<uint8_t> mag(b.begin(), b.end());
    if (neg) { // magnitude = ~x + 1
        unsigned carry = 1;
        for (uint8_t &c : mag) {
            const unsigned s = static_cast<uint8_t>(~c) + carry;
            c = static_cast<uint8_t>(s);
            carry = s >> 8;
        }
    }
    while (!mag.empty() && mag.back() == 0) mag.pop_back();
    if (mag.size() <= 8) {
        uint64_t m = 0;
        for (size_t i = mag.size(); i-- > 0;) m = (m << 8) | mag[i];
        if (!neg && m <= static_cast<uint64_t>(INT64_MAX)) return makeInt(static_cast<int64_t>(m));
        if (neg && m <= static_cast<uint64_t>(INT64_MAX) + 1) return makeInt(static_cast<int64_t>(0 - m));
    }
    if (mag.size() > opt_.limits.maxBigIntBytes)
        fail("integer of " + std::to_string(mag.size()) + " bytes is too large");
    // Repeated division by 10^9 over base-2^32 limbs (most significant first).
    std::vector<uint32_t> limbs((mag.size() + 3) / 4, 0);
    for (size_t j = 0; j < mag.size(); ++j)
        limbs[limbs.size() - 1 - j / 4] |= static_cast<uint32_t>(mag[j]) << (8 * (j % 4));
    std::vector<uint32_t> chunks; // base 10^9, least significant first
    while (!limbs.empty()) {
        uint64_t rem = 0;
        for (uint32_t &l : limbs) {
            const uint64_t cur = (rem << 32) | l;
            l = static_cast<uint32_t>(cur / 1000000000u);
            rem = cur % 1000000000u;
        }
        chunks.push_back(static_cast<uint32_t>(rem));
        while (!limbs.empty() && limbs.front() == 0) limbs.erase(limbs.begin());
    }
    std::string s = neg ? "-" : "";
    s += std::to_string(chunks.back());
    for (size_t i = chunks.size() - 1; i-- > 0;) {
        std::string part = std::to_string(chunks[i]);
        s += std::string(9 - part.size(), '0') + part;
    }
    return makeText(K::BigInt, s);
}

std::string Unpickler::decodeEscapedString(std::string_view s) {
    // STRING's argument is a Python repr: quoted, with backslash escapes.
    if (s.size() < 2 || (s[0] != '\'' && s[0] != '"') || s.back() != s[0]) fail("STRING is not quoted");
    s = s.substr(1, s.size() - 2);
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\\' || i + 1 == s.size()) {
            out += s[i];
            continue;
        }
        const char c = s[++i];
        switch (c) {
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case '\\':
        case '\'':
        case '"': out += c; break;
        case '\n': break;
        case 'x': {
            if (i + 2 >= s.size()) fail("STRING has a short \\x escape");
            const int h = hexDigit(s[i + 1]), l = hexDigit(s[i + 2]);
            if (h < 0 || l < 0) fail("STRING has a bad \\x escape");
            out += static_cast<char>(h * 16 + l);
            i += 2;
            break;
        }
        default:
            if (c >= '0' && c <= '7') {
                int v = c - '0';
                for (int k = 0; k < 2 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7'; ++k)
                    v = v * 8 + (s[++i] - '0');
                out += static_cast<char>(v & 0xff);
            } else {
                out += '\\';
                out += c;
            }
        }
    }
    return out;
}

std::string Unpickler::decodeRawUnicodeEscape(std::string_view s) {
    // UNICODE's argument: latin-1 bytes, with \uXXXX and \UXXXXXXXX escapes.
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<uint8_t>(s[i]);
        if (c == '\\' && i + 1 < s.size() && (s[i + 1] == 'u' || s[i + 1] == 'U')) {
            const size_t n = s[i + 1] == 'u' ? 4 : 8;
            if (i + 2 + n > s.size()) fail("UNICODE has a short \\u escape");
            uint32_t cp = 0;
            for (size_t k = 0; k < n; ++k) {
                const int d = hexDigit(s[i + 2 + k]);
                if (d < 0) fail("UNICODE has a bad \\u escape");
                cp = cp * 16 + static_cast<uint32_t>(d);
            }
            if (cp > 0x10ffff) fail("UNICODE escape beyond U+10FFFF");
            putUtf8(out, cp);
            i += 1 + n;
        } else {
            putUtf8(out, c);
        }
    }
    return out;
}

Value *Unpickler::makeGlobal(std::string module, std::string_view name) {
    // Protocol-2 pickles from Python 2 name Python 3's modules by their old names.
    if (module == "__builtin__") module = "builtins";
    if (module == "copy_reg") module = "copyreg";
    Value *g = make(K::Global);
    g->u_.split = module.size();
    g->text_ = module + "." + std::string(name);
    return g;
}

Value *Unpickler::inertCall(const Value *callee, const Value *args) {
    Value *c = make(K::Call);
    c->items_ = {callee, args};
    c->u_.off = opt_.baseOffset + opPos_;
    return c;
}

const Value *Unpickler::rebuildTensor(const std::string &fn, const Value *args) {
    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks
    // [, metadata]) and the older _rebuild_tensor(storage, storage_offset, size, stride).
    auto bad = [&](const std::string &why) { fail(fn + ": " + why); };
    if (!args->is(K::Tuple) || args->items_.size() < 4 || args->items_.size() > 7)
        bad("expects a tuple of 4 to 7 arguments, got " + describe(*args));
    const auto &a = args->items_;
    const Value *st = a[0];
    if (!st->is(K::Persistent)) bad("its storage is " + describe(*st) + ", not a persistent storage id");
    const Value *pid = st->persistentId();
    // ('storage', storage_type, key, location, numel[, view_metadata (legacy format)])
    if (!pid->is(K::Tuple) || pid->items_.size() < 5 || pid->items_.size() > 6 ||
        !pid->items_[0]->is(K::String) || pid->items_[0]->text() != "storage")
        bad("its persistent id " + describe(*pid) + " is not ('storage', type, key, location, numel)");
    const auto &p = pid->items_;
    TensorRef &t = doc_.arena_->tensors.emplace_back();
    if (!p[1]->is(K::Global)) bad("its storage type is " + describe(*p[1]) + ", not a torch storage class");
    t.storageType = p[1]->qualifiedName();
    t.dtypeKnown = storageDtype(t.storageType, t.dtype);
    if (p[2]->is(K::String))
        t.storageKey = p[2]->text();
    else if (p[2]->is(K::Int))
        t.storageKey = std::to_string(p[2]->integer());
    else
        bad("its storage key is " + describe(*p[2]));
    if (p[3]->is(K::String)) t.location = p[3]->text();
    if (!p[4]->is(K::Int) || p[4]->integer() < 0) bad("its storage size is " + describe(*p[4]));
    t.storageNumel = p[4]->integer();
    if (p.size() == 6 && !p[5]->is(K::None))
        bad("storage '" + t.storageKey +
            "' is a view of another storage (legacy view_metadata), which is not supported");
    if (!a[1]->is(K::Int)) bad("its storage offset is " + describe(*a[1]));
    t.storageOffset = a[1]->integer();
    auto ints = [&](const Value *v, std::vector<int64_t> &out, const char *what) {
        if (!v->is(K::Tuple) && !v->is(K::List)) bad(std::string("its ") + what + " is " + describe(*v));
        for (const Value *x : v->items_) {
            if (!x->is(K::Int))
                bad(std::string("its ") + what + " holds " + describe(*x) + ", not a 64-bit int");
            out.push_back(x->integer());
        }
    };
    ints(a[2], t.shape, "size");
    ints(a[3], t.stride, "stride");
    if (t.shape.size() != t.stride.size())
        bad("size has " + std::to_string(t.shape.size()) + " dims but stride has " +
            std::to_string(t.stride.size()));
    if (a.size() > 4) t.requiresGrad = a[4]->is(K::Bool) && a[4]->boolean();
    Value *v = make(K::Tensor);
    v->u_.t = &t;
    doc_.tensors_.push_back(v);
    return v;
}

const Value *Unpickler::call(const Value *callee, const Value *args, const char *op) {
    // The allow-list: pure data transforms, evaluated here. Everything else stays inert.
    if (!callee->is(K::Global)) return inertCall(callee, args);
    const std::string &fn = callee->qualifiedName();
    const bool tuple = args->is(K::Tuple);
    const auto &a = args->items_;
    auto bad = [&](const std::string &why) { fail(fn + " (" + op + "): " + why); };
    if (fn == "collections.OrderedDict") {
        Value *d = make(K::Dict);
        d->flag_ = true;
        if (!tuple || a.size() > 1) bad("unexpected arguments " + describe(*args));
        if (a.size() == 1) {
            const Value *src = a[0];
            if (src->is(K::Dict)) {
                for (const auto &[k, v] : src->entries_) dictSet(d, k, v);
            } else if (src->is(K::List) || src->is(K::Tuple)) {
                for (const Value *pair : src->items_) {
                    if (!(pair->is(K::Tuple) || pair->is(K::List)) || pair->items_.size() != 2)
                        bad("its items are not (key, value) pairs");
                    dictSet(d, pair->items_[0], pair->items_[1]);
                }
            } else {
                bad("unexpected argument " + describe(*src));
            }
        }
        return d;
    }
    if (fn == "builtins.set" || fn == "builtins.frozenset") {
        Value *l = make(K::List);
        if (!tuple || a.size() > 1 || (a.size() == 1 && !a[0]->is(K::List) && !a[0]->is(K::Tuple)))
            bad("unexpected arguments " + describe(*args));
        if (a.size() == 1) l->items_ = a[0]->items_;
        return l;
    }
    if (fn == "torch.Size") {
        if (!tuple || a.size() != 1 || (!a[0]->is(K::Tuple) && !a[0]->is(K::List)))
            bad("unexpected arguments " + describe(*args));
        Value *t = make(K::Tuple);
        t->items_ = a[0]->items_;
        return t;
    }
    if (fn == "_codecs.encode") {
        // How protocol 2 writes Python 3 bytes: encode(text, 'latin1').
        if (!tuple || a.size() != 2 || !a[0]->is(K::String) || !a[1]->is(K::String) ||
            (a[1]->text() != "latin1" && a[1]->text() != "latin-1"))
            bad("only encode(str, 'latin1') is read, got " + describe(*args));
        std::string out;
        const std::string &s = a[0]->text();
        for (size_t i = 0; i < s.size(); ++i) {
            const auto c = static_cast<uint8_t>(s[i]);
            if (c < 0x80) {
                out += static_cast<char>(c);
            } else if ((c & 0xe0) == 0xc0 && i + 1 < s.size()) {
                const uint32_t cp = ((c & 0x1fu) << 6) | (static_cast<uint8_t>(s[++i]) & 0x3fu);
                if (cp > 0xff) bad("text holds a character beyond latin-1");
                out += static_cast<char>(cp);
            } else {
                bad("text holds a character beyond latin-1");
            }
        }
        return makeText(K::Bytes, out);
    }
    if (fn == "torch._utils._rebuild_tensor_v2" || fn == "torch._utils._rebuild_tensor")
        return rebuildTensor(fn, args);
    if (fn == "torch._utils._rebuild_parameter" || fn == "torch._utils._rebuild_parameter_with_state") {
        if (!tuple || a.empty() || !a[0]->is(K::Tensor)) bad("its data is not a tensor: " + describe(*args));
        return a[0];
    }
    if (fn == "torch._tensor._rebuild_from_type_v2" || fn == "torch._tensor._rebuild_from_type") {
        // (func, type, args, state): the tensor that func(*args) makes; type and state are
        // the Python class and attributes, which a tensor reader does not need.
        if (!tuple || a.size() < 3) bad("unexpected arguments " + describe(*args));
        return call(a[0], a[2], op);
    }
    return inertCall(callee, args);
}

void Unpickler::step(uint8_t op) {
    switch (op) {
    case 0x80: { // PROTO
        const uint8_t v = byte("PROTO");
        if (v > 5) fail("pickle protocol " + std::to_string(v) + " is newer than 5");
        break;
    }
    case 0x95: { // FRAME: only announces a length; every opcode checks its own bytes
        const uint64_t n = uintLE(8, "FRAME");
        if (n > in_.size() - pos_) truncated("FRAME of " + std::to_string(n) + " bytes");
        break;
    }
    case '(': // MARK
        if (marks_.size() >= opt_.limits.maxDepth)
            fail("MARKs nest deeper than " + std::to_string(opt_.limits.maxDepth));
        marks_.push_back(stack_.size());
        break;
    case '0': // POP (Python pops a MARK when nothing is above it)
        if (stack_.size() > base())
            stack_.pop_back();
        else if (!marks_.empty())
            marks_.pop_back();
        else
            fail("POP on an empty stack");
        break;
    case '1': popMark("POP_MARK"); break;
    case '2': push(top("DUP")); break;
    case 'N': push(none_); break;
    case 0x88: push(makeBool(true)); break;
    case 0x89: push(makeBool(false)); break;
    case 'I': { // INT: decimal text; "00"/"01" are False/True
        std::string_view s = line("INT");
        if (s == "00" || s == "01")
            push(makeBool(s == "01"));
        else
            push(parseDecimal(s, "INT"));
        break;
    }
    case 'J': push(makeInt(static_cast<int32_t>(static_cast<uint32_t>(uintLE(4, "BININT"))))); break;
    case 'K': push(makeInt(byte("BININT1"))); break;
    case 'M': push(makeInt(static_cast<int64_t>(uintLE(2, "BININT2")))); break;
    case 'L': push(parseDecimal(line("LONG"), "LONG")); break;
    case 0x8a: push(fromLongBytes(take(byte("LONG1"), "LONG1"))); break;
    case 0x8b: {
        const auto n = static_cast<int32_t>(static_cast<uint32_t>(uintLE(4, "LONG4")));
        if (n < 0) fail("LONG4 with a negative length");
        if (static_cast<uint64_t>(n) > opt_.limits.maxBigIntBytes)
            fail("integer of " + std::to_string(n) + " bytes is too large");
        push(fromLongBytes(take(static_cast<uint64_t>(n), "LONG4")));
        break;
    }
    case 'F': {
        std::string_view s = line("FLOAT");
        double d = 0;
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
        if (ec != std::errc() || p != s.data() + s.size())
            fail("FLOAT '" + std::string(s.substr(0, 40)) + "'");
        Value *v = make(K::Float);
        v->u_.f = d;
        push(v);
        break;
    }
    case 'G': {
        const std::string_view s = take(8, "BINFLOAT");
        uint64_t bits = 0;
        for (char c : s) bits = (bits << 8) | static_cast<uint8_t>(c); // big-endian
        Value *v = make(K::Float);
        std::memcpy(&v->u_.f, &bits, 8);
        push(v);
        break;
    }
    case 'S': push(makeText(K::String, decodeEscapedString(line("STRING")))); break;
    case 'T': {
        const auto n = static_cast<int32_t>(static_cast<uint32_t>(uintLE(4, "BINSTRING")));
        if (n < 0) fail("BINSTRING with a negative length");
        push(makeText(K::String, take(static_cast<uint64_t>(n), "BINSTRING")));
        break;
    }
    case 'U': push(makeText(K::String, take(byte("SHORT_BINSTRING"), "SHORT_BINSTRING"))); break;
    case 'V': push(makeText(K::String, decodeRawUnicodeEscape(line("UNICODE")))); break;
    case 'X': push(makeText(K::String, take(uintLE(4, "BINUNICODE"), "BINUNICODE"))); break;
    case 0x8c: push(makeText(K::String, take(byte("SHORT_BINUNICODE"), "SHORT_BINUNICODE"))); break;
    case 0x8d: push(makeText(K::String, take(uintLE(8, "BINUNICODE8"), "BINUNICODE8"))); break;
    case 'B': push(makeText(K::Bytes, take(uintLE(4, "BINBYTES"), "BINBYTES"))); break;
    case 'C': push(makeText(K::Bytes, take(byte("SHORT_BINBYTES"), "SHORT_BINBYTES"))); break;
    case 0x8e: push(makeText(K::Bytes, take(uintLE(8, "BINBYTES8"), "BINBYTES8"))); break;
    case 0x96: push(makeText(K::Bytes, take(uintLE(8, "BYTEARRAY8"), "BYTEARRAY8"))); break;
    case ']': push(make(K::List)); break;
    case 0x8f: push(make(K::List)); break; // EMPTY_SET: sets are read as lists
    case 'a': {                            // APPEND
        const Value *v = pop("APPEND");
        asList(top("APPEND"), "APPEND")->items_.push_back(v);
        break;
    }
    case 'e':    // APPENDS
    case 0x90: { // ADDITEMS
        const char *name = op == 'e' ? "APPENDS" : "ADDITEMS";
        std::vector<const Value *> items = popMark(name);
        Value *l = asList(top(name), name);
        l->items_.insert(l->items_.end(), items.begin(), items.end());
        break;
    }
    case 'l':
    case 0x91: { // LIST, FROZENSET
        std::vector<const Value *> items = popMark(op == 'l' ? "LIST" : "FROZENSET");
        Value *l = make(K::List);
        l->items_.assign(items.begin(), items.end());
        push(l);
        break;
    }
    case ')': push(make(K::Tuple)); break;
    case 't': {
        std::vector<const Value *> items = popMark("TUPLE");
        Value *t = make(K::Tuple);
        t->items_.assign(items.begin(), items.end());
        push(t);
        break;
    }
    case 0x85:
    case 0x86:
    case 0x87: { // TUPLE1..3
        const int n = op - 0x84;
        Value *t = make(K::Tuple);
        t->items_.resize(n);
        for (int i = n - 1; i >= 0; --i) t->items_[i] = pop("TUPLEn");
        push(t);
        break;
    }
    case '}': push(make(K::Dict)); break;
    case 'd': {
        std::vector<const Value *> items = popMark("DICT");
        if (items.size() % 2) fail("DICT with an odd number of items");
        Value *d = make(K::Dict);
        for (size_t i = 0; i < items.size(); i += 2) dictSet(d, items[i], items[i + 1]);
        push(d);
        break;
    }
    case 's': {
        const Value *v = pop("SETITEM");
        const Value *k = pop("SETITEM");
        dictSet(asDict(top("SETITEM"), "SETITEM"), k, v);
        break;
    }
    case 'u': {
        std::vector<const Value *> items = popMark("SETITEMS");
        if (items.size() % 2) fail("SETITEMS with an odd number of items");
        Value *d = asDict(top("SETITEMS"), "SETITEMS");
        for (size_t i = 0; i < items.size(); i += 2) dictSet(d, items[i], items[i + 1]);
        break;
    }
    case 'g': get(decimalIndex(line("GET"), "GET")); break;
    case 'h': get(byte("BINGET")); break;
    case 'j': get(uintLE(4, "LONG_BINGET")); break;
    case 'p': put(decimalIndex(line("PUT"), "PUT")); break;
    case 'q': put(byte("BINPUT")); break;
    case 'r': put(uintLE(4, "LONG_BINPUT")); break;
    case 0x94: put(memo_.size()); break; // MEMOIZE
    case 'c': {
        const std::string_view module = line("GLOBAL");
        const std::string_view name = line("GLOBAL");
        push(makeGlobal(std::string(module), name));
        break;
    }
    case 0x93: {
        const Value *name = pop("STACK_GLOBAL");
        const Value *module = pop("STACK_GLOBAL");
        if (!name->is(K::String) || !module->is(K::String)) fail("STACK_GLOBAL of non-strings");
        push(makeGlobal(module->text(), name->text()));
        break;
    }
    case 'R': {
        const Value *args = pop("REDUCE");
        const Value *callee = pop("REDUCE");
        push(call(callee, args, "REDUCE"));
        break;
    }
    case 0x81: {
        const Value *args = pop("NEWOBJ");
        const Value *cls = pop("NEWOBJ");
        push(call(cls, args, "NEWOBJ"));
        break;
    }
    case 0x92: {
        const Value *kwargs = pop("NEWOBJ_EX");
        const Value *args = pop("NEWOBJ_EX");
        const Value *cls = pop("NEWOBJ_EX");
        if (!kwargs->is(K::Dict) || !kwargs->entries_.empty()) {
            Value *c = inertCall(cls, args);
            c->items_.push_back(kwargs);
            push(c);
        } else {
            push(call(cls, args, "NEWOBJ_EX"));
        }
        break;
    }
    case 'b': { // BUILD: obj.__setstate__(state) in Python; here the state is only recorded
        const Value *state = pop("BUILD");
        auto *obj = const_cast<Value *>(top("BUILD"));
        if (obj->is(K::Dict)) {
            obj->items_.assign(1, state);
        } else if (obj->is(K::Call)) {
            obj->items_.resize(2);
            obj->items_.push_back(state);
        } else if (obj->is(K::Global)) {
            // Setting state on a class or module is how pickles patch code: keep it inert,
            // and let the refusal name it.
            Value *c = inertCall(obj, none_);
            c->items_.push_back(state);
            stack_.back() = c;
        } else if (!obj->is(K::Tensor)) {
            fail("BUILD on a value of type " + std::string(obj->kindName()));
        }
        break;
    }
    case 'P': {
        Value *p = make(K::Persistent);
        p->items_ = {makeText(K::String, line("PERSID"))};
        push(p);
        break;
    }
    case 'Q': {
        Value *p = make(K::Persistent);
        p->items_ = {pop("BINPERSID")};
        push(p);
        break;
    }
    default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        const char *name = opcodeName(op);
        std::string what = std::string("unsupported pickle opcode ") + hex;
        if (op >= 0x20 && op < 0x7f) what += std::string(" ('") + static_cast<char>(op) + "')";
        if (name) what += std::string(" ") + name;
        fail(what + "; a torch.save stream does not use it");
    }
    }
}

void Unpickler::finish(const Value *root) {
    // 1. Refuse any call that was not evaluated: it names code the file wants run.
    if (opt_.refuseUnknownCalls) {
        for (const Value &v : doc_.arena_->values) {
            if (!v.is(K::Call)) continue;
            const Value *c = v.callee();
            const std::string what =
                c->is(K::Global) ? c->qualifiedName() : "a computed value (" + describe(*c) + ")";
            std::string at = opt_.part.empty() ? std::string() : opt_.part + " ";
            throw Error((opt_.context.empty() ? std::string("pickle") : opt_.context) +
                        ": refuses to load: it calls " + what + " (" + at + "byte " +
                        std::to_string(v.offset()) +
                        "; only tensors, containers and plain values are allowed)");
        }
    }
    // 2. No cycles, bounded nesting: consumers may walk the tree recursively. Iterative DFS
    // over containers: 1 on the current path, 2 done.
    std::unordered_map<const Value *, uint8_t> state;
    struct Frame {
        const Value *v;
        size_t next;
    };
    auto childCount = [](const Value *v) { return 2 * v->entries_.size() + v->items_.size(); };
    auto child = [](const Value *v, size_t i) {
        const size_t n = 2 * v->entries_.size();
        if (i < n) return i % 2 ? v->entries_[i / 2].second : v->entries_[i / 2].first;
        return v->items_[i - n];
    };
    std::vector<Frame> path{{root, 0}};
    state[root] = 1;
    while (!path.empty()) {
        Frame &f = path.back();
        if (f.next == childCount(f.v)) {
            state[f.v] = 2;
            path.pop_back();
            continue;
        }
        const Value *c = child(f.v, f.next++);
        if (childCount(c) == 0) continue;
        uint8_t &s = state[c];
        if (s == 2) continue;
        if (s == 1)
            fail("the object refers to itself (a cycle through a " + std::string(c->kindName()) + ")");
        if (path.size() >= opt_.limits.maxDepth)
            fail("values nest deeper than " + std::to_string(opt_.limits.maxDepth) + " levels");
        s = 1;
        path.push_back({c, 0});
    }
}

PickleDocument Unpickler::run() {
    Value &none = doc_.arena_->values.emplace_back();
    none_ = &none;
    while (true) {
        opPos_ = pos_;
        if (pos_ >= in_.size()) truncated("the stream (no STOP)");
        const auto op = static_cast<uint8_t>(in_[pos_++]);
        if (op == '.') {
            const Value *root = pop("STOP");
            doc_.end_ = pos_;
            finish(root);
            doc_.root_ = root;
            return std::move(doc_);
        }
        step(op);
    }
}

PickleDocument unpickle(std::string_view bytes, const PickleOptions &options) {
    return Unpickler(bytes, options).run();
}

} // namespace mgd::pth
