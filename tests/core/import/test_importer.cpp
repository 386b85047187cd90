// The importer, end to end on tiny versions of the files users download: every fp32 folder
// imports to exactly the reference weights and then passes the reference check; fp16
// inputs give the fp16-rounded weights; the known user mistakes get their hint; a
// cancelled import leaves nothing that loads.
#include <ATen/ATen.h>
#include <QElapsedTimer>
#include <QProcess>
#include <QTemporaryDir>
#include <QThread>
#include <QtTest>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/import/importer.h"
#include "core/import/pos_embed_interp.h"
#include "core/model/minigpt_model.h"
#include "core/model/safetensors.h"
#include "core/model/weights.h"
#include "core/runtime/reference_check.h"
#include "core/util/error.h"

namespace fs = std::filesystem;

namespace {

const std::string kData = MGD_TEST_DATA;
const std::string kOrig = kData + "/reference-original/";

mgd::ImportOptions minigpt4Options(const std::string &out, bool fp16 = false) {
    mgd::ImportOptions o;
    const std::string d = kOrig + "minigpt4-tiny-hi/";
    o.arch = "minigpt4";
    o.vit = d + (fp16 ? "eva_vit_g-fp16.pth" : "eva_vit_g.pth");
    o.qformer = d + "blip2_pretrained_flant5xxl.pth";
    o.llamaModel = d + (fp16 ? "vicuna-fp16" : "vicuna");
    o.ckpt = d + "pretrained_minigpt4.pth";
    o.out = out;
    o.dtype = fp16 ? "float16" : "float32";
    o.imageSize = 32; // the fixture's grid (4x4) times its patch (8)
    o.vitHeads = 4;
    o.qformerHeads = 4;
    return o;
}

mgd::ImportOptions minigptv2Options(const std::string &out, bool fp16 = false) {
    mgd::ImportOptions o;
    const std::string d = kOrig + "minigptv2-tiny-hi/";
    o.arch = "minigptv2";
    o.vit = d + (fp16 ? "eva_vit_g-fp16.pth" : "eva_vit_g.pth");
    o.llamaModel = d + (fp16 ? "llama2-chat-fp16" : "llama2-chat");
    o.ckpt = d + "minigptv2_checkpoint.pth";
    o.out = out;
    o.dtype = fp16 ? "float16" : "float32";
    o.imageSize = 64;
    o.vitHeads = 4;
    return o;
}

std::string errorOf(const mgd::ImportOptions &o) {
    try {
        mgd::importModel(o);
    } catch (const mgd::Error &e) {
        return e.what();
    }
    return "";
}

// name -> tensor of every tensor in a model folder (all shards).
std::map<std::string, at::Tensor> folderTensors(const std::string &dir) {
    std::map<std::string, at::Tensor> out;
    for (const auto &e : fs::directory_iterator(dir)) {
        if (e.path().extension() != ".safetensors") continue;
        mgd::SafetensorsFile f(e.path().string());
        for (const auto &[name, info] : f.tensors()) out[name] = f.load(name);
    }
    return out;
}

std::map<std::string, at::Tensor> referenceWeights(const std::string &name) {
    std::map<std::string, at::Tensor> out;
    mgd::SafetensorsFile f(kData + "/" + name + "/weights.safetensors");
    for (const auto &[n, info] : f.tensors()) out[n] = f.load(n);
    return out;
}

bool folded(const std::string &name) {
    return name.find("q_proj.weight") != std::string::npos || name.find("v_proj.weight") != std::string::npos;
}

// An HF LLaMA folder written from tensors (for the mistakes no fixture shows).
void writeLlmFolder(const std::string &dir, int64_t hidden, int64_t vocab, bool dropNorm) {
    fs::create_directories(dir);
    const int64_t inter = 2 * hidden;
    std::vector<std::pair<std::string, at::Tensor>> t;
    t.emplace_back("model.embed_tokens.weight", at::randn({vocab, hidden}));
    for (int l = 0; l < 2; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        for (const char *n : {"q_proj", "k_proj", "v_proj", "o_proj"})
            t.emplace_back(p + "self_attn." + n + ".weight", at::randn({hidden, hidden}));
        t.emplace_back(p + "mlp.gate_proj.weight", at::randn({inter, hidden}));
        t.emplace_back(p + "mlp.up_proj.weight", at::randn({inter, hidden}));
        t.emplace_back(p + "mlp.down_proj.weight", at::randn({hidden, inter}));
        t.emplace_back(p + "input_layernorm.weight", at::ones({hidden}));
        t.emplace_back(p + "post_attention_layernorm.weight", at::ones({hidden}));
    }
    if (!dropNorm) t.emplace_back("model.norm.weight", at::ones({hidden}));
    t.emplace_back("lm_head.weight", at::randn({vocab, hidden}));
    mgd::writeSafetensors(dir + "/model.safetensors", t);
    nlohmann::json c = {{"model_type", "llama"},          {"hidden_size", hidden},
                        {"intermediate_size", inter},     {"num_hidden_layers", 2},
                        {"num_attention_heads", 4},       {"vocab_size", vocab},
                        {"max_position_embeddings", 256}, {"rms_norm_eps", 1e-5}};
    std::ofstream(dir + "/config.json") << c.dump();
    fs::copy_file(kOrig + "minigptv2-tiny-hi/llama2-chat/tokenizer.model", dir + "/tokenizer.model");
}

} // namespace

class TestImporter : public QObject {
    Q_OBJECT
private slots:
    void minigpt4Fp32IsTheReferenceAndPassesTheCheck();
    void minigptv2Fp32FoldsLoraAndPassesTheCheck();
    void fp16InputsGiveTheFp16RoundedWeights_data();
    void fp16InputsGiveTheFp16RoundedWeights();
    void bf16ImportLoadsWithoutCopies();
    void posEmbedInterpolationMatchesTheOriginal();
    void knownMistakesGetAHint();
    void cancelledImportLeavesNothing();
    void killedImportLeavesNothingThatLoads();
};

void TestImporter::minigpt4Fp32IsTheReferenceAndPassesTheCheck() {
    QTemporaryDir tmp;
    const std::string out = tmp.path().toStdString() + "/m4";
    std::vector<std::string> stages;
    const auto s = mgd::importModel(minigpt4Options(out), [&](const mgd::ImportProgress &p) {
        if (stages.empty() || stages.back() != p.stage) stages.push_back(p.stage);
    });
    QCOMPARE(stages, (std::vector<std::string>{"checking", "hashing", "writing", "done"}));
    const auto ours = folderTensors(out);
    const auto ref = referenceWeights("minigpt4-tiny-hi");
    QCOMPARE(ours.size(), ref.size()); // 103 names
    for (const auto &[name, r] : ref) {
        QVERIFY2(ours.count(name), name.c_str());
        QVERIFY2(at::equal(ours.at(name).to(r.scalar_type()), r), name.c_str()); // bit for bit
    }
    // What the original ignores is listed: the ViT's last block, norm, head; t5_proj; the
    // checkpoint's optimizer and friends.
    auto ignored = [&](const std::string &key) {
        for (const auto &k : s.ignoredKeys)
            if (k.find(key) != std::string::npos) return true;
        return false;
    };
    QVERIFY(ignored("eva_vit_g.pth: blocks.2.attn.qkv.weight"));
    QVERIFY(ignored("eva_vit_g.pth: head.weight"));
    QVERIFY(ignored("t5_proj.weight"));
    QVERIFY(ignored("optimizer"));
    // Provenance: every input with its size and sha256.
    std::ifstream cf(out + "/config.json");
    const auto cfg = nlohmann::json::parse(cf);
    QCOMPARE(cfg["provenance"]["sources"].size(), size_t{6}); // vit, blip2, 2 shards, tokenizer, ckpt
    QCOMPARE(cfg["provenance"]["sources"][0]["sha256"].get<std::string>().size(), size_t{64});
    QCOMPARE(cfg["llm"]["bos"].get<int>(), 1); // from tokenizer.model, not Vicuna's config.json (0)
    QCOMPARE(cfg["llm"]["eos"].get<int>(), 2);

    const auto report = mgd::checkReference(kData + "/minigpt4-tiny-hi", out, 1e-4, "");
    for (const auto &d : report.diffs) QVERIFY2(d.ok, (d.name + " " + d.note).c_str());
    QVERIFY(report.ok());
}

void TestImporter::minigptv2Fp32FoldsLoraAndPassesTheCheck() {
    QTemporaryDir tmp;
    const std::string out = tmp.path().toStdString() + "/v2";
    const auto s = mgd::importModel(minigptv2Options(out));
    const auto ours = folderTensors(out);
    const auto ref = referenceWeights("minigptv2-tiny-hi");
    QCOMPARE(ours.size(), ref.size());
    for (const auto &[name, r] : ref) {
        QVERIFY2(ours.count(name), name.c_str());
        const at::Tensor o = ours.at(name).to(r.scalar_type());
        if (folded(name))
            QVERIFY2((o - r).abs().max().item<double>() <= 1e-6, name.c_str()); // W + alpha/r B A
        else
            QVERIFY2(at::equal(o, r), name.c_str());
    }
    bool noted = false;
    for (const auto &n : s.notes)
        noted = noted || n.find("LoRA folded into 4 projections (r 8, alpha 16") == 0;
    QVERIFY(noted);
    const auto report = mgd::checkReference(kData + "/minigptv2-tiny-hi", out, 1e-4, "");
    for (const auto &d : report.diffs) QVERIFY2(d.ok, (d.name + " " + d.note).c_str());
    QVERIFY(report.ok());
}

void TestImporter::fp16InputsGiveTheFp16RoundedWeights_data() {
    QTest::addColumn<bool>("v2");
    QTest::newRow("minigpt4") << false;
    QTest::newRow("minigptv2") << true;
}

void TestImporter::fp16InputsGiveTheFp16RoundedWeights() {
    QFETCH(bool, v2);
    QTemporaryDir tmp;
    const std::string out = tmp.path().toStdString() + "/half";
    mgd::importModel(v2 ? minigptv2Options(out, true) : minigpt4Options(out, true));
    const auto ours = folderTensors(out);
    const auto ref = referenceWeights(v2 ? "minigptv2-tiny-hi" : "minigpt4-tiny-hi");
    QCOMPARE(ours.size(), ref.size());
    for (const auto &[name, r] : ref) {
        const at::Tensor o = ours.at(name);
        if (r.scalar_type() == at::kLong) {
            QVERIFY(at::equal(o, r));
            continue;
        }
        // fp16 in: the ViT and the LLM files; fp16 out: every matrix.
        const bool fromHalf =
            name.rfind("visual_encoder.", 0) == 0 ||
            (name.rfind("llama_model.", 0) == 0 && name.find("inv_freq") == std::string::npos);
        const at::Tensor want =
            (fromHalf || o.scalar_type() == at::kHalf) ? r.to(at::kHalf).to(at::kFloat) : r;
        const at::Tensor got = o.to(at::kFloat);
        if (name.find("inv_freq") != std::string::npos)
            QVERIFY2(at::allclose(got, r, 1e-6, 0), name.c_str()); // recomputed or copied in fp32
        else if (v2 && folded(name))
            QVERIFY2((got - want).abs().max().item<double>() <= 2e-3, name.c_str()); // fold of an fp16 base
        else
            QVERIFY2(at::equal(got, want), name.c_str());
    }
    // And the folder runs: an fp16 folder computes in fp32 on CPU.
    auto m = mgd::MiniGptModel::load(out);
    QCOMPARE(m->dtype(), at::kFloat);
}

void TestImporter::bf16ImportLoadsWithoutCopies() {
    QTemporaryDir tmp;
    const std::string out = tmp.path().toStdString() + "/bf16";
    auto o = minigpt4Options(out);
    o.dtype = "bfloat16";
    mgd::importModel(o);
    auto m = mgd::MiniGptModel::load(out);
    QCOMPARE(m->dtype(), at::kBFloat16);
    // The stored matrices are bf16 already: the loaded tensor is the mapped file itself.
    auto file = std::make_shared<mgd::SafetensorsFile>(out + "/model-00001-of-00001.safetensors");
    const std::string name = "llama_model.model.layers.0.mlp.down_proj.weight";
    QCOMPARE(std::string(mgd::dtypeName(file->info(name).dtype)), std::string("BF16"));
    at::Tensor v = mgd::SafetensorsFile::view(file, name);
    QVERIFY(v.defined());
    QCOMPARE(v.data_ptr(), const_cast<void *>(file->data(name)));
    // Loading through Weights gives the same no-copy view, in the compute dtype.
    auto w = mgd::Weights::openFolder(out);
    at::Tensor t = w.take(name, {64, 128}, at::kBFloat16);
    at::Tensor again = w.take(name, {64, 128}, at::kBFloat16);
    QCOMPARE(t.data_ptr(), again.data_ptr()); // both views of one mapping
    QVERIFY(at::equal(t, file->load(name)));
    // A dtype override at load time: the same folder in fp32 (copies, converted).
    auto f32 = mgd::MiniGptModel::load(out, "float32");
    QCOMPARE(f32->dtype(), at::kFloat);
}

void TestImporter::posEmbedInterpolationMatchesTheOriginal() {
    mgd::SafetensorsFile f(kOrig + "edge/pos_embed_interp.safetensors");
    const std::vector<std::tuple<std::string, std::string, int64_t>> cases{
        {"in_4x4", "out_8x8", 8}, {"in_4x4_fp16", "out_8x8_from_fp16", 8}, {"in_16x16", "out_32x32", 32}};
    for (const auto &[in, want, grid] : cases) {
        const at::Tensor got = mgd::interpolatePosEmbed(f.load(in), grid);
        const at::Tensor ref = f.load(want).to(at::kFloat);
        QCOMPARE(got.sizes(), ref.sizes());
        QVERIFY2((got - ref).abs().max().item<double>() <= 1e-5, want.c_str());
    }
    // The same grid is returned as it is (in fp32).
    const at::Tensor same = mgd::interpolatePosEmbed(f.load("in_4x4"), 4);
    QVERIFY(at::equal(same, f.load("in_4x4").to(at::kFloat)));
}

void TestImporter::knownMistakesGetAHint() {
    QTemporaryDir tmp;
    const std::string t = tmp.path().toStdString();
    // A MiniGPT-v2 checkpoint imported as MiniGPT-4 (Vicuna): llama_proj takes 4 patches.
    {
        auto o = minigpt4Options(t + "/a");
        o.ckpt = kOrig + "minigptv2-tiny-hi/minigptv2_checkpoint.pth";
        const std::string e = errorOf(o);
        QVERIFY2(e.find("llama_proj.weight") != std::string::npos &&
                     e.find("--arch minigpt4-llama2") != std::string::npos,
                 e.c_str());
    }
    // A MiniGPT-4 (Vicuna) checkpoint imported as LLaMA-2: it needs the Q-Former.
    {
        auto o = minigptv2Options(t + "/b");
        o.arch = "minigpt4-llama2";
        o.ckpt = kOrig + "minigpt4-tiny-hi/pretrained_minigpt4.pth";
        const std::string e = errorOf(o);
        QVERIFY2(e.find("--arch minigpt4") != std::string::npos &&
                     e.find("--q-former-model") != std::string::npos,
                 e.c_str());
    }
    // A checkpoint for a wider LLM than the folder's (13B checkpoint, 7B LLM).
    {
        writeLlmFolder(t + "/narrow-llm", 32, 384, false);
        auto o = minigptv2Options(t + "/c");
        o.llamaModel = t + "/narrow-llm";
        const std::string e = errorOf(o);
        QVERIFY2(e.find("feeds a 64-wide LLM") != std::string::npos && e.find("32 wide") != std::string::npos,
                 e.c_str());
    }
    // Fewer embedding rows than the tokenizer has pieces.
    {
        writeLlmFolder(t + "/small-vocab", 64, 100, false);
        auto o = minigptv2Options(t + "/d");
        o.llamaModel = t + "/small-vocab";
        const std::string e = errorOf(o);
        QVERIFY2(e.find("100 rows") != std::string::npos && e.find("384 pieces") != std::string::npos,
                 e.c_str());
    }
    // More rows than pieces (Vicuna's 32001) works; the extra rows are never produced.
    {
        writeLlmFolder(t + "/big-vocab", 64, 390, false);
        auto o = minigptv2Options(t + "/e");
        o.llamaModel = t + "/big-vocab";
        const auto s = mgd::importModel(o);
        bool noted = false;
        for (const auto &n : s.notes) noted = noted || n.find("6 embedding rows beyond") != std::string::npos;
        QVERIFY(noted);
        QCOMPARE(mgd::MiniGptModel::load(t + "/e")->config().llm.vocabSize, 390);
    }
    // A missing key names itself and where it was looked for.
    {
        writeLlmFolder(t + "/no-norm", 64, 384, true);
        auto o = minigptv2Options(t + "/f");
        o.llamaModel = t + "/no-norm";
        const std::string e = errorOf(o);
        QVERIFY2(e.find("missing tensor 'llama_model.model.norm.weight'") != std::string::npos, e.c_str());
    }
    // Shapes that are not EVA ViT-g's need the head count.
    {
        auto o = minigpt4Options(t + "/g");
        o.vitHeads = 0;
        const std::string e = errorOf(o);
        QVERIFY2(e.find("--vit-heads") != std::string::npos, e.c_str());
    }
    // MiniGPT-4 (Vicuna) without the BLIP-2 file.
    {
        auto o = minigpt4Options(t + "/h");
        o.qformer.clear();
        QVERIFY(errorOf(o).find("--q-former-model") != std::string::npos);
    }
    // A hostile file as the ViT is refused with its name.
    {
        auto o = minigpt4Options(t + "/i");
        o.vit = kOrig + "edge/hostile/global_os_system.pth";
        const std::string e = errorOf(o);
        QVERIFY2(e.find("global_os_system.pth") != std::string::npos, e.c_str());
    }
    // Nothing was left behind by any of them.
    for (const char *d : {"/a", "/b", "/c", "/d", "/f", "/g", "/h", "/i"}) QVERIFY(!fs::exists(t + d));
    for (const auto &e : fs::directory_iterator(t))
        QVERIFY2(e.path().filename().string().find(".importing-") == std::string::npos, e.path().c_str());
}

void TestImporter::cancelledImportLeavesNothing() {
    QTemporaryDir tmp;
    const std::string out = tmp.path().toStdString() + "/cancelled";
    std::atomic<bool> cancel{false};
    bool sawWriting = false;
    std::string error;
    try {
        mgd::importModel(
            minigpt4Options(out),
            [&](const mgd::ImportProgress &p) {
                // Cancel in the middle of writing the shards.
                if (p.stage == "writing" && p.detail.find("layers.1") != std::string::npos) {
                    sawWriting = true;
                    cancel = true;
                }
            },
            &cancel);
    } catch (const mgd::Error &e) {
        error = e.what();
    }
    QVERIFY(sawWriting);
    QCOMPARE(error, std::string("import cancelled"));
    QVERIFY(!fs::exists(out));
    QCOMPARE(std::distance(fs::directory_iterator(tmp.path().toStdString()), fs::directory_iterator()), 0L);
    // The output path is still free: the same import then succeeds.
    mgd::importModel(minigpt4Options(out));
    QVERIFY(mgd::MiniGptModel::load(out) != nullptr);
}

void TestImporter::killedImportLeavesNothingThatLoads() {
    // `minigpt-cli import` killed at moments spread over its run: the output either does not
    // exist or is complete; what a killed run leaves is a hidden folder that never loads, and
    // the next import to that name clears it.
    QTemporaryDir tmp;
    const auto o = minigptv2Options(tmp.path().toStdString() + "/killed");
    const QStringList args{"import",
                           "--arch",
                           "minigptv2",
                           "--vit",
                           QString::fromStdString(o.vit),
                           "--llama-model",
                           QString::fromStdString(o.llamaModel),
                           "--ckpt",
                           QString::fromStdString(o.ckpt),
                           "--out",
                           QString::fromStdString(o.out),
                           "--image-size",
                           "64",
                           "--vit-heads",
                           "4"};
    // How long a whole run takes here, to spread the kills over it.
    QElapsedTimer timer;
    timer.start();
    QProcess full;
    full.start(MGD_CLI, args);
    QVERIFY(full.waitForFinished(60000));
    QCOMPARE(full.exitCode(), 0);
    const qint64 runMs = std::max<qint64>(timer.elapsed(), 20);
    fs::remove_all(o.out);
    int completed = 0, killed = 0;
    for (int i = 0; i < 12; ++i) {
        QProcess p;
        p.start(MGD_CLI, args);
        QVERIFY(p.waitForStarted());
        QThread::msleep(static_cast<unsigned long>(runMs * i / 12));
        p.kill();
        p.waitForFinished();
        if (fs::exists(o.out)) {
            ++completed; // finished before the kill: then it is whole
            QVERIFY(mgd::MiniGptModel::load(o.out) != nullptr);
            fs::remove_all(o.out);
        } else {
            ++killed;
        }
        for (const auto &e : fs::directory_iterator(tmp.path().toStdString())) {
            QVERIFY(e.path().filename().string().rfind(".killed.importing-", 0) == 0);
            bool refused = false;
            try {
                mgd::MiniGptModel::load(e.path().string());
            } catch (const mgd::Error &) {
                refused = true;
            }
            QVERIFY2(refused, e.path().c_str());
        }
    }
    QVERIFY(killed > 0);
    // The next import removes the leftovers of the killed ones.
    mgd::importModel(o);
    for (const auto &e : fs::directory_iterator(tmp.path().toStdString()))
        QCOMPARE(e.path().filename().string(), std::string("killed"));
    qInfo("%d runs killed, %d finished first", killed, completed);
}

QTEST_GUILESS_MAIN(TestImporter)
#include "test_importer.moc"
