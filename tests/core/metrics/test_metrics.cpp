// Metrics: exact nearest-rank percentiles, rolling hit rates, a snapshot that is safe and
// cheap while writers record, process memory, and a JSON export holding every figure.
#include <QtTest>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "core/metrics/metrics.h"

using mgd::Metrics;
using mgd::MetricsSnapshot;
using mgd::StopReason;
using mgd::stopReasonFromName;
using mgd::stopReasonName;
using mgd::TurnStats;
using mgd::turnStatsFromJson;
using mgd::turnStatsToJson;

class TestMetrics : public QObject {
    Q_OBJECT

private slots:
    void percentilesAreCorrect() {
        Metrics m;
        // Recorded out of order: the summary must not depend on arrival order.
        for (int i = 100; i >= 1; i -= 2) m.recordLatency("prefill", i);
        for (int i = 1; i <= 99; i += 2) m.recordLatency("prefill", i);
        m.recordLatency("turn", 7.5);
        const MetricsSnapshot s = m.snapshot();
        const auto &p = s.latency.at("prefill");
        QCOMPARE(p.count, uint64_t(100));
        QCOMPARE(p.p50, 50.0);
        QCOMPARE(p.p90, 90.0);
        QCOMPARE(p.p95, 95.0);
        QCOMPARE(p.p99, 99.0);
        QCOMPARE(p.mean, 50.5);
        QCOMPARE(p.max, 100.0);
        QCOMPARE(p.last, 99.0); // the most recent sample
        const auto &t = s.latency.at("turn");
        QCOMPARE(t.count, uint64_t(1));
        QCOMPARE(t.p50, 7.5);
        QCOMPARE(t.p99, 7.5);
        // Standard stages exist before anything is recorded.
        QCOMPARE(s.latency.at("ttft").count, uint64_t(0));
        QCOMPARE(s.latency.at("ttft").p50, 0.0);

        // Nearest rank on small sets: p50 of {1, 2, 3, 4} is 2, p90 of 10 values is the 9th.
        Metrics small;
        for (double v : {4.0, 1.0, 3.0, 2.0}) small.recordLatency("decode_token", v);
        QCOMPARE(small.snapshot().latency.at("decode_token").p50, 2.0);
        QCOMPARE(small.snapshot().latency.at("decode_token").p99, 4.0);

        // Percentiles cover the recent window; count/mean/max are lifetime.
        Metrics ring;
        const size_t w = Metrics::kLatencyWindow;
        for (size_t i = 0; i < w; ++i) ring.recordLatency("ttft", 10000.0);
        for (size_t i = 1; i <= w; ++i) ring.recordLatency("ttft", double(i));
        const auto r = ring.snapshot().latency.at("ttft");
        QCOMPARE(r.count, uint64_t(2 * w));
        QCOMPARE(r.max, 10000.0);
        QCOMPARE(r.p99, double((99 * w + 99) / 100));
        QCOMPARE(r.p50, double(w / 2));
        QCOMPARE(r.mean, (10000.0 * w + w * (w + 1) / 2.0) / (2.0 * w));
    }

    void rollingHitRateFollowsRecentLookups() {
        Metrics m;
        QCOMPARE(m.snapshot().hitRates.at("feature").rolling, 0.0); // no lookups yet
        for (int i = 0; i < 100; ++i) m.recordLookup("feature", false);
        auto h = m.snapshot().hitRates.at("feature");
        QCOMPARE(h.rolling, 0.0);
        // 60 hits push 60 misses out of the 100-lookup window.
        for (int i = 0; i < 60; ++i) m.recordLookup("feature", true);
        h = m.snapshot().hitRates.at("feature");
        QCOMPARE(h.rolling, 0.6);
        QCOMPARE(h.lookups, uint64_t(160));
        QCOMPARE(h.hits, uint64_t(60));
        QCOMPARE(h.lifetime(), 60.0 / 160.0);
        for (int i = 0; i < 100; ++i) m.recordLookup("feature", true);
        QCOMPARE(m.snapshot().hitRates.at("feature").rolling, 1.0);
        QCOMPARE(m.snapshot().hitRates.at("feature").lifetime(), 160.0 / 260.0);
        // A partly filled window divides by the lookups it holds.
        for (int i = 0; i < 4; ++i) m.recordLookup("response", i == 0);
        QCOMPARE(m.snapshot().hitRates.at("response").rolling, 0.25);
        // Caches are independent; reset clears all.
        QCOMPARE(m.snapshot().hitRates.at("prefix").lookups, uint64_t(0));
        m.reset();
        QCOMPARE(m.snapshot().hitRates.at("feature").lookups, uint64_t(0));
        QCOMPARE(m.snapshot().hitRates.at("feature").rolling, 0.0);
    }

    void snapshotIsThreadSafe() {
        Metrics m;
        std::atomic<bool> stop{false};
        std::vector<std::thread> writers;
        for (int t = 0; t < 3; ++t) {
            writers.emplace_back([&, t] {
                uint64_t i = 0;
                while (!stop.load(std::memory_order_relaxed)) {
                    m.recordLatency(t == 0 ? "decode_token" : "prefill", double(i % 100 + 1));
                    m.recordLatency("custom_stage_" + std::to_string(i % 3), 1.0);
                    m.recordLookup(t == 1 ? "feature" : "prefix", i % 2 == 0);
                    m.addCounter("tokens_generated");
                    m.setGauge("tokens_per_second", double(i));
                    m.setPoolStats(1000, i % 1000, 1000, i % 500, i % 500, 0);
                    if (i % 5000 == 4999) m.reset();
                    ++i;
                }
            });
        }
        // Fill the rings so the timing below is the worst case.
        for (size_t i = 0; i < Metrics::kLatencyWindow; ++i)
            for (const char *s : {"image_encode", "ttft", "turn"}) m.recordLatency(s, double(i));
        double worstMs = 0, totalMs = 0;
        for (int i = 0; i < 1000; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            const MetricsSnapshot s = m.snapshot();
            const double ms =
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            totalMs += ms;
            worstMs = std::max(worstMs, ms);
            // Each metric is internally consistent.
            for (const auto &[name, l] : s.latency) {
                QVERIFY2(l.p50 <= l.p90 && l.p90 <= l.p95 && l.p95 <= l.p99, name.c_str());
                QVERIFY2(l.p99 <= l.max, name.c_str());
            }
            for (const auto &[name, h] : s.hitRates) {
                QVERIFY(h.hits <= h.lookups);
                QVERIFY(h.rolling >= 0.0 && h.rolling <= 1.0);
            }
            QVERIFY(s.memory.poolUsedBytes <= s.memory.poolCapacityBytes);
        }
        stop = true;
        for (auto &w : writers) w.join();
        qInfo("snapshot under 3 writers: mean %.1f us, worst %.1f us", totalMs * 1000 / 1000, worstMs * 1000);

        // Quiet cost with every standard ring full (what the panel pays 10 times a second).
        Metrics full;
        for (size_t i = 0; i < Metrics::kLatencyWindow; ++i)
            for (const char *s : {"image_encode", "prefill", "ttft", "decode_token", "turn"})
                full.recordLatency(s, double((i * 7919) % 1000));
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < 200; ++i) full.snapshot();
        const double us =
            std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / 200;
        qInfo("snapshot with 5 full rings of %zu samples: %.1f us", Metrics::kLatencyWindow, us);
    }

    void rssIsReported() {
        const uint64_t rss = mgd::currentRssBytes(); // read first: RSS may grow meanwhile
        QVERIFY(rss > 0);
        QVERIFY(mgd::peakRssBytes() >= rss);
        QVERIFY(mgd::availableHostBytes() > 0);
        Metrics m;
        const MetricsSnapshot s = m.snapshot();
        QVERIFY(s.memory.processRssBytes > 0);
        QVERIFY(s.memory.processPeakRssBytes >= s.memory.processRssBytes);
        qInfo("rss %llu MiB, peak %llu MiB, cuda %d, nvml %d",
              static_cast<unsigned long long>(s.memory.processRssBytes >> 20),
              static_cast<unsigned long long>(s.memory.processPeakRssBytes >> 20), int(s.memory.cuda),
              int(s.memory.nvml));
        // Absent NVML or CUDA is not an error: the device fields simply stay consistent.
        if (!s.memory.nvml && !s.memory.cuda) {
            QCOMPARE(s.memory.deviceTotalBytes, uint64_t(0));
            QCOMPARE(s.memory.cudaAllocatedBytes, uint64_t(0));
        }
        QVERIFY(s.memory.deviceUsedBytes <= s.memory.deviceTotalBytes);
        QVERIFY(s.uptimeSeconds >= 0);
    }

    void jsonContainsEveryMetric() {
        Metrics m;
        m.recordLatency("ttft", 12.5);
        m.recordLatency("my_stage", 3.0);
        m.recordLookup("feature", true);
        m.recordLookup("feature", false);
        m.addCounter("turns", 2);
        m.addCounter("tokens_generated", 40);
        m.setGauge("tokens_per_second", 18.25);
        m.setPoolStats(1 << 20, 4096, 8192, 2048, 2048, 3);
        const MetricsSnapshot s = m.snapshot();
        const nlohmann::json j = nlohmann::json::parse(s.toJson());

        QCOMPARE(j.at("uptime_seconds").get<double>(), s.uptimeSeconds);
        for (const char *stage : {"image_encode", "prefill", "ttft", "decode_token", "turn", "my_stage"}) {
            const auto &l = j.at("latency").at(stage);
            for (const char *k :
                 {"count", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "last_ms"})
                QVERIFY2(l.contains(k), (std::string(stage) + "." + k).c_str());
        }
        QCOMPARE(j["latency"]["ttft"]["p50_ms"].get<double>(), 12.5);
        QCOMPARE(j["latency"]["ttft"]["count"].get<uint64_t>(), uint64_t(1));
        for (const char *cache : {"feature", "prefix", "response"}) {
            const auto &h = j.at("hit_rates").at(cache);
            for (const char *k : {"lookups", "hits", "rolling", "lifetime"})
                QVERIFY2(h.contains(k), (std::string(cache) + "." + k).c_str());
        }
        QCOMPARE(j["hit_rates"]["feature"]["rolling"].get<double>(), 0.5);
        QCOMPARE(j["counters"]["turns"].get<uint64_t>(), uint64_t(2));
        QCOMPARE(j["counters"]["tokens_generated"].get<uint64_t>(), uint64_t(40));
        QCOMPARE(j["gauges"]["tokens_per_second"].get<double>(), 18.25);

        // Every memory field, with its value.
        const auto &mem = j.at("memory");
        const mgd::MemorySnapshot &ms = s.memory;
        const std::pair<const char *, uint64_t> bytes[] = {{"process_rss_bytes", ms.processRssBytes},
                                                           {"process_peak_rss_bytes", ms.processPeakRssBytes},
                                                           {"pool_capacity_bytes", 1 << 20},
                                                           {"pool_used_bytes", 4096},
                                                           {"pool_high_water_bytes", 8192},
                                                           {"pool_kv_bytes", 2048},
                                                           {"pool_feature_bytes", 2048},
                                                           {"pool_alloc_failures", 3},
                                                           {"cuda_allocated_bytes", ms.cudaAllocatedBytes},
                                                           {"cuda_reserved_bytes", ms.cudaReservedBytes},
                                                           {"device_used_bytes", ms.deviceUsedBytes},
                                                           {"device_total_bytes", ms.deviceTotalBytes}};
        for (const auto &[k, v] : bytes) {
            QVERIFY2(mem.contains(k), k);
            QCOMPARE(mem[k].get<uint64_t>(), v);
        }
        QCOMPARE(mem.at("cuda").get<bool>(), ms.cuda);
        QCOMPARE(mem.at("nvml").get<bool>(), ms.nvml);
        QCOMPARE(mem.size(), std::size(bytes) + 2); // nothing unlisted, nothing missing
    }

    // The one TurnStats codec (the conversation store saves answers' stats with it).
    void turnStatsJsonRoundTripsEveryField() {
        TurnStats s;
        s.imagesEncoded = 2;
        s.encodeMs = 1.25;
        s.promptTokens = 5000000000LL;
        s.reusedTokens = 7;
        s.prefillTokens = 8;
        s.prefillMs = 9.5;
        s.ttftMs = 10.5;
        s.generatedTokens = 11;
        s.decodeMs = 12.5;
        s.decodeMsPerToken = 1.125;
        s.totalMs = 14.5;
        s.droppedTurns = 1;
        s.contextImages = 3;
        s.cancelled = true;
        s.responseCacheHit = true;
        s.prefixFromOtherConversation = true;
        for (StopReason r : {StopReason::None, StopReason::Eos, StopReason::StopString, StopReason::MaxTokens,
                             StopReason::ContextFull, StopReason::Cancelled}) {
            s.stopReason = r;
            const auto back = turnStatsFromJson(turnStatsToJson(s));
            QVERIFY(back);
            QVERIFY2(*back == s, turnStatsToJson(s).c_str());
            QCOMPARE(stopReasonFromName(stopReasonName(r)), std::optional<StopReason>(r));
        }
        QCOMPARE(nlohmann::json::parse(turnStatsToJson(s)).size(), size_t(17)); // every field named
    }

    void turnStatsJsonToleratesOldAndDamagedFiles() {
        // Missing fields, wrong types, unknown stop reason, out-of-range ints: defaults.
        const auto s = turnStatsFromJson(R"({"ttftMs": 3.5, "generatedTokens": "many", "droppedTurns": 1e30,
                                              "contextImages": 99999999999, "stopReason": "asteroid",
                                              "cancelled": 1, "extra": [1,2]})");
        QVERIFY(s);
        QCOMPARE(s->ttftMs, 3.5);
        QCOMPARE(s->generatedTokens, 0);
        QCOMPARE(s->droppedTurns, 0);
        QCOMPARE(s->contextImages, 0);
        QCOMPARE(s->stopReason, StopReason::None);
        QCOMPARE(s->cancelled, false);
        QVERIFY(!turnStatsFromJson("[1,2]"));
        QVERIFY(!turnStatsFromJson("{not json"));
    }

    void recordTurnFeedsEveryStage() {
        Metrics m;
        TurnStats t;
        t.ttftMs = 20;
        t.totalMs = 50;
        t.prefillMs = 15;
        t.prefillTokens = 30;
        t.reusedTokens = 10;
        t.generatedTokens = 4;
        t.decodeMs = 40;
        t.decodeMsPerToken = 10;
        m.recordTurn(t);
        TurnStats hit;
        hit.responseCacheHit = true;
        hit.ttftMs = hit.totalMs = 1;
        hit.generatedTokens = 4;
        m.recordTurn(hit);
        const MetricsSnapshot s = m.snapshot();
        QCOMPARE(s.latency.at("ttft").count, uint64_t(2));
        QCOMPARE(s.latency.at("turn").count, uint64_t(2));
        QCOMPARE(s.latency.at("prefill").count, uint64_t(1)); // the hit ran no model
        QCOMPARE(s.latency.at("decode_token").count, uint64_t(1));
        QCOMPARE(s.counters.at("turns"), uint64_t(2));
        QCOMPARE(s.counters.at("tokens_prefilled"), uint64_t(30));
        QCOMPARE(s.counters.at("tokens_reused"), uint64_t(10));
        QCOMPARE(s.counters.at("tokens_generated"), uint64_t(4));
        QCOMPARE(s.gauges.at("tokens_per_second"), 100.0);
    }
};

QTEST_APPLESS_MAIN(TestMetrics)
#include "test_metrics.moc"
