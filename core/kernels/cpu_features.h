#pragma once
// What this CPU (and its OS) can run, detected once at run time: the app is built for generic
// x86-64 and picks its matrix-vector kernels from this, never from compile-time flags.
#include <optional>
#include <string>

namespace mgd::kernels {

struct CpuFeatures {
    std::string brand; // cpuid brand string, e.g. "AMD EPYC 9654 96-Core Processor"
    bool avx2 = false, fma = false, f16c = false;
    bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
    bool avx512bf16 = false, avx512vnni = false, avxVnni = false;
    bool amxBf16 = false, amxInt8 = false; // reported only: no kernel uses AMX (yet)
};

// Detected once (cpuid, and xgetbv for the OS saving YMM/ZMM state); never changes.
const CpuFeatures &cpuFeatures();

enum class KernelLevel { Scalar, Avx2, Avx512 };

// Avx2 needs AVX2+FMA+F16C; Avx512 needs AVX-512 F/BW/VL/DQ (BF16 and VNNI are used when present).
bool levelSupported(KernelLevel level);
KernelLevel bestLevel();
// The level every kernel runs at: the forced one, else $MGD_KERNELS (scalar|avx2|avx512, read
// once; a level the CPU lacks falls back to the best one), else bestLevel(). Thread-safe.
KernelLevel activeLevel();
// Tests: run at `level` (std::nullopt: back to the default). An unsupported level is an mgd::Error.
void forceKernelLevel(std::optional<KernelLevel> level);
// Tests: at the Avx512 level, act as if AVX512-BF16 and AVX512-VNNI were absent (Skylake-X),
// so their fallback paths run on a CPU that has them.
void forceNoAvx512Extensions(bool off);
bool useAvx512Bf16(); // avx512bf16 and not forced off
bool useAvx512Vnni(); // avx512vnni and not forced off

const char *levelName(KernelLevel level);
// One line: brand, the features, the active level, e.g. for logs and the benchmark.
std::string describeCpu();

} // namespace mgd::kernels
