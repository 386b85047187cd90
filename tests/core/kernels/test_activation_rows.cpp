// The one-token element-wise kernels (core/kernels/activation_rows.h) at every instruction-set
// level this CPU has: SiLU(gate) * up against float64 in fp32, and with bf16 rounding against the
// op-by-op rounding ATen's bf16 tensors do; bf16 rounding (ties to even, overflow to inf, NaN)
// as c10::BFloat16 rounds; lengths that are not multiples of the vector width.
#include <QtTest>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/kernels/activation_rows.h"
#include "core/kernels/cpu_features.h"

using namespace mgd::kernels;

namespace {

const int64_t kLengths[] = {1, 7, 8, 15, 16, 17, 33, 100, 2816};

// c10::BFloat16's rounding (round to nearest even), independent of the kernel's code.
float bf16(float v) {
    if (std::isnan(v)) return v;
    uint32_t b;
    std::memcpy(&b, &v, 4);
    b += 0x7fff + ((b >> 16) & 1);
    b &= 0xffff0000u;
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}

std::vector<float> randomRow(int64_t n, float spread, std::mt19937 &rng) {
    std::normal_distribution<float> nd(0, 1);
    std::vector<float> v(static_cast<size_t>(n));
    for (float &x : v) x = spread * nd(rng);
    return v;
}

} // namespace

Q_DECLARE_METATYPE(KernelLevel)

class TestActivationRows : public QObject {
    Q_OBJECT

private slots:
    void cleanup() { forceKernelLevel(std::nullopt); }

    void siluMulMatchesFloat64_data() {
        QTest::addColumn<KernelLevel>("level");
        QTest::newRow("scalar") << KernelLevel::Scalar;
        QTest::newRow("avx2") << KernelLevel::Avx2;
        QTest::newRow("avx512") << KernelLevel::Avx512;
    }
    void siluMulMatchesFloat64() {
        QFETCH(KernelLevel, level);
        if (!levelSupported(level)) QSKIP("this CPU lacks the level");
        forceKernelLevel(level);
        QCOMPARE(activeLevel(), level);
        std::mt19937 rng(3);
        for (int64_t n : kLengths)
            for (float spread : {1.0f, 8.0f, 120.0f}) { // 120: exp(-|g|) underflows, silu(g) -> 0 or g
                const std::vector<float> g = randomRow(n, spread, rng), u = randomRow(n, 2, rng);
                std::vector<float> out(g.size(), -1.0f);
                siluMulRow(g.data(), u.data(), n, false, out.data());
                for (size_t i = 0; i < g.size(); ++i) {
                    const double want = double(g[i]) / (1.0 + std::exp(-double(g[i]))) * double(u[i]);
                    if (std::fabs(out[i] - want) > 1e-6 * std::fabs(want) + 1e-30)
                        QFAIL(qPrintable(QString("n %1 i %2 g %3: %4 vs %5")
                                             .arg(n)
                                             .arg(i)
                                             .arg(g[i])
                                             .arg(out[i])
                                             .arg(want)));
                }
            }
    }

    // bf16: each op rounded as ATen's bf16 silu and mul store them; the kernels' exp may differ
    // from std::exp in the last fp32 bits, which moves a bf16 result by at most one step.
    void siluMulRoundsAsBf16Ops_data() { siluMulMatchesFloat64_data(); }
    void siluMulRoundsAsBf16Ops() {
        QFETCH(KernelLevel, level);
        if (!levelSupported(level)) QSKIP("this CPU lacks the level");
        forceKernelLevel(level);
        std::mt19937 rng(5);
        int off = 0, total = 0;
        for (int64_t n : kLengths) {
            const std::vector<float> g = randomRow(n, 3, rng), u = randomRow(n, 2, rng);
            std::vector<float> out(g.size());
            siluMulRow(g.data(), u.data(), n, true, out.data());
            for (size_t i = 0; i < g.size(); ++i) {
                const float gi = bf16(g[i]);
                const float want = bf16(bf16(gi / (1.0f + std::exp(-gi))) * bf16(u[i]));
                QCOMPARE(bf16(out[i]), out[i]); // a bf16 value
                ++total;
                if (out[i] == want) continue;
                ++off;
                QVERIFY2(std::fabs(out[i] - want) <= std::fabs(want) / 64,
                         qPrintable(QString("%1 vs %2").arg(out[i]).arg(want)));
            }
        }
        QVERIFY2(off * 100 <= total, qPrintable(QString("%1 of %2 differ").arg(off).arg(total)));
    }

    void roundingIsNearestEven_data() { siluMulMatchesFloat64_data(); }
    void roundingIsNearestEven() {
        QFETCH(KernelLevel, level);
        if (!levelSupported(level)) QSKIP("this CPU lacks the level");
        forceKernelLevel(level);
        std::mt19937 rng(9);
        for (int64_t n : kLengths) {
            std::vector<float> v = randomRow(n, 50, rng);
            // Ties both ways, the largest finite float (rounds to inf), inf, NaN, a denormal.
            const float special[] = {1.00390625f,
                                     1.01171875f,
                                     -1.00390625f,
                                     std::numeric_limits<float>::max(),
                                     std::numeric_limits<float>::infinity(),
                                     std::numeric_limits<float>::quiet_NaN(),
                                     1e-40f};
            for (size_t i = 0; i < v.size() && i < std::size(special); ++i) v[i] = special[i];
            std::vector<float> r = v;
            roundBf16Row(r.data(), n);
            std::vector<uint16_t> bits(v.size());
            toBf16Row(v.data(), n, bits.data());
            for (size_t i = 0; i < v.size(); ++i) {
                const float want = bf16(v[i]);
                uint32_t wb;
                std::memcpy(&wb, &want, 4);
                if (std::isnan(want)) {
                    QVERIFY(std::isnan(r[i]));
                    QVERIFY((bits[i] & 0x7f80) == 0x7f80 && (bits[i] & 0x7f) != 0);
                    continue;
                }
                QCOMPARE(r[i], want);
                QCOMPARE(bits[i], static_cast<uint16_t>(wb >> 16));
            }
        }
        QCOMPARE(bf16(1.00390625f), 1.0f);      // tie to even (down)
        QCOMPARE(bf16(1.01171875f), 1.015625f); // tie to even (up)
    }
};

QTEST_APPLESS_MAIN(TestActivationRows)
#include "test_activation_rows.moc"
