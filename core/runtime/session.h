#pragma once
// One conversation's LLM state: the KV cache plus the key of every position it holds (token
// id, or image identity + offset). A new prompt reuses the longest common prefix of keys and
// prefills only the rest, as llama.cpp and Ollama match prefixes.
#include <ATen/core/Tensor.h>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/model/kv_cache.h"
#include "core/runtime/prompt_template.h"

namespace mgd {

class Llama;
class PrefixBlocks;

struct PrefillResult {
    at::Tensor logits; // [n, vocab] (allLogits) or [1, vocab]
    int64_t promptTokens = 0;
    int64_t reusedTokens = 0;
    int64_t prefilledTokens = 0;
};

class Session {
public:
    // imageKey(i): 64-bit identity of image i; imageEmbeds(i): its [1, T, hidden] tokens,
    // called only for images that lie past the reused prefix.
    PrefillResult prefill(const Llama &llm, const std::vector<PromptChunk> &chunks,
                          const std::function<uint64_t(int)> &imageKey,
                          const std::function<at::Tensor(int)> &imageEmbeds, int imageTokens, bool reuse,
                          bool allLogits, std::vector<at::Tensor> *hidden = nullptr);
    // Feeds one generated token; returns logits [1, vocab].
    at::Tensor step(const Llama &llm, int32_t id);

    int64_t length() const { return kv_.length(); }
    // Longest common prefix of `keys` with what the KV holds.
    int64_t commonPrefix(const std::vector<int64_t> &keys) const;
    // Shared prefixes (see core/cache/prefix_blocks.h). Positions of `keys` (at most
    // `limit`) that shared blocks held now would cover.
    int64_t sharedPrefixHeld(const std::vector<int64_t> &keys, int64_t limit) const;
    // Drops the state, then starts from those shared blocks (no copy); returns the positions.
    int64_t adoptSharedBlocks(const KvShape &shape, const std::vector<int64_t> &keys, int64_t limit);
    // Continues with positions [length(), n) copied from `other`, which holds the same keys
    // before them (the part of a prefix that fills no whole block).
    void copyFrom(const Session &other, int64_t n);
    // Offers every full block of the state to the shared table (after a turn).
    void shareBlocks();
    const std::vector<int64_t> &keys() const { return keys_; }
    // Forgets the positions but keeps the storage (the next prefill refills it).
    void clear();
    // Forgets the positions and frees the storage (blocks back to the pool).
    void dropState();
    // Where the KV lives from now on (see KvCache::usePool); drops the current state.
    void usePool(MemoryPool *pool, int64_t blockPositions, std::function<bool()> onExhausted,
                 PrefixBlocks *shared = nullptr);
    // Keep the KV as int8 (KvShape::int8); drops the current state.
    void setKvInt8(bool on) {
        dropState();
        kv_.setInt8(on);
    }
    uint64_t kvBytes() const { return kv_.bytes(); }
    // The positions' keys and KV ([2, kvHeads, n, headDim] per layer), for saving.
    std::vector<at::Tensor> exportKv() const { return kv_.exportState(); }
    // Starts from a saved state; false (and empty) when the pool has no room for it.
    bool importState(const KvShape &shape, std::vector<int64_t> keys, const std::vector<at::Tensor> &layers);
    const KvCache &kv() const { return kv_; }

private:
    KvCache kv_;
    std::vector<int64_t> keys_; // one per position in kv_
};

// Keys of a tokenized prompt (same encoding Session uses), for tests and the response cache.
std::vector<int64_t> promptKeys(const std::vector<PromptChunk> &chunks,
                                const std::function<uint64_t(int)> &imageKey, int imageTokens);

} // namespace mgd
