#include "core/runtime/prefix_sharing.h"

#include <algorithm>

#include "core/runtime/session.h"
#include "core/util/error.h"

namespace mgd {

PrefixSource findSharedPrefix(const Session &target, const std::vector<const Session *> &others,
                              const std::vector<int64_t> &promptKeys, int64_t limit, int64_t minGain) {
    const int64_t own = target.commonPrefix(promptKeys);
    PrefixSource best;
    best.sharedBlocks = target.sharedPrefixHeld(promptKeys, limit);
    best.length = best.sharedBlocks;
    for (const Session *s : others) {
        const int64_t n = std::min(s->commonPrefix(promptKeys), limit);
        if (n > best.length) best.length = n, best.session = s;
    }
    if (best.length <= own + minGain) return {};
    return best;
}

bool adoptSharedPrefix(Session &target, const PrefixSource &source, const KvShape &shape,
                       const std::vector<int64_t> &promptKeys) {
    if (source.length <= 0) return false;
    const int64_t adopted = target.adoptSharedBlocks(shape, promptKeys, source.length);
    if (source.session && source.length > adopted) {
        try {
            target.copyFrom(*source.session, source.length);
        } catch (const Error &) {
            // An optimisation, not a requirement: prefill the rest normally (which may then
            // evict the source's KV).
        }
    }
    return target.length() > 0;
}

} // namespace mgd
