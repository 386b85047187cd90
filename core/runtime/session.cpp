#include "core/runtime/session.h"

#include <ATen/ATen.h>

#include "core/cache/prefix_blocks.h"
#include "core/model/llama.h"
#include "core/util/error.h"

namespace mgd {

namespace {

// Token ids are >= 0; image positions get negative keys from the image identity.
int64_t imagePositionKey(uint64_t image, int offset) {
    const uint64_t k = (image ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(offset + 1))) >> 1;
    return -1 - static_cast<int64_t>(k & 0x3FFFFFFFFFFFFFFFull);
}

} // namespace

std::vector<int64_t> promptKeys(const std::vector<PromptChunk> &chunks,
                                const std::function<uint64_t(int)> &imageKey, int imageTokens) {
    std::vector<int64_t> keys;
    for (const PromptChunk &c : chunks) {
        if (c.kind == PromptChunk::Kind::Image) {
            const uint64_t k = imageKey(c.image);
            for (int j = 0; j < imageTokens; ++j) keys.push_back(imagePositionKey(k, j));
        } else {
            for (int32_t id : c.ids) keys.push_back(id);
        }
    }
    return keys;
}

int64_t Session::commonPrefix(const std::vector<int64_t> &keys) const {
    const int64_t held = std::min<int64_t>(kv_.length(), static_cast<int64_t>(keys_.size()));
    int64_t n = 0;
    while (n < held && n < static_cast<int64_t>(keys.size()) && keys_[n] == keys[n]) ++n;
    return n;
}

int64_t Session::sharedPrefixHeld(const std::vector<int64_t> &keys, int64_t limit) const {
    const PrefixBlocks *table = kv_.sharedTable();
    if (!table) return 0;
    const int64_t P = kv_.blockPositions();
    int64_t n = 0;
    for (const Digest128 &h : chainedBlockHashes(keys, P)) {
        if (n + P > limit || !table->contains(h)) break;
        n += P;
    }
    return n;
}

int64_t Session::adoptSharedBlocks(const KvShape &shape, const std::vector<int64_t> &keys, int64_t limit) {
    dropState();
    if (!kv_.sharing()) return 0;
    const int64_t P = kv_.blockPositions();
    const int64_t n = kv_.adoptSharedBlocks(shape, chainedBlockHashes(keys, P), limit / P);
    keys_.assign(keys.begin(), keys.begin() + n);
    return n;
}

void Session::copyFrom(const Session &other, int64_t n) {
    const int64_t from = length();
    n = std::min(n, other.commonPrefix(other.keys_));
    if (n <= from) return;
    if (!std::equal(keys_.begin(), keys_.begin() + from, other.keys_.begin()))
        throw Error("KV copy from a conversation with another prefix");
    try {
        kv_.copyFrom(other.kv_, n);
    } catch (...) {
        kv_.truncate(from);
        throw;
    }
    keys_.assign(other.keys_.begin(), other.keys_.begin() + n);
}

void Session::shareBlocks() {
    if (!kv_.sharing()) return;
    const std::vector<int64_t> held(keys_.begin(), keys_.begin() + std::min<int64_t>(length(), keys_.size()));
    kv_.shareFullBlocks(chainedBlockHashes(held, kv_.blockPositions()));
}

void Session::clear() {
    kv_.clear();
    keys_.clear();
}

void Session::dropState() {
    kv_.release();
    keys_.clear();
}

bool Session::importState(const KvShape &shape, std::vector<int64_t> keys,
                          const std::vector<at::Tensor> &layers) {
    keys_.clear();
    try {
        kv_.importState(shape, layers);
    } catch (const Error &) {
        dropState();
        return false;
    }
    if (kv_.length() != static_cast<int64_t>(keys.size())) {
        dropState();
        return false;
    }
    keys_ = std::move(keys);
    return true;
}

void Session::usePool(MemoryPool *pool, int64_t blockPositions, std::function<bool()> onExhausted,
                      PrefixBlocks *shared) {
    dropState();
    kv_.usePool(pool, blockPositions, std::move(onExhausted), shared);
}

PrefillResult Session::prefill(const Llama &llm, const std::vector<PromptChunk> &chunks,
                               const std::function<uint64_t(int)> &imageKey,
                               const std::function<at::Tensor(int)> &imageEmbeds, int imageTokens, bool reuse,
                               bool allLogits, std::vector<at::Tensor> *hidden) {
    const std::vector<int64_t> keys = promptKeys(chunks, imageKey, imageTokens);
    const int64_t L = static_cast<int64_t>(keys.size());
    // The last prompt position must always run to produce the next-token logits.
    const int64_t common = reuse ? std::min(commonPrefix(keys), L - 1) : 0;
    try {
        kv_.truncate(common); // copies a shared block the prefill would write into
    } catch (...) {
        keys_.resize(kv_.length());
        throw;
    }
    keys_.resize(common);

    // Embeddings of positions [common, L): token slices and image slices, in order.
    std::vector<at::Tensor> parts;
    int64_t pos = 0;
    for (const PromptChunk &c : chunks) {
        const bool isImage = c.kind == PromptChunk::Kind::Image;
        const int64_t len = isImage ? imageTokens : static_cast<int64_t>(c.ids.size());
        const int64_t from = std::max<int64_t>(common, pos), to = pos + len;
        if (from < to) {
            if (isImage) {
                parts.push_back(imageEmbeds(c.image).narrow(1, from - pos, to - from));
            } else {
                at::Tensor ids =
                    at::tensor(std::vector<int64_t>(c.ids.begin() + (from - pos), c.ids.end()), at::kLong);
                parts.push_back(llm.embed(ids));
            }
        }
        pos = to;
    }
    at::Tensor embeds = parts.size() == 1 ? parts[0] : at::cat(parts, 1);
    PrefillResult r;
    r.logits = llm.forward(embeds, kv_, allLogits, hidden);
    keys_ = keys;
    r.promptTokens = L;
    r.reusedTokens = common;
    r.prefilledTokens = L - common;
    return r;
}

at::Tensor Session::step(const Llama &llm, int32_t id) {
    at::Tensor logits = llm.forward(llm.embed(at::tensor({static_cast<int64_t>(id)}, at::kLong)), kv_, false);
    keys_.push_back(id);
    return logits;
}

} // namespace mgd
