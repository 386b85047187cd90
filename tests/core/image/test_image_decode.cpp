// Image decoding: every bad input is an mgd::Error naming the file, pixel-count bombs are
// refused from the header alone, and every supported layout comes out as 8-bit RGB.
#include <QtTest/QtTest>

#include <QFile>
#include <QFileInfo>
#include <QRandomGenerator>
#include <QTemporaryDir>

#include <cstring>
#include <functional>
#include <string>

// OpenCV 4.6 headers trip C++20's enum-arithmetic deprecation; they are not ours to fix.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-enum-enum-conversion"
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#pragma GCC diagnostic pop

#include "core/image/image_decode.h"
#include "core/util/error.h"

using namespace mgd;

namespace {

const QString kReferencePng = QStringLiteral(MGD_TEST_DATA "/minigpt4-tiny-hi/image.png");

uint32_t crc32(const QByteArray &bytes) {
    uint32_t crc = 0xffffffffu;
    for (char ch : bytes) {
        crc ^= uint8_t(ch);
        for (int i = 0; i < 8; ++i)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

uint32_t adler32(const QByteArray &bytes) {
    uint32_t a = 1, b = 0;
    for (char ch : bytes) {
        a = (a + uint8_t(ch)) % 65521;
        b = (b + a) % 65521;
    }
    return b << 16 | a;
}

void putBe32(QByteArray &out, uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8)
        out.append(char((v >> shift) & 0xff));
}

void putLe(QByteArray &out, uint32_t v, int bytes) {
    for (int i = 0; i < bytes; ++i)
        out.append(char((v >> (8 * i)) & 0xff));
}

QByteArray pngChunk(const char *type, const QByteArray &data) {
    QByteArray typed(type, 4);
    typed += data;
    QByteArray out;
    putBe32(out, uint32_t(data.size()));
    out += typed;
    putBe32(out, crc32(typed));
    return out;
}

// A zlib stream of stored (uncompressed) deflate blocks: enough to hand-build any PNG.
QByteArray zlibStored(const QByteArray &raw) {
    QByteArray out("\x78\x01", 2);
    qsizetype pos = 0;
    do {
        const qsizetype n = std::min<qsizetype>(raw.size() - pos, 65535);
        out.append(char(pos + n == raw.size() ? 1 : 0));
        putLe(out, uint32_t(n), 2);
        putLe(out, uint32_t(~n & 0xffff), 2);
        out += raw.mid(pos, n);
        pos += n;
    } while (pos < raw.size());
    putBe32(out, adler32(raw));
    return out;
}

// PNG from raw scanlines (each already prefixed with its filter byte, 0 = none).
QByteArray buildPng(uint32_t w, uint32_t h, int depth, int colorType, const QByteArray &rows,
                    const QByteArray &extraChunks = {}) {
    QByteArray ihdr;
    putBe32(ihdr, w);
    putBe32(ihdr, h);
    ihdr.append(char(depth)).append(char(colorType)).append('\0').append('\0').append('\0');
    QByteArray png("\x89PNG\r\n\x1a\n", 8);
    png += pngChunk("IHDR", ihdr);
    png += extraChunks;
    if (!rows.isNull())
        png += pngChunk("IDAT", zlibStored(rows));
    png += pngChunk("IEND", {});
    return png;
}

QByteArray readAll(const QString &path) {
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        return {};
    return f.readAll();
}

bool writeAll(const QString &path, const QByteArray &bytes) {
    QFile f(path);
    return f.open(QIODevice::WriteOnly | QIODevice::Truncate) &&
           f.write(bytes) == bytes.size();
}

std::array<int, 3> pixel(const RgbImage &img, int x, int y) {
    const size_t i = (size_t(y) * size_t(img.width) + size_t(x)) * 3;
    return {img.rgb[i], img.rgb[i + 1], img.rgb[i + 2]};
}

// Runs fn, which must throw mgd::Error whose message names `name`; returns the message.
QString refusal(const std::function<void()> &fn, const QString &name) {
    try {
        fn();
    } catch (const Error &e) {
        const QString msg = QString::fromStdString(e.what());
        if (!msg.contains(name))
            return QStringLiteral("MESSAGE LACKS NAME: ") + msg;
        return msg;
    } catch (const std::exception &e) {
        return QStringLiteral("WRONG EXCEPTION TYPE: ") + e.what();
    }
    return QStringLiteral("NOT REFUSED");
}

QString refuseFile(const QString &path, const ImageLimits &limits = {}) {
    return refusal([&] { decodeImageFile(path.toStdString(), limits); },
                   QFileInfo(path).fileName());
}

QString refuseBytes(const QByteArray &bytes, const QString &label,
                    const ImageLimits &limits = {}) {
    return refusal(
        [&] {
            decodeImageBytes(reinterpret_cast<const uint8_t *>(bytes.constData()),
                             size_t(bytes.size()), label.toStdString(), limits);
        },
        label);
}

#define QVERIFY_REFUSED(msg)                                                                  \
    do {                                                                                      \
        const QString m_ = (msg);                                                             \
        QVERIFY2(!m_.startsWith("NOT REFUSED") && !m_.startsWith("MESSAGE LACKS") &&          \
                     !m_.startsWith("WRONG EXCEPTION"),                                       \
                 qPrintable(m_));                                                             \
    } while (0)

} // namespace

class TestImageDecode : public QObject {
    Q_OBJECT

    QTemporaryDir tmp_;

    QString path(const QString &name) const { return tmp_.filePath(name); }

    // Writes bytes to a fresh file in the temporary directory and returns its path.
    QString fixture(const QString &name, const QByteArray &bytes) {
        const QString p = path(name);
        if (!writeAll(p, bytes))
            qFatal("cannot write fixture %s", qPrintable(p));
        return p;
    }

    QString imwriteFixture(const QString &name, const cv::Mat &m,
                           const std::vector<int> &params = {}) {
        const QString p = path(name);
        if (!cv::imwrite(p.toStdString(), m, params))
            qFatal("cv::imwrite failed for %s", qPrintable(p));
        return p;
    }

private slots:
    void initTestCase() { QVERIFY(tmp_.isValid()); }

    void decodesReferencePng() {
        const RgbImage img = decodeImageFile(kReferencePng.toStdString());
        QCOMPARE(img.width, 80);
        QCOMPARE(img.height, 60);
        QCOMPARE(img.rgb.size(), size_t(80 * 60 * 3));
        // Background: R = floor(x*255/79), G = floor(y*255/59), B = 128.
        QCOMPARE(pixel(img, 0, 0), (std::array<int, 3>{0, 0, 128}));
        QCOMPARE(pixel(img, 79, 59), (std::array<int, 3>{255, 255, 128}));
        QCOMPARE(pixel(img, 40, 2), (std::array<int, 3>{129, 8, 128}));
        QCOMPARE(pixel(img, 20, 20), (std::array<int, 3>{230, 20, 20})); // red rectangle
        QCOMPARE(pixel(img, 58, 38), (std::array<int, 3>{20, 40, 220})); // blue disc
    }

    void refusesMissingFile() {
        const QString msg = refuseFile(path("does-not-exist.png"));
        QVERIFY_REFUSED(msg);
        QVERIFY2(msg.contains("does not exist"), qPrintable(msg));
    }

    void refusesDirectory() { QVERIFY_REFUSED(refuseFile(tmp_.path())); }

    void refusesZeroByteFile() {
        const QString msg = refuseFile(fixture("empty.png", {}));
        QVERIFY_REFUSED(msg);
        QVERIFY2(msg.contains("empty"), qPrintable(msg));
        QVERIFY_REFUSED(refuseBytes({}, "empty buffer"));
    }

    void refusesTruncatedPng_data() {
        QTest::addColumn<qsizetype>("keep");
        const qsizetype size = readAll(kReferencePng).size();
        QVERIFY(size > 100);
        QTest::newRow("half") << size / 2;
        for (qsizetype keep : {qsizetype(1), qsizetype(4), qsizetype(8), qsizetype(16),
                               qsizetype(24), qsizetype(33), qsizetype(40), size / 4,
                               size * 3 / 4, size - 40})
            QTest::newRow(qPrintable(QStringLiteral("keep %1").arg(keep))) << keep;
    }

    void refusesTruncatedPng() {
        QFETCH(qsizetype, keep);
        const QByteArray png = readAll(kReferencePng);
        const QString p = fixture(QStringLiteral("truncated-%1.png").arg(keep), png.left(keep));
        QVERIFY_REFUSED(refuseFile(p));
    }

    void refusesRandomBytes() {
        QRandomGenerator rng(1234);
        const QByteArray magics[] = {
            {},
            QByteArray("\x89PNG\r\n\x1a\n", 8),
            QByteArray("\xff\xd8\xff", 3),
            QByteArray("GIF89a"),
            QByteArray("BM"),
            QByteArray("RIFF\x10\0\0\0WEBPVP8 ", 16),
            QByteArray("II*\0", 4),
            QByteArray("P6\n"),
        };
        int i = 0;
        for (const QByteArray &magic : magics) {
            for (int len : {3, 40, 1000}) {
                QByteArray bytes = magic;
                for (int k = 0; k < len; ++k)
                    bytes.append(char(rng.bounded(256)));
                const QString name = QStringLiteral("random-%1.png").arg(i++);
                QVERIFY_REFUSED(refuseFile(fixture(name, bytes)));
            }
        }
    }

    void refusesTextRenamedPng() {
        const QString msg = refuseFile(fixture("notes.png", "Just some text, not an image.\n"));
        QVERIFY_REFUSED(msg);
        QVERIFY2(msg.contains("unsupported"), qPrintable(msg));
    }

    // IHDR claims 100000 x 100000 (10 G pixels) with valid CRCs; there is no pixel data. It
    // must be refused from the header, before any decoder allocates the frame.
    void refusesPngDecompressionBomb() {
        const QByteArray bomb = buildPng(100000, 100000, 8, 2, QByteArray(""));
        const QString msg = refuseFile(fixture("bomb.png", bomb));
        QVERIFY_REFUSED(msg);
        QVERIFY2(msg.contains("100000x100000") && msg.contains("limit"), qPrintable(msg));
    }

    void refusesHeaderBombsInOtherFormats_data() {
        QTest::addColumn<QByteArray>("bytes");
        QTest::addColumn<QString>("dims");
        {
            // SOI, SOF0 (8-bit, 65000 x 65000, 3 components), EOI.
            QByteArray jpeg("\xff\xd8\xff\xc0\x00\x11\x08\xfd\xe8\xfd\xe8\x03"
                            "\x01\x11\x00\x02\x11\x01\x03\x11\x01\xff\xd9", 23);
            QTest::newRow("jpeg") << jpeg << QStringLiteral("65000x65000");
        }
        {
            QByteArray bmp("BM", 2);
            putLe(bmp, 54, 4);
            putLe(bmp, 0, 4);
            putLe(bmp, 54, 4);
            putLe(bmp, 40, 4);
            putLe(bmp, 100000, 4);
            putLe(bmp, uint32_t(-100000), 4); // top-down
            putLe(bmp, 1, 2);
            putLe(bmp, 24, 2);
            bmp += QByteArray(24, '\0');
            QTest::newRow("bmp") << bmp << QStringLiteral("100000x100000");
        }
        {
            QByteArray webp("RIFF\x16\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0", 24);
            putLe(webp, 20000 - 1, 3);
            putLe(webp, 20000 - 1, 3);
            QTest::newRow("webp") << webp << QStringLiteral("20000x20000");
        }
        {
            QByteArray gif("GIF89a");
            putLe(gif, 65535, 2);
            putLe(gif, 65535, 2);
            gif += QByteArray("\0\0\0;", 4);
            QTest::newRow("gif") << gif << QStringLiteral("65535x65535");
        }
        {
            QByteArray tiff("II*\0", 4);
            putLe(tiff, 8, 4);
            putLe(tiff, 2, 2);
            for (uint32_t tag : {256u, 257u}) {
                putLe(tiff, tag, 2);
                putLe(tiff, 4, 2); // LONG
                putLe(tiff, 1, 4);
                putLe(tiff, 100000, 4);
            }
            putLe(tiff, 0, 4);
            QTest::newRow("tiff") << tiff << QStringLiteral("100000x100000");
        }
        QTest::newRow("ppm") << QByteArray("P6\n# comment\n100000 100000\n255\n")
                             << QStringLiteral("100000x100000");
    }

    void refusesHeaderBombsInOtherFormats() {
        QFETCH(QByteArray, bytes);
        QFETCH(QString, dims);
        const QString msg = refuseFile(fixture(QStringLiteral("bomb-%1.img")
                                                   .arg(QTest::currentDataTag()),
                                               bytes));
        QVERIFY_REFUSED(msg);
        QVERIFY2(msg.contains(dims), qPrintable(msg));
    }

    void refusesBeyondLimits() {
        ImageLimits pixels;
        pixels.maxPixels = 80 * 60 - 1;
        const QString msg = refuseFile(kReferencePng, pixels);
        QVERIFY_REFUSED(msg);
        QVERIFY2(msg.contains("80x60"), qPrintable(msg));

        ImageLimits bytes;
        bytes.maxFileBytes = 100;
        const QString big = refuseFile(kReferencePng, bytes);
        QVERIFY_REFUSED(big);
        QVERIFY2(big.contains("too large"), qPrintable(big));
        QVERIFY_REFUSED(refuseBytes(readAll(kReferencePng), "buffer.png", bytes));

        ImageLimits exact;
        exact.maxPixels = 80 * 60;
        QCOMPARE(decodeImageFile(kReferencePng.toStdString(), exact).width, 80);
    }

    void refusesZeroSizedHeader() {
        const QByteArray png = buildPng(0, 10, 8, 2, QByteArray(""));
        QVERIFY_REFUSED(refuseFile(fixture("zero-width.png", png)));
    }

    void decodesGrayscalePng() {
        cv::Mat gray(3, 4, CV_8UC1);
        for (int y = 0; y < 3; ++y)
            for (int x = 0; x < 4; ++x)
                gray.at<uint8_t>(y, x) = uint8_t(y * 80 + x * 20);
        const RgbImage img = decodeImageFile(imwriteFixture("gray.png", gray).toStdString());
        QCOMPARE(img.width, 4);
        QCOMPARE(img.height, 3);
        for (int y = 0; y < 3; ++y)
            for (int x = 0; x < 4; ++x) {
                const int v = y * 80 + x * 20;
                QCOMPARE(pixel(img, x, y), (std::array<int, 3>{v, v, v}));
            }
    }

    // PIL's convert('RGB') drops alpha: a fully transparent pixel keeps its colour.
    void decodesRgbaPng() {
        cv::Mat bgra(2, 2, CV_8UC4);
        bgra.at<cv::Vec4b>(0, 0) = {10, 20, 30, 255}; // B, G, R, A
        bgra.at<cv::Vec4b>(0, 1) = {40, 50, 60, 0};
        bgra.at<cv::Vec4b>(1, 0) = {70, 80, 90, 128};
        bgra.at<cv::Vec4b>(1, 1) = {255, 0, 255, 1};
        const RgbImage img = decodeImageFile(imwriteFixture("rgba.png", bgra).toStdString());
        QCOMPARE(img.width, 2);
        QCOMPARE(img.height, 2);
        QCOMPARE(pixel(img, 0, 0), (std::array<int, 3>{30, 20, 10}));
        QCOMPARE(pixel(img, 1, 0), (std::array<int, 3>{60, 50, 40}));
        QCOMPARE(pixel(img, 0, 1), (std::array<int, 3>{90, 80, 70}));
        QCOMPARE(pixel(img, 1, 1), (std::array<int, 3>{255, 0, 255}));
    }

    void decodesRgbPngExactly() {
        cv::Mat bgr(5, 7, CV_8UC3);
        cv::randu(bgr, 0, 256);
        const RgbImage img = decodeImageFile(imwriteFixture("rgb.png", bgr).toStdString());
        for (int y = 0; y < 5; ++y)
            for (int x = 0; x < 7; ++x) {
                const cv::Vec3b p = bgr.at<cv::Vec3b>(y, x);
                QCOMPARE(pixel(img, x, y), (std::array<int, 3>{p[2], p[1], p[0]}));
            }
    }

    // Palette PNGs (OpenCV cannot write them): 8-bit with a tRNS chunk, and 2-bit packed.
    void decodesPalettePng() {
        QByteArray plte;
        for (int c : {255, 0, 0, 0, 255, 0, 0, 0, 255, 12, 34, 56})
            plte.append(char(c));
        const QByteArray chunks = pngChunk("PLTE", plte) +
                                  pngChunk("tRNS", QByteArray("\x00\x80\xff", 3));

        const QByteArray rows8("\0\x00\x01\x02\x03\0\x03\x02\x01\x00", 10); // 4 x 2
        const RgbImage img8 = decodeImageFile(
            fixture("palette8.png", buildPng(4, 2, 8, 3, rows8, chunks)).toStdString());
        QCOMPARE(img8.width, 4);
        QCOMPARE(img8.height, 2);
        QCOMPARE(pixel(img8, 0, 0), (std::array<int, 3>{255, 0, 0})); // alpha 0, colour kept
        QCOMPARE(pixel(img8, 1, 0), (std::array<int, 3>{0, 255, 0}));
        QCOMPARE(pixel(img8, 2, 0), (std::array<int, 3>{0, 0, 255}));
        QCOMPARE(pixel(img8, 3, 0), (std::array<int, 3>{12, 34, 56}));
        QCOMPARE(pixel(img8, 0, 1), (std::array<int, 3>{12, 34, 56}));
        QCOMPARE(pixel(img8, 3, 1), (std::array<int, 3>{255, 0, 0}));

        // 2 bits per index: 0b00'01'10'11 = indices 0,1,2,3 in one byte; 5 wide pads.
        const QByteArray rows2("\0\x1b\xc0", 3);
        const RgbImage img2 = decodeImageFile(
            fixture("palette2.png", buildPng(5, 1, 2, 3, rows2, pngChunk("PLTE", plte)))
                .toStdString());
        QCOMPARE(img2.width, 5);
        QCOMPARE(pixel(img2, 0, 0), (std::array<int, 3>{255, 0, 0}));
        QCOMPARE(pixel(img2, 1, 0), (std::array<int, 3>{0, 255, 0}));
        QCOMPARE(pixel(img2, 2, 0), (std::array<int, 3>{0, 0, 255}));
        QCOMPARE(pixel(img2, 3, 0), (std::array<int, 3>{12, 34, 56}));
        QCOMPARE(pixel(img2, 4, 0), (std::array<int, 3>{12, 34, 56}));

        // An index past the palette is corrupt data, refused or decoded, never a crash.
        const QByteArray bad("\0\x09", 2);
        try {
            decodeImageFile(
                fixture("palette-bad.png", buildPng(1, 1, 8, 3, bad, pngChunk("PLTE", plte)))
                    .toStdString());
        } catch (const Error &) {
        }
    }

    void decodesGrayAlphaPng() {
        const QByteArray rows("\0\x10\x00\xf0\xff", 5); // 2 x 1: (16, a0), (240, a255)
        const RgbImage img =
            decodeImageFile(fixture("gray-alpha.png", buildPng(2, 1, 8, 4, rows)).toStdString());
        QCOMPARE(img.width, 2);
        QCOMPARE(pixel(img, 0, 0), (std::array<int, 3>{16, 16, 16}));
        QCOMPARE(pixel(img, 1, 0), (std::array<int, 3>{240, 240, 240}));
    }

    // 16-bit samples keep the high byte (what PIL does for 16-bit RGB PNGs).
    void decodes16BitPng() {
        cv::Mat bgr16(1, 3, CV_16UC3);
        bgr16.at<cv::Vec3w>(0, 0) = {0x0000, 0x00ff, 0x0100};
        bgr16.at<cv::Vec3w>(0, 1) = {0xffff, 0x8000, 0x7fff};
        bgr16.at<cv::Vec3w>(0, 2) = {0x1234, 0xabcd, 0xfe01};
        const RgbImage rgb = decodeImageFile(imwriteFixture("rgb16.png", bgr16).toStdString());
        QCOMPARE(pixel(rgb, 0, 0), (std::array<int, 3>{0x01, 0x00, 0x00}));
        QCOMPARE(pixel(rgb, 1, 0), (std::array<int, 3>{0x7f, 0x80, 0xff}));
        QCOMPARE(pixel(rgb, 2, 0), (std::array<int, 3>{0xfe, 0xab, 0x12}));

        cv::Mat gray16(1, 2, CV_16UC1);
        gray16.at<uint16_t>(0, 0) = 0x4321;
        gray16.at<uint16_t>(0, 1) = 0xffff;
        const RgbImage gray = decodeImageFile(imwriteFixture("gray16.png", gray16).toStdString());
        QCOMPARE(pixel(gray, 0, 0), (std::array<int, 3>{0x43, 0x43, 0x43}));
        QCOMPARE(pixel(gray, 1, 0), (std::array<int, 3>{0xff, 0xff, 0xff}));
    }

    void decodesOtherFormats_data() {
        QTest::addColumn<QString>("ext");
        QTest::addColumn<bool>("lossless");
        QTest::newRow("bmp") << QStringLiteral("bmp") << true;
        QTest::newRow("ppm") << QStringLiteral("ppm") << true;
        QTest::newRow("tiff") << QStringLiteral("tiff") << true;
        QTest::newRow("webp") << QStringLiteral("webp") << true;
        QTest::newRow("jpeg") << QStringLiteral("jpg") << false;
    }

    void decodesOtherFormats() {
        QFETCH(QString, ext);
        QFETCH(bool, lossless);
        cv::Mat bgr(6, 9, CV_8UC3);
        for (int y = 0; y < 6; ++y)
            for (int x = 0; x < 9; ++x)
                bgr.at<cv::Vec3b>(y, x) = {uint8_t(200), uint8_t(y * 40), uint8_t(x * 25)};
        std::vector<int> params;
        if (ext == "webp")
            params = {cv::IMWRITE_WEBP_QUALITY, 101}; // above 100: lossless
        if (ext == "jpg")
            params = {cv::IMWRITE_JPEG_QUALITY, 100};
        const QString p = path("sample." + ext);
        if (!cv::imwrite(p.toStdString(), bgr, params))
            QSKIP("this OpenCV build cannot write the format");
        const RgbImage img = decodeImageFile(p.toStdString());
        QCOMPARE(img.width, 9);
        QCOMPARE(img.height, 6);
        for (int y = 0; y < 6; ++y)
            for (int x = 0; x < 9; ++x) {
                const std::array<int, 3> want{x * 25, y * 40, 200};
                const std::array<int, 3> got = pixel(img, x, y);
                for (int c = 0; c < 3; ++c) {
                    const int tolerance = lossless ? 0 : 32; // JPEG: chroma subsampling
                    QVERIFY2(std::abs(got[size_t(c)] - want[size_t(c)]) <= tolerance,
                             qPrintable(QStringLiteral("%1 at %2,%3 channel %4: %5 vs %6")
                                            .arg(ext)
                                            .arg(x)
                                            .arg(y)
                                            .arg(c)
                                            .arg(got[size_t(c)])
                                            .arg(want[size_t(c)])));
                }
            }
    }

    // libjpeg pads a cut-off stream with grey; we refuse it like PIL does.
    void refusesTruncatedJpeg() {
        cv::Mat bgr(32, 32, CV_8UC3);
        cv::randu(bgr, 0, 256);
        const QByteArray jpeg = readAll(imwriteFixture("whole.jpg", bgr));
        QVERIFY(jpeg.size() > 200);
        QCOMPARE(decodeImageFile(path("whole.jpg").toStdString()).width, 32);
        for (qsizetype keep : {jpeg.size() / 2, jpeg.size() - 2, qsizetype(10)}) {
            const QString p = fixture(QStringLiteral("cut-%1.jpg").arg(keep), jpeg.left(keep));
            QVERIFY_REFUSED(refuseFile(p));
        }
        // Bytes after the end-of-image marker are harmless.
        QCOMPARE(decodeImageFile(fixture("trailing.jpg", jpeg + "garbage").toStdString()).width,
                 32);
    }

    // Random corruption of valid files: each either decodes to a well-formed image or is
    // refused with mgd::Error. Run under ASan/UBSan this also checks the parsers' bounds.
    void survivesMutatedBytes() {
        cv::Mat bgr(24, 20, CV_8UC3);
        cv::randu(bgr, 0, 256);
        std::vector<QByteArray> seeds{readAll(kReferencePng),
                                      readAll(imwriteFixture("seed.jpg", bgr)),
                                      readAll(imwriteFixture("seed.bmp", bgr))};
        QRandomGenerator rng(42);
        int decoded = 0, refused = 0;
        for (const QByteArray &seed : seeds) {
            QVERIFY(!seed.isEmpty());
            for (int round = 0; round < 150; ++round) {
                QByteArray bytes = seed;
                const int edits = 1 + int(rng.bounded(8));
                for (int e = 0; e < edits; ++e) {
                    // Bias edits towards the header, where the parsers live.
                    const qsizetype limit = rng.bounded(2) ? std::min<qsizetype>(64, bytes.size())
                                                           : bytes.size();
                    bytes[rng.bounded(int(limit))] = char(rng.bounded(256));
                }
                if (rng.bounded(4) == 0)
                    bytes.truncate(rng.bounded(int(bytes.size())) + 1);
                try {
                    const RgbImage img = decodeImageBytes(
                        reinterpret_cast<const uint8_t *>(bytes.constData()),
                        size_t(bytes.size()), "mutated", {});
                    QVERIFY(img.width > 0 && img.height > 0);
                    QCOMPARE(img.rgb.size(), size_t(img.width) * size_t(img.height) * 3);
                    ++decoded;
                } catch (const Error &e) {
                    QVERIFY(std::string(e.what()).find("mutated") != std::string::npos);
                    ++refused;
                }
            }
        }
        qInfo("mutated inputs: %d decoded, %d refused", decoded, refused);
    }
};

QTEST_GUILESS_MAIN(TestImageDecode)
#include "test_image_decode.moc"
