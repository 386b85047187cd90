#include "core/image/preprocess.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "core/util/error.h"

namespace mgd {
namespace {

// Port of Pillow 9.4 src/libImaging/Resample.c (ImagingResample, BICUBIC, 8 bits per
// channel). Bit-exactness depends on doing the same double arithmetic in the same order,
// so no fused multiply-add may be formed from these expressions.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

// 8 bits for the result, 2 for overflow of the negative lobes and sums above 1.0.
constexpr int kPrecisionBits = 32 - 8 - 2;
constexpr double kBicubicSupport = 2.0;

double bicubicFilter(double x) {
    constexpr double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

// Per output pixel: first source index, tap count and fixed-point taps (ksize per pixel).
struct Coeffs {
    int ksize = 0;
    std::vector<int> bounds; // xmin, xmax pairs
    std::vector<int32_t> kk;
};

// precompute_coeffs + normalize_coeffs_8bpc for the box (0, inSize).
Coeffs precomputeCoeffs(int inSize, int outSize) {
    const float in0 = 0.0f;
    const float in1 = float(inSize);
    const double scale = double(in1 - in0) / outSize;
    const double filterscale = std::max(scale, 1.0);
    const double support = kBicubicSupport * filterscale;

    Coeffs c;
    c.ksize = int(std::ceil(support)) * 2 + 1;
    c.bounds.resize(size_t(outSize) * 2);
    c.kk.assign(size_t(outSize) * size_t(c.ksize), 0);
    std::vector<double> k(size_t(c.ksize));
    for (int xx = 0; xx < outSize; ++xx) {
        const double center = in0 + (xx + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        // Truncation toward zero, then clamping, as in C.
        const int xmin = std::max(int(center - support + 0.5), 0);
        const int xmax = std::min(int(center + support + 0.5), inSize) - xmin;
        double ww = 0.0;
        std::fill(k.begin(), k.end(), 0.0);
        for (int x = 0; x < xmax; ++x) {
            const double w = bicubicFilter((x + xmin - center + 0.5) * ss);
            k[size_t(x)] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; ++x) {
            if (ww != 0.0)
                k[size_t(x)] /= ww;
        }
        int32_t *out = c.kk.data() + size_t(xx) * size_t(c.ksize);
        for (int x = 0; x < c.ksize; ++x) {
            const double v = k[size_t(x)];
            out[x] = v < 0 ? int(-0.5 + v * (1 << kPrecisionBits))
                           : int(0.5 + v * (1 << kPrecisionBits));
        }
        c.bounds[size_t(xx) * 2] = xmin;
        c.bounds[size_t(xx) * 2 + 1] = xmax;
    }
    return c;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

// clip8: Pillow's lookup table covers every sum the filter can produce, and equals a clamp.
inline uint8_t clip8(int32_t in) {
    return uint8_t(std::clamp(in >> kPrecisionBits, 0, 255));
}

// Rows [offset, offset + out.height) of src, resampled horizontally to out.width.
void resampleHorizontal(RgbImage &out, const RgbImage &src, int offset, const Coeffs &c) {
    const size_t inStride = size_t(src.width) * 3;
    for (int yy = 0; yy < out.height; ++yy) {
        const uint8_t *row = src.rgb.data() + size_t(yy + offset) * inStride;
        uint8_t *dst = out.rgb.data() + size_t(yy) * size_t(out.width) * 3;
        for (int xx = 0; xx < out.width; ++xx) {
            const int xmin = c.bounds[size_t(xx) * 2];
            const int xmax = c.bounds[size_t(xx) * 2 + 1];
            const int32_t *k = c.kk.data() + size_t(xx) * size_t(c.ksize);
            int32_t ss0 = 1 << (kPrecisionBits - 1);
            int32_t ss1 = ss0, ss2 = ss0;
            for (int x = 0; x < xmax; ++x) {
                const uint8_t *p = row + size_t(x + xmin) * 3;
                ss0 += p[0] * k[x];
                ss1 += p[1] * k[x];
                ss2 += p[2] * k[x];
            }
            dst[size_t(xx) * 3 + 0] = clip8(ss0);
            dst[size_t(xx) * 3 + 1] = clip8(ss1);
            dst[size_t(xx) * 3 + 2] = clip8(ss2);
        }
    }
}

void resampleVertical(RgbImage &out, const RgbImage &src, const Coeffs &c) {
    const size_t stride = size_t(src.width) * 3;
    for (int yy = 0; yy < out.height; ++yy) {
        const int ymin = c.bounds[size_t(yy) * 2];
        const int ymax = c.bounds[size_t(yy) * 2 + 1];
        const int32_t *k = c.kk.data() + size_t(yy) * size_t(c.ksize);
        uint8_t *dst = out.rgb.data() + size_t(yy) * stride;
        for (int xx = 0; xx < out.width; ++xx) {
            int32_t ss0 = 1 << (kPrecisionBits - 1);
            int32_t ss1 = ss0, ss2 = ss0;
            for (int y = 0; y < ymax; ++y) {
                const uint8_t *p = src.rgb.data() + size_t(y + ymin) * stride + size_t(xx) * 3;
                ss0 += p[0] * k[y];
                ss1 += p[1] * k[y];
                ss2 += p[2] * k[y];
            }
            dst[size_t(xx) * 3 + 0] = clip8(ss0);
            dst[size_t(xx) * 3 + 1] = clip8(ss1);
            dst[size_t(xx) * 3 + 2] = clip8(ss2);
        }
    }
}

RgbImage blankImage(int width, int height) {
    RgbImage img;
    img.width = width;
    img.height = height;
    img.rgb.resize(size_t(width) * size_t(height) * 3);
    return img;
}

} // namespace

RgbImage resizeBicubicPil(const RgbImage &src, int outWidth, int outHeight) {
    if (src.width <= 0 || src.height <= 0 ||
        src.rgb.size() != size_t(src.width) * size_t(src.height) * 3)
        throw Error("resizeBicubicPil: invalid source image " + std::to_string(src.width) +
                    "x" + std::to_string(src.height) + " with " +
                    std::to_string(src.rgb.size()) + " bytes");
    if (outWidth <= 0 || outHeight <= 0)
        throw Error("resizeBicubicPil: invalid target size " + std::to_string(outWidth) + "x" +
                    std::to_string(outHeight));

    // ImagingResampleInner: vertical coefficients first, because their bounds limit the rows
    // the horizontal pass has to produce.
    const bool needHorizontal = outWidth != src.width;
    const bool needVertical = outHeight != src.height;
    if (!needHorizontal && !needVertical)
        return src; // Image.resize returns a copy for the same size

    Coeffs vert = precomputeCoeffs(src.height, outHeight);
    const int yboxFirst = vert.bounds[0];
    const int yboxLast = vert.bounds[size_t(outHeight) * 2 - 2] +
                         vert.bounds[size_t(outHeight) * 2 - 1];

    RgbImage temp;
    const RgbImage *in = &src;
    if (needHorizontal) {
        const Coeffs horiz = precomputeCoeffs(src.width, outWidth);
        for (int i = 0; i < outHeight; ++i)
            vert.bounds[size_t(i) * 2] -= yboxFirst;
        temp = blankImage(outWidth, yboxLast - yboxFirst);
        resampleHorizontal(temp, src, yboxFirst, horiz);
        in = &temp;
    }
    if (!needVertical)
        return temp;
    RgbImage out = blankImage(in->width, outHeight);
    resampleVertical(out, *in, vert);
    return out;
}

at::Tensor preprocessImage(const RgbImage &img, const PreprocessParams &p) {
    if (p.size <= 0)
        throw Error("preprocessImage: invalid image size " + std::to_string(p.size));
    for (float s : p.std) {
        if (s == 0.0f)
            throw Error("preprocessImage: std evaluated to zero, leading to division by zero");
    }
    const RgbImage resized = resizeBicubicPil(img, p.size, p.size);
    const int64_t s = p.size;

    // ToTensor: HWC bytes -> CHW contiguous -> float -> / 255.
    at::Tensor bytes = at::from_blob(const_cast<uint8_t *>(resized.rgb.data()), {s, s, 3},
                                     at::TensorOptions().dtype(at::kByte));
    at::Tensor x = bytes.permute({2, 0, 1}).contiguous().to(at::kFloat).div(255);

    // Normalize: float32 mean/std, sub_ then div_ (torchvision F.normalize).
    const auto opts = at::TensorOptions().dtype(at::kFloat);
    const at::Tensor mean = at::tensor({p.mean[0], p.mean[1], p.mean[2]}, opts).view({-1, 1, 1});
    const at::Tensor std = at::tensor({p.std[0], p.std[1], p.std[2]}, opts).view({-1, 1, 1});
    x.sub_(mean).div_(std);
    return x.unsqueeze(0);
}

} // namespace mgd
