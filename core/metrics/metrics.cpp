#include "core/metrics/metrics.h"

#include <ATen/ATen.h>
#include <dlfcn.h>
#include <malloc.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>

// The caching allocator's figures need c10/cuda headers, which only a CUDA libtorch installs
// complete (its generated cuda_cmake_macros.h); Debian's CPU libtorch ships the headers
// without it, so this test keeps CPU builds free of CUDA headers and libraries.
#if !defined(MGD_NO_CUDA_STATS) && __has_include(<c10/cuda/impl/cuda_cmake_macros.h>) && \
    __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#define MGD_CUDA_ALLOCATOR_STATS 1
#endif

namespace mgd {

namespace {

const char *const kStages[] = {"image_encode", "prefill", "ttft", "decode_token", "turn"};
const char *const kCaches[] = {"feature", "prefix", "response"};
const char *const kCounters[] = {"turns", "tokens_generated", "tokens_prefilled"};
const char *const kGauges[] = {"tokens_per_second"};

// Last kLatencyWindow samples (a ring) plus lifetime figures of one stage.
struct LatencyRing {
    std::vector<double> samples;
    size_t next = 0;
    uint64_t count = 0;
    double sum = 0, max = 0, last = 0;

    void add(double ms) {
        if (samples.size() < Metrics::kLatencyWindow) {
            if (samples.capacity() == 0) samples.reserve(Metrics::kLatencyWindow);
            samples.push_back(ms);
        } else {
            samples[next] = ms;
        }
        next = (next + 1) % Metrics::kLatencyWindow;
        max = count == 0 ? ms : std::max(max, ms);
        ++count;
        sum += ms;
        last = ms;
    }
};

// Outcomes of the last kHitRateWindow lookups of one cache, plus lifetime totals.
struct HitWindow {
    std::array<bool, Metrics::kHitRateWindow> recent{};
    size_t next = 0, filled = 0, recentHits = 0;
    uint64_t lookups = 0, hits = 0;

    void add(bool hit) {
        if (filled == recent.size())
            recentHits -= recent[next];
        else
            ++filled;
        recent[next] = hit;
        recentHits += hit;
        next = (next + 1) % recent.size();
        ++lookups;
        hits += hit;
    }
    HitRate summary() const {
        HitRate r;
        r.lookups = lookups;
        r.hits = hits;
        r.rolling = filled ? double(recentHits) / double(filled) : 0.0;
        return r;
    }
};

struct PoolFigures {
    uint64_t capacity = 0, used = 0, highWater = 0, kv = 0, feature = 0, allocFailures = 0;
};

// Nearest-rank percentiles of the ring's samples. nth_element on increasing ranks gives the
// values a full sort would, in linear time (a snapshot of 5 full rings stays cheap).
void summarize(std::vector<double> &v, const LatencyRing &ring, LatencySummary &out) {
    out.count = ring.count;
    out.mean = ring.count ? ring.sum / double(ring.count) : 0.0;
    out.max = ring.max;
    out.last = ring.last;
    const size_t n = v.size();
    if (n == 0) return;
    const int pcts[] = {50, 90, 95, 99};
    double *dst[] = {&out.p50, &out.p90, &out.p95, &out.p99};
    size_t lo = 0;
    for (int i = 0; i < 4; ++i) {
        const size_t rank = std::max<size_t>(1, (size_t(pcts[i]) * n + 99) / 100); // ceil(p n)
        const size_t idx = rank - 1;
        if (idx >= lo) {
            std::nth_element(v.begin() + lo, v.begin() + idx, v.end());
            lo = idx + 1;
        }
        *dst[i] = v[idx];
    }
}

// Reads VmRSS and VmHWM (kB) from /proc/self/status.
void readProcStatus(uint64_t *rss, uint64_t *peak) {
    FILE *f = std::fopen("/proc/self/status", "re");
    if (!f) return;
    char line[256];
    unsigned long long kb = 0;
    while (std::fgets(line, sizeof line, f)) {
        if (rss && std::sscanf(line, "VmRSS: %llu kB", &kb) == 1) *rss = kb * 1024;
        if (peak && std::sscanf(line, "VmHWM: %llu kB", &kb) == 1) *peak = kb * 1024;
    }
    std::fclose(f);
}

// NVML through dlopen with our own prototypes: the library comes with the NVIDIA driver and
// is absent on CPU machines, where this stays disabled.
struct Nvml {
    struct Memory {
        unsigned long long total, free, used;
    };
    using Init = int (*)();
    using Handle = int (*)(unsigned int, void **);
    using MemoryInfo = int (*)(void *, Memory *);
    using Shutdown = int (*)();

    bool ok = false;
    MemoryInfo memoryInfo = nullptr;
    Shutdown shutdown = nullptr;
    void *device = nullptr;

    Nvml() {
        void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!lib) return;
        auto init = reinterpret_cast<Init>(dlsym(lib, "nvmlInit_v2"));
        auto handle = reinterpret_cast<Handle>(dlsym(lib, "nvmlDeviceGetHandleByIndex_v2"));
        memoryInfo = reinterpret_cast<MemoryInfo>(dlsym(lib, "nvmlDeviceGetMemoryInfo"));
        shutdown = reinterpret_cast<Shutdown>(dlsym(lib, "nvmlShutdown"));
        if (!init || !handle || !memoryInfo || !shutdown || init() != 0) return;
        if (handle(0, &device) != 0) { // the first GPU: the one the engine's "cuda" means
            shutdown();
            return;
        }
        ok = true; // the library stays loaded for the life of the process
    }
    ~Nvml() {
        if (ok) shutdown();
    }
    bool query(uint64_t &used, uint64_t &total) const {
        Memory m{};
        if (!ok || memoryInfo(device, &m) != 0) return false;
        used = m.used;
        total = m.total;
        return true;
    }
};

const Nvml &nvml() {
    static const Nvml instance;
    return instance;
}

bool hasCuda() {
    static const bool has = [] {
        try {
            return at::hasCUDA();
        } catch (...) {
            return false;
        }
    }();
    return has;
}

// True when this process already uses the GPU: reading its memory must not create a context.
bool cudaInUse() {
    if (!hasCuda()) return false;
    try {
        return at::detail::getCUDAHooks().hasPrimaryContext(0);
    } catch (...) {
        return false;
    }
}

void readCuda(MemorySnapshot &m) {
    m.cuda = hasCuda();
    if (!m.cuda || !cudaInUse()) return;
#ifdef MGD_CUDA_ALLOCATOR_STATS
    try {
        // auto: the stats type moved between libtorch 1.13 and 2.x; index 0 is AGGREGATE.
        const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(c10::cuda::current_device());
        m.cudaAllocatedBytes = static_cast<uint64_t>(stats.allocated_bytes[0].current);
        m.cudaReservedBytes = static_cast<uint64_t>(stats.reserved_bytes[0].current);
    } catch (...) {
    }
#endif
    if (!m.nvml) {
        uint64_t freeBytes = 0, totalBytes = 0;
        if (cudaMemoryInfo(freeBytes, totalBytes)) {
            m.deviceTotalBytes = totalBytes;
            m.deviceUsedBytes = totalBytes - freeBytes;
        }
    }
}

} // namespace

struct Metrics::Impl {
    const std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    mutable std::mutex mu;
    std::map<std::string, LatencyRing> latency;
    std::map<std::string, HitWindow> hits;
    std::map<std::string, uint64_t> counters;
    std::map<std::string, double> gauges;
    PoolFigures pool;

    void clear() { // caller holds mu
        latency.clear();
        hits.clear();
        counters.clear();
        gauges.clear();
        pool = {};
        for (const char *s : kStages) latency[s];
        for (const char *c : kCaches) hits[c];
        for (const char *c : kCounters) counters[c] = 0;
        for (const char *g : kGauges) gauges[g] = 0.0;
    }
};

Metrics::Metrics() : impl_(std::make_unique<Impl>()) {
    impl_->clear();
}

Metrics::~Metrics() = default;

void Metrics::recordLatency(const std::string &stage, double ms) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->latency[stage].add(ms);
}

void Metrics::recordLookup(const std::string &cache, bool hit) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->hits[cache].add(hit);
}

void Metrics::addCounter(const std::string &name, uint64_t delta) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->counters[name] += delta;
}

void Metrics::setGauge(const std::string &name, double value) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->gauges[name] = value;
}

void Metrics::setPoolStats(uint64_t capacity, uint64_t used, uint64_t highWater, uint64_t kvBytes,
                           uint64_t featureBytes, uint64_t allocFailures) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->pool = {capacity, used, highWater, kvBytes, featureBytes, allocFailures};
}

void Metrics::reset() {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->clear();
}

void Metrics::recordTurn(const TurnStats &s) {
    // A turn cancelled before its first token has no time to first token.
    if (s.generatedTokens > 0 || s.responseCacheHit) recordLatency("ttft", s.ttftMs);
    recordLatency("turn", s.totalMs);
    addCounter("turns");
    if (s.responseCacheHit) return; // the model did not run
    recordLookup("prefix", s.reusedTokens > 0);
    recordLatency("prefill", s.prefillMs);
    addCounter("tokens_prefilled", static_cast<uint64_t>(s.prefillTokens));
    addCounter("tokens_reused", static_cast<uint64_t>(s.reusedTokens));
    recordLatency("decode_token", s.decodeMsPerToken);
    addCounter("tokens_generated", static_cast<uint64_t>(s.generatedTokens));
    if (s.decodeMs > 0) setGauge("tokens_per_second", 1000.0 * s.generatedTokens / s.decodeMs);
}

MetricsSnapshot Metrics::snapshot() const {
    MetricsSnapshot s;
    std::vector<std::vector<double>> samples; // per stage, in the maps' (sorted) key order
    std::vector<LatencyRing> rings;           // lifetime figures only
    PoolFigures pool;
    {
        // Only copies under the lock: recorders wait at most this long.
        std::lock_guard<std::mutex> lock(impl_->mu);
        s.uptimeSeconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - impl_->start).count();
        samples.reserve(impl_->latency.size());
        rings.reserve(impl_->latency.size());
        for (const auto &[name, ring] : impl_->latency) {
            samples.push_back(ring.samples);
            LatencyRing r;
            r.count = ring.count;
            r.sum = ring.sum;
            r.max = ring.max;
            r.last = ring.last;
            rings.push_back(r);
            s.latency[name]; // filled below, without the lock
        }
        for (const auto &[name, w] : impl_->hits) s.hitRates[name] = w.summary();
        s.counters = impl_->counters;
        s.gauges = impl_->gauges;
        pool = impl_->pool;
    }
    auto out = s.latency.begin();
    for (size_t i = 0; i < samples.size(); ++i, ++out) summarize(samples[i], rings[i], out->second);

    MemorySnapshot &m = s.memory;
    readProcStatus(&m.processRssBytes, &m.processPeakRssBytes);
    m.poolCapacityBytes = pool.capacity;
    m.poolUsedBytes = pool.used;
    m.poolHighWaterBytes = pool.highWater;
    m.poolKvBytes = pool.kv;
    m.poolFeatureBytes = pool.feature;
    m.poolAllocFailures = pool.allocFailures;
    m.nvml = nvml().query(m.deviceUsedBytes, m.deviceTotalBytes);
    readCuda(m);
    return s;
}

std::string MetricsSnapshot::toJson() const {
    nlohmann::json j;
    j["uptime_seconds"] = uptimeSeconds;
    nlohmann::json lat = nlohmann::json::object();
    for (const auto &[name, l] : latency)
        lat[name] = {{"count", l.count}, {"mean_ms", l.mean}, {"p50_ms", l.p50}, {"p90_ms", l.p90},
                     {"p95_ms", l.p95},  {"p99_ms", l.p99},   {"max_ms", l.max}, {"last_ms", l.last}};
    j["latency"] = lat;
    nlohmann::json hr = nlohmann::json::object();
    for (const auto &[name, h] : hitRates)
        hr[name] = {
            {"lookups", h.lookups}, {"hits", h.hits}, {"rolling", h.rolling}, {"lifetime", h.lifetime()}};
    j["hit_rates"] = hr;
    j["counters"] = counters.empty() ? nlohmann::json::object() : nlohmann::json(counters);
    j["gauges"] = gauges.empty() ? nlohmann::json::object() : nlohmann::json(gauges);
    const MemorySnapshot &m = memory;
    j["memory"] = {{"process_rss_bytes", m.processRssBytes},
                   {"process_peak_rss_bytes", m.processPeakRssBytes},
                   {"pool_capacity_bytes", m.poolCapacityBytes},
                   {"pool_used_bytes", m.poolUsedBytes},
                   {"pool_high_water_bytes", m.poolHighWaterBytes},
                   {"pool_kv_bytes", m.poolKvBytes},
                   {"pool_feature_bytes", m.poolFeatureBytes},
                   {"pool_alloc_failures", m.poolAllocFailures},
                   {"cuda", m.cuda},
                   {"cuda_allocated_bytes", m.cudaAllocatedBytes},
                   {"cuda_reserved_bytes", m.cudaReservedBytes},
                   {"nvml", m.nvml},
                   {"device_used_bytes", m.deviceUsedBytes},
                   {"device_total_bytes", m.deviceTotalBytes}};
    return j.dump();
}

uint64_t currentRssBytes() {
    uint64_t rss = 0;
    readProcStatus(&rss, nullptr);
    return rss;
}

RssParts currentRssParts() {
    RssParts parts;
    if (FILE *f = std::fopen("/proc/self/status", "re")) {
        char line[256];
        unsigned long long kb = 0;
        while (std::fgets(line, sizeof line, f)) {
            if (std::sscanf(line, "RssAnon: %llu kB", &kb) == 1) parts.anonBytes = kb * 1024;
            if (std::sscanf(line, "RssFile: %llu kB", &kb) == 1) parts.fileBytes = kb * 1024;
        }
        std::fclose(f);
    }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    parts.mallocFreeHeldBytes = mallinfo2().fordblks; // free chunks in every arena
#endif
    return parts;
}

uint64_t peakRssBytes() {
    uint64_t peak = 0;
    readProcStatus(nullptr, &peak);
    return peak;
}

uint64_t availableHostBytes() {
    FILE *f = std::fopen("/proc/meminfo", "re");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    uint64_t bytes = 0;
    while (std::fgets(line, sizeof line, f))
        if (std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
            bytes = kb * 1024;
            break;
        }
    std::fclose(f);
    return bytes;
}

bool cudaMemoryInfo(uint64_t &freeBytes, uint64_t &totalBytes) {
    using MemGetInfo = int (*)(size_t *, size_t *); // cudaError_t is an int-sized enum
    static const MemGetInfo fn = []() -> MemGetInfo {
        if (!hasCuda()) return nullptr;
        // A CUDA libtorch has loaded the CUDA runtime already; use that copy.
        if (void *p = dlsym(RTLD_DEFAULT, "cudaMemGetInfo")) return reinterpret_cast<MemGetInfo>(p);
        for (const char *name : {"libcudart.so", "libcudart.so.12", "libcudart.so.11.0"})
            if (void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL))
                if (void *p = dlsym(lib, "cudaMemGetInfo")) return reinterpret_cast<MemGetInfo>(p);
        return nullptr;
    }();
    size_t f = 0, t = 0;
    if (!fn || fn(&f, &t) != 0) return false;
    freeBytes = f;
    totalBytes = t;
    return true;
}

} // namespace mgd
