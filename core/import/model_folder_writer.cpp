#include "core/import/model_folder_writer.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/util/error.h"

namespace mgd {

namespace {

const char *safetensorsDtype(at::ScalarType t) {
    switch (t) {
    case at::kFloat: return "F32";
    case at::kHalf: return "F16";
    case at::kBFloat16: return "BF16";
    case at::kLong: return "I64";
    default: return nullptr;
    }
}

// Writes all of [p, p+n) or throws naming the file (ENOSPC is the usual cause).
void writeAll(int fd, const void *p, size_t n, const std::string &path) {
    const auto *b = static_cast<const char *>(p);
    while (n > 0) {
        const ssize_t w = ::write(fd, b, std::min<size_t>(n, 1u << 30));
        if (w < 0) {
            if (errno == EINTR) continue;
            throw Error("cannot write '" + path + "': " + std::strerror(errno));
        }
        b += w;
        n -= static_cast<size_t>(w);
    }
}

} // namespace

uint64_t PlannedTensor::bytes() const {
    uint64_t n = 1;
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    return n * at::elementSize(dtype);
}

WrittenShards writeModelShards(const std::string &dir, std::vector<PlannedTensor> plan, uint64_t shardBytes,
                               const std::function<bool(size_t, const std::string &, uint64_t)> &onTensor) {
    std::stable_sort(plan.begin(), plan.end(), [](const PlannedTensor &a, const PlannedTensor &b) {
        return at::elementSize(a.dtype) > at::elementSize(b.dtype);
    });
    for (const auto &t : plan)
        if (!safetensorsDtype(t.dtype))
            throw Error("import: tensor '" + t.name + "' has an unsupported dtype");

    // Shards: consecutive runs of the plan up to shardBytes each.
    std::vector<std::pair<size_t, size_t>> runs; // [begin, end) into plan
    uint64_t inShard = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
        if (runs.empty() || (inShard > 0 && inShard + plan[i].bytes() > shardBytes)) {
            runs.push_back({i, i});
            inShard = 0;
        }
        runs.back().second = i + 1;
        inShard += plan[i].bytes();
    }
    WrittenShards out;
    nlohmann::json weightMap = nlohmann::json::object();
    uint64_t done = 0;
    for (size_t s = 0; s < runs.size(); ++s) {
        char name[64];
        std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, runs.size());
        const std::string path = (std::filesystem::path(dir) / name).string();
        nlohmann::json header = nlohmann::json::object();
        header["__metadata__"] = {{"format", "pt"}};
        uint64_t off = 0;
        for (size_t i = runs[s].first; i < runs[s].second; ++i) {
            const auto &t = plan[i];
            header[t.name] = {{"dtype", safetensorsDtype(t.dtype)},
                              {"shape", t.shape},
                              {"data_offsets", {off, off + t.bytes()}}};
            off += t.bytes();
            weightMap[t.name] = name;
        }
        std::string h = header.dump();
        while (h.size() % 8) h.push_back(' '); // data section 8-aligned
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) throw Error("cannot create '" + path + "': " + std::strerror(errno));
        try {
            uint8_t len[8];
            for (int b = 0; b < 8; ++b) len[b] = static_cast<uint8_t>((h.size() >> (8 * b)) & 0xff);
            writeAll(fd, len, 8, path);
            writeAll(fd, h.data(), h.size(), path);
            for (size_t i = runs[s].first; i < runs[s].second; ++i) {
                const auto &t = plan[i];
                if (onTensor && !onTensor(i, t.name, done)) throw Error("import cancelled");
                at::Tensor v = t.produce();
                if (v.sizes().vec() != t.shape)
                    throw Error("import: tensor '" + t.name + "' came out with an unexpected shape");
                v = v.to(t.dtype).contiguous();
                writeAll(fd, v.data_ptr(), t.bytes(), path);
                done += t.bytes();
            }
            if (::fsync(fd) != 0) throw Error("cannot write '" + path + "': " + std::strerror(errno));
        } catch (...) {
            ::close(fd);
            throw;
        }
        ::close(fd);
        out.files.push_back(name);
    }
    out.bytes = done;
    nlohmann::json index = {{"metadata", {{"total_size", done}}}, {"weight_map", weightMap}};
    std::ofstream f(std::filesystem::path(dir) / "model.safetensors.index.json");
    f << index.dump(1) << "\n";
    if (!f) throw Error("cannot write the shard index in '" + dir + "'");
    return out;
}

} // namespace mgd
