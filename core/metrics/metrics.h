#pragma once
// Process-wide performance metrics: counters, gauges and latency histograms, read through one
// thread-safe snapshot call cheap enough for a UI to poll 10 times a second while a turn runs.
// Invariants: recording never blocks on a reader for longer than a copy of the histogram
// buckets; a snapshot is internally consistent per metric (not across metrics).
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/metrics/turn_stats.h"

namespace mgd {

// Latency distribution of one stage, in milliseconds.
struct LatencySummary {
    uint64_t count = 0;
    double mean = 0, p50 = 0, p90 = 0, p95 = 0, p99 = 0, max = 0, last = 0;
};

// Rolling hit rate of one cache over the last `window` lookups, plus lifetime totals.
struct HitRate {
    uint64_t lookups = 0, hits = 0; // lifetime
    double rolling = 0;             // hits / lookups over the recent window, 0..1
    double lifetime() const { return lookups ? double(hits) / double(lookups) : 0.0; }
};

// Process figures come from /proc/self/status. CUDA allocator figures (cudaAllocated/Reserved)
// need libtorch's c10/cuda headers, so they are compiled in only against a CUDA libtorch (or
// with MGD_WITH_CUDA) and stay 0 on CPU builds. Device used/total come from NVML when
// libnvidia-ml.so.1 loads, else from cudaMemGetInfo once this process uses the GPU.
struct MemorySnapshot {
    uint64_t processRssBytes = 0, processPeakRssBytes = 0;
    uint64_t poolCapacityBytes = 0, poolUsedBytes = 0, poolHighWaterBytes = 0;
    uint64_t poolKvBytes = 0, poolFeatureBytes = 0, poolAllocFailures = 0;
    bool cuda = false; // the fields below are meaningful only on CUDA
    uint64_t cudaAllocatedBytes = 0, cudaReservedBytes = 0;
    bool nvml = false; // libnvidia-ml was found at run time
    uint64_t deviceUsedBytes = 0, deviceTotalBytes = 0;
};

struct MetricsSnapshot {
    double uptimeSeconds = 0; // since the Metrics object was created
    std::map<std::string, LatencySummary>
        latency;                              // "image_encode", "prefill", "ttft", "decode_token", "turn"
    std::map<std::string, HitRate> hitRates;  // "feature", "prefix", "response"
    std::map<std::string, uint64_t> counters; // "turns", "tokens_generated", "tokens_prefilled", ...
    std::map<std::string, double> gauges;     // "tokens_per_second" (last turn), ...
    MemorySnapshot memory;
    // One JSON object holding every field above (snake_case keys, bytes and milliseconds).
    std::string toJson() const;
};

// Recording is O(1) under one mutex; snapshot() copies under it and computes outside it.
// Latency keeps the last kLatencyWindow samples per stage (percentiles, nearest rank) plus
// lifetime count/mean/max. The standard stages and caches above are always present in a
// snapshot (count 0 until recorded), so the panel and exports have a fixed schema.
class Metrics {
public:
    static constexpr size_t kLatencyWindow = 4096;
    static constexpr size_t kHitRateWindow = 100;

    Metrics();
    ~Metrics();
    void recordLatency(const std::string &stage, double ms);
    void recordLookup(const std::string &cache, bool hit);
    void addCounter(const std::string &name, uint64_t delta = 1);
    void setGauge(const std::string &name, double value);
    // Everything one finished turn contributes: latencies ttft/turn (and prefill/decode_token
    // when the model ran), counters turns/tokens_*, the prefix lookup, tokens_per_second.
    void recordTurn(const TurnStats &s);
    // Pool figures are pushed by their owner; process/CUDA/NVML figures are read at snapshot.
    void setPoolStats(uint64_t capacity, uint64_t used, uint64_t highWater, uint64_t kvBytes,
                      uint64_t featureBytes, uint64_t allocFailures);
    MetricsSnapshot snapshot() const;
    void reset();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Current and peak resident set size of this process (from /proc/self/status).
uint64_t currentRssBytes();
uint64_t peakRssBytes();
// What the resident set is made of: anonymous memory (heap, arenas, the KV pool) and pages of
// mapped files (memory-mapped weights), and of the heap what malloc holds free but has not
// handed back to the OS (glibc; 0 elsewhere). For benchmarks that explain an RSS figure.
struct RssParts {
    uint64_t anonBytes = 0, fileBytes = 0, mallocFreeHeldBytes = 0;
};
RssParts currentRssParts();
// MemAvailable from /proc/meminfo (0 when unreadable).
uint64_t availableHostBytes();
// Free and total memory of the current CUDA device via cudaMemGetInfo, found at run time in
// the already loaded CUDA runtime (no CUDA headers needed); false without CUDA. The first call
// creates a CUDA context, so call it only when the process uses (or is about to use) the GPU.
bool cudaMemoryInfo(uint64_t &freeBytes, uint64_t &totalBytes);

} // namespace mgd
