#pragma once
// Writes a model folder's weights as safetensors shards, one tensor at a time: the header of
// each shard is computed from the plan (names, dtypes, shapes) before any data is produced,
// so no tensor is held longer than it takes to write it.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mgd {

struct PlannedTensor {
    std::string name;
    at::ScalarType dtype = at::kFloat;
    std::vector<int64_t> shape;
    std::function<at::Tensor()> produce; // returns a CPU tensor of exactly `shape`, any dtype
    uint64_t bytes() const;
};

struct WrittenShards {
    std::vector<std::string> files; // names inside the folder
    uint64_t bytes = 0;
};

// Writes `plan` into the existing folder `dir` as model-0000N-of-0000M.safetensors (at most
// `shardBytes` each, one tensor never split) plus model.safetensors.index.json.
// `onTensor(index, name, bytesDoneSoFar)` is called before each tensor; it returns false to
// cancel (mgd::Error "import cancelled"). Tensors are ordered by element size (8, 4, 2 bytes)
// so every tensor's bytes stay aligned for a memory-mapped, zero-copy load.
WrittenShards writeModelShards(const std::string &dir, std::vector<PlannedTensor> plan, uint64_t shardBytes,
                               const std::function<bool(size_t, const std::string &, uint64_t)> &onTensor);

} // namespace mgd
