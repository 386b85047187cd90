#include "core/model/kv_cache.h"

#include <ATen/ATen.h>

#include "core/memory/memory_pool.h"
#include "core/util/error.h"

namespace mgd {

KvCache::~KvCache() {
    release();
}

KvCache::KvCache(KvCache &&o) noexcept {
    *this = std::move(o);
}

KvCache &KvCache::operator=(KvCache &&o) noexcept {
    if (this == &o) return *this;
    release();
    length_ = o.length_;
    shape_ = o.shape_;
    keys_ = std::move(o.keys_);
    values_ = std::move(o.values_);
    pool_ = o.pool_;
    blockPositions_ = o.blockPositions_;
    onExhausted_ = std::move(o.onExhausted_);
    blocks_ = std::move(o.blocks_);
    blockViews_ = std::move(o.blockViews_);
    o.length_ = 0;
    o.pool_ = nullptr;
    o.blocks_.clear();
    o.blockViews_.clear();
    return *this;
}

void KvCache::usePool(MemoryPool *pool, int64_t blockPositions, std::function<bool()> onExhausted) {
    release();
    pool_ = pool;
    blockPositions_ = blockPositions;
    onExhausted_ = std::move(onExhausted);
}

int64_t KvCache::blockBytes(const KvShape &s, int64_t blockPositions) {
    return 2 * s.kvHeads * blockPositions * s.headDim * static_cast<int64_t>(c10::elementSize(s.dtype));
}

int64_t KvCache::capacity() const {
    if (pool_) return blocks_.empty() ? 0 : static_cast<int64_t>(blocks_[0].size()) * blockPositions_;
    return keys_.empty() ? 0 : keys_[0].size(1);
}

void KvCache::reserve(const KvShape &s, int64_t positions) {
    shape_ = s;
    if (positions <= capacity()) return;
    if (pool_) {
        blocks_.resize(s.layers);
        blockViews_.resize(s.layers);
        const int64_t need = (positions + blockPositions_ - 1) / blockPositions_;
        for (int64_t l = 0; l < s.layers; ++l) {
            while (static_cast<int64_t>(blocks_[l].size()) < need) {
                int32_t b = pool_->allocate(PoolUse::Kv);
                while (b < 0 && onExhausted_ && onExhausted_()) b = pool_->allocate(PoolUse::Kv);
                if (b < 0)
                    throw Error(
                        "memory pool exhausted: the conversation needs " + std::to_string(positions) +
                        " positions of attention state; raise the memory pool size or start a new chat");
                blocks_[l].push_back(b);
                blockViews_[l].push_back(pool_->view(b, {2, s.kvHeads, blockPositions_, s.headDim}, s.dtype));
            }
        }
        return;
    }
    // Grow geometrically (bounded by the context) so a conversation pays O(log n) copies.
    int64_t cap = std::max<int64_t>(positions, std::min<int64_t>(2 * capacity(), s.maxPositions));
    cap = std::max<int64_t>(cap, std::min<int64_t>(256, s.maxPositions));
    const auto opts = at::TensorOptions().dtype(s.dtype).device(s.device);
    keys_.resize(s.layers);
    values_.resize(s.layers);
    for (int64_t l = 0; l < s.layers; ++l) {
        at::Tensor k = at::empty({s.kvHeads, cap, s.headDim}, opts);
        at::Tensor v = at::empty({s.kvHeads, cap, s.headDim}, opts);
        if (length_ > 0 && keys_[l].defined()) {
            k.narrow(1, 0, length_).copy_(keys_[l].narrow(1, 0, length_));
            v.narrow(1, 0, length_).copy_(values_[l].narrow(1, 0, length_));
        }
        keys_[l] = k;
        values_[l] = v;
    }
}

void KvCache::write(int64_t layer, int64_t start, const at::Tensor &k, const at::Tensor &v) {
    const int64_t n = k.size(1);
    if (!pool_) {
        keys_[layer].narrow(1, start, n).copy_(k);
        values_[layer].narrow(1, start, n).copy_(v);
        return;
    }
    for (int64_t done = 0; done < n;) {
        const int64_t pos = start + done, b = pos / blockPositions_, off = pos % blockPositions_;
        const int64_t len = std::min(n - done, blockPositions_ - off);
        const at::Tensor &blk = blockViews_[layer][b];
        blk[0].narrow(1, off, len).copy_(k.narrow(1, done, len));
        blk[1].narrow(1, off, len).copy_(v.narrow(1, done, len));
        done += len;
    }
}

std::vector<std::pair<at::Tensor, at::Tensor>> KvCache::segments(int64_t layer, int64_t total) const {
    if (!pool_) return {{keys_[layer].narrow(1, 0, total), values_[layer].narrow(1, 0, total)}};
    std::vector<std::pair<at::Tensor, at::Tensor>> out;
    for (int64_t pos = 0; pos < total; pos += blockPositions_) {
        const at::Tensor &blk = blockViews_[layer][pos / blockPositions_];
        const int64_t len = std::min(blockPositions_, total - pos);
        out.emplace_back(blk[0].narrow(1, 0, len), blk[1].narrow(1, 0, len));
    }
    return out;
}

void KvCache::copyPrefixFrom(const KvCache &other, int64_t n) {
    n = std::min(n, other.length_);
    if (n <= 0) return;
    reserve(other.shape_, n);
    for (int64_t l = 0; l < other.shape_.layers; ++l) {
        int64_t pos = 0;
        for (const auto &[k, v] : other.segments(l, n)) {
            write(l, pos, k, v);
            pos += k.size(1);
        }
    }
    length_ = n;
}

std::vector<at::Tensor> KvCache::exportState() const {
    std::vector<at::Tensor> out;
    if (length_ == 0) return out;
    for (int64_t l = 0; l < shape_.layers; ++l) {
        at::Tensor t =
            at::empty({2, shape_.kvHeads, length_, shape_.headDim}, at::TensorOptions().dtype(shape_.dtype));
        int64_t pos = 0;
        for (const auto &[k, v] : segments(l, length_)) {
            t[0].narrow(1, pos, k.size(1)).copy_(k);
            t[1].narrow(1, pos, k.size(1)).copy_(v);
            pos += k.size(1);
        }
        out.push_back(std::move(t));
    }
    return out;
}

void KvCache::importState(const KvShape &s, const std::vector<at::Tensor> &layers) {
    truncate(0);
    if (layers.empty()) return;
    if (static_cast<int64_t>(layers.size()) != s.layers)
        throw Error("KV state: " + std::to_string(layers.size()) + " layers, the model has " +
                    std::to_string(s.layers));
    const int64_t n = layers[0].size(2);
    try {
        reserve(s, n);
        for (int64_t l = 0; l < s.layers; ++l) {
            const at::Tensor t = layers[l].to(s.device, s.dtype);
            write(l, 0, t[0], t[1]);
        }
    } catch (...) {
        release();
        throw;
    }
    length_ = n;
}

void KvCache::commit(int64_t n) {
    if (n < length_ || n > capacity())
        throw Error("KV cache: commit to " + std::to_string(n) + " positions, holds " +
                    std::to_string(length_) + " of " + std::to_string(capacity()));
    length_ = n;
}

void KvCache::truncate(int64_t n) {
    length_ = std::min(length_, n);
    if (!pool_) return;
    const size_t keep = static_cast<size_t>((length_ + blockPositions_ - 1) / blockPositions_);
    for (size_t l = 0; l < blocks_.size(); ++l) {
        while (blocks_[l].size() > keep) {
            pool_->release(blocks_[l].back());
            blocks_[l].pop_back();
            blockViews_[l].pop_back();
        }
    }
}

void KvCache::release() {
    length_ = 0;
    if (pool_)
        for (auto &layer : blocks_)
            for (int32_t b : layer) pool_->release(b);
    blocks_.clear();
    blockViews_.clear();
    keys_.clear();
    values_.clear();
}

uint64_t KvCache::bytes() const {
    if (pool_) {
        uint64_t blocks = 0;
        for (const auto &l : blocks_) blocks += l.size();
        return blocks * static_cast<uint64_t>(blockBytes(shape_, blockPositions_));
    }
    uint64_t n = 0;
    for (const auto &t : keys_) n += t.nbytes();
    for (const auto &t : values_) n += t.nbytes();
    return n;
}

} // namespace mgd
