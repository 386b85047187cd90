#include "core/import/torch_file.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "core/import/zip_archive.h"
#include "core/util/error.h"

namespace mgd::pth {

static_assert(std::endian::native == std::endian::little, "torch files store little-endian data");

namespace {

using K = Value::Kind;

// data.pkl and the legacy stream's pickles are small (a 65B state dict's pickle is ~1 MB);
// the bound keeps a hostile length from being read into memory.
constexpr uint64_t kMaxPickleBytes = 1ull << 30;
// A strided view whose storage extent is at most this is read in one piece and gathered.
constexpr uint64_t kGatherBytes = 256ull << 20;
// "119547037146038801333356" == 0x1950a86a20f9469cfc6c: the legacy stream's first pickle.
constexpr const char *kLegacyMagic = "119547037146038801333356";

std::string dims(const std::vector<int64_t> &v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
}

std::string hexHead(const std::string &head) {
    static const char *digits = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < std::min<size_t>(head.size(), 8); ++i) {
        const auto c = static_cast<uint8_t>(head[i]);
        s += (i ? " " : "");
        s += digits[c >> 4];
        s += digits[c & 15];
    }
    return s;
}

bool checkedNumel(const TensorRef &t, uint64_t &out) {
    uint64_t n = 1;
    for (int64_t d : t.shape)
        if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
    out = n;
    return true;
}

} // namespace

uint64_t numel(const TensorRef &t) {
    uint64_t n = 0;
    if (!checkedNumel(t, n)) throw Error("tensor of size " + dims(t.shape) + ": invalid or overflowing size");
    return n;
}

uint64_t nbytes(const TensorRef &t) {
    uint64_t b = 0;
    if (__builtin_mul_overflow(numel(t), elementSize(t.dtype), &b))
        throw Error("tensor of size " + dims(t.shape) + ": byte size overflows");
    return b;
}

TorchFile::TorchFile() = default;
TorchFile::TorchFile(TorchFile &&) noexcept = default;
TorchFile &TorchFile::operator=(TorchFile &&) noexcept = default;
TorchFile::~TorchFile() = default;

TorchFile TorchFile::open(const std::string &path) {
    TorchFile tf;
    tf.path_ = path;
    tf.label_ = "checkpoint '" + path + "'";
    tf.file_ = std::make_shared<ReadOnlyFile>(path, tf.label_);
    const ReadOnlyFile &f = *tf.file_;
    if (f.size() == 0) throw Error(tf.label_ + ": is empty (0 bytes); the download or copy did not complete");
    const std::string head = f.readString(0, std::min<uint64_t>(f.size(), 512));
    if (head.rfind("version https://git-lfs", 0) == 0)
        throw Error(tf.label_ + ": is a Git LFS pointer (" + std::to_string(f.size()) +
                    " bytes of text), not the checkpoint: the real file was not downloaded (run 'git lfs "
                    "pull' in its repository, or download the file directly)");
    if (ZipArchive::looksLikeZip(head)) {
        tf.openZip();
    } else if (static_cast<uint8_t>(head[0]) == 0x80) {
        tf.legacy_ = true;
        tf.openLegacy();
    } else if (head.size() >= 262 && head.compare(257, 5, "ustar") == 0) {
        throw Error(tf.label_ +
                    ": is a tar archive (the torch < 0.4 checkpoint format), which is not supported");
    } else {
        throw Error(tf.label_ +
                    ": is not a PyTorch checkpoint: neither a torch.save zip archive nor a legacy "
                    "torch pickle stream (it starts with bytes " +
                    hexHead(head) + ")");
    }
    tf.validateTensors();
    return tf;
}

void TorchFile::openZip() {
    ZipArchive za = ZipArchive::open(path_, label_);
    // <root>/data.pkl: root is the stem the file was saved under, not necessarily its name.
    const ZipArchive::Entry *pkl = nullptr;
    bool scripted = false;
    for (const auto &e : za.entries()) {
        const size_t slash = e.name.find('/');
        const std::string_view rest = slash == std::string::npos ? std::string_view(e.name)
                                                                 : std::string_view(e.name).substr(slash + 1);
        const bool topLevel = slash == std::string::npos || rest.find('/') == std::string_view::npos;
        if (topLevel && rest == "constants.pkl") scripted = true;
        if (!topLevel || rest != "data.pkl") continue;
        if (pkl)
            throw Error(label_ + ": holds two object pickles ('" + pkl->name + "' and '" + e.name +
                        "'); a torch.save archive has one");
        pkl = &e;
    }
    if (!pkl) {
        if (scripted)
            throw Error(label_ + ": is a TorchScript archive (torch.jit.save), not a torch.save checkpoint");
        throw Error(label_ + ": is a zip archive without <root>/data.pkl, so not a torch.save checkpoint");
    }
    root_ = pkl->name.size() > 9 ? pkl->name.substr(0, pkl->name.size() - 9) : "";
    const std::string prefix = root_.empty() ? "" : root_ + "/";
    if (const auto *bo = za.find(prefix + "byteorder")) {
        const std::string order = za.readAll(*bo, 16);
        if (order != "little")
            throw Error(label_ + ": byte order '" + order + "' is not supported (only little-endian)");
    }
    const std::string bytes = za.readAll(*pkl, kMaxPickleBytes);
    PickleOptions opt;
    opt.context = label_;
    opt.part = pkl->name;
    doc_ = unpickle(bytes, opt);
    if (doc_.endOffset() != bytes.size())
        throw Error(label_ + ": " + pkl->name + " has " + std::to_string(bytes.size() - doc_.endOffset()) +
                    " bytes after its STOP opcode");
    collectTensors();

    // Storages: one record <root>/data/<key> each.
    for (const Value *tv : doc_.tensors()) {
        const TensorRef &t = tv->tensor();
        if (storages_.count(t.storageKey)) continue;
        const std::string name = prefix + "data/" + t.storageKey;
        const auto *e = za.find(name);
        if (!e)
            throw Error(label_ + ": storage '" + t.storageKey + "' (used by " + tensorName(t) +
                        ") has no record '" + name + "' in the archive");
        za.requireStored(*e);
        StorageInfo s;
        s.fileOffset = e->dataOffset;
        s.nbytes = e->size;
        s.dtype = t.dtype;
        s.numel = static_cast<uint64_t>(t.storageNumel);
        s.record = name;
        storages_.emplace(t.storageKey, s);
    }
    file_ = za.file();
}

void TorchFile::openLegacy() {
    // A sequence of pickles: magic number, protocol version, sys_info, the object, the storage
    // keys; then each storage as u64 numel + raw data, in the keys' order.
    uint64_t offset = 0;
    auto next = [&](const char *what, bool refuseCalls) {
        const uint64_t left = file_->size() - offset;
        uint64_t want = std::min<uint64_t>(left, 1ull << 20);
        while (true) {
            const std::string buf = file_->readString(offset, want);
            PickleOptions opt;
            opt.context = label_;
            opt.part = std::string("legacy ") + what + " pickle at";
            opt.baseOffset = offset;
            opt.refuseUnknownCalls = refuseCalls;
            try {
                PickleDocument d = unpickle(buf, opt);
                offset += d.endOffset();
                return d;
            } catch (const PickleTruncated &) {
                // The pickle's length is unknown in advance: read more, up to the bound.
                if (want == left || want >= kMaxPickleBytes) throw;
                want = std::min({left, want * 4, kMaxPickleBytes});
            }
        }
    };
    {
        PickleDocument magic = next("magic-number", true);
        if (!magic.root().is(K::BigInt) || magic.root().text() != kLegacyMagic)
            throw Error(label_ + ": starts with a pickle (" + describe(magic.root()) +
                        ") that is not torch's magic number: not a PyTorch checkpoint");
    }
    {
        PickleDocument proto = next("protocol-version", true);
        if (!proto.root().is(K::Int) || proto.root().integer() != 1001)
            throw Error(label_ + ": legacy protocol version " + describe(proto.root()) +
                        " is not supported (only 1001)");
    }
    {
        PickleDocument sys = next("sys_info", true);
        if (!sys.root().is(K::Dict)) throw Error(label_ + ": legacy sys_info is not a dict");
        const Value *le = sys.root().find("little_endian");
        if (le && le->is(K::Bool) && !le->boolean())
            throw Error(label_ + ": was saved on a big-endian machine, which is not supported");
    }
    doc_ = next("object", true);
    collectTensors();
    std::vector<std::string> keys;
    {
        PickleDocument list = next("storage-keys", true);
        if (!list.root().is(K::List)) throw Error(label_ + ": legacy storage-key list is not a list");
        for (const Value *k : list.root().items()) {
            if (!k->is(K::String))
                throw Error(label_ + ": legacy storage key " + describe(*k) + " is not a string");
            keys.push_back(k->text());
        }
    }
    // The record layout needs each storage's element size, which only the tensors give.
    std::map<std::string, const TensorRef *> declared;
    for (const Value *tv : doc_.tensors()) declared.emplace(tv->tensor().storageKey, &tv->tensor());
    for (size_t i = 0; i < keys.size(); ++i) {
        const std::string &key = keys[i];
        const std::string rec =
            "legacy record " + std::to_string(i) + " (byte " + std::to_string(offset) + ")";
        auto it = declared.find(key);
        if (it == declared.end())
            throw Error(label_ + ": storage '" + key + "' of " + rec +
                        " is used by no tensor, so its element size is unknown");
        if (storages_.count(key)) throw Error(label_ + ": storage '" + key + "' is listed twice");
        const TensorRef &t = *it->second;
        if (!t.dtypeKnown)
            throw Error(label_ + ": storage '" + key + "' (" + tensorName(t) + ") has the unsupported type " +
                        t.storageType);
        if (file_->size() - offset < 8)
            throw Error(label_ + ": " + rec + " of storage '" + key + "' is missing: the file ends");
        unsigned char nb[8];
        file_->readAt(offset, nb, 8);
        uint64_t n = 0;
        for (int b = 7; b >= 0; --b) n = (n << 8) | nb[b];
        if (n != static_cast<uint64_t>(t.storageNumel))
            throw Error(label_ + ": " + rec + " holds " + std::to_string(n) + " elements but storage '" +
                        key + "' is declared with " + std::to_string(t.storageNumel));
        uint64_t bytes = 0;
        if (__builtin_mul_overflow(n, elementSize(t.dtype), &bytes) || bytes > file_->size() - offset - 8)
            throw Error(label_ + ": " + rec + " of storage '" + key + "' needs " + std::to_string(n) + " x " +
                        std::to_string(elementSize(t.dtype)) + " bytes; the file ends before that (" +
                        std::to_string(file_->size() - offset - 8) + " bytes left)");
        StorageInfo s;
        s.fileOffset = offset + 8;
        s.nbytes = bytes;
        s.dtype = t.dtype;
        s.numel = n;
        s.record = rec;
        storages_.emplace(key, s);
        offset += 8 + bytes;
    }
    for (const auto &[key, t] : declared)
        if (!storages_.count(key))
            throw Error(label_ + ": storage '" + key + "' (used by " + tensorName(*t) +
                        ") has no legacy record");
}

void TorchFile::collectTensors() {
    // Pre-order walk from the root naming each tensor by its keys; shared containers are
    // walked once (the unpickler already refused cycles and bounded the depth).
    struct Frame {
        const Value *v;
        std::string path;
        size_t next = 0;
    };
    std::map<const Value *, bool> seen;
    std::vector<Frame> stack;
    auto visit = [&](const Value *v, std::string path) {
        if (v->is(K::Tensor)) {
            firstPath_.emplace(&v->tensor(), path);
            tensors_.push_back({std::move(path), &v->tensor()});
        } else if ((v->is(K::Dict) || v->is(K::List) || v->is(K::Tuple)) && !seen[v]) {
            seen[v] = true;
            stack.push_back({v, std::move(path)});
        }
    };
    visit(&doc_.root(), "");
    while (!stack.empty()) {
        Frame &f = stack.back();
        const Value *v = f.v;
        const size_t n = v->is(K::Dict) ? v->entries().size() : v->items().size();
        if (f.next == n) {
            stack.pop_back();
            continue;
        }
        const size_t i = f.next++;
        std::string path = f.path.empty() ? "" : f.path + "/";
        if (v->is(K::Dict)) {
            const Value *k = v->entries()[i].first;
            path += k->is(K::String) ? k->text() : describe(*k);
            visit(v->entries()[i].second, std::move(path)); // may grow `stack`: f is not used after
        } else {
            path += std::to_string(i);
            visit(v->items()[i], std::move(path));
        }
    }
}

std::string TorchFile::tensorName(const TensorRef &t) const {
    auto it = firstPath_.find(&t);
    if (it != firstPath_.end()) return "tensor '" + it->second + "'";
    return "a tensor on storage '" + t.storageKey + "'";
}

void TorchFile::validateTensors() {
    // Every tensor the pickle made, reachable or not, before any data is read.
    for (const Value *tv : doc_.tensors()) {
        const TensorRef &t = tv->tensor();
        const std::string who = label_ + ": " + tensorName(t);
        if (!t.dtypeKnown)
            throw Error(who + ": storage type " + t.storageType +
                        " is not supported (float16/bfloat16/float32/float64, int8-64, uint8, bool)");
        const auto sit = storages_.find(t.storageKey);
        if (sit == storages_.end()) throw Error(who + ": storage '" + t.storageKey + "' has no record");
        const StorageInfo &s = sit->second;
        if (s.dtype != t.dtype)
            throw Error(who + ": reads storage '" + t.storageKey + "' as " + scalarKindName(t.dtype) +
                        " but another tensor reads it as " + scalarKindName(s.dtype));
        if (static_cast<uint64_t>(t.storageNumel) != s.numel)
            throw Error(who + ": declares storage '" + t.storageKey + "' with " +
                        std::to_string(t.storageNumel) + " elements, another tensor with " +
                        std::to_string(s.numel));
        uint64_t want = 0;
        if (__builtin_mul_overflow(s.numel, elementSize(s.dtype), &want) || want != s.nbytes)
            throw Error(who + ": storage '" + t.storageKey + "' declares " + std::to_string(s.numel) +
                        " elements of " + scalarKindName(s.dtype) + " but its record " + s.record +
                        " holds " + std::to_string(s.nbytes) + " bytes");
        for (int64_t d : t.shape)
            if (d < 0) throw Error(who + ": size " + dims(t.shape) + " has a negative dimension");
        for (int64_t d : t.stride)
            if (d < 0) throw Error(who + ": stride " + dims(t.stride) + " has a negative step");
        if (t.storageOffset < 0)
            throw Error(who + ": negative storage offset " + std::to_string(t.storageOffset));
        uint64_t n = 0, bytes = 0;
        if (!checkedNumel(t, n) || __builtin_mul_overflow(n, elementSize(t.dtype), &bytes) ||
            n > static_cast<uint64_t>(INT64_MAX))
            throw Error(who + ": size " + dims(t.shape) + " overflows 64 bits");
        if (n == 0) continue;
        // Last element + 1: offset + sum((size_i - 1) * stride_i) + 1, overflow-checked.
        uint64_t extent = static_cast<uint64_t>(t.storageOffset) + 1;
        bool overflow = extent == 0;
        for (size_t i = 0; i < t.shape.size() && !overflow; ++i) {
            uint64_t step = 0;
            overflow = __builtin_mul_overflow(static_cast<uint64_t>(t.shape[i] - 1),
                                              static_cast<uint64_t>(t.stride[i]), &step) ||
                       __builtin_add_overflow(extent, step, &extent);
        }
        if (overflow || extent > s.numel)
            throw Error(who + ": view (offset " + std::to_string(t.storageOffset) + ", size " +
                        dims(t.shape) + ", stride " + dims(t.stride) + ") needs " +
                        (overflow ? "more than 2^64" : std::to_string(extent)) + " elements of storage '" +
                        t.storageKey + "', which holds " + std::to_string(s.numel));
    }
    for (const Value *tv : doc_.tensors()) validated_.insert(&tv->tensor());
}

const StorageInfo &TorchFile::storage(const TensorRef &t) const {
    auto it = storages_.find(t.storageKey);
    if (it == storages_.end()) throw Error(label_ + ": no storage '" + t.storageKey + "'");
    return it->second;
}

void TorchFile::readContiguous(const TensorRef &t, void *dst) const {
    if (!validated_.count(&t)) throw Error(label_ + ": readContiguous of a tensor from another file");
    const StorageInfo &s = storage(t);
    const uint64_t es = elementSize(t.dtype);
    const uint64_t n = numel(t);
    if (n == 0) return;
    auto *out = static_cast<char *>(dst);
    const size_t nd = t.shape.size();
    // Innermost dims that are contiguous in the storage form one block of `block` elements.
    uint64_t block = 1;
    size_t outer = nd; // dims [0, outer) are walked; [outer, nd) are inside a block
    while (outer > 0) {
        const size_t d = outer - 1;
        if (t.shape[d] != 1 && static_cast<uint64_t>(t.stride[d]) != block) break;
        block *= static_cast<uint64_t>(t.shape[d]);
        --outer;
    }
    const uint64_t base = s.fileOffset + static_cast<uint64_t>(t.storageOffset) * es;
    if (outer == 0) { // one contiguous run
        file_->readAt(base, out, n * es);
        return;
    }
    uint64_t extent = 1; // validated at open: offset + extent <= storage numel
    for (size_t d = 0; d < nd; ++d)
        extent += static_cast<uint64_t>(t.shape[d] - 1) * static_cast<uint64_t>(t.stride[d]);
    std::vector<char> buf;
    const bool gather = extent * es <= kGatherBytes;
    if (gather) {
        buf.resize(extent * es);
        file_->readAt(base, buf.data(), buf.size());
    }
    std::vector<int64_t> idx(outer, 0);
    const uint64_t runBytes = block * es;
    for (uint64_t done = 0; done < n; done += block) {
        uint64_t off = 0;
        for (size_t d = 0; d < outer; ++d)
            off += static_cast<uint64_t>(idx[d]) * static_cast<uint64_t>(t.stride[d]);
        if (gather)
            std::memcpy(out, buf.data() + off * es, runBytes);
        else
            file_->readAt(base + off * es, out, runBytes);
        out += runBytes;
        for (size_t d = outer; d-- > 0;) { // odometer over the walked dims
            if (++idx[d] < t.shape[d]) break;
            idx[d] = 0;
        }
    }
}

std::vector<std::pair<std::string, const TensorRef *>>
tensorsOf(const Value &dict, std::vector<std::string> *ignored, const std::string &context) {
    const std::string ctx = context.empty() ? std::string("state dict") : context;
    if (!dict.is(K::Dict))
        throw Error(ctx + ": expected a state dict (a dict of tensors), got " + describe(dict));
    std::vector<std::pair<std::string, const TensorRef *>> out;
    for (const auto &[k, v] : dict.entries()) {
        if (!k->is(K::String)) {
            if (ignored) ignored->push_back(describe(*k));
            continue;
        }
        if (v->is(K::Tensor)) {
            out.emplace_back(k->text(), &v->tensor());
        } else if (v->is(K::Global) || v->is(K::Call)) {
            throw Error(ctx + ": entry '" + k->text() + "' is " + describe(*v) + " where a tensor belongs");
        } else if (ignored) {
            ignored->push_back(k->text());
        }
    }
    return out;
}

} // namespace mgd::pth
