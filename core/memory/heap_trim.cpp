#include "core/memory/heap_trim.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace mgd {

void returnFreedHeap() {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

} // namespace mgd
