#pragma once
// A conversation that does not already hold its prompt's prefix (system prompt + image,
// typically) starts from what others hold instead of prefilling it: first the full blocks
// shared by reference (core/cache/prefix_blocks.h: no copy, from live conversations or ones
// gone), then the few positions past the last full block, copied from a live conversation
// that holds them.
#include <cstdint>
#include <vector>

namespace mgd {

class Session;
struct KvShape;

struct PrefixSource {
    int64_t length = 0;               // positions of the prompt the start will hold; 0: none
    int64_t sharedBlocks = 0;         // of which in shared blocks
    const Session *session = nullptr; // copied from for [sharedBlocks, length); may be null
};

// What `target` can start from for `promptKeys` (at most `limit` positions) when it is more
// than `minGain` positions beyond what target holds itself.
PrefixSource findSharedPrefix(const Session &target, const std::vector<const Session *> &others,
                              const std::vector<int64_t> &promptKeys, int64_t limit, int64_t minGain = 8);

// Starts `target` from `source`. false (target left empty, to prefill normally) when nothing
// could be adopted; a failed copy (pool full) keeps the shared blocks.
bool adoptSharedPrefix(Session &target, const PrefixSource &source, const KvShape &shape,
                       const std::vector<int64_t> &promptKeys);

} // namespace mgd
