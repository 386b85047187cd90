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
    blockScales_ = std::move(o.blockScales_);
    int8_ = o.int8_;
    keyScales_ = std::move(o.keyScales_);
    valueScales_ = std::move(o.valueScales_);
    o.length_ = 0;
    o.pool_ = nullptr;
    o.blocks_.clear();
    o.blockViews_.clear();
    o.blockScales_.clear();
    return *this;
}

void KvCache::usePool(MemoryPool *pool, int64_t blockPositions, std::function<bool()> onExhausted) {
    release();
    pool_ = pool;
    blockPositions_ = blockPositions;
    onExhausted_ = std::move(onExhausted);
}

namespace {

// int8 storage: values, then one float scale per head and position.
int64_t int8Bytes(const KvShape &s, int64_t positions) {
    return 2 * s.kvHeads * positions * (s.headDim + static_cast<int64_t>(sizeof(float)));
}

// Symmetric per-(head, position) quantization over headDim: x ~= q * scale, q in [-127, 127].
std::pair<at::Tensor, at::Tensor> quantize(const at::Tensor &x) {
    const at::Tensor xf = x.to(at::kFloat);
    const at::Tensor scale = xf.abs().amax(-1, true).div_(127.0).clamp_min_(1e-30);
    return {xf.div(scale).round_().clamp_(-127, 127).to(at::kChar), scale};
}

at::Tensor dequantize(const at::Tensor &q, const at::Tensor &scale, at::ScalarType dtype) {
    return q.to(at::kFloat).mul_(scale).to(dtype);
}

} // namespace

int64_t KvCache::blockBytes(const KvShape &s, int64_t blockPositions) {
    if (s.int8) return int8Bytes(s, blockPositions);
    return 2 * s.kvHeads * blockPositions * s.headDim * static_cast<int64_t>(c10::elementSize(s.dtype));
}

int64_t KvCache::bytesPerPosition(const KvShape &s) {
    return s.layers * blockBytes(s, 1);
}

void KvCache::setInt8(bool on) {
    if (on == int8_) return;
    if (length_ > 0 || !keys_.empty() || !blocks_.empty())
        throw Error("KV cache: the storage precision changes only while it is empty");
    int8_ = on;
}

void KvCache::addBlock(int64_t l, int32_t b) {
    const KvShape &s = shape_;
    blocks_[l].push_back(b);
    if (!s.int8) {
        blockViews_[l].push_back(pool_->view(b, {2, s.kvHeads, blockPositions_, s.headDim}, s.dtype));
        return;
    }
    const int64_t values = 2 * s.kvHeads * blockPositions_ * s.headDim;
    const at::Tensor raw = pool_->view(b, {int8Bytes(s, blockPositions_)}, at::kChar);
    blockViews_[l].push_back(raw.narrow(0, 0, values).view({2, s.kvHeads, blockPositions_, s.headDim}));
    blockScales_[l].push_back(raw.narrow(0, values, 2 * s.kvHeads * blockPositions_ * 4)
                                  .view(at::kFloat)
                                  .view({2, s.kvHeads, blockPositions_, 1}));
}

int64_t KvCache::capacity() const {
    if (pool_) return blocks_.empty() ? 0 : static_cast<int64_t>(blocks_[0].size()) * blockPositions_;
    return keys_.empty() ? 0 : keys_[0].size(1);
}

void KvCache::reserve(const KvShape &sIn, int64_t positions) {
    KvShape s = sIn;
    s.int8 = int8_;
    shape_ = s;
    if (positions <= capacity()) return;
    if (pool_) {
        blocks_.resize(s.layers);
        blockViews_.resize(s.layers);
        blockScales_.resize(s.layers);
        const int64_t need = (positions + blockPositions_ - 1) / blockPositions_;
        for (int64_t l = 0; l < s.layers; ++l) {
            while (static_cast<int64_t>(blocks_[l].size()) < need) {
                int32_t b = pool_->allocate(PoolUse::Kv);
                while (b < 0 && onExhausted_ && onExhausted_()) b = pool_->allocate(PoolUse::Kv);
                if (b < 0)
                    throw Error(
                        "memory pool exhausted: the conversation needs " + std::to_string(positions) +
                        " positions of attention state; raise the memory pool size or start a new chat");
                addBlock(l, b);
            }
        }
        return;
    }
    // Grow geometrically (bounded by the context) so a conversation pays O(log n) copies.
    int64_t cap = std::max<int64_t>(positions, std::min<int64_t>(2 * capacity(), s.maxPositions));
    cap = std::max<int64_t>(cap, std::min<int64_t>(256, s.maxPositions));
    const auto opts = at::TensorOptions().dtype(s.int8 ? at::kChar : s.dtype).device(s.device);
    const auto scaleOpts = at::TensorOptions().dtype(at::kFloat).device(s.device);
    auto grown = [&](const at::Tensor &old, at::IntArrayRef shape, const at::TensorOptions &o) {
        at::Tensor t = at::empty(shape, o);
        if (length_ > 0 && old.defined()) t.narrow(1, 0, length_).copy_(old.narrow(1, 0, length_));
        return t;
    };
    keys_.resize(s.layers);
    values_.resize(s.layers);
    if (s.int8) keyScales_.resize(s.layers), valueScales_.resize(s.layers);
    for (int64_t l = 0; l < s.layers; ++l) {
        keys_[l] = grown(keys_[l], {s.kvHeads, cap, s.headDim}, opts);
        values_[l] = grown(values_[l], {s.kvHeads, cap, s.headDim}, opts);
        if (s.int8) {
            keyScales_[l] = grown(keyScales_[l], {s.kvHeads, cap, 1}, scaleOpts);
            valueScales_[l] = grown(valueScales_[l], {s.kvHeads, cap, 1}, scaleOpts);
        }
    }
}

void KvCache::write(int64_t layer, int64_t start, const at::Tensor &kIn, const at::Tensor &vIn) {
    const int64_t n = kIn.size(1);
    at::Tensor k = kIn, v = vIn, ks, vs;
    if (shape_.int8) {
        std::tie(k, ks) = quantize(kIn);
        std::tie(v, vs) = quantize(vIn);
    }
    if (!pool_) {
        keys_[layer].narrow(1, start, n).copy_(k);
        values_[layer].narrow(1, start, n).copy_(v);
        if (shape_.int8) {
            keyScales_[layer].narrow(1, start, n).copy_(ks);
            valueScales_[layer].narrow(1, start, n).copy_(vs);
        }
        return;
    }
    for (int64_t done = 0; done < n;) {
        const int64_t pos = start + done, b = pos / blockPositions_, off = pos % blockPositions_;
        const int64_t len = std::min(n - done, blockPositions_ - off);
        const at::Tensor &blk = blockViews_[layer][b];
        blk[0].narrow(1, off, len).copy_(k.narrow(1, done, len));
        blk[1].narrow(1, off, len).copy_(v.narrow(1, done, len));
        if (shape_.int8) {
            const at::Tensor &sc = blockScales_[layer][b];
            sc[0].narrow(1, off, len).copy_(ks.narrow(1, done, len));
            sc[1].narrow(1, off, len).copy_(vs.narrow(1, done, len));
        }
        done += len;
    }
}

std::vector<std::pair<at::Tensor, at::Tensor>> KvCache::segments(int64_t layer, int64_t total) const {
    const at::ScalarType dt = shape_.dtype;
    if (!pool_) {
        if (!shape_.int8) return {{keys_[layer].narrow(1, 0, total), values_[layer].narrow(1, 0, total)}};
        return {
            {dequantize(keys_[layer].narrow(1, 0, total), keyScales_[layer].narrow(1, 0, total), dt),
             dequantize(values_[layer].narrow(1, 0, total), valueScales_[layer].narrow(1, 0, total), dt)}};
    }
    std::vector<std::pair<at::Tensor, at::Tensor>> out;
    for (int64_t pos = 0; pos < total; pos += blockPositions_) {
        const size_t b = static_cast<size_t>(pos / blockPositions_);
        const at::Tensor &blk = blockViews_[layer][b];
        const int64_t len = std::min(blockPositions_, total - pos);
        if (!shape_.int8) {
            out.emplace_back(blk[0].narrow(1, 0, len), blk[1].narrow(1, 0, len));
            continue;
        }
        const at::Tensor &sc = blockScales_[layer][b];
        out.emplace_back(dequantize(blk[0].narrow(1, 0, len), sc[0].narrow(1, 0, len), dt),
                         dequantize(blk[1].narrow(1, 0, len), sc[1].narrow(1, 0, len), dt));
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
            if (!blockScales_.empty() && !blockScales_[l].empty()) blockScales_[l].pop_back();
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
    blockScales_.clear();
    keys_.clear();
    values_.clear();
    keyScales_.clear();
    valueScales_.clear();
}

uint64_t KvCache::bytes() const {
    if (pool_) {
        uint64_t blocks = 0;
        for (const auto &l : blocks_) blocks += l.size();
        return blocks * static_cast<uint64_t>(blockBytes(shape_, blockPositions_));
    }
    uint64_t n = 0;
    for (const auto *ts : {&keys_, &values_, &keyScales_, &valueScales_})
        for (const auto &t : *ts) n += t.nbytes();
    return n;
}

} // namespace mgd
