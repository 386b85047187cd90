#include "core/kernels/cpu_features.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/util/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define MGD_X86 1
#endif

namespace mgd::kernels {

namespace {

#ifdef MGD_X86
struct Regs {
    uint32_t a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(uint32_t leaf, uint32_t sub = 0) {
    Regs r;
    if (!__get_cpuid_count(leaf, sub, &r.a, &r.b, &r.c, &r.d)) r = Regs{};
    return r;
}

// xgetbv(0): which register states the OS saves on a context switch. Inline asm, so this file
// needs no -mxsave.
uint64_t xcr0() {
    uint32_t lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (static_cast<uint64_t>(hi) << 32) | lo;
}

bool bit(uint32_t v, int i) {
    return (v >> i) & 1u;
}

CpuFeatures detect() {
    CpuFeatures f;
    const uint32_t maxLeaf = cpuid(0).a;
    const uint32_t maxExt = cpuid(0x80000000u).a;
    if (maxExt >= 0x80000004u) {
        char brand[49] = {};
        for (uint32_t i = 0; i < 3; ++i) {
            const Regs r = cpuid(0x80000002u + i);
            std::memcpy(brand + 16 * i, &r, 16);
        }
        f.brand = brand;
        const auto b = f.brand.find_first_not_of(' ');
        const auto e = f.brand.find_last_not_of(' ');
        f.brand = b == std::string::npos ? std::string() : f.brand.substr(b, e - b + 1);
    }
    if (maxLeaf < 1) return f;
    const Regs l1 = cpuid(1);
    // Without OSXSAVE the OS does not save YMM/ZMM: no AVX at all, whatever cpuid says.
    if (!bit(l1.c, 27) || !bit(l1.c, 28)) return f;
    const uint64_t x = xcr0();
    const bool ymm = (x & 0x6) == 0x6;           // SSE + AVX state
    const bool zmm = (x & 0xe6) == 0xe6;         // + opmask, ZMM_Hi256, Hi16_ZMM
    const bool tiles = (x & 0x60000) == 0x60000; // XTILECFG + XTILEDATA
    if (!ymm) return f;
    f.fma = bit(l1.c, 12);
    f.f16c = bit(l1.c, 29);
    if (maxLeaf < 7) return f;
    const Regs l7 = cpuid(7, 0), l71 = cpuid(7, 1);
    f.avx2 = bit(l7.b, 5);
    f.avxVnni = bit(l71.a, 4);
    if (zmm) {
        f.avx512f = bit(l7.b, 16);
        f.avx512dq = bit(l7.b, 17);
        f.avx512bw = bit(l7.b, 30);
        f.avx512vl = bit(l7.b, 31);
        f.avx512vnni = bit(l7.c, 11);
        f.avx512bf16 = bit(l71.a, 5);
    }
    if (tiles) {
        f.amxBf16 = bit(l7.d, 22);
        f.amxInt8 = bit(l7.d, 25);
    }
    return f;
}
#else
CpuFeatures detect() {
    return {};
}
#endif

std::optional<KernelLevel> parseLevel(const char *s) {
    if (!s) return std::nullopt;
    const std::string v(s);
    if (v == "scalar") return KernelLevel::Scalar;
    if (v == "avx2") return KernelLevel::Avx2;
    if (v == "avx512") return KernelLevel::Avx512;
    return std::nullopt;
}

KernelLevel defaultLevel() {
    const std::optional<KernelLevel> env = parseLevel(std::getenv("MGD_KERNELS"));
    return env && levelSupported(*env) ? *env : bestLevel();
}

// -1: not forced; else the forced KernelLevel.
std::atomic<int> forced{-1};
std::atomic<bool> noAvx512Ext{false};

} // namespace

const CpuFeatures &cpuFeatures() {
    static const CpuFeatures f = detect();
    return f;
}

bool levelSupported(KernelLevel level) {
    const CpuFeatures &f = cpuFeatures();
    switch (level) {
    case KernelLevel::Scalar: return true;
    case KernelLevel::Avx2: return f.avx2 && f.fma && f.f16c;
    case KernelLevel::Avx512:
        return levelSupported(KernelLevel::Avx2) && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
    }
    return false;
}

KernelLevel bestLevel() {
    if (levelSupported(KernelLevel::Avx512)) return KernelLevel::Avx512;
    if (levelSupported(KernelLevel::Avx2)) return KernelLevel::Avx2;
    return KernelLevel::Scalar;
}

KernelLevel activeLevel() {
    const int f = forced.load(std::memory_order_relaxed);
    if (f >= 0) return static_cast<KernelLevel>(f);
    static const KernelLevel level = defaultLevel();
    return level;
}

void forceKernelLevel(std::optional<KernelLevel> level) {
    if (level && !levelSupported(*level))
        throw Error(std::string("kernel level ") + levelName(*level) + " is not supported by this CPU");
    forced.store(level ? static_cast<int>(*level) : -1, std::memory_order_relaxed);
}

void forceNoAvx512Extensions(bool off) {
    noAvx512Ext.store(off, std::memory_order_relaxed);
}

bool useAvx512Bf16() {
    return cpuFeatures().avx512bf16 && !noAvx512Ext.load(std::memory_order_relaxed);
}
bool useAvx512Vnni() {
    return cpuFeatures().avx512vnni && !noAvx512Ext.load(std::memory_order_relaxed);
}

const char *levelName(KernelLevel level) {
    switch (level) {
    case KernelLevel::Scalar: return "scalar";
    case KernelLevel::Avx2: return "avx2";
    case KernelLevel::Avx512: return "avx512";
    }
    return "?";
}

std::string describeCpu() {
    const CpuFeatures &f = cpuFeatures();
    std::string s = f.brand.empty() ? std::string("unknown CPU") : f.brand;
    s += " |";
    const std::pair<const char *, bool> names[] = {{"avx2", f.avx2},
                                                   {"fma", f.fma},
                                                   {"f16c", f.f16c},
                                                   {"avx512f", f.avx512f},
                                                   {"avx512bw", f.avx512bw},
                                                   {"avx512vl", f.avx512vl},
                                                   {"avx512dq", f.avx512dq},
                                                   {"avx512_bf16", f.avx512bf16},
                                                   {"avx512_vnni", f.avx512vnni},
                                                   {"avx_vnni", f.avxVnni},
                                                   {"amx_bf16", f.amxBf16},
                                                   {"amx_int8", f.amxInt8}};
    for (const auto &[name, has] : names)
        if (has) (s += ' ') += name;
    s += " | kernels: ";
    s += levelName(activeLevel());
    return s;
}

} // namespace mgd::kernels
