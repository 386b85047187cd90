#pragma once
// Image file decoding with limits (OpenCV). Refuses zero-byte, corrupt, unsupported and
// decompression-bomb inputs with an mgd::Error naming the file; never crashes.
#include <cstdint>
#include <string>
#include <vector>

namespace mgd {

struct RgbImage {
    int width = 0;
    int height = 0;
    std::vector<uint8_t> rgb; // interleaved R,G,B rows, width*height*3 bytes
};

struct ImageLimits {
    size_t maxFileBytes = 64u << 20;     // 64 MiB
    int64_t maxPixels = 64LL * 1000 * 1000; // checked from the header, before decoding
    bool operator==(const ImageLimits &) const = default;
};

RgbImage decodeImageFile(const std::string &path, const ImageLimits &limits = {});
RgbImage decodeImageBytes(const uint8_t *data, size_t size, const std::string &label,
                          const ImageLimits &limits = {});

} // namespace mgd
