#pragma once
// A store of fixed-size byte blocks addressed by index: the memory pool implements it, the
// feature cache's host tier uses it, so the cache depends on this interface, not on the pool.
#include <cstddef>
#include <cstdint>

namespace mgd {

class BlockStore {
public:
    virtual ~BlockStore() = default;
    virtual int32_t allocateBlock() = 0; // -1 when no block is free
    virtual void releaseBlock(int32_t block) = 0;
    virtual size_t blockBytes() const = 0;
    virtual uint8_t *blockData(int32_t block) = 0;
};

} // namespace mgd
