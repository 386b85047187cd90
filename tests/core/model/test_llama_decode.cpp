// The one-token step on raw buffers (core/model/llama_decode.cpp) against the tensor path it
// replaces: prefill n tokens, decode one more, and compare with the last position of one
// prefill of n + 1 tokens. fp32, bf16, int8 weights, fp32/bf16/int8 KV, pooled KV blocks.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <QTemporaryDir>
#include <QtTest>

#include "core/import/model_folder_writer.h"
#include "core/memory/memory_pool.h"
#include "core/model/kv_cache.h"
#include "core/model/llama.h"
#include "core/model/weights.h"

using namespace mgd;

namespace {

LlamaConfig smallConfig() {
    LlamaConfig c;
    c.vocabSize = 50, c.hidden = 64, c.intermediate = 96, c.layers = 2, c.heads = 4, c.kvHeads = 2;
    c.maxPositions = 64, c.rmsEps = 1e-6;
    return c;
}

// Random weights under the original names (norms around 1, so the norms' weights matter).
void writeLlama(const std::string &dir, const LlamaConfig &c) {
    std::vector<PlannedTensor> plan;
    int64_t seed = 1;
    auto add = [&](const std::string &name, std::vector<int64_t> shape, double mean, double std) {
        const int64_t s = seed++;
        plan.push_back({name, at::kFloat, shape, [shape, s, mean, std] {
                            at::manual_seed(static_cast<uint64_t>(s));
                            return at::normal(mean, std, shape);
                        }});
    };
    const int64_t D = c.hidden, I = c.intermediate, kvd = c.hidden / c.heads * c.kvHeads;
    const std::string p = "llama_model.model.";
    add(p + "embed_tokens.weight", {c.vocabSize, D}, 0, 1);
    for (int l = 0; l < c.layers; ++l) {
        const std::string L = p + "layers." + std::to_string(l) + ".";
        add(L + "self_attn.q_proj.weight", {D, D}, 0, 0.2);
        add(L + "self_attn.k_proj.weight", {kvd, D}, 0, 0.2);
        add(L + "self_attn.v_proj.weight", {kvd, D}, 0, 0.2);
        add(L + "self_attn.o_proj.weight", {D, D}, 0, 0.1);
        add(L + "mlp.gate_proj.weight", {I, D}, 0, 0.2);
        add(L + "mlp.up_proj.weight", {I, D}, 0, 0.2);
        add(L + "mlp.down_proj.weight", {D, I}, 0, 0.1);
        add(L + "input_layernorm.weight", {D}, 1, 0.2);
        add(L + "post_attention_layernorm.weight", {D}, 1, 0.2);
    }
    add(p + "norm.weight", {D}, 1, 0.2);
    add("llama_model.lm_head.weight", {c.vocabSize, D}, 0, 0.2);
    writeModelShards(dir, std::move(plan), 1 << 30, {});
}

} // namespace

class TestLlamaDecode : public QObject {
    Q_OBJECT

private slots:
    void oneTokenStepMatchesTheTensorPath_data() {
        QTest::addColumn<int>("dtype"); // 0 fp32, 1 bf16
        QTest::addColumn<bool>("int8Weights");
        QTest::addColumn<bool>("int8Kv");
        QTest::addColumn<bool>("pooled");
        for (int dt : {0, 1})
            for (bool w8 : {false, true})
                for (bool kv8 : {false, true})
                    for (bool pooled : {false, true})
                        QTest::newRow(qPrintable(QString("%1%2%3%4")
                                                     .arg(dt ? "bf16" : "fp32")
                                                     .arg(w8 ? "-w8" : "")
                                                     .arg(kv8 ? "-kv8" : "")
                                                     .arg(pooled ? "-pooled" : "")))
                            << dt << w8 << kv8 << pooled;
    }
    void oneTokenStepMatchesTheTensorPath() {
        QFETCH(int, dtype);
        QFETCH(bool, int8Weights);
        QFETCH(bool, int8Kv);
        QFETCH(bool, pooled);
        c10::InferenceMode guard;
        QTemporaryDir dir;
        const LlamaConfig c = smallConfig();
        writeLlama(dir.path().toStdString(), c);
        const at::ScalarType dt = dtype ? at::kBFloat16 : at::kFloat;
        Weights w = Weights::openFolder(dir.path().toStdString());
        Llama llm(w, c, dt, int8Weights);
        at::manual_seed(5);
        const int64_t n = 21; // past one 16-position block
        const at::Tensor embeds = at::randn({1, n + 1, c.hidden}).to(dt);

        MemoryPool pool(8 << 20, KvCache::blockBytes(llm.kvShape(), 16));
        auto makeCache = [&](KvCache &kv) {
            if (pooled) kv.usePool(&pool, 16, {});
            kv.setInt8(int8Kv);
        };
        KvCache stepped, whole;
        makeCache(stepped);
        makeCache(whole);
        llm.forward(embeds.narrow(1, 0, n), stepped, false);
        QVERIFY(llm.oneTokenEligible(embeds.narrow(1, n, 1), stepped));
        const at::Tensor got = llm.forward(embeds.narrow(1, n, 1), stepped, false);
        const at::Tensor want = llm.forward(embeds, whole, false);
        QCOMPARE(stepped.length(), n + 1);
        QCOMPARE(got.sizes(), want.sizes());
        // The step writes the same keys and values the tensor path writes.
        for (int64_t l = 0; l < c.layers; ++l) {
            auto a = stepped.segments(l, n + 1), b = whole.segments(l, n + 1);
            std::vector<at::Tensor> k1, k2;
            for (auto &s : a) k1.push_back(s.first.to(at::kFloat));
            for (auto &s : b) k2.push_back(s.first.to(at::kFloat));
            const double d = (at::cat(k1, 1) - at::cat(k2, 1)).abs().max().item<double>();
            QVERIFY2(d < (dtype || int8Kv || int8Weights ? 0.1 : 1e-4),
                     qPrintable(QString("layer %1 keys differ by %2").arg(l).arg(d)));
        }
        const double diff = (got - want).abs().max().item<double>();
        const double scale = want.abs().max().item<double>();
        // fp32: the same sums in another order. bf16: the same roundings, sums in fp32 instead of
        // oneDNN's blocking; int8 weights: the prompt path dequantizes, the step uses int8 dots.
        const double tol = dtype == 0 && !int8Weights ? 1e-4 * std::max(1.0, scale) : 0.06 * scale;
        qInfo("max |diff| %g of max |logit| %g", diff, scale);
        QVERIFY2(diff <= tol, qPrintable(QString("max |diff| %1, max |logit| %2").arg(diff).arg(scale)));
        if (dtype == 0 && !int8Weights)
            QCOMPARE(got.argmax(-1).item<int64_t>(), want.argmax(-1).item<int64_t>());
    }

    // While training (gradients on) the tensor path runs.
    void notWhileTraining() {
        QTemporaryDir dir;
        const LlamaConfig c = smallConfig();
        writeLlama(dir.path().toStdString(), c);
        Weights w = Weights::openFolder(dir.path().toStdString());
        Llama llm(w, c, at::kFloat);
        KvCache kv;
        kv.reserve(llm.kvShape(), 1);
        const at::Tensor x = at::randn({1, 1, c.hidden});
        {
            c10::InferenceMode guard;
            QVERIFY(llm.oneTokenEligible(x, kv));
        }
        QVERIFY(!llm.oneTokenEligible(x.clone().requires_grad_(true), kv));
    }
};

QTEST_APPLESS_MAIN(TestLlamaDecode)
#include "test_llama_decode.moc"
