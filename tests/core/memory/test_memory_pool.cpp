// The memory pool's invariants (see memory_pool.h): disjoint blocks inside the arena, exact
// accounting, O(1) free list that hands everything back, clean exhaustion, double release
// refused, thread safety.
#include <ATen/ATen.h>
#include <QtTest>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "core/memory/memory_pool.h"
#include "core/util/error.h"

using mgd::Error;
using mgd::MemoryPool;
using mgd::PoolStats;
using mgd::PoolUse;

namespace {

constexpr uint64_t kBlock = 4096;

// Invariants 2-4 that hold at any quiet moment, given how many blocks the caller holds.
void checkAccounting(const MemoryPool &pool, uint64_t held) {
    const PoolStats s = pool.stats();
    QCOMPARE(s.capacityBytes, s.blocks * s.blockBytes);
    QCOMPARE(s.freeBlocks + held, s.blocks);
    QCOMPARE(s.usedBytes, held * s.blockBytes);
    QCOMPARE(s.usedBytes, s.kvBytes + s.featureBytes);
    QVERIFY(s.usedBytes <= s.capacityBytes);
    QVERIFY(s.highWaterBytes >= s.usedBytes);
    QVERIFY(s.highWaterBytes <= s.capacityBytes);
    QCOMPARE(s.allocations - s.releases, held);
}

} // namespace

class TestMemoryPool : public QObject {
    Q_OBJECT

private slots:
    void roundsCapacityDownToWholeBlocks() {
        MemoryPool pool(10 * kBlock + 123, kBlock);
        const PoolStats s = pool.stats();
        QCOMPARE(s.blocks, uint64_t(10));
        QCOMPARE(s.capacityBytes, 10 * kBlock);
        QCOMPARE(uint64_t(pool.arena().numel()), 10 * kBlock);
        QCOMPARE(pool.blockBytes(), size_t(kBlock));
        QVERIFY_THROWS_EXCEPTION(Error, MemoryPool(kBlock - 1, kBlock));
        QVERIFY_THROWS_EXCEPTION(Error, MemoryPool(kBlock, 0));
        QVERIFY_THROWS_EXCEPTION(Error, MemoryPool(kBlock, kBlock, "no-such-device"));
        if (!at::hasCUDA()) {
            try {
                MemoryPool cuda(kBlock, kBlock, "cuda");
                QFAIL("a CUDA pool without CUDA must throw");
            } catch (const Error &e) {
                QVERIFY(std::string(e.what()).find("cuda") != std::string::npos);
            }
        }
    }

    void neverHandsOutOverlappingMemory() {
        const uint64_t n = 64;
        MemoryPool pool(n * kBlock, kBlock);
        const uint8_t *arenaBegin = pool.arena().data_ptr<uint8_t>();
        const uint8_t *arenaEnd = arenaBegin + pool.stats().capacityBytes;
        std::vector<int32_t> blocks;
        std::vector<std::pair<const uint8_t *, const uint8_t *>> ranges;
        for (uint64_t i = 0; i < n; ++i) {
            const int32_t b = pool.allocate(i % 2 ? PoolUse::Kv : PoolUse::Feature);
            QVERIFY(b >= 0);
            blocks.push_back(b);
            at::Tensor v = pool.view(b, {int64_t(kBlock / 4)}, at::kInt);
            const auto *begin = static_cast<const uint8_t *>(v.data_ptr());
            const auto *end = begin + v.nbytes();
            QCOMPARE(uint64_t(v.nbytes()), kBlock);
            QVERIFY(begin >= arenaBegin && end <= arenaEnd);
            QCOMPARE(begin, pool.blockData(b)); // the BlockStore pointer is the same memory
            QVERIFY(v.is_contiguous());
            ranges.emplace_back(begin, end);
        }
        QCOMPARE(pool.allocate(PoolUse::Kv), -1);
        std::vector<int32_t> sortedIds = blocks;
        std::sort(sortedIds.begin(), sortedIds.end());
        QVERIFY(std::adjacent_find(sortedIds.begin(), sortedIds.end()) == sortedIds.end());
        std::sort(ranges.begin(), ranges.end());
        for (size_t i = 1; i < ranges.size(); ++i) QVERIFY(ranges[i - 1].second <= ranges[i].first);

        // A distinct pattern per block, written through views, survives every other write.
        for (int32_t b : blocks) pool.view(b, {int64_t(kBlock / 4)}, at::kInt).fill_(b * 7919 + 1);
        for (int32_t b : blocks) {
            at::Tensor v = pool.view(b, {int64_t(kBlock / 4)}, at::kInt);
            QVERIFY(v.eq(b * 7919 + 1).all().item<bool>());
            // Views of other shapes and dtypes alias the same bytes.
            at::Tensor bytes = pool.view(b, {4, int64_t(kBlock / 4)}, at::kByte);
            QCOMPARE(bytes.data_ptr(), v.data_ptr());
        }
        checkAccounting(pool, n);
    }

    void allocationIsO1AndReleasesEverything() {
        const uint64_t n = 256;
        MemoryPool pool(n * kBlock, kBlock);
        std::mt19937 rng(42);
        std::vector<int32_t> held;
        uint64_t peak = 0;
        for (int step = 0; step < 20000; ++step) {
            const bool alloc = held.empty() || (held.size() < n && rng() % 100 < 55);
            if (alloc) {
                const int32_t b = pool.allocate(rng() % 2 ? PoolUse::Kv : PoolUse::Feature);
                QVERIFY(b >= 0);
                held.push_back(b);
            } else {
                const size_t i = rng() % held.size();
                pool.release(held[i]);
                held[i] = held.back();
                held.pop_back();
            }
            peak = std::max<uint64_t>(peak, held.size());
            if (step % 997 == 0) checkAccounting(pool, held.size());
        }
        // Random order of release, all of it.
        std::shuffle(held.begin(), held.end(), rng);
        for (int32_t b : held) pool.release(b);
        held.clear();
        checkAccounting(pool, 0);
        const PoolStats s = pool.stats();
        QCOMPARE(s.usedBytes, uint64_t(0));
        QCOMPARE(s.kvBytes + s.featureBytes, uint64_t(0));
        QCOMPARE(s.freeBlocks, s.blocks);
        QCOMPARE(s.highWaterBytes, peak * kBlock);
        QCOMPARE(s.allocations, s.releases);

        // Everything is usable again, and the cost per call does not grow with the pool
        // (measured, not asserted: timing assertions are flaky on shared machines).
        MemoryPool big(65536 * uint64_t(256), 256);
        std::vector<int32_t> all;
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < 65536; ++i) all.push_back(big.allocate(PoolUse::Kv));
        for (int32_t b : all) big.release(b);
        const double ns = std::chrono::duration<double, std::nano>(
                              std::chrono::steady_clock::now() - t0).count() / (2 * 65536.0);
        qInfo("allocate+release: %.1f ns per call on a pool of 65536 blocks", ns);
        QVERIFY(std::find(all.begin(), all.end(), -1) == all.end());
        QCOMPARE(big.stats().freeBlocks, uint64_t(65536));
    }

    void behavesAtExhaustion() {
        MemoryPool pool(4 * kBlock, kBlock);
        std::vector<int32_t> held;
        for (int i = 0; i < 4; ++i) held.push_back(pool.allocate(PoolUse::Kv));
        for (int i = 0; i < 3; ++i) QCOMPARE(pool.allocate(PoolUse::Feature), -1);
        QCOMPARE(pool.allocateBlock(), -1);
        PoolStats s = pool.stats();
        QCOMPARE(s.allocFailures, uint64_t(4));
        QCOMPARE(s.freeBlocks, uint64_t(0));
        QCOMPARE(s.usedBytes, s.capacityBytes);
        QCOMPARE(s.allocations, uint64_t(4)); // failures change nothing else
        checkAccounting(pool, 4);

        pool.release(held[2]);
        const int32_t again = pool.allocate(PoolUse::Feature);
        QCOMPARE(again, held[2]);
        QCOMPARE(pool.useOf(again), PoolUse::Feature);
        QCOMPARE(pool.allocate(PoolUse::Kv), -1);
        QCOMPARE(pool.stats().allocFailures, uint64_t(5));
        checkAccounting(pool, 4);
    }

    void doubleReleaseIsAnError() {
        MemoryPool pool(4 * kBlock, kBlock);
        const int32_t b = pool.allocate(PoolUse::Kv);
        pool.release(b);
        QVERIFY_THROWS_EXCEPTION(Error, pool.release(b));
        QVERIFY_THROWS_EXCEPTION(Error, pool.release(-1));
        QVERIFY_THROWS_EXCEPTION(Error, pool.release(4));
        QVERIFY_THROWS_EXCEPTION(Error, pool.releaseBlock(3)); // never allocated
        // A use-after-release is refused the same way.
        QVERIFY_THROWS_EXCEPTION(Error, pool.view(b, {1}, at::kByte));
        QVERIFY_THROWS_EXCEPTION(Error, pool.blockData(b));
        QVERIFY_THROWS_EXCEPTION(Error, pool.useOf(b));
        // The refused calls left the free list intact: exactly 4 blocks, each once.
        std::vector<int32_t> all;
        for (int i = 0; i < 4; ++i) all.push_back(pool.allocate(PoolUse::Kv));
        QCOMPARE(pool.allocate(PoolUse::Kv), -1);
        std::sort(all.begin(), all.end());
        QCOMPARE(all, (std::vector<int32_t>{0, 1, 2, 3}));
        QCOMPARE(pool.stats().releases, uint64_t(1));
        checkAccounting(pool, 4);
    }

    void perUseAccounting() {
        MemoryPool pool(10 * kBlock, kBlock);
        std::vector<int32_t> kv, feat;
        for (int i = 0; i < 3; ++i) kv.push_back(pool.allocate(PoolUse::Kv));
        for (int i = 0; i < 5; ++i) feat.push_back(pool.allocateBlock()); // BlockStore: Feature
        for (int32_t b : kv) QCOMPARE(pool.useOf(b), PoolUse::Kv);
        for (int32_t b : feat) QCOMPARE(pool.useOf(b), PoolUse::Feature);
        PoolStats s = pool.stats();
        QCOMPARE(s.kvBytes, 3 * kBlock);
        QCOMPARE(s.featureBytes, 5 * kBlock);
        QCOMPARE(s.usedBytes, 8 * kBlock);
        QCOMPARE(s.highWaterBytes, 8 * kBlock);

        pool.release(kv[0]);
        pool.releaseBlock(feat[0]);
        pool.releaseBlock(feat[1]);
        s = pool.stats();
        QCOMPARE(s.kvBytes, 2 * kBlock);
        QCOMPARE(s.featureBytes, 3 * kBlock);
        QCOMPARE(s.highWaterBytes, 8 * kBlock); // high water stays
        // A released Feature block reused for KV is accounted as KV.
        const int32_t b = pool.allocate(PoolUse::Kv);
        QCOMPARE(pool.useOf(b), PoolUse::Kv);
        QCOMPARE(pool.stats().kvBytes, 3 * kBlock);
        checkAccounting(pool, 6);
    }

    void viewRejectsOversizedShape() {
        MemoryPool pool(4 * kBlock, kBlock);
        const int32_t b = pool.allocate(PoolUse::Kv);
        // Exactly a block fits; one element more does not, in any dtype.
        QCOMPARE(pool.view(b, {2, 8, int64_t(kBlock / 64)}, at::kFloat).nbytes(), size_t(kBlock));
        QCOMPARE(pool.view(b, {int64_t(kBlock / 2)}, at::kBFloat16).numel(), int64_t(kBlock / 2));
        QVERIFY_THROWS_EXCEPTION(Error, pool.view(b, {int64_t(kBlock / 4) + 1}, at::kFloat));
        QVERIFY_THROWS_EXCEPTION(Error, pool.view(b, {int64_t(kBlock) + 1}, at::kByte));
        QVERIFY_THROWS_EXCEPTION(Error, pool.view(b, {2, int64_t(kBlock / 8) + 1}, at::kDouble));
        QVERIFY_THROWS_EXCEPTION(Error, pool.view(b, {-1, 4}, at::kFloat));
        // A smaller view is a prefix of the block and does not spill into the next one.
        at::Tensor small = pool.view(b, {3, 5}, at::kHalf);
        QCOMPARE(small.data_ptr(), static_cast<void *>(pool.blockData(b)));
        QCOMPARE(small.sizes().vec(), (std::vector<int64_t>{3, 5}));
        QCOMPARE(small.scalar_type(), at::kHalf);

        // Blocks whose offset is not a multiple of the element size refuse that dtype.
        MemoryPool odd(8 * 6, 6);
        odd.allocate(PoolUse::Kv);
        const int32_t second = odd.allocate(PoolUse::Kv);
        QCOMPARE(second, 1);
        QVERIFY_THROWS_EXCEPTION(Error, odd.view(second, {1}, at::kFloat));
        QCOMPARE(odd.view(second, {3}, at::kShort).numel(), int64_t(3));
    }

    void concurrentAllocRelease() {
        const uint64_t n = 64;
        MemoryPool pool(n * kBlock, kBlock);
        std::atomic<int> errors{0};
        std::atomic<uint64_t> failures{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t) {
            threads.emplace_back([&, t] {
                std::mt19937 rng(t);
                std::vector<int32_t> mine;
                for (int i = 0; i < 20000; ++i) {
                    if (mine.empty() || rng() % 2) {
                        const int32_t b = pool.allocate(t % 2 ? PoolUse::Kv : PoolUse::Feature);
                        if (b < 0) {
                            ++failures;
                            continue;
                        }
                        // Owned exclusively: a stamp written now must still be there later.
                        std::memset(pool.blockData(b), t + 1, kBlock);
                        mine.push_back(b);
                    } else {
                        const int32_t b = mine.back();
                        mine.pop_back();
                        const uint8_t *p = pool.blockData(b);
                        if (p[0] != t + 1 || p[kBlock - 1] != t + 1) ++errors;
                        pool.release(b);
                    }
                }
                for (int32_t b : mine) pool.release(b);
            });
        }
        for (auto &th : threads) th.join();
        QCOMPARE(errors.load(), 0);
        const PoolStats s = pool.stats();
        QCOMPARE(s.freeBlocks, n);
        QCOMPARE(s.usedBytes, uint64_t(0));
        QCOMPARE(s.allocations, s.releases);
        QCOMPARE(s.allocFailures, failures.load());
        QVERIFY(s.highWaterBytes <= s.capacityBytes);
        checkAccounting(pool, 0);
    }

    void defaultCapacityIsSensible() {
        const uint64_t mib = 1024 * 1024;
        const uint64_t cap = MemoryPool::defaultCapacity("cpu");
        qInfo("default CPU pool capacity: %llu MiB", static_cast<unsigned long long>(cap / mib));
        QVERIFY(cap >= 1);
        QVERIFY(cap >= 64 * mib || cap <= 32 * mib); // the floor, unless half of RAM is less
        QVERIFY(MemoryPool::defaultCapacity("cuda") >= 64 * mib || at::hasCUDA());
        QVERIFY_THROWS_EXCEPTION(Error, MemoryPool::defaultCapacity("bogus"));
    }
};

QTEST_APPLESS_MAIN(TestMemoryPool)
#include "test_memory_pool.moc"
