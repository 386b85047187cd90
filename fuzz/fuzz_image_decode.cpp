// Image files through the decode-with-limits path the app uses (PNG, JPEG, BMP, WebP, TIFF,
// ...): the header is checked against the limits before anything is decoded.
#include "core/image/image_decode.h"
#include "fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mgd::ImageLimits limits;
    limits.maxPixels = 4LL * 1000 * 1000; // keeps one execution under a second
    mgd::fuzz::expectCleanErrors([&] {
        const auto img = mgd::decodeImageBytes(data, size, "fuzz image", limits);
        if (img.width <= 0 || img.height <= 0 || int64_t(img.width) * img.height > limits.maxPixels ||
            img.rgb.size() != size_t(img.width) * img.height * 3)
            std::abort();
    });
    return 0;
}
