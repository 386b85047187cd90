#include "core/model/safetensors.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>

#include "core/util/error.h"

namespace mgd {

namespace {

// Real headers are a few hundred KiB at most; a bound keeps a hostile length from
// making us read or allocate gigabytes.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

bool parseDType(const std::string &s, DType &out) {
    if (s == "F32")
        out = DType::F32;
    else if (s == "F16")
        out = DType::F16;
    else if (s == "BF16")
        out = DType::BF16;
    else if (s == "I64")
        out = DType::I64;
    else
        return false;
    return true;
}

} // namespace

const char *dtypeName(DType d) {
    switch (d) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    }
    return "?";
}

at::ScalarType scalarTypeOf(DType d) {
    switch (d) {
    case DType::F32: return at::kFloat;
    case DType::F16: return at::kHalf;
    case DType::BF16: return at::kBFloat16;
    case DType::I64: return at::kLong;
    }
    return at::kFloat;
}

size_t dtypeSize(DType d) {
    switch (d) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::I64: return 8;
    }
    return 0;
}

SafetensorsFile::SafetensorsFile(const std::string &path) : path_(path) {
    auto fail = [&](const std::string &why) -> Error {
        return Error("safetensors file '" + path_ + "': " + why);
    };
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw fail(std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd_);
        fd_ = -1;
        throw fail("not a regular file");
    }
    size_ = static_cast<size_t>(st.st_size);
    try {
        if (size_ < 8) throw fail("too short (" + std::to_string(size_) + " bytes) to hold a header");
        map_ = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd_, 0);
        if (map_ == MAP_FAILED) {
            map_ = nullptr;
            throw fail(std::string("mmap failed: ") + std::strerror(errno));
        }
        const auto *bytes = static_cast<const uint8_t *>(map_);
        uint64_t headerLen = 0;
        for (int i = 7; i >= 0; --i) headerLen = (headerLen << 8) | bytes[i];
        if (headerLen > kMaxHeaderBytes || headerLen > size_ - 8)
            throw fail("header length " + std::to_string(headerLen) + " exceeds the file size (" +
                       std::to_string(size_) + " bytes) or the 100 MiB bound");
        dataStart_ = 8 + headerLen;
        const size_t dataSize = size_ - dataStart_;

        nlohmann::json header;
        try {
            header = nlohmann::json::parse(reinterpret_cast<const char *>(bytes + 8),
                                           reinterpret_cast<const char *>(bytes + 8 + headerLen));
        } catch (const nlohmann::json::exception &e) {
            throw fail(std::string("header is not valid JSON: ") + e.what());
        }
        if (!header.is_object()) throw fail("header is not a JSON object");

        for (auto it = header.begin(); it != header.end(); ++it) {
            if (it.key() == "__metadata__") continue;
            const std::string &name = it.key();
            auto tfail = [&](const std::string &why) { return fail("tensor '" + name + "': " + why); };
            const auto &v = it.value();
            if (!v.is_object()) throw tfail("entry is not an object");
            TensorInfo ti;
            ti.name = name;
            if (!v.contains("dtype") || !v["dtype"].is_string()) throw tfail("missing dtype");
            if (!parseDType(v["dtype"].get<std::string>(), ti.dtype))
                throw tfail("unsupported dtype " + v["dtype"].get<std::string>() +
                            " (supported: F32, F16, BF16, I64)");
            if (!v.contains("shape") || !v["shape"].is_array()) throw tfail("missing shape");
            uint64_t numel = 1;
            for (const auto &d : v["shape"]) {
                if (!d.is_number_unsigned()) throw tfail("shape has a non-integer or negative dim");
                const uint64_t dim = d.get<uint64_t>();
                if (dim > (1ull << 40) || (dim != 0 && numel > (1ull << 50) / dim))
                    throw tfail("shape is implausibly large");
                numel *= dim;
                ti.shape.push_back(static_cast<int64_t>(dim));
            }
            const auto &offs = v.contains("data_offsets") ? v["data_offsets"] : nlohmann::json();
            if (!offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() ||
                !offs[1].is_number_unsigned())
                throw tfail("data_offsets must be two non-negative integers");
            const uint64_t b = offs[0].get<uint64_t>(), e = offs[1].get<uint64_t>();
            if (b > e || e > dataSize)
                throw tfail("data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                            ") lie outside the data section (" + std::to_string(dataSize) + " bytes)");
            if (e - b != numel * dtypeSize(ti.dtype))
                throw tfail("byte size " + std::to_string(e - b) + " does not match shape x dtype (" +
                            std::to_string(numel * dtypeSize(ti.dtype)) + ")");
            ti.begin = b;
            ti.end = e;
            tensors_.emplace(name, std::move(ti));
        }
        // Overlap check: sort by begin, neighbours must not intersect.
        std::vector<const TensorInfo *> order;
        for (const auto &kv : tensors_) order.push_back(&kv.second);
        std::sort(order.begin(), order.end(),
                  [](const TensorInfo *a, const TensorInfo *b) { return a->begin < b->begin; });
        const TensorInfo *furthest = nullptr; // the tensor reaching furthest so far
        for (const TensorInfo *t : order) {
            if (t->end == t->begin) continue;
            if (furthest && t->begin < furthest->end)
                throw fail("tensors '" + furthest->name + "' and '" + t->name + "' overlap");
            if (!furthest || t->end > furthest->end) furthest = t;
        }
    } catch (...) {
        if (map_) ::munmap(map_, size_);
        map_ = nullptr;
        ::close(fd_);
        fd_ = -1;
        throw;
    }
}

SafetensorsFile::~SafetensorsFile() {
    if (map_) ::munmap(map_, size_);
    if (fd_ >= 0) ::close(fd_);
}

const TensorInfo &SafetensorsFile::info(const std::string &name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw Error("safetensors file '" + path_ + "': no tensor named '" + name + "'");
    return it->second;
}

const void *SafetensorsFile::data(const std::string &name) const {
    const TensorInfo &ti = info(name);
    return static_cast<const uint8_t *>(map_) + dataStart_ + ti.begin;
}

at::Tensor SafetensorsFile::load(const std::string &name) const {
    const TensorInfo &ti = info(name);
    at::Tensor t = at::empty(ti.shape, at::TensorOptions().dtype(scalarTypeOf(ti.dtype)));
    if (ti.end > ti.begin) std::memcpy(t.data_ptr(), data(name), ti.end - ti.begin);
    return t;
}

at::Tensor SafetensorsFile::view(const std::shared_ptr<const SafetensorsFile> &self,
                                 const std::string &name) {
    const TensorInfo &ti = self->info(name);
    void *p = const_cast<void *>(self->data(name));
    if (reinterpret_cast<uintptr_t>(p) % dtypeSize(ti.dtype) != 0) return at::Tensor();
    std::shared_ptr<const SafetensorsFile> keep = self;
    return at::from_blob(
        p, ti.shape, [keep](void *) mutable { keep.reset(); },
        at::TensorOptions().dtype(scalarTypeOf(ti.dtype)));
}

namespace {
void dropPages(void *map, size_t mapSize, size_t begin, size_t end) {
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    // Whole pages inside [begin, end) only: a neighbour's bytes on a shared page stay.
    const size_t b = (begin + page - 1) / page * page;
    const size_t e = std::min(end, mapSize) / page * page;
    if (e > b) ::madvise(static_cast<uint8_t *>(map) + b, e - b, MADV_DONTNEED);
}
} // namespace

void SafetensorsFile::release(const std::string &name) const {
    const TensorInfo &ti = info(name);
    if (map_) dropPages(map_, size_, dataStart_ + ti.begin, dataStart_ + ti.end);
}

void SafetensorsFile::releaseAll() const {
    if (map_) dropPages(map_, size_, 0, size_);
}

void writeSafetensors(const std::string &path,
                      const std::vector<std::pair<std::string, at::Tensor>> &tensors) {
    nlohmann::json header = nlohmann::json::object();
    std::vector<at::Tensor> parts;
    uint64_t offset = 0;
    for (const auto &[name, t0] : tensors) {
        at::Tensor t = t0.contiguous().cpu();
        std::string dt;
        switch (t.scalar_type()) {
        case at::kFloat: dt = "F32"; break;
        case at::kHalf: dt = "F16"; break;
        case at::kBFloat16: dt = "BF16"; break;
        case at::kLong: dt = "I64"; break;
        default:
            throw Error("writeSafetensors '" + path + "': tensor '" + name + "' has an unsupported dtype");
        }
        const uint64_t n = t.numel() * t.element_size();
        header[name] = {{"dtype", dt}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + n}}};
        offset += n;
        parts.push_back(t);
    }
    std::string h = header.dump();
    while (h.size() % 8) h.push_back(' ');
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        if (!f) throw Error("cannot write '" + tmp + "'");
        uint64_t len = h.size();
        char lenBytes[8];
        for (int i = 0; i < 8; ++i) lenBytes[i] = static_cast<char>((len >> (8 * i)) & 0xff);
        f.write(lenBytes, 8);
        f.write(h.data(), static_cast<std::streamsize>(h.size()));
        for (const auto &t : parts)
            f.write(static_cast<const char *>(t.data_ptr()),
                    static_cast<std::streamsize>(t.numel() * t.element_size()));
        if (!f) throw Error("write to '" + tmp + "' failed");
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
        throw Error("cannot rename '" + tmp + "' to '" + path + "'");
}

} // namespace mgd
