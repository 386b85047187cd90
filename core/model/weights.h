#pragma once
// The model's tensors under their ORIGINAL MiniGPT-4 state-dict names, gathered from one or
// more .safetensors shards of a model folder. take() checks presence, shape and dtype, so
// a config that does not match the weights is an error that names the tensor.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace mgd {

class SafetensorsFile;

class Weights {
public:
    // Opens the shards of `dir`: model.safetensors.index.json when present, otherwise every
    // weights*.safetensors / model*.safetensors file.
    static Weights openFolder(const std::string &dir);
    static Weights openFiles(const std::vector<std::string> &files);

    bool has(const std::string &name) const;
    // Loads `name` (LoRA already merged for q/v when present), checks the shape, casts to
    // `dtype`. Throws mgd::Error naming the file and tensor.
    at::Tensor take(const std::string &name, const std::vector<int64_t> &shape, at::ScalarType dtype) const;
    at::Tensor takeOptional(const std::string &name, const std::vector<int64_t> &shape,
                            at::ScalarType dtype) const; // undefined when absent
    std::string describe() const;                        // file list, for messages
    // Drops every mapped page from this process's memory (they are read again on use): after
    // the weights were converted (int8), so the source pages are not held besides the copy.
    // Only while nothing wrote to a mapped tensor (at load).
    void releasePages() const;
    // The same for one tensor's pages (after it was converted and its view let go).
    void release(const std::string &name) const;
    // XXH3-128 (hex) of `salt` and the raw bytes of every tensor whose name starts with one
    // of `prefixes`, in name order.
    std::string fingerprint(const std::string &salt, const std::vector<std::string> &prefixes) const;
    // The bytes the loaded model holds: every tensor in `dtype`, except, with int8Llm, the
    // LLM's matrices in int8 with one fp32 scale per 32 values.
    uint64_t loadedBytes(at::ScalarType dtype, bool int8Llm) const;

private:
    struct Source {
        std::shared_ptr<SafetensorsFile> file;
        std::string key; // key inside the file
    };
    const Source *find(const std::string &name) const;
    at::Tensor loadRaw(const std::string &name) const;
    std::vector<std::shared_ptr<SafetensorsFile>> files_;
    std::map<std::string, Source> index_;
};

} // namespace mgd
