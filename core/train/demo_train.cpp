#include "core/train/demo_train.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#ifdef MGD_WITH_OPENCV
// OpenCV 4.6 headers trip a C++20 deprecation warning.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-enum-enum-conversion"
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#pragma GCC diagnostic pop
#endif
#include <sstream>
#include <thread>

#include "core/image/preprocess.h"
#include "core/model/minigpt_model.h"
#include "core/model/random_model.h"
#include "core/model/safetensors.h"
#include "core/model/tokenizer.h"
#include "core/runtime/engine.h"
#include "core/runtime/prompt_template.h"
#include "core/util/error.h"

namespace mgd::demo {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Named = std::vector<std::pair<std::string, at::Tensor>>;

namespace {

double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

uint64_t mix(uint64_t a, uint64_t b) {
    DemoRng r(a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull));
    return r.next();
}

// ---------------------------------------------------------------- tokenizer
// The text exactly as the prompt template renders it, split where the image goes.
void writeCorpus(const std::string &path, const ModelConfig &cfg, uint64_t seed, int samples) {
    std::ofstream f(path);
    DemoGenerator g(mix(seed, 0x70C));
    for (int i = 0; i < samples; ++i) {
        DemoSample s = g.sample(g.randomType(), -1);
        std::vector<ChatMessage> msgs;
        for (size_t t = 0; t < s.turns.size(); ++t) {
            ChatMessage u;
            u.text = s.turns[t].question;
            if (t == 0) u.images = {0};
            msgs.push_back(u);
            ChatMessage a;
            a.fromUser = false;
            a.text = s.turns[t].answer;
            if (t + 1 < s.turns.size()) msgs.push_back(a);
        }
        std::string text = promptText(cfg, msgs) + s.turns.back().answer + "###";
        const size_t at = text.find("<ImageHere>");
        f << text.substr(0, at) << "\n" << text.substr(at + 11) << "\n";
    }
    if (!f) throw Error("cannot write '" + path + "'");
}

void trainTokenizer(const std::string &dir, const ModelConfig &cfg, uint64_t seed, int vocab) {
    fs::create_directories(dir);
    const std::string corpus = dir + "/corpus.txt";
    writeCorpus(corpus, cfg, seed, 20000);
    // LLaMA's flags: BPE, byte fallback, split digits, identity normaliser, unk 0 / bos 1 / eos 2.
    const std::string cmd = "spm_train --input=" + corpus + " --model_prefix=" + dir + "/spm --vocab_size=" +
                            std::to_string(vocab) +
                            " --model_type=bpe --byte_fallback=true --split_digits=true"
                            " --normalization_rule_name=identity --remove_extra_whitespaces=false"
                            " --add_dummy_prefix=true --allow_whitespace_only_pieces=true"
                            " --user_defined_symbols=###"
                            " --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 --character_coverage=1.0"
                            " --num_threads=1 --minloglevel=2 > " + dir + "/spm_train.log 2>&1";
    if (std::system(cmd.c_str()) != 0)
        throw Error("spm_train failed (is the 'sentencepiece' package installed?); see " + dir + "/spm_train.log");
}

// ---------------------------------------------------------------- sequences
struct Sequence {
    std::vector<int64_t> ids;
    std::vector<char> train; // predict this token
    std::vector<char> image; // an image-token slot
};

Sequence encodeSample(const MiniGptModel &m, const DemoSample &s, const std::vector<int32_t> &sepIds) {
    const Tokenizer &tok = m.tokenizer();
    std::vector<ChatMessage> msgs;
    for (size_t t = 0; t < s.turns.size(); ++t) {
        ChatMessage u;
        u.text = s.turns[t].question;
        if (t == 0) u.images = {0};
        msgs.push_back(u);
        if (t + 1 < s.turns.size()) {
            ChatMessage a;
            a.fromUser = false;
            a.answerIds = tok.encode(s.turns[t].answer, false, false);
            msgs.push_back(a);
        }
    }
    // Exactly what the engine feeds: renderPrompt + tokenizeChunks, answers as generated ids.
    std::vector<PromptChunk> chunks = renderPrompt(m.config(), msgs);
    tokenizeChunks(tok, chunks);
    Sequence q;
    auto add = [&](int64_t id, bool train, bool image) {
        q.ids.push_back(id);
        q.train.push_back(train);
        q.image.push_back(image);
    };
    const int nImg = m.config().imageTokens();
    for (const PromptChunk &c : chunks) {
        if (c.kind == PromptChunk::Kind::Image) {
            for (int i = 0; i < nImg; ++i) add(0, false, true);
            continue;
        }
        const bool isAnswer = c.kind == PromptChunk::Kind::Ids;
        // After an answer the model must write the separator: train on it.
        size_t sep = 0;
        if (c.continuation && c.ids.size() >= sepIds.size() &&
            std::equal(sepIds.begin(), sepIds.end(), c.ids.begin()))
            sep = sepIds.size();
        for (size_t i = 0; i < c.ids.size(); ++i) add(c.ids[i], isAnswer || i < sep, false);
    }
    for (int32_t id : tok.encode(s.turns.back().answer + "###", false, false)) add(id, true, false);
    return q;
}

at::Tensor pixelsOf(const RgbImage &img, const ModelConfig &c) {
    PreprocessParams pp;
    pp.size = c.vision.imageSize;
    pp.mean = c.imageMean;
    pp.std = c.imageStd;
    return preprocessImage(img, pp);
}

// ---------------------------------------------------------------- optimiser
// AdamW (decoupled weight decay), its state saved with the checkpoints.
struct AdamW {
    std::vector<std::string> names;
    std::vector<at::Tensor> params, m, v;
    std::vector<double> decay;
    int64_t t = 0;
    double b1 = 0.9, b2 = 0.98, eps = 1e-8;

    void add(const std::string &name, const at::Tensor &p, double wd) {
        names.push_back(name);
        params.push_back(p);
        m.push_back(at::zeros_like(p));
        v.push_back(at::zeros_like(p));
        decay.push_back(p.dim() >= 2 ? wd : 0.0);
    }
    double clipGrads(double maxNorm) {
        double total = 0;
        for (auto &p : params)
            if (p.grad().defined()) total += p.grad().pow(2).sum().item<double>();
        total = std::sqrt(total);
        if (total > maxNorm)
            for (auto &p : params)
                if (p.grad().defined()) p.mutable_grad().mul_(maxNorm / (total + 1e-6));
        return total;
    }
    void step(double lr) {
        at::NoGradGuard ng;
        ++t;
        const double bc1 = 1 - std::pow(b1, double(t)), bc2 = 1 - std::pow(b2, double(t));
        for (size_t i = 0; i < params.size(); ++i) {
            at::Tensor &p = params[i];
            if (!p.grad().defined()) continue;
            const at::Tensor g = p.grad();
            if (decay[i] > 0) p.mul_(1 - lr * decay[i]);
            m[i].mul_(b1).add_(g, 1 - b1);
            v[i].mul_(b2).addcmul_(g, g, 1 - b2);
            p.addcdiv_(m[i], (v[i] / bc2).sqrt_().add_(eps), -lr / bc1);
            p.mutable_grad() = at::Tensor();
        }
    }
    Named state() const {
        Named out;
        for (size_t i = 0; i < params.size(); ++i) {
            out.emplace_back("m." + names[i], m[i]);
            out.emplace_back("v." + names[i], v[i]);
        }
        return out;
    }
    void load(const std::string &path) {
        SafetensorsFile f(path);
        at::NoGradGuard ng;
        for (size_t i = 0; i < params.size(); ++i) {
            m[i].copy_(f.load("m." + names[i]));
            v[i].copy_(f.load("v." + names[i]));
        }
    }
};

double cosineLr(double base, double frac, double warm) {
    if (frac < warm) return base * std::max(frac / warm, 0.02);
    const double x = std::min(1.0, (frac - warm) / (1 - warm));
    return base * (0.02 + 0.98 * 0.5 * (1 + std::cos(M_PI * x)));
}

// ---------------------------------------------------------------- model set-up
Named byName(const Named &all, const std::string &name) {
    Named out;
    for (auto &p : all)
        if (p.first == name) out.push_back(p);
    return out;
}

at::Tensor param(const Named &all, const std::string &name) {
    for (auto &p : all)
        if (p.first == name) return p.second;
    throw Error("demo trainer: no parameter '" + name + "'");
}

bool endsWith(const std::string &s, const std::string &e) {
    return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0;
}

// Fresh-model initialisation of the vision half. Xavier weights (with GPT's 0.02 the Q-Former
// output hardly depends on the image: spike 1). And a cell prior through initial values
// only: patch j's position embedding and query j share a one-hot direction that the
// cross-attention query/key maps start out matching, so query j first looks at cell j.
void initVision(const MiniGptModel &m, uint64_t seed) {
    at::NoGradGuard ng;
    at::manual_seed(seed);
    const Named vp = m.visionParameters();
    for (auto &[name, t] : vp) {
        if (t.dim() == 2 && endsWith(name, ".weight")) {
            const double a = std::sqrt(6.0 / double(t.size(0) + t.size(1)));
            t.uniform_(-a, a);
        }
        if (endsWith(name, "patch_embed.proj.weight")) {
            const double fanIn = double(t.size(1) * t.size(2) * t.size(3));
            const double a = std::sqrt(6.0 / (fanIn + double(t.size(0))));
            t.uniform_(-a, a);
        }
    }
    const int cells = kCells;
    at::Tensor pos = param(vp, "visual_encoder.pos_embed"); // [1, 1 + 9, W]
    at::Tensor qt = param(vp, "query_tokens");               // [1, 9, H]
    for (int j = 0; j < cells; ++j) {
        pos[0][1 + j][j].add_(4.0);
        qt[0][j].mul_(0.1);
        qt[0][j][j].add_(1.0);
    }
    const ModelConfig &c = m.config();
    for (int l = 0; l < c.qformer->layers; ++l) {
        const std::string pre = "Qformer.bert.encoder.layer." + std::to_string(l) + ".crossattention.self.";
        if (byName(vp, pre + "query.weight").empty()) continue;
        at::Tensor qw = param(vp, pre + "query.weight"), kw = param(vp, pre + "key.weight");
        for (int j = 0; j < cells; ++j) {
            qw[j][j].add_(1.0);
            kw[j][j].add_(1.0);
        }
    }
}

// Stage-1 auxiliary heads on the Q-Former outputs (trainer-only, dropped after stage 1):
// query i < 9 -> cell i: present(2) / shape(4) / colour(8) / size(2); count(5) from the mean.
struct AuxHeads {
    at::Tensor cellW, cellB, countW, countB;
    explicit AuxHeads(int64_t d) {
        const double a = 1.0 / std::sqrt(double(d));
        cellW = at::empty({2 + kShapes + kColors + kSizes, d}).uniform_(-a, a);
        cellB = at::zeros({2 + kShapes + kColors + kSizes});
        countW = at::empty({5, d}).uniform_(-a, a);
        countB = at::zeros({5});
    }
    Named named() const {
        return {{"aux.cell.weight", cellW}, {"aux.cell.bias", cellB}, {"aux.count.weight", countW}, {"aux.count.bias", countB}};
    }
};

struct SceneTargets {
    at::Tensor present, shape, color, size, count; // [B, 9] x4 (-100 where empty), [B]
};

SceneTargets targetsOf(const std::vector<Scene> &scenes) {
    const int64_t B = int64_t(scenes.size());
    SceneTargets t;
    t.present = at::zeros({B, kCells}, at::kLong);
    t.shape = at::full({B, kCells}, -100, at::kLong);
    t.color = at::full({B, kCells}, -100, at::kLong);
    t.size = at::full({B, kCells}, -100, at::kLong);
    t.count = at::zeros({B}, at::kLong);
    auto P = t.present.accessor<int64_t, 2>(), S = t.shape.accessor<int64_t, 2>(),
         C = t.color.accessor<int64_t, 2>(), Z = t.size.accessor<int64_t, 2>();
    auto N = t.count.accessor<int64_t, 1>();
    for (int64_t b = 0; b < B; ++b) {
        N[b] = int64_t(scenes[b].objects.size());
        for (const auto &o : scenes[b].objects) {
            P[b][o.cell] = 1;
            S[b][o.cell] = o.shape;
            C[b][o.cell] = o.color;
            Z[b][o.cell] = o.size;
        }
    }
    return t;
}

struct AuxOut {
    at::Tensor present, shape, color, size, count;
};

AuxOut auxForward(const AuxHeads &h, const at::Tensor &q) {
    at::Tensor cell = at::linear(q.narrow(1, 0, kCells), h.cellW, h.cellB); // [B, 9, 16]
    AuxOut o;
    o.present = cell.narrow(-1, 0, 2);
    o.shape = cell.narrow(-1, 2, kShapes);
    o.color = cell.narrow(-1, 2 + kShapes, kColors);
    o.size = cell.narrow(-1, 2 + kShapes + kColors, kSizes);
    o.count = at::linear(q.mean(1), h.countW, h.countB);
    return o;
}

at::Tensor ce(const at::Tensor &logits, const at::Tensor &target) {
    return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), target.reshape({-1}), {},
                                  at::Reduction::Mean, -100, 0.0);
}

at::Tensor auxLoss(const AuxOut &o, const SceneTargets &t) {
    return ce(o.present, t.present) + ce(o.shape, t.shape) + ce(o.color, t.color) + ce(o.size, t.size) +
           ce(o.count, t.count);
}

// ---------------------------------------------------------------- checkpoints
struct State {
    int stage = 1;        // 1, 2, or 3 (done)
    int64_t step = 0;     // steps done in this stage
    double seconds = 0;   // training seconds spent in this stage
    double stage1Seconds = 0, stage2Seconds = 0;
    int64_t adamT = 0;
};

void saveModelFolder(const MiniGptModel &m, const std::string &dir, const std::string &tokenizer) {
    fs::create_directories(dir);
    writeSafetensors(dir + "/weights.safetensors.tmp", m.stateDict());
    fs::rename(dir + "/weights.safetensors.tmp", dir + "/weights.safetensors");
    std::ofstream(dir + "/config.json") << m.config().toJsonText();
    if (fs::absolute(tokenizer) != fs::absolute(dir + "/tokenizer.model"))
        fs::copy_file(tokenizer, dir + "/tokenizer.model", fs::copy_options::overwrite_existing);
}

void saveCheckpoint(const std::string &ck, const MiniGptModel &m, const AuxHeads &aux, const AdamW &opt,
                    const State &st, const std::string &tokenizer) {
    // The model first, the state last: a crash in between leaves the previous state, which
    // only repeats a little training.
    saveModelFolder(m, ck + "/model", tokenizer);
    writeSafetensors(ck + "/aux.safetensors", aux.named());
    writeSafetensors(ck + "/adam.safetensors", opt.state());
    nlohmann::json j = {{"stage", st.stage},          {"step", st.step},
                        {"seconds", st.seconds},      {"stage1_seconds", st.stage1Seconds},
                        {"stage2_seconds", st.stage2Seconds}, {"adam_t", opt.t}};
    std::ofstream(ck + "/state.json.tmp") << j.dump(1);
    fs::rename(ck + "/state.json.tmp", ck + "/state.json");
}

bool loadState(const std::string &ck, State &st) {
    std::ifstream f(ck + "/state.json");
    if (!f) return false;
    nlohmann::json j;
    f >> j;
    st.stage = j["stage"];
    st.step = j["step"];
    st.seconds = j["seconds"];
    st.stage1Seconds = j["stage1_seconds"];
    st.stage2Seconds = j["stage2_seconds"];
    st.adamT = j["adam_t"];
    return true;
}

// Batches are made on a second thread while the previous step trains; each one is drawn
// from (seed, stage, step) alone, so a resumed run sees the same data.
struct Batch1 {
    std::vector<Scene> scenes;
    at::Tensor pixels;
};

Batch1 makeBatch1(const ModelConfig &cfg, uint64_t seed, int64_t step, int B) {
    DemoGenerator g(mix(seed, 100000000ull + uint64_t(step)));
    Batch1 b;
    std::vector<at::Tensor> px;
    for (int i = 0; i < B; ++i) {
        b.scenes.push_back(g.randomScene(1 + g.rng().below(4)));
        const int u = g.rng().below(20);
        px.push_back(pixelsOf(g.render(b.scenes.back(), u < 12 ? 96 : u < 17 ? 192 : 288), cfg));
    }
    b.pixels = at::cat(px);
    return b;
}

struct Batch2 {
    at::Tensor pixels, ids, tgt, img; // [B,3,S,S], [B,L], [B,L] (-100: no loss), [B,L] image slots
};

Batch2 makeBatch2(const MiniGptModel &m, const std::vector<int32_t> &sepIds, uint64_t seed, int64_t step, int B) {
    DemoGenerator g(mix(seed, 200000000ull + uint64_t(step)));
    std::vector<Sequence> seqs;
    std::vector<at::Tensor> px;
    size_t L = 0;
    for (int i = 0; i < B; ++i) {
        DemoSample s = g.sample(g.randomType());
        seqs.push_back(encodeSample(m, s, sepIds));
        px.push_back(pixelsOf(s.image, m.config()));
        L = std::max(L, seqs.back().ids.size());
    }
    Batch2 b;
    b.pixels = at::cat(px);
    b.ids = at::zeros({B, int64_t(L)}, at::kLong);
    b.tgt = at::full({B, int64_t(L)}, -100, at::kLong);
    b.img = at::zeros({B, int64_t(L)}, at::kBool);
    auto I = b.ids.accessor<int64_t, 2>(), T = b.tgt.accessor<int64_t, 2>();
    auto M = b.img.accessor<bool, 2>();
    for (int64_t k = 0; k < B; ++k) {
        const Sequence &q = seqs[k];
        for (size_t p = 0; p < q.ids.size(); ++p) {
            I[k][p] = q.ids[p];
            M[k][p] = q.image[p];
            if (p > 0 && q.train[p]) T[k][p - 1] = q.ids[p]; // logits at p-1 predict token p
        }
    }
    return b;
}

// A step's time, except that a step that took far longer than usual (the process was
// paused with SIGSTOP by a benchmark, or starved) counts as an average one.
double stepSeconds(double dt, const State &st) {
    if (st.step < 20 || st.seconds <= 0) return dt;
    const double avg = st.seconds / double(st.step);
    return dt > 5 * avg ? avg : dt;
}

std::string bar(double frac) {
    const int n = 24, k = std::clamp(int(frac * n + 0.5), 0, n);
    return "[" + std::string(k, '#') + std::string(n - k, '.') + "]";
}

// Stage-1 probe: per-object attribute accuracy of the aux heads on held-out scenes.
std::string probe(const MiniGptModel &m, const AuxHeads &aux, uint64_t seed, int n) {
    at::NoGradGuard ng;
    DemoGenerator g(mix(seed, 0xE7A1));
    std::vector<Scene> scenes;
    std::vector<at::Tensor> px;
    for (int i = 0; i < n; ++i) {
        scenes.push_back(g.randomScene(1 + g.rng().below(4)));
        px.push_back(pixelsOf(g.render(scenes.back(), i % 3 == 0 ? 192 : 96), m.config()));
    }
    VisionTrace tr;
    m.encodeImage(at::cat(px), &tr);
    const AuxOut o = auxForward(aux, tr.qformerOut);
    const SceneTargets t = targetsOf(scenes);
    const at::Tensor has = t.present == 1;
    auto acc = [&](const at::Tensor &lo, const at::Tensor &tg) {
        return (lo.argmax(-1) == tg).masked_select(has).to(at::kFloat).mean().item<double>();
    };
    const at::Tensor pOk = o.present.argmax(-1) == t.present;
    const at::Tensor cellOk = pOk & (has.logical_not() | ((o.shape.argmax(-1) == t.shape) &
                                                          (o.color.argmax(-1) == t.color) &
                                                          (o.size.argmax(-1) == t.size)));
    char buf[256];
    std::snprintf(buf, sizeof buf, "present %.3f shape %.3f color %.3f size %.3f count %.3f scene_all %.3f",
                  pOk.to(at::kFloat).mean().item<double>(), acc(o.shape, t.shape), acc(o.color, t.color),
                  acc(o.size, t.size), (o.count.argmax(-1) == t.count).to(at::kFloat).mean().item<double>(),
                  cellOk.all(1).to(at::kFloat).mean().item<double>());
    return buf;
}

} // namespace

// ---------------------------------------------------------------- public
ModelConfig demoModelConfig(int vocabSize) {
    ModelConfig c;
    c.name = "minigpt-desk-demo";
    c.arch = Architecture::MiniGPT4;
    c.vision = VisionConfig{96, 32, 128, 4, 4, 512, 1e-6, 1e-5};
    c.qformer = QFormerConfig{128, 2, 4, 512, 1e-12, 1, kCells};
    c.projIn = 128;
    c.llm.vocabSize = vocabSize;
    c.llm.hidden = 128;
    c.llm.intermediate = 384;
    c.llm.layers = 3;
    c.llm.heads = 4;
    c.llm.kvHeads = 4;
    c.llm.rmsEps = 1e-6;
    c.llm.maxPositions = 512;
    c.promptTemplate = PromptTemplate::Vicuna0;
    applyTemplateDefaults(c);
    return c;
}

int EvalReport::allCorrect() const {
    int n = 0;
    for (int x : correct) n += x;
    return n;
}
int EvalReport::allTotal() const {
    int n = 0;
    for (int x : total) n += x;
    return n;
}

std::string EvalReport::table() const {
    std::ostringstream s;
    char buf[128];
    for (int t = 0; t < kTypes; ++t) {
        std::snprintf(buf, sizeof buf, "  %-9s %5.1f%%  (%d/%d)\n", typeName(QType(t)), 100 * accuracy(t), correct[t], total[t]);
        s << buf;
    }
    std::snprintf(buf, sizeof buf, "  %-9s %5.1f%%  (%d/%d)\n", "overall", 100 * overall(), allCorrect(), allTotal());
    s << buf;
    return s.str();
}

EvalReport evaluateDemoModel(const std::string &modelDir, int questions, uint64_t seed, int threads) {
    EngineSettings es;
    es.threads = threads;
    es.featureCache = false; // nothing on disk, and every image is new anyway
    es.responseCache = false;
    Engine e(es);
    e.loadModel(modelDir);
    DemoGenerator g(mix(seed, 0xE7A1));
    EvalReport r;
    for (int i = 0; i < questions; ++i) {
        const DemoSample s = g.sample(QType(i % kTypes));
        const int conv = e.newConversation();
        bool ok = true;
        for (size_t t = 0; t < s.turns.size(); ++t) {
            TurnRequest req;
            req.text = s.turns[t].question;
            if (t == 0) req.images.push_back(ImageInput{"", {}, std::make_shared<RgbImage>(s.image), "demo"});
            req.sampling.greedy = true;
            req.sampling.repetitionPenalty = 1.0f;
            req.sampling.maxNewTokens = 96;
            const TurnResult res = e.submitTurn(conv, req);
            if (res.answer != s.turns[t].answer) {
                ok = false;
                r.errors.push_back(std::string(typeName(s.type)) + " | " + s.turns[t].question + " | " +
                                   s.turns[t].answer + " | " + res.answer);
            }
        }
        e.deleteConversation(conv);
        r.total[int(s.type)]++;
        r.correct[int(s.type)] += ok;
    }
    return r;
}

int trainDemo(const TrainOptions &o) {
    if (o.out.empty()) throw Error("train-demo: --out DIR is required");
    const auto wall0 = Clock::now();
    at::set_num_threads(o.threads);
    const std::string out = fs::absolute(o.out).string(), ck = out + "/ckpt", tokDir = ck + "/tokenizer";
    fs::create_directories(ck);
    const std::string tokenizer = tokDir + "/spm.model";
    if (!fs::exists(tokenizer)) {
        std::printf("[tokenizer] training SentencePiece BPE (vocab %d) on generated text...\n", o.vocabSize);
        std::fflush(stdout);
        trainTokenizer(tokDir, demoModelConfig(o.vocabSize), o.seed, o.vocabSize);
    }
    const int vocab = Tokenizer::fromFile(tokenizer).vocabSize();

    State st;
    std::unique_ptr<MiniGptModel> model;
    const bool resumed = loadState(ck, st);
    if (resumed) {
        model = MiniGptModel::load(ck + "/model");
        std::printf("[resume] stage %d, step %lld, %.0f s into the stage\n", st.stage, (long long)st.step, st.seconds);
    } else {
        writeRandomModel(ck + "/model", demoModelConfig(vocab), tokenizer, o.seed, 0.02);
        model = MiniGptModel::load(ck + "/model");
        initVision(*model, o.seed);
    }
    MiniGptModel &m = *model;
    const ModelConfig &cfg = m.config();
    const std::vector<int32_t> sepIds = m.tokenizer().encode("###", false, false);
    {
        int64_t n = 0;
        for (auto &p : m.stateDict()) n += p.second.numel();
        std::printf("[model] %s: %.2fM parameters (%.1f MB fp32), vocab %d, %d image tokens\n", cfg.name.c_str(),
                    n / 1e6, n * 4 / 1e6, vocab, cfg.imageTokens());
    }
    {
        // The stop string must tokenize on its own after an answer, or the ids the engine keeps
        // (those before the stop) would differ from what training fed.
        DemoGenerator g(mix(o.seed, 0x5E9));
        int bad = 0;
        size_t len = 0;
        const auto &tok = m.tokenizer();
        for (int i = 0; i < 300; ++i) {
            DemoSample s = g.sample(g.randomType(), -1);
            for (const auto &t : s.turns) {
                std::vector<int32_t> a = tok.encode(t.answer, false, false);
                a.insert(a.end(), sepIds.begin(), sepIds.end());
                bad += a != tok.encode(t.answer + "###", false, false);
            }
            len += encodeSample(m, s, sepIds).ids.size();
        }
        std::printf("[data] mean sequence %.1f tokens; answers whose '###' merges with the text: %d of 300+\n",
                    len / 300.0, bad);
    }
    const double budget = o.minutes * 60, b1 = budget * o.stage1Share, b2 = budget - b1;
    AuxHeads aux(cfg.qformer->hidden);
    if (resumed && fs::exists(ck + "/aux.safetensors")) {
        SafetensorsFile f(ck + "/aux.safetensors");
        for (auto &[name, t] : aux.named()) t.copy_(f.load(name));
    }
    const Named vision = m.visionParameters(), language = m.languageParameters();
    const int64_t W = cfg.vision.width;

    // ---------------- stage 1: ViT + Q-Former with the auxiliary heads
    if (st.stage == 1) {
        AdamW opt;
        for (auto &[n, t] : vision) opt.add(n, t.requires_grad_(true), 0.05);
        for (auto &[n, t] : aux.named()) opt.add(n, t.requires_grad_(true), 0.05);
        if (resumed && st.adamT > 0) {
            opt.load(ck + "/adam.safetensors");
            opt.t = st.adamT;
        }
        double lastCk = st.seconds, lastEval = st.seconds, lastLog = st.seconds, ema = -1;
        std::future<Batch1> next;
        std::printf("[stage 1] vision + Q-Former with auxiliary per-cell heads, %.1f min budget\n", b1 / 60);
        while (st.seconds < b1) {
            const auto t0 = Clock::now();
            const double lr = cosineLr(o.lr1, st.seconds / b1, 0.05);
            static double waitSeconds = 0, fwdSeconds = 0, bwdSeconds = 0;
            if (!next.valid()) next = std::async(std::launch::async, makeBatch1, std::cref(cfg), o.seed, st.step, o.batch1);
            Batch1 batch = next.get();
            next = std::async(std::launch::async, makeBatch1, std::cref(cfg), o.seed, st.step + 1, o.batch1);
            waitSeconds += secondsSince(t0);
            VisionTrace tr;
            m.encodeImage(batch.pixels, &tr);
            at::Tensor loss = auxLoss(auxForward(aux, tr.qformerOut), targetsOf(batch.scenes));
            const auto tb = Clock::now();
            fwdSeconds += std::chrono::duration<double>(tb - t0).count();
            loss.backward();
            bwdSeconds += secondsSince(tb);
            for (auto &[n, t] : vision) // keep the ViT's k bias at zero (it is not a parameter)
                if (endsWith(n, "attn.qkv_bias") && t.grad().defined()) t.mutable_grad().narrow(0, W, W).zero_();
            opt.clipGrads(1.0);
            opt.step(lr);
            const double l = loss.item<double>();
            ema = ema < 0 ? l : 0.95 * ema + 0.05 * l;
            st.step++;
            st.seconds += stepSeconds(secondsSince(t0), st);
            if (st.seconds - lastLog >= 20 || st.seconds >= b1) {
                lastLog = st.seconds;
                std::printf("[stage 1] %s %3.0f%% step %lld loss %.4f lr %.2e %.2f it/s (waiting for data %.0f%%)\n",
                            bar(st.seconds / b1).c_str(), 100 * std::min(1.0, st.seconds / b1), (long long)st.step, ema,
                            lr, st.step / st.seconds, 100 * waitSeconds / st.seconds);
                std::printf("   data+fwd %.2f s bwd %.2f s per step\n", fwdSeconds / st.step, bwdSeconds / st.step);
                std::fflush(stdout);
            }
            if (st.seconds - lastEval >= o.evalEverySeconds || st.seconds >= b1) {
                lastEval = st.seconds;
                std::printf("  [probe @ %.0f s] %s\n", st.seconds, probe(m, aux, o.seed, 384).c_str());
                std::fflush(stdout);
            }
            if (st.seconds - lastCk >= o.checkpointEverySeconds) {
                lastCk = st.seconds;
                saveCheckpoint(ck, m, aux, opt, st, tokenizer);
            }
        }
        if (next.valid()) next.wait();
        st.stage1Seconds = st.seconds;
        st.stage = 2;
        st.step = 0;
        st.seconds = 0;
        opt.t = 0;
        saveCheckpoint(ck, m, aux, AdamW{}, st, tokenizer);
        std::printf("[stage 1] done in %.1f min\n", st.stage1Seconds / 60);
    }
    for (auto &[n, t] : vision) t.requires_grad_(false);
    for (auto &[n, t] : aux.named()) t.requires_grad_(false);

    // ---------------- stage 2: projector + LLM on the Q&A, vision frozen
    if (st.stage == 2) {
        AdamW opt;
        for (auto &[n, t] : language) opt.add(n, t.requires_grad_(true), 0.05);
        if (resumed && st.adamT > 0 && st.step > 0) {
            opt.load(ck + "/adam.safetensors");
            opt.t = st.adamT;
        }
        double lastCk = st.seconds, lastEval = st.seconds, lastLog = st.seconds, ema = -1;
        std::future<Batch2> next;
        std::printf("[stage 2] projector + LLaMA on Q&A (vision frozen), %.1f min budget\n", b2 / 60);
        const int64_t D = cfg.llm.hidden;
        while (st.seconds < b2) {
            const auto t0 = Clock::now();
            const double lr = cosineLr(o.lr2, st.seconds / b2, 0.03);
            if (!next.valid())
                next = std::async(std::launch::async, makeBatch2, std::cref(m), std::cref(sepIds), o.seed, st.step, o.batch2);
            Batch2 batch = next.get();
            next = std::async(std::launch::async, makeBatch2, std::cref(m), std::cref(sepIds), o.seed, st.step + 1, o.batch2);
            const int64_t B = batch.ids.size(0), L = batch.ids.size(1);
            at::Tensor imgTok = m.encodeImage(batch.pixels); // [B, 9, D]; grad only via llama_proj
            at::Tensor emb = m.llm().embed(batch.ids.reshape({-1})).reshape({B, L, D});
            emb = emb.masked_scatter(batch.img.unsqueeze(-1), imgTok.contiguous());
            at::Tensor logits = m.llm().forwardTrain(emb);
            at::Tensor loss = ce(logits, batch.tgt);
            loss.backward();
            opt.clipGrads(1.0);
            opt.step(lr);
            const double l = loss.item<double>();
            ema = ema < 0 ? l : 0.98 * ema + 0.02 * l;
            st.step++;
            st.seconds += stepSeconds(secondsSince(t0), st);
            if (st.seconds - lastLog >= 20 || st.seconds >= b2) {
                lastLog = st.seconds;
                std::printf("[stage 2] %s %3.0f%% step %lld loss %.4f lr %.2e %.2f it/s\n", bar(st.seconds / b2).c_str(),
                            100 * std::min(1.0, st.seconds / b2), (long long)st.step, ema, lr, st.step / st.seconds);
                std::fflush(stdout);
            }
            const bool ckNow = st.seconds - lastCk >= o.checkpointEverySeconds;
            const bool evalNow = st.seconds - lastEval >= o.evalEverySeconds;
            if (ckNow || evalNow) {
                lastCk = st.seconds;
                st.adamT = opt.t;
                saveCheckpoint(ck, m, aux, opt, st, tokenizer);
            }
            if (evalNow) {
                lastEval = st.seconds;
                const auto te = Clock::now();
                const EvalReport r = evaluateDemoModel(ck + "/model", o.evalQuestions, o.seed + 7, o.threads);
                std::printf("  [eval @ %.0f s, %d questions, %.0f s] overall %.1f%%:", st.seconds, r.allTotal(),
                            secondsSince(te), 100 * r.overall());
                for (int t = 0; t < kTypes; ++t) std::printf(" %s %.0f%%", typeName(QType(t)), 100 * r.accuracy(t));
                std::printf("\n");
                std::fflush(stdout);
                at::set_num_threads(o.threads);
            }
        }
        if (next.valid()) next.wait();
        st.stage2Seconds = st.seconds;
        st.stage = 3;
        saveCheckpoint(ck, m, aux, opt, st, tokenizer);
        std::printf("[stage 2] done in %.1f min\n", st.stage2Seconds / 60);
    }

    // ---------------- the model folder, examples, final evaluation
    saveModelFolder(m, out, tokenizer);
#ifdef MGD_WITH_OPENCV
    fs::create_directories(out + "/examples");
    DemoGenerator eg(mix(o.seed, 0xE4A));
    for (int i = 0; i < 6; ++i) {
        const RgbImage im = eg.render(eg.randomScene(1 + i % 4), 288);
        cv::Mat bgr(im.height, im.width, CV_8UC3);
        for (int k = 0; k < im.width * im.height; ++k)
            bgr.data[3 * k] = im.rgb[3 * k + 2], bgr.data[3 * k + 1] = im.rgb[3 * k + 1], bgr.data[3 * k + 2] = im.rgb[3 * k];
        cv::imwrite(out + "/examples/example" + std::to_string(i + 1) + ".png", bgr);
    }
#endif
    std::printf("[done] model in %s: stage 1 %.1f min, stage 2 %.1f min, wall %.1f min\n", out.c_str(),
                st.stage1Seconds / 60, st.stage2Seconds / 60, secondsSince(wall0) / 60);
    const EvalReport r = evaluateDemoModel(out, 350, o.seed + 11, o.threads);
    std::printf("[final eval] %d held-out questions:\n%s", r.allTotal(), r.table().c_str());
    return 0;
}

// ---------------------------------------------------------------- CLI
namespace {

struct Args {
    std::map<std::string, std::string> kv;
    std::string get(const std::string &k, const std::string &def) const {
        auto it = kv.find(k);
        return it == kv.end() ? def : it->second;
    }
    double num(const std::string &k, double def) const {
        auto it = kv.find(k);
        if (it == kv.end()) return def;
        try {
            return std::stod(it->second);
        } catch (const std::exception &) {
            throw Error("option " + k + ": '" + it->second + "' is not a number");
        }
    }
};

Args parseArgs(int argc, char **argv, const std::vector<std::string> &known, const std::vector<std::string> &flags) {
    Args a;
    for (int i = 2; i < argc; ++i) {
        const std::string k = argv[i];
        if (std::find(flags.begin(), flags.end(), k) != flags.end()) {
            a.kv[k] = "1";
            continue;
        }
        if (std::find(known.begin(), known.end(), k) == known.end()) throw Error("unknown option " + k);
        if (i + 1 >= argc) throw Error("option " + k + " needs a value");
        a.kv[k] = argv[++i];
    }
    return a;
}

} // namespace

int trainDemoMain(int argc, char **argv) {
    const Args a = parseArgs(argc, argv, {"--out", "--seed", "--minutes", "--stage1-share", "--eval-every", "--threads", "--vocab"}, {});
    TrainOptions o;
    o.out = a.get("--out", "");
    o.seed = uint64_t(a.num("--seed", 1));
    o.minutes = a.num("--minutes", o.minutes);
    o.stage1Share = a.num("--stage1-share", o.stage1Share);
    o.evalEverySeconds = a.num("--eval-every", o.evalEverySeconds);
    o.threads = std::max(1, int(a.num("--threads", 1)));
    o.vocabSize = int(a.num("--vocab", o.vocabSize));
    return trainDemo(o);
}

int evalDemoMain(int argc, char **argv) {
    const Args a = parseArgs(argc, argv, {"--model", "--questions", "--seed", "--threads", "--show-errors"}, {});
    const std::string model = a.get("--model", "");
    if (model.empty()) throw Error("eval-demo: --model DIR is required");
    const auto t0 = Clock::now();
    const EvalReport r = evaluateDemoModel(model, int(a.num("--questions", 500)), uint64_t(a.num("--seed", 12345)),
                                           std::max(1, int(a.num("--threads", 1))));
    std::printf("eval-demo: %s, %d held-out questions (seed %s), greedy, exact match, %.1f s\n", model.c_str(),
                r.allTotal(), a.get("--seed", "12345").c_str(), secondsSince(t0));
    std::printf("%s", r.table().c_str());
    const int show = int(a.num("--show-errors", 10));
    for (int i = 0; i < show && i < int(r.errors.size()); ++i) std::printf("  ERR %s\n", r.errors[i].c_str());
    return 0;
}

} // namespace mgd::demo
