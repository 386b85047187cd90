#pragma once
// Between turns the heap holds what the last prefill freed (activations, int8 tiles, GEMM
// scratch): malloc keeps it resident for the next one, ~75-140 MB on the bench-llm shapes. An
// idle desktop app should not sit on that; a turn should not pay for faulting it back in.
#include <cstdint>

namespace mgd {

// Hands the free memory malloc holds back to the OS (glibc's malloc_trim, which also releases
// free pages inside the heap, not only at its top). Call it when idle, never inside a turn: the
// next large prefill faults those pages in again. Returns how much the RSS fell (0 if it did not,
// or without glibc).
uint64_t releaseFreeHeapMemory();

} // namespace mgd
