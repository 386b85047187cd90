// The safetensors reader: real files load; hostile files are refused with an error that
// names the file and tensor, never a crash.
#include <ATen/ATen.h>
#include <QTemporaryDir>
#include <QtTest>

#include <fstream>

#include "core/model/safetensors.h"
#include "core/util/error.h"

using mgd::Error;
using mgd::SafetensorsFile;

namespace {

std::string rawFile(const QString &dir, const std::string &name, const std::string &header,
                    const std::string &data, int64_t lengthOverride = -1) {
    const std::string path = (dir + "/").toStdString() + name;
    std::ofstream f(path, std::ios::binary);
    uint64_t len = lengthOverride >= 0 ? static_cast<uint64_t>(lengthOverride) : header.size();
    for (int i = 0; i < 8; ++i) f.put(static_cast<char>((len >> (8 * i)) & 0xff));
    f << header << data;
    return path;
}

// Returns the error message, or "" when no mgd::Error was thrown.
std::string errorOf(const std::string &path) {
    try {
        SafetensorsFile f(path);
        for (const auto &[name, info] : f.tensors()) f.load(name);
    } catch (const Error &e) {
        return e.what();
    }
    return "";
}

} // namespace

class TestSafetensors : public QObject {
    Q_OBJECT
    QTemporaryDir tmp;

private slots:
    void readsReferenceWeights() {
        SafetensorsFile f(MGD_TEST_DATA "/minigpt4-tiny-hi/weights.safetensors");
        QCOMPARE(f.info("query_tokens").shape, (std::vector<int64_t>{1, 4, 32}));
        at::Tensor pos = f.load("Qformer.bert.embeddings.position_ids");
        QCOMPARE(pos.scalar_type(), at::kLong);
        QCOMPARE(pos[0][511].item<int64_t>(), int64_t{511});
    }

    void roundTripsEveryDtype() {
        const std::string path = (tmp.path() + "/rt.safetensors").toStdString();
        std::vector<std::pair<std::string, at::Tensor>> ts = {{"f32", at::randn({3, 4})},
                                                              {"f16", at::randn({5}).to(at::kHalf)},
                                                              {"bf16", at::randn({2, 2}).to(at::kBFloat16)},
                                                              {"i64", at::arange(7, at::kLong)},
                                                              {"empty", at::zeros({0, 3})}};
        mgd::writeSafetensors(path, ts);
        SafetensorsFile f(path);
        for (const auto &[name, t] : ts) QVERIFY(at::equal(f.load(name), t));
    }

    void rejectsHostileFiles_data() {
        QTest::addColumn<QString>("header");
        QTest::addColumn<int>("dataBytes");
        QTest::addColumn<qint64>("lengthOverride");
        QTest::addColumn<QString>("expect");
        QTest::newRow("header length past end") << "{}" << 0 << qint64(1000) << "header length";
        QTest::newRow("header length overflow") << "{}" << 0 << qint64(-2) << "header length";
        QTest::newRow("not json") << "{\"a\": [" << 0 << qint64(-1) << "not valid JSON";
        QTest::newRow("not object") << "[1,2]" << 0 << qint64(-1) << "not a JSON object";
        QTest::newRow("offsets past end")
            << R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})" << 8 << qint64(-1) << "'w'";
        QTest::newRow("offsets reversed")
            << R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})" << 8 << qint64(-1) << "'w'";
        QTest::newRow("size mismatch") << R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})" << 8
                                       << qint64(-1) << "does not match";
        QTest::newRow("overlap")
            << R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})"
            << 16 << qint64(-1) << "overlap";
        QTest::newRow("contained overlap")
            << R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"c":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})"
            << 16 << qint64(-1) << "overlap";
        QTest::newRow("bad dtype") << R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})" << 4
                                   << qint64(-1) << "unsupported dtype";
        QTest::newRow("negative dim")
            << R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})" << 4 << qint64(-1) << "'w'";
        QTest::newRow("huge shape")
            << R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})" << 4
            << qint64(-1) << "'w'";
        QTest::newRow("missing offsets")
            << R"({"w":{"dtype":"F32","shape":[1]}})" << 4 << qint64(-1) << "'w'";
        QTest::newRow("float offsets")
            << R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0.5,4]}})" << 4 << qint64(-1) << "'w'";
    }

    void rejectsHostileFiles() {
        QFETCH(QString, header);
        QFETCH(int, dataBytes);
        QFETCH(qint64, lengthOverride);
        QFETCH(QString, expect);
        int64_t len = lengthOverride;
        if (lengthOverride == -2) len = INT64_MAX; // 2^63-1: must not wrap around
        const std::string path = rawFile(tmp.path(), "hostile.safetensors", header.toStdString(),
                                         std::string(dataBytes, '\0'), len);
        const std::string err = errorOf(path);
        QVERIFY2(!err.empty(), "no error for a hostile file");
        QVERIFY2(err.find("hostile.safetensors") != std::string::npos, err.c_str());
        QVERIFY2(err.find(expect.toStdString()) != std::string::npos, err.c_str());
    }

    void rejectsTruncatedRealFileAtEveryCut() {
        std::ifstream in(MGD_TEST_DATA "/minigptv2-tiny-hi/weights.safetensors", std::ios::binary);
        const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        const std::string path = (tmp.path() + "/cut.safetensors").toStdString();
        for (size_t cut :
             {size_t(0), size_t(3), size_t(8), size_t(100), bytes.size() / 2, bytes.size() - 1}) {
            std::ofstream(path, std::ios::binary | std::ios::trunc)
                .write(bytes.data(), static_cast<std::streamsize>(cut));
            QVERIFY2(!errorOf(path).empty(), ("cut at " + std::to_string(cut)).c_str());
        }
    }

    void namesMissingFileAndTensor() {
        QVERIFY(errorOf("/nonexistent/x.safetensors").find("/nonexistent/x.safetensors") !=
                std::string::npos);
        SafetensorsFile f(MGD_TEST_DATA "/minigpt4-tiny-hi/weights.safetensors");
        try {
            f.load("no.such.tensor");
            QFAIL("expected an error");
        } catch (const Error &e) {
            QVERIFY(std::string(e.what()).find("no.such.tensor") != std::string::npos);
        }
    }
};

QTEST_APPLESS_MAIN(TestSafetensors)
#include "test_safetensors.moc"
