#pragma once
// Hands memory the allocator keeps after it is freed back to the OS.
#include <cstdint>

namespace mgd {

// glibc keeps freed blocks below its (self-raising) mmap threshold in its heaps: a long
// prefill's activations stay in RSS after the prefill (tens of MB for a 1B model at 512
// tokens). A no-op on other C libraries.
void returnFreedHeap();

// Prompts at least this long free enough (MBs of activations per layer) to be worth it.
constexpr int64_t kTrimAfterTokens = 64;

} // namespace mgd
