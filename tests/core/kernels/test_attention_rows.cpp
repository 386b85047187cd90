// The one-token attention row kernels (core/kernels/attention_rows.h) at every instruction-set
// level this CPU has, against a float64 reference: bf16, fp32 and int8 rows (with per-row
// scales), head widths that are not multiples of the vector width, strided rows, and
// accumulation into an existing output.
#include <QtTest>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/kernels/attention_rows.h"
#include "core/kernels/cpu_features.h"

using namespace mgd::kernels;

namespace {

constexpr double kUnit = 1.0 / (1 << 24);
const int64_t kRowCounts[] = {1, 5, 17, 40};
const int64_t kWidths[] = {1, 7, 16, 33, 64, 100, 128, 129, 200};

uint16_t toBf16(float v) {
    uint32_t b;
    std::memcpy(&b, &v, 4);
    b += 0x7fff + ((b >> 16) & 1);
    return static_cast<uint16_t>(b >> 16);
}
double widen(uint16_t h) {
    const uint32_t b = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}
double widen(float v) {
    return v;
}
double widen(int8_t v) {
    return v;
}

// rows x stride values of type T (the first n of each row used), random.
template <class T> std::vector<T> randomRows(int64_t rows, int64_t stride, std::mt19937 &rng) {
    std::normal_distribution<float> nd(0, 1);
    std::uniform_int_distribution<int> id(-127, 127);
    std::vector<T> v(static_cast<size_t>(rows * stride));
    for (T &x : v) {
        if constexpr (std::is_same_v<T, uint16_t>)
            x = toBf16(nd(rng));
        else if constexpr (std::is_same_v<T, int8_t>)
            x = static_cast<int8_t>(id(rng));
        else
            x = nd(rng);
    }
    return v;
}

struct Rows {
    int kind; // 0 bf16, 1 fp32, 2 int8
};

// roundQ: q's values bf16-exact, as a bf16 model's are, passed as bf16 (vdpbf16ps where present).
template <class T> void checkRows(int64_t rows, int64_t n, std::mt19937 &rng, bool roundQ = false) {
    const int64_t stride = n + 3; // rows of a KV block lie head after head
    const std::vector<T> k = randomRows<T>(rows, stride, rng);
    std::normal_distribution<float> nd(0, 1);
    std::uniform_real_distribution<float> ud(0.001f, 0.05f);
    std::vector<float> q(static_cast<size_t>(n)), p(static_cast<size_t>(rows)),
        scale(static_cast<size_t>(rows));
    for (float &x : q) x = roundQ ? static_cast<float>(widen(toBf16(nd(rng)))) : nd(rng);
    for (float &x : p) x = ud(rng) * 10;
    for (float &x : scale) x = ud(rng);
    constexpr bool i8 = std::is_same_v<T, int8_t>;
    const float *sc = i8 ? scale.data() : nullptr;

    std::vector<float> dots(static_cast<size_t>(rows));
    if constexpr (std::is_same_v<T, uint16_t>) {
        std::vector<uint16_t> qb(q.size());
        for (size_t d = 0; d < q.size(); ++d) qb[d] = toBf16(q[d]); // exact when roundQ
        if (roundQ)
            dotRowsBf16(k.data(), stride, rows, n, qb.data(), dots.data());
        else
            dotRowsBf16(k.data(), stride, rows, n, q.data(), dots.data());
    }
    if constexpr (std::is_same_v<T, float>) dotRowsF32(k.data(), stride, rows, n, q.data(), dots.data());
    if constexpr (i8) dotRowsI8(k.data(), stride, rows, n, sc, q.data(), dots.data());
    for (int64_t t = 0; t < rows; ++t) {
        double ref = 0, abs = 0;
        for (int64_t d = 0; d < n; ++d) {
            ref += widen(k[t * stride + d]) * q[d];
            abs += std::fabs(widen(k[t * stride + d]) * q[d]);
        }
        const double s = i8 ? scale[t] : 1.0;
        const double tol = (static_cast<double>(n) / 8 + 16) * kUnit * abs * s + 1e-30;
        if (std::fabs(dots[t] - ref * s) > tol)
            QFAIL(qPrintable(QString("dot rows %1 n %2 row %3: %4 vs %5")
                                 .arg(rows)
                                 .arg(n)
                                 .arg(t)
                                 .arg(dots[t])
                                 .arg(ref * s)));
    }

    std::vector<float> out(static_cast<size_t>(n));
    for (float &x : out) x = nd(rng);
    const std::vector<float> before = out;
    if constexpr (std::is_same_v<T, uint16_t>) addRowsBf16(k.data(), stride, rows, n, p.data(), out.data());
    if constexpr (std::is_same_v<T, float>) addRowsF32(k.data(), stride, rows, n, p.data(), out.data());
    if constexpr (i8) addRowsI8(k.data(), stride, rows, n, sc, p.data(), out.data());
    for (int64_t d = 0; d < n; ++d) {
        double ref = before[d], abs = std::fabs(before[d]);
        for (int64_t t = 0; t < rows; ++t) {
            const double w = static_cast<double>(p[t]) * (i8 ? scale[t] : 1.0);
            ref += w * widen(k[t * stride + d]);
            abs += std::fabs(w * widen(k[t * stride + d]));
        }
        // One rounded add per row (the weight p * scale is rounded once too).
        const double tol = (2.0 * rows + 4) * kUnit * abs + 1e-30;
        if (std::fabs(out[d] - ref) > tol)
            QFAIL(qPrintable(
                QString("add rows %1 n %2 col %3: %4 vs %5").arg(rows).arg(n).arg(d).arg(out[d]).arg(ref)));
    }
}

} // namespace

Q_DECLARE_METATYPE(KernelLevel)

class TestAttentionRows : public QObject {
    Q_OBJECT

private slots:
    void cleanup() { forceKernelLevel(std::nullopt); }

    void matchesFloat64_data() {
        QTest::addColumn<KernelLevel>("level");
        QTest::newRow("scalar") << KernelLevel::Scalar;
        QTest::newRow("avx2") << KernelLevel::Avx2;
        QTest::newRow("avx512") << KernelLevel::Avx512;
    }
    void matchesFloat64() {
        QFETCH(KernelLevel, level);
        if (!levelSupported(level)) QSKIP("this CPU lacks the level");
        forceKernelLevel(level);
        QCOMPARE(activeLevel(), level);
        std::mt19937 rng(7);
        for (int64_t rows : kRowCounts)
            for (int64_t n : kWidths) {
                checkRows<uint16_t>(rows, n, rng);
                checkRows<uint16_t>(rows, n, rng, true);
                checkRows<float>(rows, n, rng);
                checkRows<int8_t>(rows, n, rng);
            }
    }

    void softmaxMatchesFloat64_data() { matchesFloat64_data(); }
    void softmaxMatchesFloat64() {
        QFETCH(KernelLevel, level);
        if (!levelSupported(level)) QSKIP("this CPU lacks the level");
        forceKernelLevel(level);
        std::mt19937 rng(11);
        std::normal_distribution<float> nd(0, 1);
        for (int64_t n : {1, 7, 8, 15, 16, 17, 100, 1000})
            for (float spread : {1.0f, 30.0f, 400.0f}) { // 400: most weights underflow
                std::vector<float> row(static_cast<size_t>(n));
                for (float &x : row) x = spread * nd(rng);
                const float scale = 0.125f;
                std::vector<double> ref(row.size());
                double mx = -1e300, sum = 0;
                for (float x : row) mx = std::max(mx, static_cast<double>(x * scale));
                for (size_t t = 0; t < row.size(); ++t)
                    sum += (ref[t] = std::exp(double(row[t] * scale) - mx));
                const std::vector<float> x0 = row;
                softmaxRow(row.data(), n, scale);
                double total = 0;
                for (size_t t = 0; t < row.size(); ++t) {
                    const double want = ref[t] / sum;
                    total += row[t];
                    // exp's own error, the fp32 rounding of its argument scale * x - max, and the sum's.
                    const double arg = std::fabs(double(x0[t] * scale) - mx);
                    const double tol = (1e-6 + 2.5e-7 * arg + 6e-8 * double(n)) * want;
                    if (std::fabs(row[t] - want) > tol && std::fabs(row[t] - want) > 2e-38)
                        QFAIL(qPrintable(QString("n %1 spread %2 t %3: %4 vs %5")
                                             .arg(n)
                                             .arg(spread)
                                             .arg(t)
                                             .arg(row[t])
                                             .arg(want)));
                }
                QVERIFY(std::fabs(total - 1) < 1e-5);
            }
    }

    // Zero rows leave the output as it was (an empty KV block).
    void noRowsIsANoOp() {
        std::vector<float> out{1, 2, 3}, p{0.5f};
        std::vector<uint16_t> v(3, toBf16(1));
        addRowsBf16(v.data(), 3, 0, 3, p.data(), out.data());
        QCOMPARE(out, (std::vector<float>{1, 2, 3}));
    }
};

QTEST_APPLESS_MAIN(TestAttentionRows)
#include "test_attention_rows.moc"
