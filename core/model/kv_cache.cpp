#include "core/model/kv_cache.h"

#include <cstring>

#include <ATen/ATen.h>

#include "core/cache/prefix_blocks.h"
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
    shared_ = o.shared_;
    sharedHashes_ = std::move(o.sharedHashes_);
    o.length_ = 0;
    o.pool_ = nullptr;
    o.shared_ = nullptr;
    o.sharedHashes_.clear();
    o.blocks_.clear();
    o.blockViews_.clear();
    o.blockScales_.clear();
    return *this;
}

void KvCache::usePool(MemoryPool *pool, int64_t blockPositions, std::function<bool()> onExhausted,
                      PrefixBlocks *shared) {
    release();
    pool_ = pool;
    blockPositions_ = blockPositions;
    onExhausted_ = std::move(onExhausted);
    shared_ = pool ? shared : nullptr;
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
    blocks_[l].push_back(-1);
    blockViews_[l].emplace_back();
    if (shape_.int8) blockScales_[l].emplace_back();
    setBlock(l, blocks_[l].size() - 1, b);
}

void KvCache::setBlock(int64_t l, size_t i, int32_t b) {
    const KvShape &s = shape_;
    blocks_[l][i] = b;
    if (!s.int8) {
        blockViews_[l][i] = pool_->view(b, {2, s.kvHeads, blockPositions_, s.headDim}, s.dtype);
        return;
    }
    const int64_t values = 2 * s.kvHeads * blockPositions_ * s.headDim;
    const at::Tensor raw = pool_->view(b, {int8Bytes(s, blockPositions_)}, at::kChar);
    blockViews_[l][i] = raw.narrow(0, 0, values).view({2, s.kvHeads, blockPositions_, s.headDim});
    blockScales_[l][i] = raw.narrow(0, values, 2 * s.kvHeads * blockPositions_ * 4)
                             .view(at::kFloat)
                             .view({2, s.kvHeads, blockPositions_, 1});
}

int32_t KvCache::allocateBlock(int64_t positions) {
    int32_t b = pool_->allocate(PoolUse::Kv);
    while (b < 0 && onExhausted_ && onExhausted_()) b = pool_->allocate(PoolUse::Kv);
    if (b < 0)
        throw Error("memory pool exhausted: the conversation needs " + std::to_string(positions) +
                    " positions of attention state; raise the memory pool size or start a new chat");
    return b;
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
        const size_t need = static_cast<size_t>((positions + blockPositions_ - 1) / blockPositions_);
        // Block by block across the layers, so every layer always holds as many blocks.
        while (blockCount() < need) {
            std::vector<int32_t> got;
            try {
                for (int64_t l = 0; l < s.layers; ++l) got.push_back(allocateBlock(positions));
            } catch (...) {
                for (int32_t b : got) pool_->release(b);
                throw;
            }
            for (int64_t l = 0; l < s.layers; ++l) addBlock(l, got[l]);
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
    if (start < sharedPositions())
        throw Error("KV cache: a write at position " + std::to_string(start) + " into a shared block");
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

void KvCache::writeOne(int64_t layer, int64_t pos, const void *k, const void *v) {
    if (shape_.int8) throw Error("KV cache: writeOne on int8 storage");
    if (pos < sharedPositions())
        throw Error("KV cache: a write at position " + std::to_string(pos) + " into a shared block");
    const int64_t H = shape_.kvHeads, Dh = shape_.headDim;
    const size_t row = static_cast<size_t>(Dh) * c10::elementSize(shape_.dtype);
    char *kBase, *vBase;
    int64_t headStride, at; // in rows
    if (!pool_) {
        kBase = static_cast<char *>(keys_[layer].data_ptr());
        vBase = static_cast<char *>(values_[layer].data_ptr());
        headStride = keys_[layer].size(1);
        at = pos;
    } else { // a block is [2 (K, V), kvHeads, P, headDim]
        kBase = static_cast<char *>(blockViews_[layer][pos / blockPositions_].data_ptr());
        vBase = kBase + static_cast<size_t>(H * blockPositions_) * row;
        headStride = blockPositions_;
        at = pos % blockPositions_;
    }
    for (int64_t h = 0; h < H; ++h) {
        const size_t off = static_cast<size_t>(h * headStride + at) * row;
        std::memcpy(kBase + off, static_cast<const char *>(k) + h * row, row);
        std::memcpy(vBase + off, static_cast<const char *>(v) + h * row, row);
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

std::pair<at::Tensor, at::Tensor> KvCache::gathered(int64_t layer, int64_t total) const {
    if (!pool_) {
        const auto segs = segments(layer, total);
        return segs.front();
    }
    const int64_t n = (total + blockPositions_ - 1) / blockPositions_;
    std::vector<at::Tensor> kv, sc;
    for (int64_t b = 0; b < n; ++b) {
        const int64_t len = std::min(blockPositions_, total - b * blockPositions_);
        kv.push_back(blockViews_[layer][b].narrow(2, 0, len)); // [2, kvHeads, len, headDim]
        if (shape_.int8) sc.push_back(blockScales_[layer][b].narrow(2, 0, len));
    }
    at::Tensor all = at::cat(kv, 2);
    if (shape_.int8) all = dequantize(all, at::cat(sc, 2), shape_.dtype);
    return {all[0], all[1]};
}

KvElement KvCache::element() const {
    if (!shape_.device.is_cpu()) return KvElement::Other;
    if (shape_.int8) return KvElement::Int8;
    if (shape_.dtype == at::kFloat) return KvElement::F32;
    if (shape_.dtype == at::kBFloat16) return KvElement::Bf16;
    return KvElement::Other;
}

void KvCache::spans(int64_t layer, int64_t total, std::vector<KvSpan> &out) const {
    const int64_t H = shape_.kvHeads, Dh = shape_.headDim;
    const int64_t elem = shape_.int8 ? 1 : static_cast<int64_t>(c10::elementSize(shape_.dtype));
    if (!pool_) {
        KvSpan s;
        s.k = keys_[layer].data_ptr();
        s.v = values_[layer].data_ptr();
        s.len = total;
        s.headStride = keys_[layer].size(1) * Dh;
        if (shape_.int8) {
            s.kScale = keyScales_[layer].data_ptr<float>();
            s.vScale = valueScales_[layer].data_ptr<float>();
            s.scaleHeadStride = keyScales_[layer].size(1);
        }
        out.push_back(s);
        return;
    }
    // A block is [2 (K, V), kvHeads, P, headDim], scales [2, kvHeads, P, 1].
    for (int64_t pos = 0, b = 0; pos < total; pos += blockPositions_, ++b) {
        const char *base = static_cast<const char *>(blockViews_[layer][b].data_ptr());
        KvSpan s;
        s.k = base;
        s.v = base + H * blockPositions_ * Dh * elem;
        s.len = std::min(blockPositions_, total - pos);
        s.headStride = blockPositions_ * Dh;
        if (shape_.int8) {
            s.kScale = static_cast<const float *>(blockScales_[layer][b].data_ptr());
            s.vScale = s.kScale + H * blockPositions_;
            s.scaleHeadStride = blockPositions_;
        }
        out.push_back(s);
    }
}

void KvCache::copyFrom(const KvCache &other, int64_t n) {
    n = std::min(n, other.length_);
    const int64_t from = length_;
    if (n <= from) return;
    reserve(other.shape_, n);
    for (int64_t l = 0; l < other.shape_.layers; ++l) {
        int64_t pos = 0;
        for (const auto &[k, v] : other.segments(l, n)) {
            const int64_t len = k.size(1), a = std::max(from, pos);
            if (a < pos + len)
                write(l, a, k.narrow(1, a - pos, pos + len - a), v.narrow(1, a - pos, pos + len - a));
            pos += len;
        }
    }
    length_ = n;
}

void KvCache::shareFullBlocks(const std::vector<Digest128> &hashes) {
    if (!sharing()) return;
    const size_t full = std::min(static_cast<size_t>(length_ / blockPositions_), hashes.size());
    for (size_t i = sharedHashes_.size(); i < full; ++i) {
        std::vector<int32_t> own(blocks_.size());
        for (size_t l = 0; l < blocks_.size(); ++l) own[l] = blocks_[l][i];
        if (!shared_->insert(hashes[i], own)) {
            // An equal block (same positions after the same prefix) is held already: use it.
            const std::vector<int32_t> *held = shared_->acquire(hashes[i]);
            for (size_t l = 0; l < blocks_.size(); ++l) {
                pool_->release(own[l]);
                setBlock(static_cast<int64_t>(l), i, (*held)[l]);
            }
        }
        sharedHashes_.push_back(hashes[i]);
    }
}

int64_t KvCache::adoptSharedBlocks(const KvShape &sIn, const std::vector<Digest128> &hashes,
                                   int64_t maxBlocks) {
    if (length_ > 0 || blockCount() > 0)
        throw Error("KV cache: shared blocks are adopted only by an empty cache");
    if (!sharing()) return 0;
    shape_ = sIn;
    shape_.int8 = int8_;
    blocks_.resize(shape_.layers);
    blockViews_.resize(shape_.layers);
    blockScales_.resize(shape_.layers);
    const size_t limit = std::min(hashes.size(), static_cast<size_t>(std::max<int64_t>(0, maxBlocks)));
    for (size_t i = 0; i < limit; ++i) {
        const std::vector<int32_t> *held = shared_->acquire(hashes[i]);
        if (!held) break;
        for (int64_t l = 0; l < shape_.layers; ++l) addBlock(l, (*held)[l]);
        sharedHashes_.push_back(hashes[i]);
    }
    length_ = sharedPositions();
    return length_;
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

void KvCache::dropLastBlock() {
    const size_t i = blockCount() - 1;
    const bool shared = i < sharedHashes_.size();
    if (shared) {
        shared_->release(sharedHashes_.back());
        sharedHashes_.pop_back();
    }
    for (size_t l = 0; l < blocks_.size(); ++l) {
        if (!shared) pool_->release(blocks_[l].back());
        blocks_[l].pop_back();
        blockViews_[l].pop_back();
        if (!blockScales_[l].empty()) blockScales_[l].pop_back();
    }
}

// Copy-on-write: the last block becomes this cache's own copy (it is about to be written).
void KvCache::unshareLastBlock() {
    const size_t i = blockCount() - 1;
    std::vector<int32_t> copies;
    try {
        for (size_t l = 0; l < blocks_.size(); ++l) copies.push_back(allocateBlock(length_));
    } catch (...) {
        for (int32_t b : copies) pool_->release(b);
        length_ = static_cast<int64_t>(i) * blockPositions_;
        dropLastBlock();
        throw;
    }
    const int64_t bytes = static_cast<int64_t>(pool_->blockBytes());
    for (size_t l = 0; l < blocks_.size(); ++l) {
        pool_->view(copies[l], {bytes}, at::kByte).copy_(pool_->view(blocks_[l][i], {bytes}, at::kByte));
        setBlock(static_cast<int64_t>(l), i, copies[l]);
    }
    shared_->release(sharedHashes_.back());
    sharedHashes_.pop_back();
}

void KvCache::truncate(int64_t n) {
    length_ = std::min(length_, n);
    if (!pool_) return;
    const size_t keep = static_cast<size_t>((length_ + blockPositions_ - 1) / blockPositions_);
    while (blockCount() > keep) dropLastBlock();
    if (length_ % blockPositions_ != 0 && keep <= sharedHashes_.size()) unshareLastBlock();
}

void KvCache::release() {
    length_ = 0;
    if (pool_)
        while (blockCount() > 0) dropLastBlock();
    blocks_.clear();
    blockViews_.clear();
    blockScales_.clear();
    sharedHashes_.clear();
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
