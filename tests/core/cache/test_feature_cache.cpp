// The image-feature cache: each test proves one invariant stated on FeatureCache in
// core/cache/feature_cache.h (ownership, budgets, pins, eviction order, disk format, counters).
#include <ATen/ATen.h>
#include <QDir>
#include <QFileInfo>
#include <QTemporaryDir>
#include <QtTest>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "core/cache/feature_cache.h"
#include "core/cache/feature_file.h"
#include "core/util/error.h"

using mgd::CachePolicy;
using mgd::FeatureCache;
using mgd::FeatureCacheSettings;
using mgd::FeatureCacheStats;
using mgd::FeatureHandle;
using mgd::TierCounters;

namespace {

std::string keyOf(int i) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%032x", i);
    return buf;
}

// 1 KiB fp32 value whose contents identify the key.
at::Tensor valueOf(int i, int64_t floats = 256) {
    return at::arange(floats, at::kFloat) + static_cast<float>(i * 1000);
}

// Size of a feature file: header (72 + 8 per dim) + payload.
uint64_t fileBytes(const at::Tensor &t) {
    return 72 + 8 * static_cast<uint64_t>(t.dim()) + t.nbytes();
}

std::string filePath(const QTemporaryDir &dir, const std::string &key) {
    return (dir.path() + "/").toStdString() + key + ".mgdf";
}

bool exists(const std::string &path) {
    return std::filesystem::exists(path);
}

FeatureCacheSettings hostOnly(uint64_t hostBytes) {
    FeatureCacheSettings s;
    s.hostBytes = hostBytes;
    return s;
}

FeatureCacheSettings withDisk(const QTemporaryDir &dir, uint64_t hostBytes, uint64_t diskBytes) {
    FeatureCacheSettings s;
    s.hostBytes = hostBytes;
    s.diskBytes = diskBytes;
    s.diskDir = dir.path().toStdString();
    return s;
}

bool countersConsistent(const TierCounters &t) {
    return t.lookups == t.hits + t.misses;
}

bool statsConsistent(const FeatureCacheStats &s) {
    return countersConsistent(s.device) && countersConsistent(s.host) && countersConsistent(s.disk) &&
           s.lookups == s.hits + s.misses && s.hits == s.device.hits + s.host.hits + s.disk.hits;
}

// The engine's memory pool in miniature: fixed blocks, a free list, a mutex, and accounting
// that catches leaks and double releases. onFull runs (without the lock) when it is empty,
// as the engine does when it asks the cache for room.
class FakeStore : public mgd::BlockStore {
public:
    FakeStore(int blocks, size_t blockBytes) : bytes_(blockBytes), data_(blocks), state_(blocks, 0) {
        for (auto &d : data_) d.assign(blockBytes, 0xee);
        for (int b = blocks - 1; b >= 0; --b) free_.push_back(b);
    }
    int32_t allocateBlock() override {
        for (int attempt = 0; attempt < 2; ++attempt) {
            {
                std::lock_guard lk(mu_);
                if (!free_.empty()) {
                    const int32_t b = free_.back();
                    free_.pop_back();
                    state_[b] = 1;
                    ++allocations_;
                    return b;
                }
            }
            if (!onFull || attempt == 1) break;
            onFull();
        }
        return -1;
    }
    void releaseBlock(int32_t block) override {
        std::lock_guard lk(mu_);
        if (block < 0 || block >= static_cast<int32_t>(state_.size()) || state_[block] == 0) {
            ++badReleases_;
            return;
        }
        state_[block] = 0;
        free_.push_back(block);
        ++releases_;
    }
    size_t blockBytes() const override { return bytes_; }
    uint8_t *blockData(int32_t block) override { return data_.at(block).data(); }

    int inUse() const {
        std::lock_guard lk(mu_);
        return static_cast<int>(state_.size() - free_.size());
    }
    bool balanced() const {
        std::lock_guard lk(mu_);
        return badReleases_ == 0 &&
               allocations_ - releases_ == static_cast<int64_t>(state_.size() - free_.size());
    }
    std::function<void()> onFull;

private:
    size_t bytes_;
    std::vector<std::vector<uint8_t>> data_;
    std::vector<uint8_t> state_;
    std::vector<int32_t> free_;
    mutable std::mutex mu_;
    int64_t allocations_ = 0, releases_ = 0, badReleases_ = 0;
};

} // namespace

class TestFeatureCache : public QObject {
    Q_OBJECT

private slots:
    // An entry with no elements (a 0-sized dimension) round-trips; found by fuzzing: the read
    // copied its zero bytes to an empty tensor's null data pointer (UB; the sanitized build's
    // UBSan stops on it).
    void emptyTensorEntryRoundTrips() {
        QTemporaryDir dir;
        const std::string path = dir.filePath("e.mgdf").toStdString(), key = std::string(32, 'a');
        mgd::writeFeatureFile(path, key, at::empty({0, 4}));
        at::Tensor back;
        QCOMPARE(mgd::readFeatureFile(path, key, back), mgd::FeatureFileStatus::Ok);
        QCOMPARE(back.sizes(), at::IntArrayRef({0, 4}));
        const std::string blob = mgd::encodeFeatureBlob(key, at::empty({3, 0}, at::kBFloat16));
        QCOMPARE(
            mgd::decodeFeatureBlob(reinterpret_cast<const uint8_t *>(blob.data()), blob.size(), key, back),
            mgd::FeatureFileStatus::Ok);
        QCOMPARE(back.scalar_type(), at::kBFloat16);
    }

    void hitReturnsTensorIdenticalToInserted() {
        QTemporaryDir dir;
        for (at::ScalarType dt : {at::kFloat, at::kBFloat16}) {
            FeatureCache cache(withDisk(dir, 64 << 20, 64 << 20));
            const at::Tensor value = at::randn({1, 32, 64}).to(dt);
            const std::string key = dt == at::kFloat ? keyOf(1) : keyOf(2);
            const FeatureHandle in = cache.insert(key, value);
            QVERIFY(in);
            QCOMPARE(std::string(in.tier()), std::string("new"));
            QVERIFY(at::equal(in.tensor(), value));

            // Ownership: the cache stored its own copy; writing the caller's tensor later
            // changes nothing cached.
            const at::Tensor expect = value.clone();
            value.add_(1);
            const FeatureHandle hit = cache.lookup(key);
            QVERIFY(hit);
            QCOMPARE(std::string(hit.tier()), std::string("host"));
            QCOMPARE(hit.tensor().scalar_type(), dt);
            QCOMPARE(hit.tensor().sizes().vec(), expect.sizes().vec());
            QVERIFY(hit.tensor().is_contiguous());
            QVERIFY(at::equal(hit.tensor(), expect));

            // The same from disk, through a cache with no room in memory.
            FeatureCache diskOnly(withDisk(dir, 0, 64 << 20));
            const FeatureHandle fromDisk = diskOnly.lookup(key);
            QVERIFY(fromDisk);
            QCOMPARE(std::string(fromDisk.tier()), std::string("disk"));
            QCOMPARE(fromDisk.tensor().scalar_type(), dt);
            QVERIFY(at::equal(fromDisk.tensor(), expect));
        }
        // A non-contiguous value comes back contiguous and equal.
        FeatureCache cache(hostOnly(1 << 20));
        const at::Tensor strided = at::randn({16, 8}).t();
        cache.insert(keyOf(3), strided);
        const FeatureHandle h = cache.lookup(keyOf(3));
        QVERIFY(h.tensor().is_contiguous());
        QVERIFY(at::equal(h.tensor(), strided));
        QVERIFY(!cache.lookup(keyOf(4))); // never inserted
    }

    void evictsLeastRecentlyUsedFirst() {
        FeatureCache cache(hostOnly(3 * 1024)); // room for three 1 KiB values
        for (int i = 0; i < 3; ++i) cache.insert(keyOf(i), valueOf(i));
        QVERIFY(cache.lookup(keyOf(0))); // order of use now: 1, 2, 0
        cache.insert(keyOf(3), valueOf(3));
        QVERIFY(!cache.contains(keyOf(1)));
        QVERIFY(cache.contains(keyOf(0)) && cache.contains(keyOf(2)) && cache.contains(keyOf(3)));
        QVERIFY(cache.lookup(keyOf(2))); // order: 0, 3, 2
        cache.insert(keyOf(4), valueOf(4));
        QVERIFY(!cache.contains(keyOf(0)));
        QVERIFY(cache.contains(keyOf(3)) && cache.contains(keyOf(2)) && cache.contains(keyOf(4)));
        const FeatureCacheStats s = cache.stats();
        QCOMPARE(s.host.evictions, uint64_t{2});
        QCOMPARE(s.host.entries, uint64_t{3});
        QCOMPARE(s.host.bytes, uint64_t{3 * 1024});
        QVERIFY(at::equal(cache.lookup(keyOf(4)).tensor(), valueOf(4)));
    }

    void lfuEvictsLeastFrequentlyUsed() {
        FeatureCacheSettings s = hostOnly(3 * 1024);
        s.policy = CachePolicy::Lfu;
        FeatureCache cache(s);
        cache.insert(keyOf(0), valueOf(0));
        cache.insert(keyOf(2), valueOf(2));
        for (int i = 0; i < 2; ++i) QVERIFY(cache.lookup(keyOf(0)) && cache.lookup(keyOf(2)));
        // Uses: 0 -> 3, 2 -> 3, 1 -> 1. Key 1 is the most recently used (LRU would evict 0)
        // but the least frequently used.
        cache.insert(keyOf(1), valueOf(1));
        cache.insert(keyOf(3), valueOf(3));
        QVERIFY(!cache.contains(keyOf(1)));
        QVERIFY(cache.contains(keyOf(0)) && cache.contains(keyOf(2)) && cache.contains(keyOf(3)));

        // Ties go to the least recently used.
        FeatureCache ties(s);
        for (int i = 10; i < 13; ++i) ties.insert(keyOf(i), valueOf(i));
        QVERIFY(ties.lookup(keyOf(10)) && ties.lookup(keyOf(11)) && ties.lookup(keyOf(12)));
        ties.insert(keyOf(13), valueOf(13));
        QVERIFY(!ties.contains(keyOf(10)));
        QVERIFY(ties.contains(keyOf(11)) && ties.contains(keyOf(12)) && ties.contains(keyOf(13)));

        // The policy can be switched at run time: under LRU, 11 (least recent) goes next even
        // though 13 has been used less.
        s.policy = CachePolicy::Lru;
        ties.applySettings(s);
        ties.insert(keyOf(14), valueOf(14));
        QVERIFY(!ties.contains(keyOf(11)) && ties.contains(keyOf(13)));
    }

    void budgetsPerTierHold() {
        QTemporaryDir dir;
        const uint64_t hostBudget = 10000, diskBudget = 20000;
        FeatureCacheSettings s = withDisk(dir, hostBudget, diskBudget);
        s.device = "cuda"; // without a usable GPU the device tier stays off, budget 0
        FeatureCache cache(s);
        std::mt19937 rng(7);
        for (int step = 0; step < 300; ++step) {
            const int k = static_cast<int>(rng() % 40);
            if (rng() % 3 == 0) {
                cache.lookup(keyOf(k));
            } else {
                // 100 B .. 12 KB: some exceed the host budget and are stored on disk only.
                cache.insert(keyOf(k), valueOf(k, 25 + static_cast<int64_t>(rng() % 3000)));
            }
            const FeatureCacheStats st = cache.stats();
            QVERIFY(st.host.bytes <= hostBudget);
            QVERIFY(st.disk.bytes <= diskBudget);
            QCOMPARE(st.host.budget, hostBudget);
            QCOMPARE(st.disk.budget, diskBudget);
            if (!at::hasCUDA()) QCOMPARE(st.device.budget, uint64_t{0});
            QVERIFY(statsConsistent(st));
        }
        FeatureCacheStats st = cache.stats();
        QVERIFY(st.host.evictions > 0 && st.disk.evictions > 0);

        // The disk tier's bytes are the folder's bytes.
        uint64_t onDisk = 0;
        const QFileInfoList files = QDir(dir.path()).entryInfoList({"*.mgdf"}, QDir::Files);
        for (const QFileInfo &f : files) onDisk += static_cast<uint64_t>(f.size());
        QCOMPARE(onDisk, st.disk.bytes);
        QCOMPARE(static_cast<uint64_t>(files.size()), st.disk.entries);

        // An entry larger than a tier's budget is not stored there.
        const at::Tensor big = valueOf(99, 3000); // 12000 B > host budget
        const uint64_t rejected = st.host.rejectedFull;
        cache.insert(keyOf(99), big);
        st = cache.stats();
        QCOMPARE(st.host.rejectedFull, rejected + 1);
        QCOMPARE(std::string(cache.lookup(keyOf(99)).tier()), std::string("disk"));

        // Shrinking budgets evicts down to them.
        s.hostBytes = 3000;
        s.diskBytes = 5000;
        cache.applySettings(s);
        st = cache.stats();
        QVERIFY(st.host.bytes <= 3000 && st.disk.bytes <= 5000);
    }

    void pinnedEntriesAreNeverEvicted() {
        FeatureCache cache(hostOnly(2 * 1024));
        FeatureHandle a = cache.insert(keyOf(0), valueOf(0));
        FeatureHandle b = cache.insert(keyOf(1), valueOf(1));
        QCOMPARE(cache.stats().pinned, uint64_t{2});

        // No room without evicting a pinned entry: not stored, counted, no error.
        FeatureHandle c = cache.insert(keyOf(2), valueOf(2));
        QVERIFY(c);
        QVERIFY(at::equal(c.tensor(), valueOf(2)));
        QVERIFY(!cache.contains(keyOf(2)));
        QVERIFY(cache.contains(keyOf(0)) && cache.contains(keyOf(1)));
        QCOMPARE(cache.stats().host.rejectedFull, uint64_t{1});
        c = FeatureHandle();

        // Neither the pool's reclaim nor clear() takes pinned entries.
        QCOMPARE(cache.evictHost(1ull << 30), uint64_t{0});
        cache.clear();
        QVERIFY(cache.contains(keyOf(0)) && cache.contains(keyOf(1)));

        // A copy of a handle keeps the pin; a lookup handle pins too.
        FeatureHandle aCopy = a;
        a = FeatureHandle();
        cache.insert(keyOf(2), valueOf(2));
        QVERIFY(!cache.contains(keyOf(2)) && cache.contains(keyOf(0)));
        FeatureHandle aLookup = cache.lookup(keyOf(0));
        aCopy = FeatureHandle();
        cache.insert(keyOf(2), valueOf(2));
        QVERIFY(!cache.contains(keyOf(2)) && cache.contains(keyOf(0)));
        aLookup = FeatureHandle();
        QCOMPARE(cache.stats().pinned, uint64_t{1});

        // Unpinned now: 0 is evicted, never the pinned 1.
        cache.insert(keyOf(2), valueOf(2));
        QVERIFY(!cache.contains(keyOf(0)) && cache.contains(keyOf(1)) && cache.contains(keyOf(2)));

        // A budget shrunk below the pinned bytes: the pinned entry stays (the one exception to
        // bytes <= budget), nothing new enters, and the budget holds again once it is released.
        FeatureCacheSettings s = hostOnly(512);
        cache.applySettings(s);
        FeatureCacheStats st = cache.stats();
        QVERIFY(cache.contains(keyOf(1)) && !cache.contains(keyOf(2)));
        QCOMPARE(st.host.bytes, uint64_t{1024});
        cache.insert(keyOf(3), valueOf(3, 64));
        QVERIFY(!cache.contains(keyOf(3)));
        b = FeatureHandle();
        st = cache.stats();
        QVERIFY(!cache.contains(keyOf(1)));
        QCOMPARE(st.host.bytes, uint64_t{0});
        QCOMPARE(st.pinned, uint64_t{0});
    }

    void diskTierSurvivesRestart() {
        QTemporaryDir dir;
        const at::Tensor v0 = at::randn({1, 32, 16}), v1 = at::randn({1, 32, 16}).to(at::kBFloat16);
        {
            FeatureCache cache(withDisk(dir, 1 << 20, 1 << 20));
            cache.insert(keyOf(0), v0);
            cache.insert(keyOf(1), v1);
        }
        {
            FeatureCache cache(withDisk(dir, 1 << 20, 1 << 20));
            QVERIFY(cache.contains(keyOf(0)) && cache.contains(keyOf(1)));
            FeatureCacheStats st = cache.stats();
            QCOMPARE(st.disk.entries, uint64_t{2});
            QCOMPARE(st.disk.bytes, fileBytes(v0) + fileBytes(v1));
            QCOMPARE(st.host.entries, uint64_t{0});

            const FeatureHandle h = cache.lookup(keyOf(1));
            QCOMPARE(std::string(h.tier()), std::string("disk"));
            QVERIFY(at::equal(h.tensor(), v1));
            st = cache.stats();
            QCOMPARE(st.host.entries, uint64_t{1}); // promoted
            QCOMPARE(std::string(cache.lookup(keyOf(1)).tier()), std::string("host"));
        }
        // The folder's mtimes are the LRU order at startup: with room for one file, the older
        // one is evicted while indexing.
        const std::string p0 = filePath(dir, keyOf(0)), p1 = filePath(dir, keyOf(1));
        struct timespec old[2] = {{1000, 0}, {1000, 0}}, recent[2] = {{2000, 0}, {2000, 0}};
        QCOMPARE(::utimensat(AT_FDCWD, p0.c_str(), recent, 0), 0);
        QCOMPARE(::utimensat(AT_FDCWD, p1.c_str(), old, 0), 0);
        FeatureCache small(withDisk(dir, 1 << 20, fileBytes(v0)));
        QVERIFY(small.contains(keyOf(0)) && !small.contains(keyOf(1)));
        QVERIFY(exists(p0) && !exists(p1));
        QCOMPARE(small.stats().disk.evictions, uint64_t{1});
    }

    void diskTierRejectsCorruptedEntry() {
        QTemporaryDir dir;
        const at::Tensor v = at::randn({1, 32, 16});
        {
            // No host room, so every lookup reads the file.
            FeatureCache cache(withDisk(dir, 0, 1 << 20));
            cache.insert(keyOf(1), v);
            cache.insert(keyOf(2), v);
            cache.insert(keyOf(3), v);
            // Flip one payload byte.
            {
                std::fstream f(filePath(dir, keyOf(1)), std::ios::in | std::ios::out | std::ios::binary);
                f.seekg(-5, std::ios::end);
                const char c = static_cast<char>(f.get() ^ 0x10);
                f.seekp(-5, std::ios::end);
                f.put(c);
            }
            // Truncate.
            std::filesystem::resize_file(filePath(dir, keyOf(2)), fileBytes(v) - 10);
            // Flip a header byte (the dtype): the header checksum catches it.
            {
                std::fstream f(filePath(dir, keyOf(3)), std::ios::in | std::ios::out | std::ios::binary);
                f.seekp(44);
                f.put(static_cast<char>(6)); // int32, same size as fp32
            }
            for (int k : {1, 2, 3}) {
                QVERIFY(!cache.lookup(keyOf(k)));
                QVERIFY(!exists(filePath(dir, keyOf(k))));
                QVERIFY(!cache.contains(keyOf(k)));
            }
            FeatureCacheStats st = cache.stats();
            QCOMPARE(st.disk.rejectedCorrupt, uint64_t{3});
            QCOMPARE(st.disk.misses, uint64_t{3});
            QCOMPARE(st.disk.entries, uint64_t{0});
            QCOMPARE(st.misses, uint64_t{3});
            // The caller recomputes and stores again.
            cache.insert(keyOf(1), v);
            QVERIFY(at::equal(cache.lookup(keyOf(1)).tensor(), v));
        }
        // Stale files found at startup: another version, another key's file, a zero-byte file.
        mgd::writeFeatureFile(filePath(dir, keyOf(4)), keyOf(4), v, mgd::kFeatureFileVersion + 1);
        std::filesystem::copy_file(filePath(dir, keyOf(1)), filePath(dir, keyOf(5)));
        std::ofstream(filePath(dir, keyOf(6))).close();
        FeatureCache cache(withDisk(dir, 0, 1 << 20));
        for (int k : {4, 5, 6}) {
            QVERIFY(cache.contains(keyOf(k))); // indexed by name, checked when read
            QVERIFY(!cache.lookup(keyOf(k)));
            QVERIFY(!exists(filePath(dir, keyOf(k))));
        }
        QCOMPARE(cache.stats().disk.rejectedCorrupt, uint64_t{3});
        QVERIFY(at::equal(cache.lookup(keyOf(1)).tensor(), v)); // the good file still reads

        // A file deleted behind the cache's back is a miss too.
        std::filesystem::remove(filePath(dir, keyOf(1)));
        QVERIFY(!cache.lookup(keyOf(1)));
        QCOMPARE(cache.stats().disk.rejectedCorrupt, uint64_t{4});
        QVERIFY(statsConsistent(cache.stats()));
    }

    void hostTierUsesBlockStore() {
        QTemporaryDir dir;
        FakeStore store(16, 1000);
        {
            FeatureCache cache(withDisk(dir, 1 << 20, 1 << 20), &store);
            // 2800 B -> 3 blocks, 1998 B -> 2 blocks: neither a whole number of blocks.
            const at::Tensor a = at::randn({700}), b = at::randn({3, 333}).to(at::kBFloat16);
            cache.insert(keyOf(0), a);
            cache.insert(keyOf(1), b);
            QCOMPARE(store.inUse(), 5);
            FeatureCacheStats st = cache.stats();
            QCOMPARE(st.host.bytes, uint64_t{5000});
            const FeatureHandle ha = cache.lookup(keyOf(0)), hb = cache.lookup(keyOf(1));
            QCOMPARE(std::string(ha.tier()), std::string("host"));
            QVERIFY(at::equal(ha.tensor(), a));
            QCOMPARE(hb.tensor().scalar_type(), at::kBFloat16);
            QVERIFY(at::equal(hb.tensor(), b));

            // More than the store holds: the cache gives up its own least recently used
            // unpinned entries to the new ones and never leaks a block.
            for (int i = 2; i < 10; ++i) cache.insert(keyOf(i), valueOf(i, 700));
            st = cache.stats();
            QVERIFY(store.balanced());
            QCOMPARE(static_cast<uint64_t>(store.inUse()) * 1000, st.host.bytes);
            QVERIFY(cache.contains(keyOf(9)) && cache.lookup(keyOf(9)));
            QVERIFY(at::equal(cache.lookup(keyOf(0)).tensor(), a)); // pinned by ha all along

            // The pool reclaims: evictHost frees whole blocks of unpinned entries.
            const uint64_t freed = cache.evictHost(1);
            QVERIFY(freed >= 1000 && freed % 1000 == 0);
            QCOMPARE(static_cast<uint64_t>(store.inUse()) * 1000, cache.stats().host.bytes);
        }
        QCOMPARE(store.inUse(), 0); // the cache returns every block when it goes
        QVERIFY(store.balanced());

        // A full store (the KV cache took every block): not stored in host, still on disk.
        std::vector<int32_t> taken;
        for (int32_t b; (b = store.allocateBlock()) >= 0;) taken.push_back(b);
        {
            FeatureCache cache(withDisk(dir, 1 << 20, 1 << 20), &store);
            const at::Tensor v = at::randn({700});
            cache.insert(keyOf(20), v);
            FeatureCacheStats st = cache.stats();
            QCOMPARE(st.host.entries, uint64_t{0});
            QCOMPARE(st.host.bytes, uint64_t{0});
            QCOMPARE(st.host.rejectedFull, uint64_t{1});
            QVERIFY(cache.contains(keyOf(20)));
            const FeatureHandle h = cache.lookup(keyOf(20));
            QCOMPARE(std::string(h.tier()), std::string("disk"));
            QVERIFY(at::equal(h.tensor(), v));
            QCOMPARE(store.inUse(), 16);
            for (int32_t b : taken) store.releaseBlock(b);
            QVERIFY(cache.lookup(keyOf(20))); // promoted now that there is room
            QCOMPARE(cache.stats().host.entries, uint64_t{1});
            QCOMPARE(store.inUse(), 3);
        }
        QCOMPARE(store.inUse(), 0);
        QVERIFY(store.balanced());
    }

    void blockStoreMayCallEvictHostWhenFull() {
        // A pool that asks the cache for room from inside allocateBlock(), as the engine's
        // does for KV blocks: no deadlock, and the budget and blocks still balance.
        FakeStore store(6, 1024);
        FeatureCache cache(hostOnly(1 << 20), &store);
        store.onFull = [&] { cache.evictHost(1024); };
        for (int i = 0; i < 20; ++i) cache.insert(keyOf(i), valueOf(i, 512)); // 2 blocks each
        QVERIFY(store.balanced());
        QCOMPARE(static_cast<uint64_t>(store.inUse()) * 1024, cache.stats().host.bytes);
        QVERIFY(cache.contains(keyOf(19)));
        QVERIFY(at::equal(cache.lookup(keyOf(19)).tensor(), valueOf(19, 512)));
    }

    void disabledCacheNeverHits() {
        QTemporaryDir dir;
        FeatureCacheSettings s = withDisk(dir, 1 << 20, 1 << 20);
        s.enabled = false;
        FeatureCache cache(s);
        const at::Tensor v = valueOf(1);
        const FeatureHandle h = cache.insert(keyOf(1), v);
        QVERIFY(h);
        QCOMPARE(std::string(h.tier()), std::string("new"));
        QCOMPARE(h.tensor().data_ptr(), v.data_ptr()); // the given tensor itself
        for (int i = 0; i < 3; ++i) QVERIFY(!cache.lookup(keyOf(1)));
        QVERIFY(!cache.contains(keyOf(1)));
        QVERIFY(QDir(dir.path()).entryList(QDir::Files).isEmpty());
        FeatureCacheStats st = cache.stats();
        QCOMPARE(st.lookups, uint64_t{3});
        QCOMPARE(st.misses, uint64_t{3});
        QCOMPARE(st.host.lookups, uint64_t{3});
        QCOMPARE(st.host.misses, uint64_t{3});
        QCOMPARE(st.host.entries + st.disk.entries, uint64_t{0});

        // Turned off at run time: memory is given back and nothing hits, though the disk
        // keeps its files for when it is turned on again.
        s.enabled = true;
        cache.applySettings(s);
        cache.insert(keyOf(1), v);
        QVERIFY(cache.lookup(keyOf(1)));
        s.enabled = false;
        cache.applySettings(s);
        QVERIFY(!cache.lookup(keyOf(1)));
        st = cache.stats();
        QCOMPARE(st.host.entries, uint64_t{0});
        QCOMPARE(st.disk.entries, uint64_t{1});
    }

    void clearEmptiesEveryTierAndTheFolder() {
        QTemporaryDir dir;
        FeatureCache cache(withDisk(dir, 1 << 20, 1 << 20));
        for (int i = 0; i < 4; ++i) cache.insert(keyOf(i), valueOf(i));
        std::ofstream(filePath(dir, keyOf(9))).put('x'); // written after indexing
        cache.clear();
        const FeatureCacheStats st = cache.stats();
        QCOMPARE(st.host.entries + st.disk.entries, uint64_t{0});
        QCOMPARE(st.host.bytes + st.disk.bytes, uint64_t{0});
        QVERIFY(QDir(dir.path()).entryList({"*.mgdf"}, QDir::Files).isEmpty());
        QVERIFY(!cache.lookup(keyOf(0)));
    }

    void refusesKeysThatAreNotHexDigests() {
        FeatureCache cache(hostOnly(1 << 20));
        QVERIFY_THROWS_EXCEPTION(mgd::Error, cache.insert("../../../../etc/passwd", valueOf(0)));
        QVERIFY_THROWS_EXCEPTION(mgd::Error, cache.lookup("abc"));
        // Upper-case digests are the same key.
        cache.insert("0123456789ABCDEF0123456789ABCDEF", valueOf(0));
        QVERIFY(cache.contains("0123456789abcdef0123456789abcdef"));
    }

    void unusableFolderTurnsDiskTierOff() {
        QTemporaryDir dir;
        const std::string file = (dir.path() + "/plain-file").toStdString();
        std::ofstream(file).put('x');
        FeatureCacheSettings s;
        s.diskDir = file + "/sub"; // a folder below a file cannot be made
        FeatureCache cache(s);
        QVERIFY(!cache.diskError().empty());
        QCOMPARE(cache.stats().disk.budget, uint64_t{0});
        cache.insert(keyOf(1), valueOf(1));
        QVERIFY(cache.lookup(keyOf(1)));
    }

    void concurrentLookupsAreSafe() {
        QTemporaryDir dir;
        FakeStore store(12, 1024);
        const uint64_t hostBudget = 8 * 1024, diskBudget = 12 * (72 + 8 + 2048);
        FeatureCache cache(withDisk(dir, hostBudget, diskBudget), &store);
        // Values made up front: the threads' loop does no tensor math of its own.
        constexpr int kKeys = 24;
        std::vector<at::Tensor> values;
        std::vector<std::string> keys;
        for (int k = 0; k < kKeys; ++k) {
            values.push_back(valueOf(k, k % 3 == 0 ? 512 : 256)); // 1 or 2 blocks
            keys.push_back(keyOf(k));
        }
        constexpr int kThreads = 4, kOps = 3000;
        std::atomic<uint64_t> lookups{0}, wrongValues{0}, badSnapshots{0}, errors{0};
        auto work = [&](int seed) {
            std::mt19937 rng(static_cast<uint32_t>(seed));
            try {
                for (int op = 0; op < kOps; ++op) {
                    const int k = static_cast<int>(rng() % kKeys);
                    const unsigned r = rng() % 100;
                    if (r < 55) {
                        ++lookups;
                        const FeatureHandle h = cache.lookup(keys[k]);
                        if (h) {
                            const at::Tensor &t = h.tensor();
                            if (t.nbytes() != values[k].nbytes() ||
                                std::memcmp(t.data_ptr(), values[k].data_ptr(), t.nbytes()) != 0)
                                ++wrongValues;
                        }
                    } else if (r < 85) {
                        cache.insert(keys[k], values[k]);
                    } else if (r < 95) {
                        cache.evictHost(1024 * (1 + rng() % 4));
                    } else {
                        const FeatureCacheStats s = cache.stats();
                        if (!statsConsistent(s) || s.host.bytes > hostBudget || s.disk.bytes > diskBudget)
                            ++badSnapshots;
                        cache.contains(keys[k]);
                    }
                }
            } catch (...) {
                ++errors;
            }
        };
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t) threads.emplace_back(work, 100 + t);
        for (std::thread &t : threads) t.join();

        QCOMPARE(errors.load(), uint64_t{0});
        QCOMPARE(wrongValues.load(), uint64_t{0});
        QCOMPARE(badSnapshots.load(), uint64_t{0});
        const FeatureCacheStats st = cache.stats();
        QVERIFY(statsConsistent(st));
        QCOMPARE(st.lookups, lookups.load());
        QCOMPARE(st.host.lookups, lookups.load());
        QCOMPARE(st.disk.lookups, st.host.misses);
        QVERIFY(st.host.hits > 0 && st.disk.hits > 0 && st.host.evictions > 0 && st.disk.evictions > 0);
        QVERIFY(st.host.bytes <= hostBudget && st.disk.bytes <= diskBudget);
        QCOMPARE(st.pinned, uint64_t{0});
        QCOMPARE(st.disk.rejectedCorrupt, uint64_t{0});
        QVERIFY(store.balanced());
        QCOMPARE(static_cast<uint64_t>(store.inUse()) * 1024, st.host.bytes);
        uint64_t onDisk = 0;
        const QFileInfoList files = QDir(dir.path()).entryInfoList(QDir::Files);
        for (const QFileInfo &f : files) onDisk += static_cast<uint64_t>(f.size());
        QCOMPARE(onDisk, st.disk.bytes); // no temp file left behind either
        QCOMPARE(static_cast<uint64_t>(files.size()), st.disk.entries);
        for (int k = 0; k < kKeys; ++k) {
            const FeatureHandle h = cache.lookup(keys[k]);
            if (h) QVERIFY(at::equal(h.tensor(), values[k]));
        }
    }
};

QTEST_APPLESS_MAIN(TestFeatureCache)
#include "test_feature_cache.moc"
