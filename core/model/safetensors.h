#pragma once
// Read-only, mmap-backed safetensors reader. Every structural problem (header length,
// JSON, dtype, shape/offset mismatch, overlap, out-of-range offsets) is an mgd::Error
// that names the file and the tensor; nothing is trusted before it is checked.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <c10/core/ScalarType.h>

namespace at {
class Tensor;
}

namespace mgd {

enum class DType { F32, F16, BF16, I64 };

const char *dtypeName(DType d);
size_t dtypeSize(DType d);
at::ScalarType scalarTypeOf(DType d);

struct TensorInfo {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    size_t begin = 0; // offset of the data, relative to the data section
    size_t end = 0;
};

class SafetensorsFile {
public:
    // Opens and validates the file; throws mgd::Error on any problem.
    explicit SafetensorsFile(const std::string &path);
    ~SafetensorsFile();
    SafetensorsFile(const SafetensorsFile &) = delete;
    SafetensorsFile &operator=(const SafetensorsFile &) = delete;

    const std::string &path() const { return path_; }
    const std::map<std::string, TensorInfo> &tensors() const { return tensors_; }
    bool contains(const std::string &name) const { return tensors_.count(name) != 0; }
    const TensorInfo &info(const std::string &name) const;
    const void *data(const std::string &name) const;
    // A tensor that owns a copy of the bytes (so the file may be closed afterwards).
    at::Tensor load(const std::string &name) const;
    // A tensor over the mapped bytes themselves (no copy), keeping `self` (this file) open as
    // long as the tensor lives; undefined when the bytes are not aligned for the dtype. The
    // mapping is private copy-on-write: writing to the tensor never reaches the file.
    static at::Tensor view(const std::shared_ptr<const SafetensorsFile> &self, const std::string &name);
    // Drops the mapped pages of `name` (or of the whole file) from this process's memory; the
    // next access reads them again from the page cache. Keeps a copied-out tensor from
    // being held twice.
    void release(const std::string &name) const;
    void releaseAll() const;

private:
    std::string path_;
    int fd_ = -1;
    void *map_ = nullptr;
    size_t size_ = 0;
    size_t dataStart_ = 0;
    std::map<std::string, TensorInfo> tensors_;
};

// Writes tensors (contiguous CPU F32/F16/BF16/I64) in the same format; used by tests and
// tools. Written to a temporary file then renamed so readers never see a partial file.
void writeSafetensors(const std::string &path,
                      const std::vector<std::pair<std::string, at::Tensor>> &tensors);

} // namespace mgd
