#pragma once
// Reads PyTorch checkpoints (torch.save .pth / .bin) without torch and without running any of
// their code: the zip format (torch >= 1.6) and the legacy stream (torch < 1.6,
// _use_new_zipfile_serialization=False). open() parses the object pickle with the inert
// unpickler (core/import/pickle.h), locates every storage in the file and validates every
// tensor against it (dtype, record size, shape, strides, view extent, all overflow-checked)
// before anything is allocated; tensor data is then read on demand with pread.
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/import/pickle.h"

namespace mgd::pth {

class ReadOnlyFile;

// Where a storage's bytes lie in the file.
struct StorageInfo {
    uint64_t fileOffset = 0; // absolute offset of the first element
    uint64_t nbytes = 0;     // == numel * elementSize(dtype)
    ScalarKind dtype = ScalarKind::F32;
    uint64_t numel = 0;
    std::string record; // "archive/data/0", or "legacy record 2" (for messages)
};

// A tensor reachable from the root, with the key path that reaches it ("model/proj.weight",
// "values/tensor_list/0"). A tensor stored under two keys appears twice.
struct NamedTensor {
    std::string path;
    const TensorRef *ref = nullptr;
};

class TorchFile {
public:
    // Opens and validates the whole file; throws mgd::Error naming the file and the key path
    // (or byte offset) at fault: empty file, Git LFS pointer, truncated zip, missing data.pkl
    // or storage record, record too short, unsupported dtype, negative or overflowing sizes,
    // views past their storage, and any call that is not a tensor/container rebuild.
    static TorchFile open(const std::string &path);

    TorchFile(TorchFile &&) noexcept;
    TorchFile &operator=(TorchFile &&) noexcept;
    ~TorchFile();

    const std::string &path() const { return path_; }
    const std::string &label() const { return label_; } // "checkpoint '<path>'"
    bool legacyFormat() const { return legacy_; }
    const std::string &archiveRoot() const { return root_; } // zip: folder of data.pkl
    const Value &root() const { return doc_.root(); }
    const std::vector<NamedTensor> &tensors() const { return tensors_; }
    const std::map<std::string, StorageInfo> &storages() const { return storages_; }
    const StorageInfo &storage(const TensorRef &t) const;

    // Writes the tensor's elements in shape order, contiguous, in the stored dtype:
    // numel(t) * elementSize(t.dtype) bytes. `t` must be one of this file's tensors. Reads
    // only the storage extent the view covers (pread: safe to call from several threads).
    void readContiguous(const TensorRef &t, void *dst) const;

private:
    TorchFile();
    void openZip();
    void openLegacy();
    void collectTensors();
    void validateTensors();
    std::string tensorName(const TensorRef &t) const;

    std::string path_, label_, root_;
    bool legacy_ = false;
    std::shared_ptr<const ReadOnlyFile> file_;
    PickleDocument doc_;
    std::map<std::string, StorageInfo> storages_;
    std::vector<NamedTensor> tensors_;
    std::map<const TensorRef *, std::string> firstPath_;
    std::set<const TensorRef *> validated_; // readContiguous takes only this file's tensors
};

// Elements of a validated tensor (product of its shape; 1 for 0-dim).
uint64_t numel(const TensorRef &t);
uint64_t nbytes(const TensorRef &t);

// The tensors of a state dict (a Dict with string keys), in its order. Entries whose value is
// not a tensor (or whose key is not a string) go to `ignored` by key; a Global or Call where a
// tensor belongs is an error. `context` names the file/container in messages.
std::vector<std::pair<std::string, const TensorRef *>>
tensorsOf(const Value &dict, std::vector<std::string> *ignored = nullptr, const std::string &context = "");

} // namespace mgd::pth
