#pragma once
// A plain streaming read at the widest vector width the CPU has: what "memory bandwidth" means
// when a kernel's efficiency is stated (bytes it reads per second / this). A narrower read (e.g.
// SSE2, what generic x86-64 code compiles to) understates it: on Zen 4, 2 threads, 22-23 GB/s
// against 26-30 GB/s with AVX-512 loads.
#include <cstddef>
#include <cstdint>

namespace mgd::kernels {

// Reads bytes [0, bytes) of p once (whole 256-byte steps, the rest ignored) and returns a sum of
// what it read, so the compiler cannot drop the reads.
uint64_t streamRead(const void *p, size_t bytes);

} // namespace mgd::kernels
