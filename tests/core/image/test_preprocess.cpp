// Pillow-exact bicubic resize and torchvision-exact normalisation, checked against the
// pixel tensors the Python reference produced, plus hand-computed resize cases.
#include <ATen/ATen.h>

#include <QtTest/QtTest>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/image/image_decode.h"
#include "core/image/preprocess.h"
#include "core/model/safetensors.h"
#include "core/util/error.h"

using namespace mgd;

namespace {

RgbImage makeImage(int w, int h, uint8_t (*f)(int x, int y, int c)) {
    RgbImage img;
    img.width = w;
    img.height = h;
    img.rgb.resize(size_t(w) * size_t(h) * 3);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int c = 0; c < 3; ++c)
                img.rgb[(size_t(y) * size_t(w) + size_t(x)) * 3 + size_t(c)] = f(x, y, c);
    return img;
}

RgbImage constantImage(int w, int h) {
    return makeImage(w, h, [](int, int, int c) {
        return uint8_t(c == 0 ? 17 : c == 1 ? 128 : 250);
    });
}

bool isConstant(const RgbImage &img, const uint8_t (&rgb)[3]) {
    for (size_t i = 0; i < img.rgb.size(); ++i)
        if (img.rgb[i] != rgb[i % 3]) return false;
    return true;
}

} // namespace

class TestPreprocess : public QObject {
    Q_OBJECT

private slots:
    void matchesReferencePixelValues_data() {
        QTest::addColumn<QString>("dir");
        QTest::newRow("minigpt4-tiny-hi") << QStringLiteral("minigpt4-tiny-hi");
        QTest::newRow("minigptv2-tiny-hi") << QStringLiteral("minigptv2-tiny-hi");
    }

    void matchesReferencePixelValues() {
        QFETCH(QString, dir);
        const std::string base = std::string(MGD_TEST_DATA) + "/" + dir.toStdString();

        std::ifstream in(base + "/config.json");
        QVERIFY(in.good());
        const nlohmann::json cfg = nlohmann::json::parse(in);
        const auto &image = cfg.at("image");
        PreprocessParams p;
        p.size = image.at("resize").at(0).get<int>();
        QCOMPARE(image.at("resize").at(1).get<int>(), p.size);
        for (int c = 0; c < 3; ++c) {
            p.mean[size_t(c)] = image.at("mean").at(c).get<float>();
            p.std[size_t(c)] = image.at("std").at(c).get<float>();
        }

        const RgbImage img = decodeImageFile(base + "/image.png");
        QCOMPARE(img.width, 80);
        QCOMPARE(img.height, 60);
        const at::Tensor got = preprocessImage(img, p);

        SafetensorsFile ref(base + "/pixel_values.safetensors");
        const at::Tensor want = ref.load("pixel_values");
        QCOMPARE(want.scalar_type(), at::kFloat);
        QCOMPARE(got.scalar_type(), at::kFloat);
        QCOMPARE(got.sizes().vec(), (std::vector<int64_t>{1, 3, p.size, p.size}));
        QCOMPARE(want.sizes().vec(), got.sizes().vec());

        const double maxDiff = (got - want).abs().max().item<double>();
        const int64_t mismatches = got.ne(want).sum().item<int64_t>();
        qInfo("%s: S=%d max |diff| = %g, %lld of %lld values not bit-identical",
              qPrintable(dir), p.size, maxDiff, (long long)mismatches, (long long)got.numel());
        QVERIFY(maxDiff <= 1e-6);
    }

    void identitySizeReturnsSamePixels() {
        const RgbImage src = makeImage(7, 5, [](int x, int y, int c) {
            return uint8_t((x * 37 + y * 91 + c * 53) & 0xff);
        });
        const RgbImage out = resizeBicubicPil(src, 7, 5);
        QCOMPARE(out.width, 7);
        QCOMPARE(out.height, 5);
        QVERIFY(out.rgb == src.rgb);
    }

    void constantImageStaysConstant_data() {
        QTest::addColumn<int>("inW");
        QTest::addColumn<int>("inH");
        QTest::addColumn<int>("outW");
        QTest::addColumn<int>("outH");
        QTest::newRow("upscale") << 5 << 4 << 23 << 17;
        QTest::newRow("downscale") << 80 << 60 << 32 << 32;
        QTest::newRow("strong downscale") << 97 << 53 << 3 << 2;
        QTest::newRow("width only") << 10 << 6 << 4 << 6;
        QTest::newRow("height only") << 6 << 10 << 6 << 21;
        QTest::newRow("1x1 to 5x3") << 1 << 1 << 5 << 3;
        QTest::newRow("to 1x1") << 9 << 7 << 1 << 1;
    }

    void constantImageStaysConstant() {
        QFETCH(int, inW);
        QFETCH(int, inH);
        QFETCH(int, outW);
        QFETCH(int, outH);
        const RgbImage out = resizeBicubicPil(constantImage(inW, inH), outW, outH);
        QCOMPARE(out.width, outW);
        QCOMPARE(out.height, outH);
        QCOMPARE(out.rgb.size(), size_t(outW) * size_t(outH) * 3);
        const uint8_t expected[3] = {17, 128, 250};
        QVERIFY(isConstant(out, expected));
    }

    // One-pixel-wide column stretched vertically: the horizontal pass is skipped and each
    // output row mixes source rows 0 (value 0) and 1 (value 200) with Pillow's weights.
    void onePixelWideColumn() {
        const RgbImage src = makeImage(1, 2, [](int, int y, int) { return uint8_t(y ? 200 : 0); });
        const RgbImage out = resizeBicubicPil(src, 1, 4);
        QCOMPARE(out.width, 1);
        QCOMPARE(out.height, 4);
        // scale 0.5, support 2: centres 0.25, 0.75, 1.25, 1.75, taps at rows 0 and 1 at
        // offsets (row + 0.5 - centre). W(0.25) = 0.8671875, W(0.75) = 0.2265625,
        // W(1.25) = -0.0703125, so row values are 200 * w1 / (w0 + w1):
        //   -0.0703125/0.796875 -> -17.6 -> clipped 0;  0.2265625/1.09375 -> 41.43 -> 41;
        //    0.8671875/1.09375 -> 158.57 -> 159;        0.8671875/0.796875 -> 217.6 -> 218.
        const int expected[4] = {0, 41, 159, 218};
        for (int yy = 0; yy < 4; ++yy)
            for (int c = 0; c < 3; ++c)
                QCOMPARE(int(out.rgb[size_t(yy) * 3 + size_t(c)]), expected[yy]);

        // And the transposed case: a one-pixel-high row shrunk to a single pixel.
        const RgbImage row = makeImage(4, 1, [](int x, int, int) { return uint8_t(x * 60); });
        const RgbImage one = resizeBicubicPil(row, 1, 1);
        QCOMPARE(one.width, 1);
        QCOMPARE(one.height, 1);
        // scale 4, support 8, centre 2: taps x=0..3 at (x+0.5-2)/4 = -0.375, -0.125, 0.125,
        // 0.375, symmetric weights -> the mean 90.
        QCOMPARE(int(one.rgb[0]), 90);
    }

    void tinyInputs() {
        const RgbImage px = makeImage(1, 1, [](int, int, int c) { return uint8_t(10 + c * 100); });
        const RgbImage same = resizeBicubicPil(px, 1, 1);
        QVERIFY(same.rgb == px.rgb);
        const RgbImage big = resizeBicubicPil(px, 3, 2);
        const uint8_t expected[3] = {10, 110, 210};
        QVERIFY(isConstant(big, expected));
        const at::Tensor t = preprocessImage(px, PreprocessParams{4, {0.5f, 0.5f, 0.5f},
                                                                  {0.5f, 0.5f, 0.5f}});
        QCOMPARE(t.sizes().vec(), (std::vector<int64_t>{1, 3, 4, 4}));
        QCOMPARE(t[0][2][3][3].item<float>(), (210.0f / 255.0f - 0.5f) / 0.5f);
    }

    // Upscaling overshoots at a hard edge; Pillow clips each pass to 0..255.
    void edgeOvershootIsClipped() {
        const RgbImage src =
            makeImage(4, 1, [](int x, int, int) { return uint8_t(x < 2 ? 0 : 255); });
        const RgbImage out = resizeBicubicPil(src, 16, 1);
        QCOMPARE(out.width, 16);
        bool sawZero = false, sawFull = false;
        for (size_t i = 0; i < out.rgb.size(); ++i) {
            sawZero |= out.rgb[i] == 0;
            sawFull |= out.rgb[i] == 255;
        }
        QVERIFY(sawZero && sawFull);
        // Monotone apart from the clipped overshoot.
        for (int x = 1; x < 16; ++x)
            QVERIFY(out.rgb[size_t(x) * 3] >= out.rgb[size_t(x - 1) * 3]);
    }

    void rejectsInvalidSizes() {
        const RgbImage src = constantImage(3, 3);
        QVERIFY_THROWS_EXCEPTION(Error, resizeBicubicPil(src, 0, 3));
        QVERIFY_THROWS_EXCEPTION(Error, resizeBicubicPil(src, 3, -1));
        RgbImage bad = src;
        bad.rgb.pop_back();
        QVERIFY_THROWS_EXCEPTION(Error, resizeBicubicPil(bad, 2, 2));
        QVERIFY_THROWS_EXCEPTION(Error, resizeBicubicPil(RgbImage{}, 2, 2));
        PreprocessParams zeroStd;
        zeroStd.std[1] = 0.0f;
        QVERIFY_THROWS_EXCEPTION(Error, preprocessImage(src, zeroStd));
    }
};

QTEST_APPLESS_MAIN(TestPreprocess)
#include "test_preprocess.moc"
