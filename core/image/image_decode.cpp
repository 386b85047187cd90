#include "core/image/image_decode.h"

#include <algorithm>
#include <climits>
#include <filesystem>
#include <fstream>
#include <new>
#include <optional>
#include <system_error>

// OpenCV 4.6 headers trip C++20's enum-arithmetic deprecation; they are not ours to fix.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-enum-enum-conversion"
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#pragma GCC diagnostic pop

#include "core/util/error.h"

// Conversions follow PIL's Image.open(p).convert('RGB'), which is what MiniGPT-4 does:
// - no EXIF orientation is applied (IMREAD_UNCHANGED, as PIL does not transpose either);
// - alpha is dropped, not composited or premultiplied;
// - grey (and grey+alpha) is replicated to R=G=B; palettes are expanded by libpng;
// - 16-bit samples keep their high byte (v >> 8). That is what PIL does for 16-bit RGB(A)
//   PNGs; for 16-bit grey PIL would clip to 255 (mode I;16 -> L), which is useless, so we
//   scale it the same way as colour instead.
// Only formats whose header we can read ourselves are handed to OpenCV, so that the pixel
// count is known and checked before any decoder allocates a frame.

namespace mgd {
namespace {

enum class Format { Png, Jpeg, Gif, Bmp, WebP, Tiff, Pnm };

const char *formatName(Format f) {
    switch (f) {
    case Format::Png: return "PNG";
    case Format::Jpeg: return "JPEG";
    case Format::Gif: return "GIF";
    case Format::Bmp: return "BMP";
    case Format::WebP: return "WebP";
    case Format::Tiff: return "TIFF";
    case Format::Pnm: return "PNM";
    }
    return "image";
}

[[noreturn]] void fail(const std::string &label, const std::string &reason) {
    throw Error("image '" + label + "': " + reason);
}

// Bounds-checked little/big-endian readers over the input bytes.
class Bytes {
public:
    Bytes(const uint8_t *data, size_t size) : data_(data), size_(size) {}
    size_t size() const { return size_; }
    bool has(size_t off, size_t n) const { return off <= size_ && n <= size_ - off; }
    uint8_t u8(size_t off) const { return has(off, 1) ? data_[off] : 0; }
    uint32_t be16(size_t off) const { return uint32_t(u8(off)) << 8 | u8(off + 1); }
    uint32_t le16(size_t off) const { return uint32_t(u8(off + 1)) << 8 | u8(off); }
    uint32_t be32(size_t off) const { return be16(off) << 16 | be16(off + 2); }
    uint32_t le32(size_t off) const { return le16(off + 2) << 16 | le16(off); }
    uint32_t le24(size_t off) const { return uint32_t(u8(off + 2)) << 16 | le16(off); }
    bool startsWith(size_t off, const char *magic, size_t n) const {
        return has(off, n) && std::equal(magic, magic + n, data_ + off,
                                         [](char a, uint8_t b) { return uint8_t(a) == b; });
    }

private:
    const uint8_t *data_;
    size_t size_;
};

struct Dims {
    int64_t width = 0;
    int64_t height = 0;
};

std::optional<Format> sniffFormat(const Bytes &b) {
    if (b.startsWith(0, "\x89PNG\r\n\x1a\n", 8))
        return Format::Png;
    if (b.startsWith(0, "\xff\xd8\xff", 3))
        return Format::Jpeg;
    if (b.startsWith(0, "GIF87a", 6) || b.startsWith(0, "GIF89a", 6))
        return Format::Gif;
    if (b.startsWith(0, "BM", 2))
        return Format::Bmp;
    if (b.startsWith(0, "RIFF", 4) && b.startsWith(8, "WEBP", 4))
        return Format::WebP;
    if (b.startsWith(0, "II*\0", 4) || b.startsWith(0, "MM\0*", 4))
        return Format::Tiff;
    if (b.size() >= 2 && b.u8(0) == 'P' && b.u8(1) >= '1' && b.u8(1) <= '6')
        return Format::Pnm;
    return std::nullopt;
}

Dims pngDims(const Bytes &b, const std::string &label) {
    // Signature, then the first chunk must be IHDR with length 13.
    if (!b.has(8, 8 + 13) || b.be32(8) != 13 || !b.startsWith(12, "IHDR", 4))
        fail(label, "corrupt PNG header (no IHDR chunk)");
    return {b.be32(16), b.be32(20)};
}

// Walks the marker segments up to the first frame header, then on through the scans to
// EOI: libjpeg silently pads a truncated stream with grey, PIL refuses it, and so do we.
Dims jpegDims(const Bytes &b, const std::string &label) {
    std::optional<Dims> dims;
    size_t pos = 2; // after SOI
    while (true) {
        // Markers may be preceded by any number of 0xFF fill bytes.
        if (!b.has(pos, 2) || b.u8(pos) != 0xff)
            break;
        while (b.has(pos, 2) && b.u8(pos + 1) == 0xff)
            ++pos;
        if (!b.has(pos, 2))
            break;
        const uint8_t marker = b.u8(pos + 1);
        pos += 2;
        if (marker == 0xd9) { // EOI
            if (!dims)
                fail(label, "corrupt JPEG data (no frame header)");
            return *dims;
        }
        if (marker == 0x01 || (marker >= 0xd0 && marker <= 0xd7))
            continue; // standalone markers: TEM, RSTn
        if (marker == 0x00 || marker == 0xd8)
            fail(label, "corrupt JPEG data (unexpected marker)");
        if (!b.has(pos, 2))
            break;
        const size_t length = b.be16(pos);
        if (length < 2 || !b.has(pos, length))
            break;
        const bool isSof = marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 &&
                           marker != 0xc8 && marker != 0xcc;
        if (isSof && !dims) {
            if (length < 8)
                fail(label, "corrupt JPEG frame header");
            // Height 0 means "defined later by DNL", which libjpeg does not support.
            dims = Dims{b.be16(pos + 5), b.be16(pos + 3)};
            if (dims->height == 0)
                fail(label, "unsupported JPEG (height defined by a DNL marker)");
        }
        pos += length;
        if (marker == 0xda) { // SOS: skip entropy-coded data up to the next real marker
            if (!dims)
                fail(label, "corrupt JPEG data (scan before frame header)");
            while (b.has(pos, 2)) {
                const uint8_t next = b.u8(pos + 1);
                if (b.u8(pos) == 0xff && next != 0x00 && next != 0xff &&
                    !(next >= 0xd0 && next <= 0xd7))
                    break;
                ++pos;
            }
        }
    }
    fail(label, dims ? "truncated JPEG data (no end-of-image marker)"
                     : "corrupt or truncated JPEG header");
}

Dims gifDims(const Bytes &b, const std::string &label) {
    if (!b.has(6, 4))
        fail(label, "truncated GIF header");
    return {b.le16(6), b.le16(8)};
}

Dims bmpDims(const Bytes &b, const std::string &label) {
    if (!b.has(14, 4))
        fail(label, "truncated BMP header");
    const uint32_t infoSize = b.le32(14);
    if (infoSize == 12) { // OS/2 BITMAPCOREHEADER: unsigned 16-bit sizes
        if (!b.has(18, 4))
            fail(label, "truncated BMP header");
        return {b.le16(18), b.le16(20)};
    }
    if (infoSize < 16 || !b.has(18, 8))
        fail(label, "corrupt BMP header");
    // Signed 32-bit; a negative height means top-down rows.
    const int64_t w = int32_t(b.le32(18));
    const int64_t h = int32_t(b.le32(22));
    return {w, h < 0 ? -h : h};
}

Dims webpDims(const Bytes &b, const std::string &label) {
    if (b.startsWith(12, "VP8X", 4) && b.has(24, 6))
        return {int64_t(b.le24(24)) + 1, int64_t(b.le24(27)) + 1};
    if (b.startsWith(12, "VP8 ", 4) && b.has(20, 10) && b.startsWith(23, "\x9d\x01\x2a", 3))
        return {b.le16(26) & 0x3fff, b.le16(28) & 0x3fff};
    if (b.startsWith(12, "VP8L", 4) && b.has(20, 5) && b.u8(20) == 0x2f) {
        const uint32_t bits = b.le32(21);
        return {int64_t(bits & 0x3fff) + 1, int64_t((bits >> 14) & 0x3fff) + 1};
    }
    fail(label, "corrupt or unsupported WebP header");
}

// Image width/length from the first IFD (the page OpenCV decodes).
Dims tiffDims(const Bytes &b, const std::string &label) {
    const bool le = b.u8(0) == 'I';
    auto u16 = [&](size_t off) { return le ? b.le16(off) : b.be16(off); };
    auto u32 = [&](size_t off) { return le ? b.le32(off) : b.be32(off); };
    const size_t ifd = u32(4);
    if (!b.has(ifd, 2))
        fail(label, "corrupt TIFF header (bad IFD offset)");
    const size_t count = u16(ifd);
    if (!b.has(ifd + 2, count * 12))
        fail(label, "truncated TIFF directory");
    int64_t width = -1, height = -1;
    for (size_t i = 0; i < count; ++i) {
        const size_t e = ifd + 2 + i * 12;
        const uint32_t tag = u16(e), type = u16(e + 2);
        if (tag != 256 && tag != 257)
            continue;
        int64_t v = -1;
        if (type == 3) // SHORT, left-justified in the value field
            v = u16(e + 8);
        else if (type == 4) // LONG
            v = u32(e + 8);
        (tag == 256 ? width : height) = v;
    }
    if (width < 0 || height < 0)
        fail(label, "corrupt TIFF header (no image size)");
    return {width, height};
}

// "P1".."P6": whitespace- and comment-separated decimal width and height.
Dims pnmDims(const Bytes &b, const std::string &label) {
    size_t pos = 2;
    int64_t values[2] = {0, 0};
    for (int64_t &v : values) {
        while (pos < b.size()) {
            const uint8_t c = b.u8(pos);
            if (c == '#') {
                while (pos < b.size() && b.u8(pos) != '\n' && b.u8(pos) != '\r')
                    ++pos;
            } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
                       c == '\f') {
                ++pos;
            } else {
                break;
            }
        }
        size_t digits = 0;
        while (pos < b.size() && b.u8(pos) >= '0' && b.u8(pos) <= '9') {
            if (++digits > 9)
                fail(label, "corrupt PNM header (size out of range)");
            v = v * 10 + (b.u8(pos) - '0');
            ++pos;
        }
        if (digits == 0)
            fail(label, "corrupt PNM header");
    }
    return {values[0], values[1]};
}

Dims headerDims(Format f, const Bytes &b, const std::string &label) {
    switch (f) {
    case Format::Png: return pngDims(b, label);
    case Format::Jpeg: return jpegDims(b, label);
    case Format::Gif: return gifDims(b, label);
    case Format::Bmp: return bmpDims(b, label);
    case Format::WebP: return webpDims(b, label);
    case Format::Tiff: return tiffDims(b, label);
    case Format::Pnm: return pnmDims(b, label);
    }
    fail(label, "unsupported image format");
}

// OpenCV's BGR(A)/grey, 8- or 16-bit, to interleaved 8-bit RGB.
RgbImage toRgb(const cv::Mat &m, const std::string &label) {
    const int channels = m.channels();
    const int depth = m.depth();
    if (depth != CV_8U && depth != CV_16U)
        fail(label, "unsupported sample format (only 8- and 16-bit images are supported)");
    if (channels != 1 && channels != 2 && channels != 3 && channels != 4)
        fail(label, "unsupported number of channels: " + std::to_string(channels));

    RgbImage out;
    out.width = m.cols;
    out.height = m.rows;
    out.rgb.resize(size_t(m.cols) * size_t(m.rows) * 3);
    // Channel order in OpenCV: grey / grey+alpha, or B,G,R(,A).
    const int ri = channels >= 3 ? 2 : 0;
    const int gi = channels >= 3 ? 1 : 0;
    const int bi = 0;
    for (int y = 0; y < m.rows; ++y) {
        uint8_t *dst = out.rgb.data() + size_t(y) * size_t(m.cols) * 3;
        if (depth == CV_8U) {
            const uint8_t *src = m.ptr<uint8_t>(y);
            for (int x = 0; x < m.cols; ++x, src += channels, dst += 3) {
                dst[0] = src[ri];
                dst[1] = src[gi];
                dst[2] = src[bi];
            }
        } else {
            const uint16_t *src = m.ptr<uint16_t>(y);
            for (int x = 0; x < m.cols; ++x, src += channels, dst += 3) {
                dst[0] = uint8_t(src[ri] >> 8);
                dst[1] = uint8_t(src[gi] >> 8);
                dst[2] = uint8_t(src[bi] >> 8);
            }
        }
    }
    return out;
}

} // namespace

RgbImage decodeImageBytes(const uint8_t *data, size_t size, const std::string &label,
                          const ImageLimits &limits) {
    if (size == 0)
        fail(label, "file is empty");
    if (data == nullptr)
        fail(label, "no data");
    if (size > limits.maxFileBytes)
        fail(label, "file is too large (" + std::to_string(size) + " bytes, limit " +
                        std::to_string(limits.maxFileBytes) + ")");
    if (size > size_t(INT_MAX))
        fail(label, "file is too large for the decoder");

    const Bytes bytes(data, size);
    const std::optional<Format> format = sniffFormat(bytes);
    if (!format)
        fail(label, "unsupported or unrecognised image format");
    const char *name = formatName(*format);
    // OpenCV picks its decoder from its own signature checks, and "DICM" at offset 128 sends any
    // file to GDCM, which aborts the process on malformed data (fuzzing found a WebP that did).
    // We never accept DICOM: such a file is refused before it reaches OpenCV.
    if (bytes.startsWith(128, "DICM", 4))
        fail(label, std::string(name) + " data carries a DICOM signature at byte 128; refused");

    const Dims dims = headerDims(*format, bytes, label);
    if (dims.width <= 0 || dims.height <= 0)
        fail(label, std::string("corrupt ") + name + " header (zero image size)");
    if (dims.width > INT_MAX || dims.height > INT_MAX ||
        dims.width * dims.height > limits.maxPixels)
        fail(label, std::to_string(dims.width) + "x" + std::to_string(dims.height) +
                        " pixels exceeds the limit of " + std::to_string(limits.maxPixels) +
                        " pixels");

    cv::Mat decoded;
    try {
        const cv::Mat buf(1, int(size), CV_8U, const_cast<uint8_t *>(data));
        decoded = cv::imdecode(buf, cv::IMREAD_UNCHANGED);
    } catch (const cv::Exception &e) {
        fail(label, std::string("cannot decode ") + name + " data: " + e.what());
    } catch (const std::bad_alloc &) {
        fail(label, std::string("out of memory decoding ") + name + " data");
    }
    if (decoded.empty())
        fail(label, std::string("cannot decode ") + name +
                        " data (corrupt, truncated or unsupported by this build)");
    // The decoder must agree with the header we checked the limits against.
    if (decoded.cols != dims.width || decoded.rows != dims.height)
        fail(label, std::string("corrupt ") + name + " data (decoded size differs from header)");
    try {
        return toRgb(decoded, label);
    } catch (const std::bad_alloc &) {
        fail(label, "out of memory converting to RGB");
    }
}

RgbImage decodeImageFile(const std::string &path, const ImageLimits &limits) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (st.type() == fs::file_type::not_found)
        fail(path, "file does not exist");
    if (ec)
        fail(path, "cannot access file: " + ec.message());
    if (!fs::is_regular_file(st))
        fail(path, "not a regular file");
    const uintmax_t fileSize = fs::file_size(path, ec);
    if (ec)
        fail(path, "cannot read file size: " + ec.message());
    if (fileSize == 0)
        fail(path, "file is empty");
    if (fileSize > limits.maxFileBytes)
        fail(path, "file is too large (" + std::to_string(fileSize) + " bytes, limit " +
                       std::to_string(limits.maxFileBytes) + ")");

    std::ifstream in(path, std::ios::binary);
    if (!in)
        fail(path, "cannot open file");
    std::vector<uint8_t> bytes(static_cast<size_t>(fileSize));
    in.read(reinterpret_cast<char *>(bytes.data()), std::streamsize(bytes.size()));
    // A file that shrank while we read it is treated as what we actually got.
    bytes.resize(size_t(in.gcount()));
    if (bytes.empty())
        fail(path, "file is empty or unreadable");
    return decodeImageBytes(bytes.data(), bytes.size(), path, limits);
}

} // namespace mgd
