#include "core/runtime/prefix_sharing.h"

#include <algorithm>

#include "core/runtime/session.h"
#include "core/util/error.h"

namespace mgd {

PrefixSource findSharedPrefix(const Session &target, const std::vector<const Session *> &others,
                              const std::vector<int64_t> &promptKeys, int64_t minGain) {
    const int64_t own = target.commonPrefix(promptKeys);
    PrefixSource best{nullptr, own};
    for (const Session *s : others) {
        const int64_t n = s->commonPrefix(promptKeys);
        if (n > best.length) best = {s, n};
    }
    if (best.session && best.length <= own + minGain) best = {nullptr, own};
    return best;
}

bool adoptSharedPrefix(Session &target, const PrefixSource &source, int64_t limit) {
    if (!source.session) return false;
    try {
        target.adoptPrefix(*source.session, std::min(source.length, limit));
        return true;
    } catch (const Error &) {
        // An optimisation, not a requirement: prefill normally (which may then evict the
        // source's KV).
        target.dropState();
        return false;
    }
}

} // namespace mgd
