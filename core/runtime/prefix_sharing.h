#pragma once
// A conversation that does not already hold its prompt's prefix starts from the longest one
// another conversation holds (system prompt + image, typically), instead of prefilling it.
// Today the prefix is copied into the new conversation's KV; shared blocks are issue 14's next
// step.
#include <cstdint>
#include <vector>

namespace mgd {

class Session;

struct PrefixSource {
    const Session *session = nullptr; // nullptr: nobody holds more than the target already does
    int64_t length = 0;               // positions of the prompt it holds
};

// The session among `others` holding the longest prefix of `promptKeys`, when it is more
// than `minGain` positions longer than what `target` holds itself.
PrefixSource findSharedPrefix(const Session &target, const std::vector<const Session *> &others,
                              const std::vector<int64_t> &promptKeys, int64_t minGain = 8);

// Copies the first min(source.length, limit) positions into `target`. false (target left
// empty, to prefill normally) when the pool has no room for the copy next to its source.
bool adoptSharedPrefix(Session &target, const PrefixSource &source, int64_t limit);

} // namespace mgd
