// The torch.save reader (core/import, torch-free): the pickle edge cases give the structure
// of expected.json and values bit-identical to expected.safetensors; every hostile file is
// refused with a message naming the file (the GLOBAL payloads stay inert data); the tiny
// real checkpoints list their keys and hold the reference weights bit for bit; hand-built
// pickles and ZIP64 archives cover what the fixtures do not.
#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/import/pickle.h"
#include "core/import/torch_file.h"
#include "core/import/zip_archive.h"
#include "core/model/safetensors.h"
#include "core/util/error.h"

using mgd::Error;
using mgd::pth::NamedTensor;
using mgd::pth::PickleOptions;
using mgd::pth::ScalarKind;
using mgd::pth::TensorRef;
using mgd::pth::TorchFile;
using mgd::pth::Value;
using mgd::pth::ZipArchive;
using json = nlohmann::json;
using K = Value::Kind;

namespace {

const std::string kOrig = MGD_TEST_DATA "/reference-original";

std::string slurp(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

json readJson(const std::string &path) {
    return json::parse(slurp(path));
}

void spit(const std::string &path, const std::string &bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// expected.safetensors holds dtypes (BOOL, F64, I8...) that SafetensorsFile does not take, and
// only raw bytes are compared: a minimal reader of the format is enough here.
struct RawSafetensors {
    std::string bytes;
    json header;
    size_t dataStart = 0;
    explicit RawSafetensors(const std::string &path) : bytes(slurp(path)) {
        uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
        header = json::parse(bytes.substr(8, n));
        dataStart = 8 + n;
    }
    std::string data(const std::string &name) const {
        const auto &offs = header.at(name).at("data_offsets");
        const size_t b = offs[0].get<size_t>(), e = offs[1].get<size_t>();
        return bytes.substr(dataStart + b, e - b);
    }
};

std::string readTensor(const TorchFile &f, const TensorRef &t) {
    std::string out(mgd::pth::nbytes(t), '\0');
    f.readContiguous(t, out.data());
    return out;
}

std::string shapeStr(const std::vector<int64_t> &v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
    return s + "]";
}

// Compares a value with expected.json's encoding of it; returns "" or what differs, with the path.
struct Comparer {
    const TorchFile &file;
    const RawSafetensors &expected;
    std::map<std::string, std::string> idToKey, keyToId; // expected storage ids <-> storage keys

    std::string tensor(const json &e, const Value &v, const std::string &at) {
        if (!v.is(K::Tensor)) return at + ": expected a tensor, got " + mgd::pth::describe(v);
        const TensorRef &t = v.tensor();
        if (e["dtype"] != mgd::pth::scalarKindName(t.dtype))
            return at + ": dtype " + mgd::pth::scalarKindName(t.dtype) + ", expected " + e["dtype"].dump();
        if (e["shape"].get<std::vector<int64_t>>() != t.shape) return at + ": shape " + shapeStr(t.shape);
        if (e["stride"].get<std::vector<int64_t>>() != t.stride) return at + ": stride " + shapeStr(t.stride);
        if (e["storage_offset"].get<int64_t>() != t.storageOffset) return at + ": storage offset differs";
        if (e["storage_numel"].get<uint64_t>() != file.storage(t).numel)
            return at + ": storage numel differs";
        // Shared storages: the same expected id always maps to the same key, and back.
        const std::string id = e["storage"];
        auto [a, newId] = idToKey.emplace(id, t.storageKey);
        auto [b, newKey] = keyToId.emplace(t.storageKey, id);
        if (a->second != t.storageKey || b->second != id)
            return at + ": storage '" + t.storageKey + "' does not match expected sharing (" + id + ")";
        const std::string got = readTensor(file, t), want = expected.data(e["__tensor__"]);
        if (got.size() != want.size() || std::memcmp(got.data(), want.data(), got.size()) != 0)
            return at + ": values differ from expected.safetensors '" + e["__tensor__"].get<std::string>() +
                   "'";
        return "";
    }

    std::string pairs(const json &e, const Value &v, const std::string &at) {
        if (!v.is(K::Dict) || v.entries().size() != e.size())
            return at + ": expected a dict of " + std::to_string(e.size()) + ", got " + mgd::pth::describe(v);
        for (size_t i = 0; i < e.size(); ++i) {
            const auto &[k, val] = v.entries()[i];
            const std::string name = e[i][0].is_string() ? e[i][0].get<std::string>() : e[i][0].dump();
            if (std::string err = value(e[i][0], *k, at + "/<key " + name + ">"); !err.empty()) return err;
            if (std::string err = value(e[i][1], *val, at + "/" + name); !err.empty()) return err;
        }
        return "";
    }

    std::string value(const json &e, const Value &v, const std::string &at) {
        if (e.is_null()) return v.is(K::None) ? "" : at + ": expected None, got " + mgd::pth::describe(v);
        if (e.is_boolean())
            return v.is(K::Bool) && v.boolean() == e.get<bool>() ? "" : at + ": got " + mgd::pth::describe(v);
        if (e.is_number_integer())
            return v.is(K::Int) && v.integer() == e.get<int64_t>() ? ""
                                                                   : at + ": got " + mgd::pth::describe(v);
        if (e.is_number_float())
            return v.is(K::Float) && v.real() == e.get<double>() ? "" : at + ": got " + mgd::pth::describe(v);
        if (e.is_string())
            return v.is(K::String) && v.text() == e.get<std::string>()
                       ? ""
                       : at + ": got " + mgd::pth::describe(v);
        if (e.is_array()) {
            if (!v.is(K::List) || v.items().size() != e.size()) return at + ": got " + mgd::pth::describe(v);
            for (size_t i = 0; i < e.size(); ++i)
                if (std::string err = value(e[i], *v.items()[i], at + "/" + std::to_string(i)); !err.empty())
                    return err;
            return "";
        }
        if (e.contains("__tensor__")) return tensor(e, v, at);
        if (e.contains("__int__"))
            return v.is(K::BigInt) && v.text() == e["__int__"].get<std::string>()
                       ? ""
                       : at + ": got " + mgd::pth::describe(v);
        if (e.contains("__tuple__")) {
            const json &items = e["__tuple__"];
            if (!v.is(K::Tuple) || v.items().size() != items.size())
                return at + ": got " + mgd::pth::describe(v);
            for (size_t i = 0; i < items.size(); ++i)
                if (std::string err = value(items[i], *v.items()[i], at + "/" + std::to_string(i));
                    !err.empty())
                    return err;
            return "";
        }
        const bool ordered = e.contains("__ordereddict__");
        if (!ordered && !e.contains("__dict__"))
            return at + ": unknown expectation " + e.dump().substr(0, 80);
        if (v.is(K::Dict) && v.ordered() != ordered) return at + ": OrderedDict-ness differs";
        if (std::string err = pairs(ordered ? e["__ordereddict__"] : e["__dict__"], v, at); !err.empty())
            return err;
        if (e.contains("_metadata")) {
            if (!v.metadata()) return at + ": no _metadata";
            return value(e["_metadata"], *v.metadata(), at + "/_metadata");
        }
        return v.metadata() ? at + ": unexpected _metadata" : "";
    }
};

std::string errorOf(const std::string &path) {
    try {
        TorchFile::open(path);
    } catch (const Error &e) {
        return e.what();
    }
    return "";
}

std::map<std::string, const TensorRef *> byPath(const TorchFile &f) {
    std::map<std::string, const TensorRef *> m;
    for (const NamedTensor &t : f.tensors()) m.emplace(t.path, t.ref);
    return m;
}

// ---- hand-built inputs -----------------------------------------------------------------

// Writes pickle opcodes (protocol 2 unless told otherwise).
struct PickleWriter {
    std::string b;
    PickleWriter &op(char c) {
        b += c;
        return *this;
    }
    PickleWriter &raw(const std::string &s) {
        b += s;
        return *this;
    }
    PickleWriter &proto(int v = 2) { return op('\x80').op(static_cast<char>(v)); }
    PickleWriter &u32(uint32_t v) {
        for (int i = 0; i < 4; ++i) b += static_cast<char>((v >> (8 * i)) & 0xff);
        return *this;
    }
    PickleWriter &str(const std::string &s) { return op('X').u32(static_cast<uint32_t>(s.size())).raw(s); }
    PickleWriter &i8(int v) { return op('K').op(static_cast<char>(v)); }
    PickleWriter &global(const std::string &m, const std::string &n) {
        return op('c').raw(m + "\n" + n + "\n");
    }
    // ('storage', torch.<type>, key, 'cpu', numel) as BINPERSID.
    PickleWriter &storage(const std::string &type, const std::string &key, int numel) {
        op('(').str("storage").global("torch", type).str(key).str("cpu").i8(numel).op('t');
        return op('Q');
    }
};

struct ZipItem {
    std::string name, data;
    uint16_t method = 0;
};

void le(std::string &b, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b += static_cast<char>((v >> (8 * i)) & 0xff);
}

// A STORED zip as torch writes it (data aligned to 64 bytes through a local extra field),
// optionally in ZIP64 form: saturated 32-bit fields, ZIP64 extras, ZIP64 end record + locator.
std::string makeZip(const std::vector<ZipItem> &items, bool zip64) {
    std::string out, cd;
    for (const ZipItem &it : items) {
        const uint64_t lho = out.size();
        const size_t pad = (64 - (out.size() + 30 + it.name.size() + 4) % 64) % 64;
        out += "PK\x03\x04";
        le(out, 20, 2), le(out, 0, 2), le(out, it.method, 2), le(out, 0, 4), le(out, 0, 4);
        le(out, it.data.size(), 4), le(out, it.data.size(), 4), le(out, it.name.size(), 2);
        le(out, 4 + pad, 2);
        out += it.name;
        le(out, 0x4246, 2), le(out, pad, 2); // "FB" padding, as torch's writer does
        out += std::string(pad, 'Z');
        out += it.data;
        cd += "PK\x01\x02";
        le(cd, 45, 2), le(cd, 45, 2), le(cd, 0, 2), le(cd, it.method, 2), le(cd, 0, 4), le(cd, 0, 4);
        le(cd, zip64 ? 0xffffffff : it.data.size(), 4), le(cd, zip64 ? 0xffffffff : it.data.size(), 4);
        le(cd, it.name.size(), 2), le(cd, zip64 ? 28 : 0, 2), le(cd, 0, 2), le(cd, 0, 2), le(cd, 0, 2);
        le(cd, 0, 4), le(cd, zip64 ? 0xffffffff : lho, 4);
        cd += it.name;
        if (zip64)
            le(cd, 1, 2), le(cd, 24, 2), le(cd, it.data.size(), 8), le(cd, it.data.size(), 8), le(cd, lho, 8);
    }
    const uint64_t cdOffset = out.size();
    out += cd;
    if (zip64) {
        const uint64_t rec = out.size();
        out += "PK\x06\x06";
        le(out, 44, 8), le(out, 45, 2), le(out, 45, 2), le(out, 0, 4), le(out, 0, 4);
        le(out, items.size(), 8), le(out, items.size(), 8), le(out, cd.size(), 8), le(out, cdOffset, 8);
        out += "PK\x06\x07";
        le(out, 0, 4), le(out, rec, 8), le(out, 1, 4);
    }
    out += "PK\x05\x06";
    le(out, 0, 2), le(out, 0, 2), le(out, zip64 ? 0xffff : items.size(), 2),
        le(out, zip64 ? 0xffff : items.size(), 2);
    le(out, zip64 ? 0xffffffff : cd.size(), 4), le(out, zip64 ? 0xffffffff : cdOffset, 4), le(out, 0, 2);
    return out;
}

// A string literal with its embedded NULs.
template <size_t N> std::string bin(const char (&s)[N]) {
    return std::string(s, N - 1);
}

std::string floats(std::initializer_list<float> v) {
    std::string s(v.size() * 4, '\0');
    std::memcpy(s.data(), std::data(v), s.size());
    return s;
}

// {'w': Parameter(rebuild_tensor_v2(storage 0 of 6 floats, offset 0, [2, 3], stride [1, 2]))}
std::string transposedParameterPickle() {
    PickleWriter w;
    w.proto().global("collections", "OrderedDict").op(')').op('R');
    w.str("w").global("torch._utils", "_rebuild_parameter").op('(');
    w.global("torch._utils", "_rebuild_tensor_v2").op('(').storage("FloatStorage", "0", 6);
    w.i8(0).i8(2).i8(3).op('\x86').i8(1).i8(2).op('\x86').op('\x89').op('}').op('t').op('R');
    w.op('\x88').op('}').op('t').op('R').op('s').op('.');
    return w.b;
}

std::string parseError(const std::string &bytes, const mgd::pth::PickleLimits &limits = {}) {
    try {
        PickleOptions opt;
        opt.context = "test";
        opt.limits = limits;
        mgd::pth::unpickle(bytes, opt);
    } catch (const Error &e) {
        return e.what();
    }
    return "";
}

} // namespace

class TestTorchFile : public QObject {
    Q_OBJECT
    QTemporaryDir tmp;

    std::string tmpFile(const std::string &name, const std::string &bytes) {
        const std::string path = (tmp.path() + "/").toStdString() + name;
        spit(path, bytes);
        return path;
    }

private slots:
    void pickleEdgeCasesMatchExpected_data() {
        QTest::addColumn<QString>("file");
        const json exp = readJson(kOrig + "/edge/pickle/expected.json");
        for (const auto &[name, _] : exp["files"].items())
            QTest::newRow(name.c_str()) << QString::fromStdString(name);
    }
    void pickleEdgeCasesMatchExpected() {
        QFETCH(QString, file);
        const std::string name = file.toStdString();
        const json exp = readJson(kOrig + "/edge/pickle/expected.json");
        const RawSafetensors values(kOrig + "/edge/pickle/expected.safetensors");
        const TorchFile f = TorchFile::open(kOrig + "/edge/pickle/" + name);
        QCOMPARE(f.legacyFormat(), name == "legacy_format.pth");
        Comparer cmp{f, values, {}, {}};
        const std::string err = cmp.value(exp["files"][name], f.root(), name);
        QVERIFY2(err.empty(), err.c_str());
        if (name == "nested.pth") {
            // A list pickled twice is one object (memo BINGET): both keys share it.
            const Value *vals = f.root().find("values");
            QVERIFY(vals && vals->find("memo_a"));
            QCOMPARE(vals->find("memo_a"), vals->find("memo_b"));
        }
        if (name == "views.pth") QCOMPARE(f.storages().size(), size_t{4}); // each storage written once
    }

    void hostileFilesAreRefused() {
        const json exp = readJson(kOrig + "/edge/hostile/expected.json");
        // What each message must say besides the file's name.
        const std::map<std::string, std::string> why = {
            {"truncated.pth", "end-of-central-directory"},
            {"missing_storage_record.pth", "no record 'archive/data/1'"},
            {"storage_record_too_short.pth", "holds 16 bytes"},
            {"view_out_of_bounds.pth", "needs 6 elements"},
            {"huge_declared_size.pth", "1099511627776"},
            {"shape_overflow.pth", "overflows 64 bits"},
            {"negative_size.pth", "negative dimension"},
            {"missing_data_pkl.pth", "data.pkl"},
            {"global_os_system.pth", "it calls os.system"},
            {"global_builtins_eval.pth", "it calls builtins.eval"},
            {"global_posix_system_legacy.pth", "it calls posix.system"},
            {"empty.pth", "empty"},
            {"not_a_checkpoint.pth", "Git LFS pointer"},
        };
        int checked = 0;
        for (const auto &[name, e] : exp["files"].items()) {
            const std::string path = kOrig + "/edge/hostile/" + name;
            const std::string err = errorOf(path);
            if (e["expect"] == "load") {
                QVERIFY2(err.empty(), err.c_str());
                const TorchFile f = TorchFile::open(path);
                const TensorRef *w = byPath(f)["model/w"];
                QVERIFY(w);
                QCOMPARE(readTensor(f, *w), floats({1, 2, 3, 4}));
            } else {
                QVERIFY2(why.count(name), ("no expectation written for " + name).c_str());
                QVERIFY2(err.find(path) != std::string::npos, (name + ": " + err).c_str());
                QVERIFY2(err.find(why.at(name)) != std::string::npos, (name + ": " + err).c_str());
            }
            ++checked;
        }
        QCOMPARE(checked, 14);
    }

    void globalPayloadStaysInertData() {
        // Parsed with the refusal switched off, os.system('echo ...') is only a Call node
        // holding a Global and a string: nothing was looked up or run to build it.
        const ZipArchive za = ZipArchive::open(kOrig + "/edge/hostile/global_os_system.pth");
        const std::string bytes = za.readAll(*za.find("archive/data.pkl"), 1 << 20);
        PickleOptions opt;
        opt.refuseUnknownCalls = false;
        const auto doc = mgd::pth::unpickle(bytes, opt);
        const Value *w = doc.root().find("model")->find("weight");
        QVERIFY(w && w->is(K::Call));
        QCOMPARE(w->callee()->qualifiedName(), std::string("os.system"));
        QCOMPARE(std::string(w->callee()->module()), std::string("os"));
        QVERIFY(w->args()->is(K::Tuple));
        QVERIFY(w->args()->items()[0]->text().rfind("echo ", 0) == 0);
        std::vector<std::string> ignored;
        QVERIFY_THROWS_EXCEPTION(Error, mgd::pth::tensorsOf(*doc.root().find("model"), &ignored, "model"));
    }

    void realCheckpointsHoldTheReferenceWeights_data() {
        QTest::addColumn<QString>("folder");
        QTest::addColumn<int>("copies"); // reference tensors that come from a .pth/.bin as they are
        QTest::newRow("minigpt4") << "minigpt4-tiny-hi" << 103;
        QTest::newRow("minigptv2") << "minigptv2-tiny-hi" << 36;
    }
    void realCheckpointsHoldTheReferenceWeights() {
        QFETCH(QString, folder);
        QFETCH(int, copies);
        const std::string dir = kOrig + "/" + folder.toStdString();
        const json exp = readJson(dir + "/expected.json");
        // Every .pth and .bin listed: the keys to use, keep or ignore are all there.
        for (const auto &[name, spec] : exp["files"].items()) {
            std::vector<std::string> files;
            if (name.back() == '/') {
                if (spec["format"].get<std::string>().find("pytorch_model") == std::string::npos) continue;
                const json index = readJson(dir + "/" + name + "pytorch_model.bin.index.json");
                for (const auto &[_, shard] : index.at("weight_map").items())
                    if (std::find(files.begin(), files.end(), name + shard.get<std::string>()) == files.end())
                        files.push_back(name + shard.get<std::string>());
            } else {
                files.push_back(name);
            }
            std::set<std::string> keys;
            for (const std::string &file : files) {
                const TorchFile f = TorchFile::open(dir + "/" + file);
                QVERIFY(!f.legacyFormat());
                const std::string stem = file.substr(file.rfind('/') + 1);
                const std::string wantRoot = spec.contains("archive_root")
                                                 ? spec["archive_root"].get<std::string>()
                                                 : stem.substr(0, stem.rfind('.'));
                QCOMPARE(f.archiveRoot(), wantRoot.substr(0, wantRoot.find(' ')));
                const Value *sd = &f.root();
                if (spec.contains("use_container")) {
                    sd = f.root().find(spec["use_container"].get<std::string>());
                    QVERIFY2(sd, (file + ": no container").c_str());
                }
                std::vector<std::string> ignored;
                const auto tensors = mgd::pth::tensorsOf(*sd, &ignored, file);
                QVERIFY2(ignored.empty(),
                         (file + ": non-tensor entry " + (ignored.empty() ? "" : ignored[0])).c_str());
                const ScalarKind want = spec["dtype"] == "float16" ? ScalarKind::F16 : ScalarKind::F32;
                for (const auto &[key, t] : tensors) {
                    keys.insert(key);
                    QVERIFY2(t->dtype == want || t->dtype == ScalarKind::I64, (file + ": " + key).c_str());
                }
                if (spec.contains("ignore_top_level"))
                    for (const auto &k : spec["ignore_top_level"])
                        QVERIFY(f.root().find(k.get<std::string>()));
            }
            for (const char *group : {"use", "buffers"})
                if (spec.contains(group))
                    for (const auto &[key, _] : spec[group].items())
                        QVERIFY2(keys.count(key), (name + ": missing " + key).c_str());
            if (spec.contains("ignore"))
                for (const auto &key : spec["ignore"])
                    QVERIFY2(keys.count(key.get<std::string>()), (name + ": missing " + key.dump()).c_str());
        }
        // Every reference tensor copied from an fp32 .pth/.bin is bit-identical.
        mgd::SafetensorsFile ref(MGD_TEST_DATA "/" + folder.toStdString() + "/weights.safetensors");
        std::map<std::string, TorchFile> opened;
        auto fileOf = [&](const std::string &rel) -> const TorchFile & {
            auto it = opened.find(rel);
            if (it == opened.end()) it = opened.emplace(rel, TorchFile::open(dir + "/" + rel)).first;
            return it->second;
        };
        int compared = 0;
        for (const auto &[target, src] : exp["targets"].items()) {
            std::string file = src[0], key = src[1];
            const std::string how = src[2];
            if (how != "copy" && how.rfind("buffer", 0) != 0) continue;
            if (file.back() == '/') { // an HF folder: .bin shards are torch files, safetensors are not ours
                if (!exp.at("files").at(file).at("format").get<std::string>().starts_with(
                        "HF sharded pytorch_model"))
                    continue;
                const json index = readJson(dir + "/" + file + "pytorch_model.bin.index.json");
                file += index.at("weight_map").at(key).get<std::string>();
            }
            const TorchFile &f = fileOf(file);
            const TensorRef *t = byPath(f)[key];
            QVERIFY2(t, (file + ": no tensor " + key).c_str());
            const mgd::TensorInfo &info = ref.info(target);
            QCOMPARE(t->shape, info.shape);
            const std::string got = readTensor(f, *t);
            QCOMPARE(got.size(), info.end - info.begin);
            QVERIFY2(std::memcmp(got.data(), ref.data(target), got.size()) == 0, (file + ": " + key).c_str());
            ++compared;
        }
        QCOMPARE(compared, copies);
    }

    void pickleOpcodesOfEveryProtocol() {
        // Protocol 0 text opcodes: INT, LONG, FLOAT, STRING, UNICODE, PUT/GET, DICT, LIST, TUPLE.
        const std::string p0 =
            "(dp0\nS'a\\'b\\x41'\np1\nI42\nsV\\u00fc\np2\n(I01\nL-12345678901234567890L\nF0.25\n"
            "tp3\nsS'l'\n(lp4\ng3\nag2\nasS'n'\nNsI7\nI00\ns.";
        auto doc = mgd::pth::unpickle(p0);
        const Value &r = doc.root();
        QVERIFY(r.is(K::Dict) && !r.ordered());
        QCOMPARE(r.find("a'bA")->integer(), int64_t{42});
        const Value *t = r.find("\xc3\xbc"); // U+00FC as UTF-8
        QVERIFY(t && t->is(K::Tuple) && t->items().size() == 3);
        QVERIFY(t->items()[0]->is(K::Bool) && t->items()[0]->boolean());
        QCOMPARE(t->items()[1]->text(), std::string("-12345678901234567890"));
        QCOMPARE(t->items()[2]->real(), 0.25);
        QCOMPARE(r.find("l")->items()[0], t); // GET gives the same object
        QVERIFY(r.find("n")->is(K::None));
        QCOMPARE(r.entries().size(), size_t{5}); // int key 7 is kept, keyed by int
        QVERIFY(r.entries()[4].first->is(K::Int) && r.entries()[4].second->is(K::Bool));

        // Protocol 4/5: FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE, BINBYTES8, LONG1,
        // EMPTY_SET/ADDITEMS, NEWOBJ of OrderedDict, duplicate keys (the later value wins).
        PickleWriter w;
        w.proto(4).op('\x95').raw(bin("\x10\0\0\0\0\0\0\0"));
        w.op('\x8c')
            .raw("\x0b"
                 "collections")
            .op('\x94')
            .op('\x8c')
            .raw("\x0b"
                 "OrderedDict")
            .op('\x94');
        w.op('\x93').op('\x94').op(')').op('\x81').op('\x94');
        w.op('(').op('\x8c').raw("\x01k").i8(1).op('\x8c').raw("\x01k").i8(2).op('\x8c').raw("\x01s");
        w.op('\x8f').op('(').i8(5).i8(6).op('\x90');
        w.op('\x8c')
            .raw("\x01"
                 "b")
            .op('\x8e')
            .raw(bin("\x02\0\0\0\0\0\0\0"))
            .raw("hi");
        w.op('\x8c')
            .raw("\x01"
                 "L")
            .op('\x8a')
            .raw(bin("\x09\x01\0\0\0\0\0\0\0\xff"));
        w.op('u').op('.');
        doc = mgd::pth::unpickle(w.b);
        const Value &o = doc.root();
        QVERIFY(o.ordered());
        QCOMPARE(o.entries().size(), size_t{4});
        QCOMPARE(o.find("k")->integer(), int64_t{2});
        QCOMPARE(o.find("s")->items().size(), size_t{2});
        QVERIFY(o.find("b")->is(K::Bytes) && o.find("b")->text() == "hi");
        QCOMPARE(o.find("L")->text(), std::string("-18446744073709551615")); // 1 - 2^64, in 9 bytes
    }

    void pickleErrorsNameTheOffset_data() {
        QTest::addColumn<QByteArray>("bytes");
        QTest::addColumn<QString>("expect");
        auto row = [](const char *name, const std::string &b, const char *expect) {
            QTest::newRow(name) << QByteArray(b.data(), static_cast<qsizetype>(b.size())) << expect;
        };
        row("no STOP", bin("\x80\x02K\x01"), "no STOP");
        row("unset memo", bin("\x80\x02h\x05."), "byte 2: memo index 5 was never set");
        row("mark underflow", bin("\x80\x02K\x01t"), "TUPLE without a MARK");
        row("pop below mark", bin("\x80\x02K\x01(\x85."), "below a MARK");
        row("length past end",
            bin("\x80\x02X\xff\xff\xff\x7f"
                "abc."),
            "BINUNICODE of 2147483647 bytes");
        row("binbytes8 huge", bin("\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xff."), "BINBYTES8");
        row("unknown opcode", bin("\x80\x02i."), "opcode 0x69 ('i') INST");
        row("ext opcode", bin("\x80\x02\x82\x01."), "opcode 0x82 EXT1");
        row("protocol 6", bin("\x80\x06N."), "protocol 6");
        row("cycle",
            bin("\x80\x02]q\x00h\x00"
                "a."),
            "refers to itself");
        row("append to tuple",
            bin("\x80\x02)K\x01"
                "a."),
            "APPEND on a value of type tuple");
        row("build on global",
            bin("\x80\x02"
                "cos\nsystem\n}b."),
            "it calls os.system");
        row("reduce of a computed callee",
            bin("\x80\x02"
                "K\x01)R."),
            "it calls a computed value");
        row("bad rebuild",
            bin("\x80\x02"
                "ctorch._utils\n_rebuild_tensor_v2\nK\x01\x85R."),
            "_rebuild_tensor_v2");
        row("legacy view",
            bin("\x80\x02"
                "ctorch._utils\n_rebuild_tensor_v2\n((X\x07\0\0\0storage"
                "ctorch\nFloatStorage\n"
                "X\x01\0\0\0"
                "0X\x03\0\0\0cpuK\x04(X\x01\0\0\0"
                "1K\x00K\x02ttQK\x00K\x02\x85K\x01\x85\x89}tR."),
            "view of another storage");
        row("empty", bin(""), "no STOP");
    }
    void pickleErrorsNameTheOffset() {
        QFETCH(QByteArray, bytes);
        QFETCH(QString, expect);
        const std::string err = parseError(bytes.toStdString());
        QVERIFY2(err.rfind("test: ", 0) == 0, err.c_str());
        QVERIFY2(err.find(expect.toStdString()) != std::string::npos, err.c_str());
    }

    void pickleLimitsAreEnforced() {
        mgd::pth::PickleLimits small;
        small.maxDepth = 8;
        QVERIFY(parseError("\x80\x02" + std::string(9, '(') + ".", small).find("MARKs nest deeper") !=
                std::string::npos);
        // Nesting built through the memo keeps the stack flat but the tree deep.
        std::string deep = bin("\x80\x02]q\x00q\x02"); // memo 2: the outermost list
        for (int i = 0; i < 10; ++i)
            deep += bin("]q\x01h\x00h\x01"
                        "a0h\x01q\x00"
                        "0"); // innermost.append(new)
        QVERIFY(parseError(deep + "h\x02.", small).find("nest deeper than 8") != std::string::npos);
        small = {};
        small.maxValues = 100;
        std::string many = "\x80\x02(";
        for (int i = 0; i < 200; ++i) many += "K\x01";
        QVERIFY(parseError(many + "l.", small).find("more than 100 values") != std::string::npos);
        QVERIFY(parseError(bin("\x80\x02\x8b\x00\x00\x01\x00.")).find("too large") != std::string::npos);
    }

    void zipArchivesPlainAndZip64_data() {
        QTest::addColumn<bool>("zip64");
        QTest::newRow("plain") << false;
        QTest::newRow("zip64") << true;
    }
    void zipArchivesPlainAndZip64() {
        QFETCH(bool, zip64);
        // A root folder that is not the file's stem; a transposed Parameter.
        const std::string zip = makeZip({{"saved_as/data.pkl", transposedParameterPickle()},
                                         {"saved_as/byteorder", "little"},
                                         {"saved_as/data/0", floats({0, 1, 2, 3, 4, 5})},
                                         {"saved_as/version", "3\n"}},
                                        zip64);
        const std::string path = tmpFile(zip64 ? "z64.pth" : "plain.pth", zip);
        const ZipArchive za = ZipArchive::open(path);
        QCOMPARE(za.entries().size(), size_t{4});
        QCOMPARE(za.find("saved_as/data/0")->dataOffset % 64, uint64_t{0});
        const TorchFile f = TorchFile::open(path);
        QCOMPARE(f.archiveRoot(), std::string("saved_as"));
        const auto tensors = mgd::pth::tensorsOf(f.root());
        QCOMPARE(tensors.size(), size_t{1});
        const TensorRef &w = *tensors[0].second;
        QCOMPARE(w.shape, (std::vector<int64_t>{2, 3}));
        QCOMPARE(w.stride, (std::vector<int64_t>{1, 2}));
        QCOMPARE(readTensor(f, w), floats({0, 2, 4, 1, 3, 5}));

        // Damage: a compressed entry, a big-endian byte order, a cut directory.
        const std::string deflated =
            tmpFile("deflated.pth", makeZip({{"r/data.pkl", transposedParameterPickle(), 8},
                                             {"r/data/0", floats({0, 1, 2, 3, 4, 5})}},
                                            zip64));
        std::string err = errorOf(deflated);
        QVERIFY2(err.find("deflated.pth") != std::string::npos &&
                     err.find("'r/data.pkl' is compressed") != std::string::npos,
                 err.c_str());
        const std::string big = tmpFile("big.pth", makeZip({{"r/data.pkl", transposedParameterPickle()},
                                                            {"r/byteorder", "big"},
                                                            {"r/data/0", floats({0, 1, 2, 3, 4, 5})}},
                                                           zip64));
        QVERIFY(errorOf(big).find("byte order 'big'") != std::string::npos);
        const std::string cut = tmpFile("cut.pth", zip.substr(0, zip.size() - 30));
        QVERIFY(errorOf(cut).find("cut.pth") != std::string::npos);
    }

    void tensorsOfSplitsNonTensors() {
        const TorchFile f = TorchFile::open(kOrig + "/edge/pickle/nested.pth");
        std::vector<std::string> ignored;
        const Value *values = f.root().find("values");
        const auto t = mgd::pth::tensorsOf(*values, &ignored, "values");
        QCOMPARE(t.size(), size_t{0}); // tensors inside lists are not state-dict entries
        QCOMPARE(ignored.size(), values->entries().size());
        const auto model = mgd::pth::tensorsOf(*f.root().find("model"));
        QCOMPARE(model.size(), size_t{2});
        QCOMPARE(model[0].first, std::string("proj.weight"));
        QVERIFY_THROWS_EXCEPTION(Error, mgd::pth::tensorsOf(*values->find("list")));
    }
};

QTEST_APPLESS_MAIN(TestTorchFile)
#include "test_torch_file.moc"
