// The matrix-vector kernels (core/kernels/gemv.h) at every instruction-set level this CPU has,
// against a float64 reference on odd shapes: column tails, row remainders, strided and
// misaligned views, bias, row-range splits, and the Q8 quantization error bounds.
#include <QtTest>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "core/kernels/cpu_features.h"
#include "core/kernels/gemm.h"
#include "core/kernels/gemv.h"
#include "core/util/error.h"

using namespace mgd::kernels;

namespace {

const int64_t kRows[] = {1, 3, 17, 129};
const int64_t kCols[] = {1, 7, 31, 33, 100, 257, 4097};
constexpr double kUnit = 1.0 / (1 << 24); // fp32 unit roundoff

uint16_t toBf16(float v) { // round to nearest even (inputs are finite)
    uint32_t b;
    std::memcpy(&b, &v, 4);
    b += 0x7fff + ((b >> 16) & 1);
    return static_cast<uint16_t>(b >> 16);
}

double bf16ToDouble(uint16_t h) {
    const uint32_t b = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}

// Each value rounded to bf16 (bits).
std::vector<uint16_t> toBf16All(const std::vector<float> &v) {
    std::vector<uint16_t> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) out[i] = toBf16(v[i]);
    return out;
}

// Normal values with a per-row magnitude spread of 1e-3..1e2, so scales differ between rows and
// groups and cancellation happens.
std::vector<float> randomMatrix(int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> n(0, 1);
    std::uniform_real_distribution<float> e(-3, 2);
    std::vector<float> m(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r) {
        const float s = std::pow(10.0f, e(rng));
        for (int64_t c = 0; c < cols; ++c) m[static_cast<size_t>(r * cols + c)] = s * n(rng);
    }
    return m;
}

// Rigorous bound for a sum of n products computed in fp32 (each product exact, or fused into
// the add): every kernel splits a row into >= 8 independent chains of at most ceil(n / 8) + 2
// rounded adds, plus a log-depth final reduction, so |error| <= (n / 8 + 16) * u * sum|w * x|.
// For n = 4097 that is ~3e-5 relative to sum|w * x| (the scalar path's worst case; the SIMD
// paths use 16-64 chains and land near 1e-6).
double tolerance(int64_t n, double sumAbs) {
    return (static_cast<double>(n) / 8 + 16) * kUnit * sumAbs + 1e-30;
}

struct Level {
    KernelLevel level;
    bool noExtensions;
};

} // namespace

Q_DECLARE_METATYPE(Level)

class TestGemv : public QObject {
    Q_OBJECT

    // Each test runs once per level: Scalar and the best level always, the others when present.
    void levels() {
        QTest::addColumn<Level>("level");
        QTest::newRow("scalar") << Level{KernelLevel::Scalar, false};
        QTest::newRow("avx2") << Level{KernelLevel::Avx2, false};
        QTest::newRow("avx512") << Level{KernelLevel::Avx512, false};
        // As on Skylake-X: no AVX512-BF16 / VNNI, their fallbacks run.
        QTest::newRow("avx512-noext") << Level{KernelLevel::Avx512, true};
    }

    bool enter() {
        const Level l = *static_cast<Level *>(QTest::qData("level", qMetaTypeId<Level>()));
        if (!levelSupported(l.level)) return false;
        if (l.noExtensions && !cpuFeatures().avx512bf16 && !cpuFeatures().avx512vnni) return false;
        forceKernelLevel(l.level);
        forceNoAvx512Extensions(l.noExtensions);
        return activeLevel() == l.level;
    }

#define ENTER_LEVEL()                                                                                        \
    if (!enter()) QSKIP("this CPU lacks the level");

private slots:
    void cleanup() {
        forceKernelLevel(std::nullopt);
        forceNoAvx512Extensions(false);
    }

    void describesCpu() {
        qInfo("%s", describeCpu().c_str());
        QVERIFY(levelSupported(KernelLevel::Scalar));
        QVERIFY(levelSupported(bestLevel()));
        for (KernelLevel l : {KernelLevel::Scalar, KernelLevel::Avx2, KernelLevel::Avx512})
            if (!levelSupported(l)) QVERIFY_THROWS_EXCEPTION(mgd::Error, forceKernelLevel(l));
    }

    void bf16WeightsF32Input_data() {
        levels();
    }
    void bf16WeightsF32Input() {
        ENTER_LEVEL();
        uint32_t seed = 1;
        for (int64_t rows : kRows)
            for (int64_t cols : kCols) {
                // A strided view one element off 64-byte alignment: memory-mapped tensors sit anywhere.
                const int64_t stride = cols + 3;
                const std::vector<float> wf = randomMatrix(rows, cols, seed++);
                std::vector<uint16_t> w(static_cast<size_t>(rows * stride + 1));
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t c = 0; c < cols; ++c)
                        w[static_cast<size_t>(1 + r * stride + c)] =
                            toBf16(wf[static_cast<size_t>(r * cols + c)]);
                const std::vector<float> x = randomMatrix(1, cols, seed++),
                                         bias = randomMatrix(1, rows, seed++);
                const PackedBf16 pw(w.data() + 1, rows, cols, stride);
                std::vector<float> y(static_cast<size_t>(rows));
                gemvBf16(pw, x.data(), y.data(), bias.data(), 0, rows);
                for (int64_t r = 0; r < rows; ++r) {
                    double ref = bias[static_cast<size_t>(r)], sumAbs = std::fabs(ref);
                    for (int64_t c = 0; c < cols; ++c) {
                        const double p = bf16ToDouble(w[static_cast<size_t>(1 + r * stride + c)]) *
                                         x[static_cast<size_t>(c)];
                        ref += p;
                        sumAbs += std::fabs(p);
                    }
                    if (std::fabs(y[static_cast<size_t>(r)] - ref) > tolerance(cols, sumAbs))
                        QFAIL(qPrintable(
                            QString("%1x%2 row %3: %4 vs %5").arg(rows).arg(cols).arg(r).arg(y[r]).arg(ref)));
                }
            }
    }

    // bf16 activations: the reference uses the same bf16-rounded x, so only summation error remains.
    void bf16WeightsBf16Input_data() {
        levels();
    }
    void bf16WeightsBf16Input() {
        ENTER_LEVEL();
        uint32_t seed = 100;
        for (int64_t rows : kRows)
            for (int64_t cols : kCols) {
                const std::vector<float> wf = randomMatrix(rows, cols, seed++),
                                         xf = randomMatrix(1, cols, seed++);
                std::vector<uint16_t> w(wf.size()), x(xf.size());
                for (size_t i = 0; i < w.size(); ++i) w[i] = toBf16(wf[i]);
                for (size_t i = 0; i < x.size(); ++i) x[i] = toBf16(xf[i]);
                std::vector<float> y(static_cast<size_t>(rows));
                gemvBf16(PackedBf16(w.data(), rows, cols), x.data(), y.data(), nullptr, 0, rows);
                for (int64_t r = 0; r < rows; ++r) {
                    double ref = 0, sumAbs = 0;
                    for (int64_t c = 0; c < cols; ++c) {
                        const double p = bf16ToDouble(w[static_cast<size_t>(r * cols + c)]) *
                                         bf16ToDouble(x[static_cast<size_t>(c)]);
                        ref += p;
                        sumAbs += std::fabs(p);
                    }
                    if (std::fabs(y[static_cast<size_t>(r)] - ref) > tolerance(cols, sumAbs))
                        QFAIL(qPrintable(
                            QString("%1x%2 row %3: %4 vs %5").arg(rows).arg(cols).arg(r).arg(y[r]).arg(ref)));
                }
            }
    }

    // Few-row products (gemm.h): every tile edge (weight rows not a multiple of 4, activation
    // rows not a multiple of 6, odd columns), strided x and y, a bias, a row range of a split,
    // against a float64 reference; bf16 weights with bf16 activations and fp32 with fp32.
    void fewRowProducts_data() {
        levels();
    }
    void fewRowProducts() {
        ENTER_LEVEL();
        uint32_t seed = 900;
        for (int64_t m : {1, 5, 6, 13})
            for (int64_t rows : {3, 17})
                for (int64_t cols : {7, 33, 257}) {
                    const std::vector<float> wf = randomMatrix(rows, cols, seed++),
                                             bias = randomMatrix(1, rows, seed++);
                    const int64_t xStride = cols + 3, yStride = rows + 2;
                    const std::vector<float> xf = randomMatrix(m, xStride, seed++);
                    std::vector<uint16_t> wb(wf.size()), xb(xf.size());
                    for (size_t i = 0; i < wb.size(); ++i) wb[i] = toBf16(wf[i]);
                    for (size_t i = 0; i < xb.size(); ++i) xb[i] = toBf16(xf[i]);
                    for (bool bf16 : {false, true}) {
                        std::vector<float> y(static_cast<size_t>(m * yStride), -7.0f);
                        const int64_t r0 = 1, r1 = rows; // row 0 belongs to another thread's range
                        if (bf16)
                            gemmBf16(PackedBf16(wb.data(), rows, cols), xb.data(), m, xStride, y.data(),
                                     yStride, bias.data(), r0, r1);
                        else
                            gemmF32(PackedF32(wf.data(), rows, cols), xf.data(), m, xStride, y.data(),
                                    yStride, bias.data(), r0, r1);
                        for (int64_t i = 0; i < m; ++i) {
                            QCOMPARE(y[static_cast<size_t>(i * yStride)], -7.0f); // untouched
                            for (int64_t r = r0; r < r1; ++r) {
                                double ref = bias[static_cast<size_t>(r)], sumAbs = std::fabs(ref);
                                for (int64_t c = 0; c < cols; ++c) {
                                    const size_t wi = static_cast<size_t>(r * cols + c),
                                                 xi = static_cast<size_t>(i * xStride + c);
                                    const double p = bf16 ? bf16ToDouble(wb[wi]) * bf16ToDouble(xb[xi])
                                                          : double(wf[wi]) * double(xf[xi]);
                                    ref += p;
                                    sumAbs += std::fabs(p);
                                }
                                const float got = y[static_cast<size_t>(i * yStride + r)];
                                if (std::fabs(got - ref) > tolerance(cols, sumAbs))
                                    QFAIL(qPrintable(QString("%1 m%2 %3x%4 [%5,%6]: %7 vs %8")
                                                         .arg(bf16 ? "bf16" : "f32")
                                                         .arg(m)
                                                         .arg(rows)
                                                         .arg(cols)
                                                         .arg(i)
                                                         .arg(r)
                                                         .arg(got)
                                                         .arg(ref)));
                            }
                        }
                    }
                }
    }

    void f32Weights_data() {
        levels();
    }
    void f32Weights() {
        ENTER_LEVEL();
        uint32_t seed = 200;
        for (int64_t rows : kRows)
            for (int64_t cols : kCols) {
                const std::vector<float> w = randomMatrix(rows, cols, seed++),
                                         x = randomMatrix(1, cols, seed++);
                const std::vector<float> bias = randomMatrix(1, rows, seed++);
                std::vector<float> y(static_cast<size_t>(rows));
                gemvF32(PackedF32(w.data(), rows, cols), x.data(), y.data(), bias.data(), 0, rows);
                for (int64_t r = 0; r < rows; ++r) {
                    double ref = bias[static_cast<size_t>(r)], sumAbs = std::fabs(ref);
                    for (int64_t c = 0; c < cols; ++c) {
                        const double p =
                            double(w[static_cast<size_t>(r * cols + c)]) * x[static_cast<size_t>(c)];
                        ref += p;
                        sumAbs += std::fabs(p);
                    }
                    if (std::fabs(y[static_cast<size_t>(r)] - ref) > tolerance(cols, sumAbs))
                        QFAIL(qPrintable(
                            QString("%1x%2 row %3: %4 vs %5").arg(rows).arg(cols).arg(r).arg(y[r]).arg(ref)));
                }
            }
    }

    // The kernel against float64 on the dequantized weights and the quantized activation: group
    // dot products are exact int32, then one rounding for scale_w * scale_x, one for the product
    // and a chain of at most `groups` adds per lane: well inside tolerance(cols, ...).
    void q8_data() {
        levels();
    }
    void q8() {
        ENTER_LEVEL();
        uint32_t seed = 300;
        Q8Activation a; // reused across shapes: grows only when needed
        for (int64_t rows : kRows)
            for (int64_t cols : kCols) {
                const std::vector<float> w = randomMatrix(rows, cols, seed++),
                                         x = randomMatrix(1, cols, seed++);
                const std::vector<float> bias = randomMatrix(1, rows, seed++);
                const PackedQ8 q = quantizeQ8(w.data(), rows, cols);
                quantizeActivationQ8(x.data(), cols, a);
                std::vector<float> y(static_cast<size_t>(rows));
                gemvQ8(q, a, y.data(), bias.data(), 0, rows);
                for (int64_t r = 0; r < rows; ++r) {
                    double ref = bias[static_cast<size_t>(r)], sumAbs = std::fabs(ref);
                    for (int64_t c = 0; c < cols; ++c) {
                        const double p = double(q.dequantize(r, c)) * a.q.data()[c] * a.scale.data()[c / 32];
                        ref += p;
                        sumAbs += std::fabs(p);
                    }
                    if (std::fabs(y[static_cast<size_t>(r)] - ref) > tolerance(cols, sumAbs))
                        QFAIL(qPrintable(
                            QString("%1x%2 row %3: %4 vs %5").arg(rows).arg(cols).arg(r).arg(y[r]).arg(ref)));
                }
            }
    }

    // Quantization itself: |q| <= 127, |w - q * scale| <= scale / 2 (the fp16 scale is rounded up
    // from maxabs / 127, so nothing clips), the max of each group reaches |q| >= 126, padding is zero.
    void q8QuantizationError() {
        uint32_t seed = 400;
        for (int64_t cols : kCols) {
            const int64_t rows = 5;
            const std::vector<float> w = randomMatrix(rows, cols, seed++);
            const std::vector<uint16_t> wb = toBf16All(w);
            for (int src = 0; src < 2; ++src) {
                const PackedQ8 q =
                    src == 0 ? quantizeQ8(w.data(), rows, cols) : quantizeQ8(wb.data(), rows, cols);
                QCOMPARE(q.groups, (cols + 31) / 32);
                for (int64_t r = 0; r < rows; ++r) {
                    for (int64_t g = 0; g < q.groups; ++g) {
                        const double s = q.scale(r, g);
                        int maxQ = 0;
                        for (int64_t c = g * 32; c < std::min<int64_t>(cols, g * 32 + 32); ++c) {
                            const double v = src == 0 ? w[static_cast<size_t>(r * cols + c)]
                                                      : bf16ToDouble(wb[static_cast<size_t>(r * cols + c)]);
                            const int qv = q.qAt(r, c);
                            QVERIFY(std::abs(qv) <= 127);
                            maxQ = std::max(maxQ, std::abs(qv));
                            // The quotient v / s is rounded to fp32 before rounding to int.
                            QVERIFY2(std::fabs(v - qv * s) <= s * (0.5 + 1e-5),
                                     qPrintable(QString("%1 vs %2*%3").arg(v).arg(qv).arg(s)));
                        }
                        QVERIFY(maxQ >= 126); // fp16 rounding of the scale costs at most 0.1%
                    }
                    for (int64_t c = cols; c < q.pairs * 64; ++c) QCOMPARE(q.qAt(r, c), int8_t(0));
                }
            }
        }
        // Quantized in place (into a model's weight arena): the same bytes as a buffer of its own,
        // bytesFor() is what that takes, and the kernel reads it the same.
        for (int64_t rows : {1, 5, 9})
            for (int64_t cols : kCols) {
                const std::vector<float> w = randomMatrix(rows, cols, seed++);
                const std::vector<uint16_t> wb = toBf16All(w);
                for (int src = 0; src < 2; ++src) {
                    const PackedQ8 own =
                        src == 0 ? quantizeQ8(w.data(), rows, cols) : quantizeQ8(wb.data(), rows, cols);
                    const size_t n = PackedQ8::bytesFor(rows, cols);
                    QCOMPARE(n, own.bytes());
                    auto room = std::make_shared<AlignedBuffer<int8_t>>(n + 1); // the kernels load aligned
                    std::memset(room->data(), 0x5a, n + 1);
                    const PackedQ8 in = src == 0
                                            ? quantizeQ8Into(w.data(), rows, cols, cols, room->data(), room)
                                            : quantizeQ8Into(wb.data(), rows, cols, cols, room->data(), room);
                    QCOMPARE(static_cast<const void *>(in.base()), static_cast<const void *>(room->data()));
                    QCOMPARE(in.data.size(), size_t(0));
                    QVERIFY(std::memcmp(in.base(), own.base(), n) == 0);
                    QCOMPARE(room->data()[n], int8_t(0x5a)); // nothing written past bytesFor()
                    Q8Activation a;
                    const std::vector<float> x = randomMatrix(1, cols, seed++);
                    quantizeActivationQ8(x.data(), cols, a);
                    std::vector<float> y1(static_cast<size_t>(rows)), y2(y1.size());
                    gemvQ8(own, a, y1.data(), nullptr, 0, rows);
                    gemvQ8(in, a, y2.data(), nullptr, 0, rows);
                    QCOMPARE(y1, y2);
                }
            }
        {
            const std::vector<float> w = randomMatrix(4, 64, seed++);
            AlignedBuffer<int8_t> room(PackedQ8::bytesFor(4, 64) + 1);
            QVERIFY_THROWS_EXCEPTION(mgd::Error, quantizeQ8Into(w.data(), 4, 64, 64, nullptr, nullptr));
            QVERIFY_THROWS_EXCEPTION(mgd::Error,
                                     quantizeQ8Into(w.data(), 4, 64, 64, room.data() + 1, nullptr));
        }
        // Bulk dequantization matches the per-value accessor, for any row range and a wider stride.
        {
            const int64_t rows = 9, cols = 100;
            const std::vector<float> w = randomMatrix(rows, cols, seed++);
            const PackedQ8 q = quantizeQ8(w.data(), rows, cols);
            std::vector<float> out(static_cast<size_t>(rows * (cols + 5)), NAN);
            dequantizeQ8Rows(q, 2, 9, out.data(), cols + 5);
            for (int64_t r = 2; r < 9; ++r)
                for (int64_t c = 0; c < cols; ++c)
                    QCOMPARE(out[static_cast<size_t>((r - 2) * (cols + 5) + c)], q.dequantize(r, c));
        }
        // Activations: same bound with their fp32 scale (one more rounding in 127 / maxabs).
        Q8Activation a;
        for (int64_t cols : kCols) {
            const std::vector<float> x = randomMatrix(1, cols, seed++);
            quantizeActivationQ8(x.data(), cols, a);
            for (int64_t c = 0; c < cols; ++c) {
                const double s = a.scale.data()[c / 32];
                QVERIFY(std::fabs(x[static_cast<size_t>(c)] - a.q.data()[c] * s) <= s * (0.5 + 1e-4));
            }
        }
    }

    // The quantized activation is bit-identical at every level (SIMD and scalar share the arithmetic).
    void activationSameAtEveryLevel_data() {
        levels();
    }
    void activationSameAtEveryLevel() {
        ENTER_LEVEL();
        const KernelLevel level = activeLevel();
        uint32_t seed = 600;
        for (int64_t cols : kCols) {
            std::vector<float> x = randomMatrix(1, cols, seed++);
            x[0] = 0.0f; // a zero, and a group of zeros when there is a second group
            for (int64_t c = 32; c < std::min<int64_t>(cols, 64); ++c) x[static_cast<size_t>(c)] = 0.0f;
            Q8Activation a, ref;
            quantizeActivationQ8(x.data(), cols, a);
            forceKernelLevel(KernelLevel::Scalar);
            quantizeActivationQ8(x.data(), cols, ref);
            forceKernelLevel(level);
            QCOMPARE(a.groups, ref.groups);
            QCOMPARE(a.q.size(), ref.q.size());
            QVERIFY(std::memcmp(a.q.data(), ref.q.data(), a.q.size()) == 0);
            QVERIFY(std::memcmp(a.scale.data(), ref.scale.data(), a.scale.size() * 4) == 0);
            QVERIFY(std::memcmp(a.init.data(), ref.init.data(), a.init.size() * 4) == 0);
            // init holds -128 * (sum of the group's q) in the group's first of 8 lanes, zeros elsewhere.
            for (int64_t g = 0; g < static_cast<int64_t>(a.scale.size()); ++g) {
                int32_t sum = 0;
                for (int k = 0; k < 32; ++k) sum += a.q.data()[g * 32 + k];
                QCOMPARE(a.init.data()[g * 8], -128 * sum);
                for (int k = 1; k < 8; ++k) QCOMPARE(a.init.data()[g * 8 + k], 0);
            }
        }
    }

    // Any split of the rows gives bit-identical results to one call (threads may split anywhere).
    void rowRangeSplit_data() {
        levels();
    }
    void rowRangeSplit() {
        ENTER_LEVEL();
        const int64_t rows = 17, cols = 257;
        const std::vector<float> wf = randomMatrix(rows, cols, 500), x = randomMatrix(1, cols, 501);
        const std::vector<float> bias = randomMatrix(1, rows, 502);
        std::vector<uint16_t> wb(wf.size()), xb(x.size());
        for (size_t i = 0; i < wf.size(); ++i) wb[i] = toBf16(wf[i]);
        for (size_t i = 0; i < x.size(); ++i) xb[i] = toBf16(x[i]);
        const PackedBf16 pb(wb.data(), rows, cols);
        const PackedF32 pf(wf.data(), rows, cols);
        const PackedQ8 pq = quantizeQ8(wf.data(), rows, cols);
        Q8Activation a;
        quantizeActivationQ8(x.data(), cols, a);
        const auto run = [&](int kernel, std::vector<float> &y, int64_t r0, int64_t r1) {
            switch (kernel) {
            case 0: gemvBf16(pb, x.data(), y.data(), bias.data(), r0, r1); break;
            case 1: gemvBf16(pb, xb.data(), y.data(), bias.data(), r0, r1); break;
            case 2: gemvF32(pf, x.data(), y.data(), bias.data(), r0, r1); break;
            default: gemvQ8(pq, a, y.data(), bias.data(), r0, r1); break;
            }
        };
        for (int kernel = 0; kernel < 4; ++kernel) {
            std::vector<float> whole(rows, NAN);
            run(kernel, whole, 0, rows);
            for (int64_t k : {0, 1, 2, 5, 8, 13, 16, 17}) {
                std::vector<float> split(rows, NAN);
                run(kernel, split, 0, k);
                run(kernel, split, k, rows);
                QVERIFY2(std::memcmp(whole.data(), split.data(), rows * sizeof(float)) == 0,
                         qPrintable(QString("kernel %1 split at %2").arg(kernel).arg(k)));
            }
            // An empty range writes nothing.
            std::vector<float> untouched(rows, 7.0f);
            run(kernel, untouched, 4, 4);
            QCOMPARE(untouched[4], 7.0f);
        }
    }

    void fp16Conversion() {
        QCOMPARE(halfToFloat(0x3c00), 1.0f);
        QCOMPARE(halfToFloat(0xc000), -2.0f);
        QCOMPARE(halfToFloat(0x7bff), 65504.0f);
        QCOMPARE(halfToFloat(0x0001), std::ldexp(1.0f, -24));
        QCOMPARE(halfToFloat(0x0400), std::ldexp(1.0f, -14));
        QCOMPARE(floatToHalfUp(1.0f), uint16_t(0x3c00));
        QCOMPARE(floatToHalfUp(0.0f), uint16_t(0));
        // Over every positive finite half h: h itself maps to h, just above it maps to h + 1.
        for (uint32_t h = 1; h < 0x7bff; ++h) {
            const float v = halfToFloat(static_cast<uint16_t>(h));
            QCOMPARE(floatToHalfUp(v), uint16_t(h));
            QCOMPARE(floatToHalfUp(std::nextafter(v, 1e9f)), uint16_t(h + 1));
        }
    }

    void refusesBadInput() {
        const std::vector<float> w(64, 1.0f);
        QVERIFY_THROWS_EXCEPTION(mgd::Error, quantizeQ8(w.data(), -1, 8));
        QVERIFY_THROWS_EXCEPTION(mgd::Error, quantizeQ8(w.data(), 2, 8, 4)); // stride < cols
        QVERIFY_THROWS_EXCEPTION(mgd::Error, quantizeQ8(static_cast<const float *>(nullptr), 2, 8));
        std::vector<float> bad = w;
        bad[37] = NAN;
        QVERIFY_THROWS_EXCEPTION(mgd::Error, quantizeQ8(bad.data(), 2, 32));
        bad[37] = 1e10f; // maxabs / 127 beyond fp16
        QVERIFY_THROWS_EXCEPTION(mgd::Error, quantizeQ8(bad.data(), 2, 32));
        Q8Activation a;
        QVERIFY_THROWS_EXCEPTION(mgd::Error, quantizeActivationQ8(bad.data() + 32, -3, a));
        bad[37] = INFINITY;
        for (KernelLevel l : {KernelLevel::Scalar, KernelLevel::Avx2, KernelLevel::Avx512}) {
            if (!levelSupported(l)) continue;
            forceKernelLevel(l);
            bad[37] = INFINITY;
            QVERIFY_THROWS_EXCEPTION(mgd::Error, quantizeActivationQ8(bad.data(), 64, a));
            bad[37] = NAN;
            QVERIFY_THROWS_EXCEPTION(mgd::Error,
                                     quantizeActivationQ8(bad.data(), 40, a)); // in the partial group
        }
        forceKernelLevel(std::nullopt);
        const PackedQ8 q = quantizeQ8(w.data(), 2, 32);
        quantizeActivationQ8(w.data(), 31, a);
        std::vector<float> y(2);
        QVERIFY_THROWS_EXCEPTION(mgd::Error, gemvQ8(q, a, y.data(), nullptr, 0, 2)); // 31 != 32 columns
        quantizeActivationQ8(w.data(), 32, a);
        QVERIFY_THROWS_EXCEPTION(mgd::Error, gemvQ8(q, a, y.data(), nullptr, 1, 3));
        QVERIFY_THROWS_EXCEPTION(mgd::Error,
                                 gemvF32(PackedF32(w.data(), 2, 32), w.data(), y.data(), nullptr, 2, 1));
        QVERIFY_THROWS_EXCEPTION(mgd::Error, PackedBf16(nullptr, 2, 2));
        // An all-zero row quantizes to zero scales and gives exactly 0 (+ bias).
        const std::vector<float> zeros(64, 0.0f), bias{1.5f, -2.0f};
        const PackedQ8 qz = quantizeQ8(zeros.data(), 2, 32);
        gemvQ8(qz, a, y.data(), bias.data(), 0, 2);
        QCOMPARE(y[0], 1.5f);
        QCOMPARE(y[1], -2.0f);
    }
};

QTEST_APPLESS_MAIN(TestGemv)
#include "test_gemv.moc"
