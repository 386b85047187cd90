// Small parts of a turn that carry its identity: the hasher every key is built with, the
// response cache's key, the KV cache's length commit and the engine settings' equality.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <QtTest>
#include <xxhash.h>

#include "core/cache/response_cache.h"
#include "core/kernels/cpu_features.h"
#include "core/memory/memory_pool.h"
#include "core/model/decode_attention.h"
#include "core/model/kv_cache.h"
#include "core/runtime/engine.h"
#include "core/util/error.h"
#include "core/util/hasher.h"

using namespace mgd;

class TestTurnParts : public QObject {
    Q_OBJECT

private slots:
    void hasherStreamsLikeOneShotXxh3() {
        const std::string a = "model folder|", b(1000, 'x');
        const int64_t v = 42;
        std::string all = a + b;
        all.append(reinterpret_cast<const char *>(&v), sizeof v);
        const XXH128_hash_t ref = XXH3_128bits(all.data(), all.size());
        const Digest128 d = Hasher128().add(a).add(b).addValue(v).digest();
        QCOMPARE(d.high, uint64_t(ref.high64));
        QCOMPARE(d.low, uint64_t(ref.low64));
        QCOMPARE(d.hex().size(), size_t(32));
        QCOMPARE(Hasher128().digest().hex(), Hasher128().add("", 0).digest().hex());
    }

    void responseKeyChangesWithEveryField() {
        const std::vector<int64_t> keys{1, 2, 3, -77}, other{1, 2, 3, -78};
        const ResponseRequest base{"model-a", &keys, 64, 1.0, false};
        const std::string k = ResponseCache::keyFor(base);
        QCOMPARE(ResponseCache::keyFor(base), k); // deterministic
        ResponseRequest r = base;
        r.modelIdentity = "model-b";
        QVERIFY(ResponseCache::keyFor(r) != k);
        r = base;
        r.promptKeys = &other;
        QVERIFY(ResponseCache::keyFor(r) != k);
        r = base;
        r.maxNewTokens = 65;
        QVERIFY(ResponseCache::keyFor(r) != k);
        r = base;
        r.repetitionPenalty = 1.1;
        QVERIFY(ResponseCache::keyFor(r) != k);
        r = base;
        r.ignoreEos = true;
        QVERIFY(ResponseCache::keyFor(r) != k);
    }

    void kvCommitOnlyMovesForwardWithinCapacity() {
        c10::InferenceMode guard;
        KvCache kv;
        const KvShape s{2, 2, 4, 64, at::kFloat, at::kCPU};
        kv.reserve(s, 10);
        QCOMPARE(kv.length(), int64_t(0));
        kv.commit(10);
        QCOMPARE(kv.length(), int64_t(10));
        QVERIFY_THROWS_EXCEPTION(Error, kv.commit(5));      // backwards: truncate() does that
        QVERIFY_THROWS_EXCEPTION(Error, kv.commit(100000)); // past what was reserved
        kv.truncate(3);
        QCOMPARE(kv.length(), int64_t(3));
    }

    // int8 KV: what attention reads back is within half a quantization step of what was
    // written, in both storages, and a position takes about a quarter of float32's bytes.
    void int8KvRoundTripsWithinHalfAStep() {
        c10::InferenceMode guard;
        const KvShape s{3, 2, 64, 1024, at::kFloat, at::kCPU};
        MemoryPool pool(64 << 20,
                        KvCache::blockBytes(KvShape{3, 2, 64, 1024, at::kFloat, at::kCPU, true}, 16));
        for (bool pooled : {false, true}) {
            KvCache kv;
            if (pooled) kv.usePool(&pool, 16, {});
            kv.setInt8(true);
            kv.reserve(s, 40);
            at::manual_seed(7);
            std::vector<at::Tensor> ks, vs;
            for (int64_t l = 0; l < 3; ++l) {
                ks.push_back(at::randn({2, 40, 64}) * (l + 1));
                vs.push_back(at::randn({2, 40, 64}));
                kv.write(l, 0, ks[l], vs[l]);
            }
            kv.commit(40);
            for (int64_t l = 0; l < 3; ++l) {
                std::vector<at::Tensor> kParts, vParts;
                for (const auto &[k, v] : kv.segments(l, 40)) kParts.push_back(k), vParts.push_back(v);
                const at::Tensor k = at::cat(kParts, 1), v = at::cat(vParts, 1);
                QCOMPARE(k.scalar_type(), at::kFloat);
                const at::Tensor step = ks[l].abs().amax(-1, true) / 127;
                QVERIFY(((k - ks[l]).abs() <= step / 2 + 1e-6).all().item<bool>());
                QVERIFY((v - vs[l]).abs().max().item<double>() < 0.02);
            }
            // The saved-state round trip keeps the values.
            KvCache again;
            again.setInt8(true);
            again.importState(s, kv.exportState());
            QCOMPARE(again.length(), int64_t(40));
            QVERIFY(at::equal(again.exportState()[1], kv.exportState()[1]));
        }
        KvShape wide = s, narrow = s;
        narrow.int8 = true;
        QCOMPARE(KvCache::bytesPerPosition(wide), int64_t(3 * 2 * 2 * 64 * 4));
        QCOMPARE(KvCache::bytesPerPosition(narrow), int64_t(3 * 2 * 2 * (64 + 4)));
        QVERIFY_THROWS_EXCEPTION(Error, [&] {
            KvCache busy;
            busy.reserve(s, 4);
            busy.commit(4);
            busy.setInt8(true); // not while it holds state
        }());
    }

    // One-token attention reads every storage in place (contiguous or 16-position blocks;
    // float32, bfloat16, int8) and gives what softmax(q K^T / sqrt(Dh)) V over the values
    // the cache hands back as tensors gives.
    void decodeAttentionReadsEveryStorageInPlace() {
        c10::InferenceMode guard;
        const int64_t H = 4, KvH = 2, Dh = 24, n = 37; // n: two full blocks and a partial one
        for (at::ScalarType dt : {at::kFloat, at::kBFloat16})
            for (bool int8 : {false, true})
                for (bool pooled : {false, true}) {
                    const KvShape s{2, KvH, Dh, 64, dt, at::kCPU, int8};
                    MemoryPool pool(1 << 20, KvCache::blockBytes(s, 16));
                    KvCache kv;
                    if (pooled) kv.usePool(&pool, 16, {});
                    kv.setInt8(int8);
                    kv.reserve(s, n);
                    at::manual_seed(3);
                    for (int64_t l = 0; l < 2; ++l)
                        kv.write(l, 0, at::randn({KvH, n, Dh}).to(dt), at::randn({KvH, n, Dh}).to(dt));
                    kv.commit(n);
                    const at::Tensor q = at::randn({1, H, 1, Dh}).to(dt);
                    QVERIFY(decodeAttentionEligible(q, kv));
                    const at::Tensor got = decodeAttention(q, kv, 1, n).to(at::kFloat);
                    std::vector<at::Tensor> ks, vs;
                    for (const auto &[k, v] : kv.segments(1, n)) ks.push_back(k), vs.push_back(v);
                    const at::Tensor K = at::cat(ks, 1).to(at::kFloat).repeat_interleave(H / KvH, 0);
                    const at::Tensor V = at::cat(vs, 1).to(at::kFloat).repeat_interleave(H / KvH, 0);
                    const at::Tensor qf = q.to(at::kFloat).view({H, 1, Dh});
                    const at::Tensor want = at::matmul(
                        (at::matmul(qf, K.transpose(1, 2)) / std::sqrt(double(Dh))).softmax(-1), V);
                    const double tol = dt == at::kBFloat16 ? 2e-2 : 1e-5;
                    QVERIFY2(at::allclose(got.view({H, 1, Dh}), want, tol, tol),
                             qPrintable(QString("dtype %1 int8 %2 pooled %3: %4")
                                            .arg(int(dt))
                                            .arg(int8)
                                            .arg(pooled)
                                            .arg((got.view({H, 1, Dh}) - want).abs().max().item<double>())));
                }
    }

    void autoDtypeIsBf16WhereTheCpuComputesItNatively() {
        QCOMPARE(resolveDtype("auto", "cpu"), std::string(kernels::useAvx512Bf16() ? "bfloat16" : ""));
        kernels::forceNoAvx512Extensions(true); // as on a CPU without AVX512-BF16
        QCOMPARE(resolveDtype("auto", "cpu"), std::string());
        kernels::forceNoAvx512Extensions(false);
        QCOMPARE(resolveDtype("float32", "cpu"), std::string("float32"));
        QCOMPARE(resolveDtype("", "cpu"), std::string());
        QVERIFY_THROWS_EXCEPTION(Error, resolveDtype("auto", "tpu"));
    }

    void engineSettingsCompareEveryField() {
        const EngineSettings a;
        QVERIFY(a == EngineSettings{});
        EngineSettings b;
        b.kvBlockPositions = 256; // the UI's old field-by-field comparison missed this one
        QVERIFY(!(a == b));
        b = a;
        b.redisTtlSeconds = 60;
        QVERIFY(!(a == b));
        b = a;
        b.imageLimits.maxPixels = 1;
        QVERIFY(!(a == b));
    }
};

QTEST_APPLESS_MAIN(TestTurnParts)
#include "test_turn_parts.moc"
