// KV blocks shared between conversations by reference count (core/cache/prefix_blocks.h):
// names, sharing without copies, copy-on-write, reference counts back to zero, eviction,
// and the same logits as a fresh prefill through the real model.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <QtTest>

#include "core/cache/prefix_blocks.h"
#include "core/memory/memory_pool.h"
#include "core/model/kv_cache.h"
#include "core/model/llama.h"
#include "core/model/minigpt_model.h"
#include "core/runtime/session.h"
#include "core/util/error.h"

using namespace mgd;

namespace {

constexpr int64_t P = 4; // positions per block
const KvShape kShape{2, 2, 8, 64, at::kFloat, at::kCPU};

std::vector<int64_t> iota(int64_t n, int64_t from = 100) {
    std::vector<int64_t> v(n);
    for (int64_t i = 0; i < n; ++i) v[i] = from + i;
    return v;
}

// Fills positions [from, to) of every layer with values that depend on seed.
void fill(KvCache &kv, int64_t from, int64_t to, int seed) {
    kv.reserve(kShape, to);
    at::manual_seed(seed);
    for (int64_t l = 0; l < kShape.layers; ++l)
        kv.write(l, from, at::randn({2, to - from, 8}), at::randn({2, to - from, 8}));
    kv.commit(to);
}

at::Tensor keysOf(const KvCache &kv, int64_t layer, int64_t n) {
    std::vector<at::Tensor> parts;
    for (const auto &[k, v] : kv.segments(layer, n)) parts.push_back(k);
    return at::cat(parts, 1).clone();
}

uint64_t kvBlocksInUse(const MemoryPool &pool) {
    return pool.stats().kvBytes / pool.stats().blockBytes;
}

} // namespace

class TestPrefixBlocks : public QObject {
    Q_OBJECT

private slots:
    void namesChainThroughTheWholePrefix() {
        const auto a = chainedBlockHashes(iota(10), P);
        QCOMPARE(a.size(), size_t(2)); // the partial third block has no name
        std::vector<int64_t> other = iota(10);
        other[5] = -7; // an image position, say, in the second block
        const auto b = chainedBlockHashes(other, P);
        QVERIFY(a[0].high == b[0].high && a[0].low == b[0].low);
        QVERIFY(a[1].high != b[1].high || a[1].low != b[1].low);
        // Same keys after a different first block: a different name.
        std::vector<int64_t> shifted = iota(10);
        shifted[0] = 1;
        const auto c = chainedBlockHashes(shifted, P);
        QVERIFY(c[1].high != a[1].high || c[1].low != a[1].low);
        // The block size is part of the name.
        QVERIFY(chainedBlockHashes(iota(8), 8)[0].low != chainedBlockHashes(iota(8), 4)[0].low ||
                chainedBlockHashes(iota(8), 8)[0].high != chainedBlockHashes(iota(8), 4)[0].high);
    }

    void sharingCopiesNothingAndCopyOnWriteKeepsTailsApart() {
        for (bool int8 : {false, true}) {
            c10::InferenceMode guard;
            KvShape bs = kShape;
            bs.int8 = int8;
            MemoryPool pool(1 << 20, KvCache::blockBytes(bs, P));
            PrefixBlocks table(pool);
            const auto names = chainedBlockHashes(iota(11), P);
            KvCache a;
            a.usePool(&pool, P, {}, &table);
            a.setInt8(int8);
            fill(a, 0, 11, 1);
            a.shareFullBlocks(names);
            QCOMPARE(a.sharedPositions(), int64_t(8));
            const uint64_t used = kvBlocksInUse(pool); // 3 blocks x 2 layers
            QCOMPARE(used, uint64_t(6));
            const at::Tensor aKeys = keysOf(a, 1, 11);

            KvCache b;
            b.usePool(&pool, P, {}, &table);
            b.setInt8(int8);
            QCOMPARE(b.adoptSharedBlocks(kShape, names, 100), int64_t(8));
            QCOMPARE(kvBlocksInUse(pool), used); // no copy
            QVERIFY(at::equal(keysOf(b, 1, 8), aKeys.narrow(1, 0, 8)));
            QCOMPARE(table.stats().references, uint64_t(4));
            // Writing into a shared block is refused; truncating into one copies it first.
            QVERIFY_THROWS_EXCEPTION(Error, b.write(0, 7, at::zeros({2, 1, 8}), at::zeros({2, 1, 8})));
            b.truncate(6);
            QCOMPARE(b.sharedPositions(), int64_t(4));
            QCOMPARE(kvBlocksInUse(pool), used + 2);
            fill(b, 6, 12, 2); // b's own tail
            QVERIFY(at::equal(keysOf(b, 1, 6), aKeys.narrow(1, 0, 6)));
            QVERIFY(at::equal(keysOf(a, 1, 11), aKeys)); // a never sees b's tail
            QVERIFY(!at::equal(keysOf(b, 1, 8), aKeys.narrow(1, 0, 8)));

            // An equal block computed again is replaced by the shared one (memory given back).
            KvCache c;
            c.usePool(&pool, P, {}, &table);
            c.setInt8(int8);
            fill(c, 0, 8, 1);
            const uint64_t before = kvBlocksInUse(pool);
            c.shareFullBlocks(names);
            QCOMPARE(kvBlocksInUse(pool), before - 4);
            QCOMPARE(c.sharedPositions(), int64_t(8));

            // Every reference returns; the blocks stay cached until the pool wants them.
            a.release();
            b.release();
            c.release();
            const PrefixBlockStats st = table.stats();
            QCOMPARE(st.references, uint64_t(0));
            QCOMPARE(st.referenced, uint64_t(0));
            QCOMPARE(st.blocks, uint64_t(2));
            QCOMPARE(kvBlocksInUse(pool), st.poolBlocks);
            // A later conversation finds them.
            KvCache d;
            d.usePool(&pool, P, {}, &table);
            d.setInt8(int8);
            QCOMPARE(d.adoptSharedBlocks(kShape, names, 100), int64_t(8));
            QVERIFY(at::equal(keysOf(d, 1, 8), aKeys.narrow(1, 0, 8)));
            d.release();
            table.dropUnreferenced();
            QCOMPARE(pool.stats().freeBlocks, pool.stats().blocks); // the pool is whole
            QCOMPARE(pool.stats().allocations, pool.stats().releases);
        }
    }

    void adoptionStopsAtTheFirstMissingBlockAndAtTheLimit() {
        c10::InferenceMode guard;
        MemoryPool pool(1 << 20, KvCache::blockBytes(kShape, P));
        PrefixBlocks table(pool);
        KvCache a;
        a.usePool(&pool, P, {}, &table);
        fill(a, 0, 12, 1);
        a.shareFullBlocks(chainedBlockHashes(iota(12), P));
        std::vector<int64_t> keys = iota(12);
        keys[5] = 0; // differs in the second block
        KvCache b;
        b.usePool(&pool, P, {}, &table);
        QCOMPARE(b.adoptSharedBlocks(kShape, chainedBlockHashes(keys, P), 100), int64_t(4));
        b.release();
        QCOMPARE(b.adoptSharedBlocks(kShape, chainedBlockHashes(iota(12), P), 2), int64_t(8));
        QVERIFY_THROWS_EXCEPTION(Error, b.adoptSharedBlocks(kShape, chainedBlockHashes(iota(12), P), 2));
    }

    void copyOnWriteInAFullPoolFailsCleanly() {
        c10::InferenceMode guard;
        MemoryPool pool(6 * KvCache::blockBytes(kShape, P), KvCache::blockBytes(kShape, P));
        PrefixBlocks table(pool);
        const auto names = chainedBlockHashes(iota(12), P);
        KvCache a;
        a.usePool(&pool, P, {}, &table);
        fill(a, 0, 12, 1); // all 6 blocks
        a.shareFullBlocks(names);
        KvCache b;
        b.usePool(&pool, P, {}, &table);
        QCOMPARE(b.adoptSharedBlocks(kShape, names, 100), int64_t(12));
        QVERIFY_THROWS_EXCEPTION(Error, b.truncate(10));
        QCOMPARE(b.length(), int64_t(8)); // the whole blocks before the one it could not copy
        QCOMPARE(b.sharedPositions(), int64_t(8));
        // With the table's unused blocks evictable, the copy finds room.
        a.release();
        KvCache c;
        c.usePool(
            &pool, P, [&] { return table.evictOne(); }, &table);
        QCOMPARE(c.adoptSharedBlocks(kShape, names, 100), int64_t(12));
        b.release();
        c.truncate(6); // block 2 is unused now: evicted to make room for the copy of block 1
        QCOMPARE(c.length(), int64_t(6));
        c.release();
        table.dropUnreferenced();
        QCOMPARE(pool.stats().freeBlocks, pool.stats().blocks);
    }

    // Through the real model: a session that starts from another's shared blocks gives the
    // logits a fresh prefill gives.
    void sharedBlocksGiveTheLogitsOfAFreshPrefill() {
        c10::InferenceMode guard;
        const auto model = MiniGptModel::load(MGD_TEST_DATA "/minigpt4-tiny-hi");
        const Llama &llm = model->llm();
        const KvShape s = llm.kvShape();
        MemoryPool pool(16 << 20, KvCache::blockBytes(s, 16));
        PrefixBlocks table(pool);
        auto chunk = [](std::vector<int32_t> ids) {
            PromptChunk c;
            c.kind = PromptChunk::Kind::Ids;
            c.ids = std::move(ids);
            return c;
        };
        std::vector<int32_t> prefix, q1{5, 6, 7}, q2{9, 10, 11, 12, 13};
        for (int i = 0; i < 37; ++i) prefix.push_back(3 + i % 40);
        auto prompt = [&](const std::vector<int32_t> &q) {
            std::vector<int32_t> all = prefix;
            all.insert(all.end(), q.begin(), q.end());
            return std::vector<PromptChunk>{chunk(all)};
        };
        auto noImage = [](int) -> uint64_t { return 0; };
        auto noEmbeds = [](int) { return at::Tensor(); };

        Session a;
        a.usePool(&pool, 16, {}, &table);
        a.prefill(llm, prompt(q1), noImage, noEmbeds, 0, true, false);
        a.shareBlocks();

        Session b;
        b.usePool(&pool, 16, {}, &table);
        const auto keys = promptKeys(prompt(q2), noImage, 0);
        QCOMPARE(b.sharedPrefixHeld(keys, static_cast<int64_t>(keys.size()) - 1), int64_t(32));
        QCOMPARE(b.adoptSharedBlocks(s, keys, static_cast<int64_t>(keys.size()) - 1), int64_t(32));
        b.copyFrom(a, 37); // the partial block, from the live conversation
        QCOMPARE(b.length(), int64_t(37));
        const PrefillResult shared = b.prefill(llm, prompt(q2), noImage, noEmbeds, 0, true, false);
        QCOMPARE(shared.reusedTokens, int64_t(37));

        Session fresh; // contiguous storage, nothing shared
        const PrefillResult ref = fresh.prefill(llm, prompt(q2), noImage, noEmbeds, 0, false, false);
        QCOMPARE(ref.prefilledTokens, int64_t(42));
        QVERIFY2(at::allclose(shared.logits, ref.logits, 1e-4, 1e-4),
                 qPrintable(QString::number((shared.logits - ref.logits).abs().max().item<double>())));
        // Decoding on, each sees only its own tail.
        const at::Tensor nb = b.step(llm, 17), nf = fresh.step(llm, 17);
        QVERIFY(at::allclose(nb, nf, 1e-4, 1e-4));
        a.dropState();
        b.dropState();
        QCOMPARE(table.stats().references, uint64_t(0));
    }
};

QTEST_MAIN(TestPrefixBlocks)
#include "test_prefix_blocks.moc"
