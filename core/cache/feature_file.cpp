#include "core/cache/feature_file.h"

#include <ATen/ATen.h>
#include <xxhash.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <vector>

#include "core/util/checksum.h"
#include "core/util/fd_io.h"
#include "core/util/error.h"

namespace fs = std::filesystem;

namespace mgd {

namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "feature files are little-endian");

constexpr char kMagic[8] = {'M', 'G', 'D', 'F', 'E', 'A', 'T', '\0'};
constexpr size_t kKeyChars = 32;
constexpr size_t kFixedHeader = 48; // magic, version, key, dtype, ndim, reserved
constexpr uint8_t kMaxDims = 16;

size_t headerBytes(size_t ndim) {
    return kFixedHeader + 8 * ndim + 24;
}

// Stable on-disk dtype codes (never at::ScalarType's numbering, which may change).
uint8_t dtypeCode(at::ScalarType t) {
    switch (t) {
    case at::kFloat: return 1;
    case at::kBFloat16: return 2;
    case at::kHalf: return 3;
    case at::kDouble: return 4;
    case at::kLong: return 5;
    case at::kInt: return 6;
    case at::kShort: return 7;
    case at::kChar: return 8;
    case at::kByte: return 9;
    case at::kBool: return 10;
    default: return 0;
    }
}

bool dtypeFromCode(uint8_t code, at::ScalarType &t) {
    static constexpr at::ScalarType kTypes[] = {at::kFloat, at::kBFloat16, at::kHalf, at::kDouble, at::kLong,
                                                at::kInt,   at::kShort,    at::kChar, at::kByte,   at::kBool};
    if (code < 1 || code > std::size(kTypes)) return false;
    t = kTypes[code - 1];
    return true;
}

} // namespace

bool isFeatureKey(const std::string &k) {
    return k.size() == kKeyChars && std::all_of(k.begin(), k.end(), [](char c) {
               return std::isxdigit(static_cast<unsigned char>(c));
           });
}

std::string normalizedFeatureKey(const std::string &key) {
    if (!isFeatureKey(key)) throw Error("feature cache: key '" + key + "' is not 32 hex characters");
    std::string k = key;
    for (char &c : k) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return k;
}

namespace {

template <typename T> void put(std::string &s, T v) {
    s.append(reinterpret_cast<const char *>(&v), sizeof v);
}

template <typename T> T get(const uint8_t *p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// The header of an entry (file or blob) holding `cpu` (contiguous, on the CPU).
std::string featureHeader(const std::string &what, const std::string &key, const at::Tensor &cpu,
                          uint32_t version) {
    const uint8_t code = dtypeCode(cpu.scalar_type());
    if (code == 0 || cpu.dim() > kMaxDims)
        throw Error("feature entry '" + what + "': unsupported dtype or rank");
    const uint64_t payload = cpu.nbytes();
    std::string h;
    h.reserve(headerBytes(cpu.dim()));
    h.append(kMagic, sizeof kMagic);
    put<uint32_t>(h, version);
    h.append(key, 0, kKeyChars);
    put<uint8_t>(h, code);
    put<uint8_t>(h, static_cast<uint8_t>(cpu.dim()));
    put<uint16_t>(h, 0);
    for (int64_t d : cpu.sizes()) put<int64_t>(h, d);
    put<uint64_t>(h, payload);
    put<uint64_t>(h, XXH3_64bits(cpu.data_ptr(), payload));
    put<uint64_t>(h, XXH3_64bits(h.data(), h.size()));
    return h;
}

} // namespace

std::string writeFeatureTempFile(const std::string &path, const std::string &key, const at::Tensor &cpu,
                                 uint32_t version) {
    const std::string h = featureHeader(path, key, cpu, version);
    const uint64_t payload = cpu.nbytes();
    const auto *data = static_cast<const uint8_t *>(cpu.data_ptr());

    std::string tmp = path + ".XXXXXX.tmp";
    const int fd = ::mkstemps(tmp.data(), 4);
    if (fd < 0) throw Error("feature file '" + tmp + "': cannot create: " + errnoText());
    bool ok = writeAll(fd, reinterpret_cast<const uint8_t *>(h.data()), h.size()) &&
              writeAll(fd, data, payload) && ::fsync(fd) == 0;
    const std::string why = ok ? "" : errnoText();
    ok = ::close(fd) == 0 && ok;
    if (!ok) {
        ::unlink(tmp.c_str());
        throw Error("feature file '" + tmp + "': cannot write: " + (why.empty() ? errnoText() : why));
    }
    return tmp;
}

void syncParentDir(const std::string &path) {
    const int fd = ::open(fs::path(path).parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

uint64_t featureFileBytes(const at::Tensor &cpu) {
    if (dtypeCode(cpu.scalar_type()) == 0 || cpu.dim() > kMaxDims) return 0;
    return headerBytes(static_cast<size_t>(cpu.dim())) + cpu.nbytes();
}

void writeFeatureFile(const std::string &path, const std::string &key, const at::Tensor &value,
                      uint32_t version) {
    const at::Tensor cpu = value.detach().to(at::kCPU).contiguous();
    const std::string tmp = writeFeatureTempFile(path, normalizedFeatureKey(key), cpu, version);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = errnoText();
        ::unlink(tmp.c_str());
        throw Error("feature file '" + path + "': cannot rename into place: " + why);
    }
    syncParentDir(path);
}

std::string encodeFeatureBlob(const std::string &key, const at::Tensor &value, uint32_t version) {
    const at::Tensor cpu = value.detach().to(at::kCPU).contiguous();
    std::string blob = featureHeader("blob", normalizedFeatureKey(key), cpu, version);
    blob.append(static_cast<const char *>(cpu.data_ptr()), cpu.nbytes());
    return blob;
}

FeatureFileStatus decodeFeatureBlob(const uint8_t *p, size_t n, const std::string &key, at::Tensor &out) {
    if (key.size() != kKeyChars || n < headerBytes(0)) return FeatureFileStatus::Corrupt;
    if (std::memcmp(p, kMagic, sizeof kMagic) != 0 || get<uint32_t>(p + 8) != kFeatureFileVersion ||
        std::memcmp(p + 12, key.data(), kKeyChars) != 0)
        return FeatureFileStatus::Corrupt;
    const uint8_t ndim = p[45];
    at::ScalarType dtype{};
    if (!dtypeFromCode(p[44], dtype) || ndim > kMaxDims || n < headerBytes(ndim))
        return FeatureFileStatus::Corrupt;
    const size_t hb = headerBytes(ndim);
    if (!checksumMatches(get<uint64_t>(p + hb - 8), XXH3_64bits(p, hb - 8)))
        return FeatureFileStatus::Corrupt;
    std::vector<int64_t> shape(ndim);
    uint64_t numel = 1;
    for (size_t i = 0; i < ndim; ++i) {
        shape[i] = get<int64_t>(p + kFixedHeader + 8 * i);
        if (shape[i] < 0 || __builtin_mul_overflow(numel, static_cast<uint64_t>(shape[i]), &numel))
            return FeatureFileStatus::Corrupt;
    }
    const uint64_t payload = get<uint64_t>(p + hb - 24);
    uint64_t expect = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(at::elementSize(dtype)), &expect) ||
        expect != payload || n - hb != payload)
        return FeatureFileStatus::Corrupt;
    if (!checksumMatches(get<uint64_t>(p + hb - 16), XXH3_64bits(p + hb, payload)))
        return FeatureFileStatus::Corrupt;
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
    if (payload > 0) std::memcpy(t.data_ptr(), p + hb, payload); // an empty tensor has no data pointer
    out = std::move(t);
    return FeatureFileStatus::Ok;
}

FeatureFileStatus readFeatureFile(const std::string &path, const std::string &key, at::Tensor &out) {
    if (key.size() != kKeyChars) return FeatureFileStatus::Corrupt;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? FeatureFileStatus::Missing : FeatureFileStatus::Corrupt;
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    // Entries are a model's image tokens: far below 1 GiB; anything larger is not ours.
    if (::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) < headerBytes(0) ||
        st.st_size > (1ll << 30))
        return FeatureFileStatus::Corrupt;
    std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
    if (!readAll(fd, bytes.data(), bytes.size())) return FeatureFileStatus::Corrupt;
    return decodeFeatureBlob(bytes.data(), bytes.size(), key, out);
}

} // namespace mgd
