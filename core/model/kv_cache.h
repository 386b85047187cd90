#pragma once
// Per-conversation attention key/value state of the LLaMA decoder. Invariant: positions
// [0, length) of every layer hold the keys/values of the first `length` sequence positions;
// truncate() only lowers length (the storage stays for reuse).
#include <ATen/core/Tensor.h>
#include <vector>

namespace mgd {

struct KvCache {
    std::vector<at::Tensor> keys, values; // per layer [kvHeads, capacity, headDim]
    int64_t length = 0;

    int64_t capacity() const { return keys.empty() ? 0 : keys[0].size(1); }
    void truncate(int64_t n) { length = std::min(length, n); }
    void clear() { length = 0; }
    size_t bytes() const;
};

} // namespace mgd
