#include "core/memory/heap_trim.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "core/metrics/metrics.h"

namespace mgd {

uint64_t releaseFreeHeapMemory() {
#if defined(__GLIBC__)
    const uint64_t before = currentRssBytes();
    malloc_trim(0);
    const uint64_t after = currentRssBytes();
    return before > after ? before - after : 0;
#else
    return 0;
#endif
}

} // namespace mgd
