#pragma once
// One tensor of an original checkpoint file, read only when asked for: the importer plans the
// whole model folder from names, dtypes and shapes, then reads each tensor once, converts and
// writes it, and lets it go (peak memory: a few of the largest tensors, not the model).
#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace mgd {

struct SourceTensor {
    std::string file; // the file it is in (for messages and provenance)
    std::string key;  // its key in that file, e.g. "model/llama_proj.weight"
    at::ScalarType dtype = at::kFloat;
    std::vector<int64_t> shape;
    std::function<at::Tensor()> read; // a contiguous CPU copy in the stored dtype
};

// A state dict found in a file: tensors by key, plus entries that are not tensors.
struct SourceDict {
    std::vector<std::pair<std::string, SourceTensor>> tensors; // file order
    std::vector<std::string> otherKeys;                        // non-tensor values, ignored
};

// The tensors of a .safetensors file (memory-mapped; pages are dropped after each read).
SourceDict listSafetensors(const std::string &path);

// The state dict inside a torch.save file (.pth / .bin), read by our own bounded reader:
// `container` empty for a file whose top level is the state dict, or "model" for
// {"model": state_dict, "optimizer": ..., ...}. Top-level keys other than the container are
// listed in `otherKeys` as "<key> (top level)". Throws mgd::Error naming the file.
SourceDict listTorchFile(const std::string &path, const std::string &container);

// A value of the checkpoint's "config" entry by path (e.g. {"model", "lora_alpha"}), as a
// number; nullopt-like NaN when absent or not a number.
double torchFileConfigNumber(const std::string &path, const std::vector<std::string> &keys);

std::string shapeString(const std::vector<int64_t> &shape);
const char *scalarName(at::ScalarType t);

} // namespace mgd
