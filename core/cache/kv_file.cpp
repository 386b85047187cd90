#include "core/cache/kv_file.h"

#include <ATen/ATen.h>
#include <xxhash.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/cache/feature_file.h"
#include "core/util/checksum.h"
#include "core/util/fd_io.h"
#include "core/util/error.h"

namespace mgd {

namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "KV files are little-endian");

constexpr char kMagic[8] = {'M', 'G', 'D', 'K', 'V', '\r', '\n', '\x1a'};
constexpr size_t kHeader = 64;
constexpr uint64_t kMaxMetaBytes = 64ull << 20;

const char *dtypeName(at::ScalarType t) {
    switch (t) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    default: return nullptr;
    }
}

bool dtypeFromName(const std::string &n, at::ScalarType &t) {
    for (at::ScalarType c : {at::kFloat, at::kBFloat16, at::kHalf})
        if (n == dtypeName(c)) {
            t = c;
            return true;
        }
    return false;
}

template <class T> T get(const uint8_t *p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <class T> void put(uint8_t *p, T v) {
    std::memcpy(p, &v, sizeof v);
}

std::string metaJson(const KvEntry &e) {
    nlohmann::json messages = nlohmann::json::array();
    for (const SavedMessage &m : e.meta.messages)
        messages.push_back({{"user", m.fromUser}, {"text", m.textHash}, {"answer", m.answerIds}});
    const nlohmann::json j = {{"model", e.meta.model},      {"conversation", e.meta.conversation},
                              {"layers", e.meta.layers},    {"kvHeads", e.meta.kvHeads},
                              {"headDim", e.meta.headDim},  {"dtype", dtypeName(e.meta.dtype)},
                              {"positions", e.positions()}, {"messages", messages}};
    return j.dump();
}

// Reads bytes [offset, offset + n) of the entry; false when they are not all there.
using ReadAt = std::function<bool(uint64_t offset, void *dst, size_t n)>;

KvFileStatus decode(uint64_t size, const ReadAt &readAt, const KvExpectation &expect, KvEntry &out,
                    std::string *why) {
    auto fail = [&](KvFileStatus s, const std::string &w) {
        if (why) *why = w;
        return s;
    };
    uint8_t h[kHeader];
    if (size < kHeader || !readAt(0, h, kHeader))
        return fail(KvFileStatus::Corrupt, "shorter than its header");
    if (std::memcmp(h, kMagic, sizeof kMagic) != 0) return fail(KvFileStatus::Corrupt, "not a KV entry");
    if (!checksumMatches(get<uint64_t>(h + 56), XXH3_64bits(h, 56)))
        return fail(KvFileStatus::Corrupt, "header checksum");
    if (get<uint32_t>(h + 8) != kKvFileVersion) return fail(KvFileStatus::Corrupt, "another format version");
    const uint64_t metaBytes = get<uint32_t>(h + 12), keysBytes = get<uint64_t>(h + 16),
                   payloadBytes = get<uint64_t>(h + 24);
    if (metaBytes > kMaxMetaBytes || keysBytes % 8 != 0 || keysBytes / 8 > (1ull << 24) ||
        payloadBytes > size || size - kHeader - metaBytes - keysBytes != payloadBytes ||
        kHeader + metaBytes + keysBytes > size)
        return fail(KvFileStatus::Corrupt, "sizes do not add up to the file");

    std::string meta(metaBytes, '\0');
    out.keys.assign(keysBytes / 8, 0);
    if (!readAt(kHeader, meta.data(), metaBytes) || !readAt(kHeader + metaBytes, out.keys.data(), keysBytes))
        return fail(KvFileStatus::Corrupt, "truncated");
    XXH3_state_t *st = XXH3_createState();
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, meta.data(), meta.size());
    XXH3_64bits_update(st, out.keys.data(), keysBytes);
    const uint64_t metaSum = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    if (!checksumMatches(get<uint64_t>(h + 32), metaSum)) return fail(KvFileStatus::Corrupt, "meta checksum");

    const nlohmann::json j = nlohmann::json::parse(meta, nullptr, false);
    KvEntryMeta &m = out.meta;
    auto intOf = [&](const char *k, int64_t &v) {
        if (!j.contains(k) || !j[k].is_number_integer()) return false;
        v = j[k].get<int64_t>();
        return v >= 0 && v <= (1 << 24);
    };
    int64_t positions = 0;
    if (!j.is_object() || !j.contains("model") || !j["model"].is_string() || !j.contains("conversation") ||
        !j["conversation"].is_string() || !j.contains("dtype") || !j["dtype"].is_string() ||
        !intOf("layers", m.layers) || !intOf("kvHeads", m.kvHeads) || !intOf("headDim", m.headDim) ||
        !intOf("positions", positions) || !dtypeFromName(j["dtype"].get<std::string>(), m.dtype) ||
        !j.contains("messages") || !j["messages"].is_array())
        return fail(KvFileStatus::Corrupt, "meta is not a KV entry's");
    m.model = j["model"].get<std::string>();
    m.conversation = j["conversation"].get<std::string>();
    m.messages.clear();
    for (const auto &jm : j["messages"]) {
        if (!jm.is_object() || !jm.contains("user") || !jm["user"].is_boolean() || !jm.contains("text") ||
            !jm["text"].is_string() || !jm.contains("answer") || !jm["answer"].is_array())
            return fail(KvFileStatus::Corrupt, "a message in meta is malformed");
        SavedMessage sm;
        sm.fromUser = jm["user"].get<bool>();
        sm.textHash = jm["text"].get<std::string>();
        for (const auto &id : jm["answer"]) {
            if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
                return fail(KvFileStatus::Corrupt, "an answer token id is malformed");
            sm.answerIds.push_back(static_cast<int32_t>(id.get<int64_t>()));
        }
        m.messages.push_back(std::move(sm));
    }
    if (positions != out.positions()) return fail(KvFileStatus::Corrupt, "positions differ from the keys");
    // Whole and ours: from here on a mismatch means another model or layout, not damage.
    if (m.model != expect.model || m.layers != expect.layers || m.kvHeads != expect.kvHeads ||
        m.headDim != expect.headDim || m.dtype != expect.dtype)
        return fail(KvFileStatus::Stale, "saved for another model or KV layout");
    if (positions > expect.maxPositions) return fail(KvFileStatus::Stale, "longer than the model's context");
    uint64_t layerBytes = 2ull * c10::elementSize(m.dtype), total = 0;
    if (__builtin_mul_overflow(layerBytes, static_cast<uint64_t>(m.kvHeads), &layerBytes) ||
        __builtin_mul_overflow(layerBytes, static_cast<uint64_t>(positions), &layerBytes) ||
        __builtin_mul_overflow(layerBytes, static_cast<uint64_t>(m.headDim), &layerBytes) ||
        __builtin_mul_overflow(layerBytes, static_cast<uint64_t>(m.layers), &total) || total != payloadBytes)
        return fail(KvFileStatus::Corrupt, "payload size differs from the layout");

    st = XXH3_createState();
    XXH3_64bits_reset(st);
    out.layers.clear();
    uint64_t offset = kHeader + metaBytes + keysBytes;
    bool ok = true;
    for (int64_t l = 0; l < m.layers && ok; ++l, offset += layerBytes) {
        at::Tensor t = at::empty({2, m.kvHeads, positions, m.headDim}, at::TensorOptions().dtype(m.dtype));
        ok = readAt(offset, t.data_ptr(), layerBytes);
        XXH3_64bits_update(st, t.data_ptr(), layerBytes);
        out.layers.push_back(std::move(t));
    }
    const uint64_t payloadSum = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    if (!ok) return fail(KvFileStatus::Corrupt, "truncated payload");
    if (!checksumMatches(get<uint64_t>(h + 40), payloadSum))
        return fail(KvFileStatus::Corrupt, "payload checksum");
    return KvFileStatus::Ok;
}

} // namespace

uint64_t writeKvFile(const std::string &path, const KvEntry &e, uint32_t version) {
    const std::string meta = metaJson(e);
    const uint64_t keysBytes = e.keys.size() * sizeof(int64_t);
    uint64_t payloadBytes = 0;
    std::vector<at::Tensor> layers;
    for (const at::Tensor &t : e.layers) {
        layers.push_back(t.to(at::kCPU).contiguous());
        payloadBytes += layers.back().nbytes();
    }
    uint8_t h[kHeader] = {};
    std::memcpy(h, kMagic, sizeof kMagic);
    put<uint32_t>(h + 8, version);
    put<uint32_t>(h + 12, static_cast<uint32_t>(meta.size()));
    put<uint64_t>(h + 16, keysBytes);
    put<uint64_t>(h + 24, payloadBytes);
    XXH3_state_t *st = XXH3_createState();
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, meta.data(), meta.size());
    XXH3_64bits_update(st, e.keys.data(), keysBytes);
    put<uint64_t>(h + 32, XXH3_64bits_digest(st));
    XXH3_64bits_reset(st);
    for (const at::Tensor &t : layers) XXH3_64bits_update(st, t.data_ptr(), t.nbytes());
    put<uint64_t>(h + 40, XXH3_64bits_digest(st));
    XXH3_freeState(st);
    put<uint64_t>(h + 56, XXH3_64bits(h, 56));

    std::string tmp = path + ".XXXXXX.tmp";
    const int fd = ::mkstemps(tmp.data(), 4);
    if (fd < 0) throw Error("KV entry '" + tmp + "': cannot create: " + errnoText());
    bool ok = writeAll(fd, h, kHeader) && writeAll(fd, meta.data(), meta.size()) &&
              writeAll(fd, e.keys.data(), keysBytes);
    for (const at::Tensor &t : layers) ok = ok && writeAll(fd, t.data_ptr(), t.nbytes());
    ok = ok && ::fsync(fd) == 0;
    const std::string why = ok ? "" : errnoText();
    ::close(fd);
    if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string w = ok ? errnoText() : why;
        ::unlink(tmp.c_str());
        throw Error("KV entry '" + path + "': cannot write: " + w);
    }
    syncParentDir(path);
    return kHeader + meta.size() + keysBytes + payloadBytes;
}

KvFileStatus readKvFile(const std::string &path, const KvExpectation &expect, KvEntry &out,
                        std::string *why) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (why) *why = errnoText();
        return errno == ENOENT ? KvFileStatus::Missing : KvFileStatus::Corrupt;
    }
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat sb {};
    if (::fstat(fd, &sb) != 0) return KvFileStatus::Corrupt;
    const ReadAt readAt = [fd](uint64_t offset, void *dst, size_t n) { return preadAll(fd, dst, n, offset); };
    return decode(static_cast<uint64_t>(sb.st_size), readAt, expect, out, why);
}

KvFileStatus decodeKvBytes(const uint8_t *data, size_t size, const KvExpectation &expect, KvEntry &out,
                           std::string *why) {
    const ReadAt readAt = [data, size](uint64_t offset, void *dst, size_t n) {
        if (offset > size || n > size - offset) return false;
        if (n > 0) std::memcpy(dst, data + offset, n); // an empty tensor has no data pointer
        return true;
    };
    return decode(size, readAt, expect, out, why);
}

} // namespace mgd
