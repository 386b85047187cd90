#pragma once
// Blip2ImageEvalProcessor: PIL BICUBIC resize to SxS (squash), /255, (x-mean)/std, fp32.
#include <array>
#include <cstdint>
#include "core/image/image_decode.h"

namespace at {
class Tensor;
}

namespace mgd {

struct PreprocessParams {
    int size = 224;
    std::array<float, 3> mean{0.48145466f, 0.4578275f, 0.40821073f};
    std::array<float, 3> std{0.26862954f, 0.26130258f, 0.27577711f};
};

// Bit-exact port of Pillow's 8-bit ImagingResample with the BICUBIC filter (a = -0.5,
// support 2, antialiased when shrinking, fixed-point coefficients, horizontal pass then
// vertical, clip to uint8 after each pass). Output is RGB, w x h.
RgbImage resizeBicubicPil(const RgbImage &src, int outWidth, int outHeight);

// [1, 3, S, S] float32 pixel tensor, exactly as torchvision's ToTensor + Normalize.
at::Tensor preprocessImage(const RgbImage &img, const PreprocessParams &p);

} // namespace mgd
