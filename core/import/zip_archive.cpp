#include "core/import/zip_archive.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_set>

#include "core/util/error.h"

namespace mgd::pth {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr size_t kEocdSize = 22;
constexpr size_t kZip64LocatorSize = 20;
constexpr size_t kZip64EocdSize = 56;
constexpr size_t kCentralSize = 46;
constexpr size_t kLocalSize = 30;
// End record + the longest comment: the furthest back the end record can start.
constexpr uint64_t kMaxEocdScan = kEocdSize + 0xffff;
// A torch archive's directory holds one small record per storage; 512 MiB is far beyond
// any real one and keeps a hostile size from being allocated.
constexpr uint64_t kMaxCentralDirBytes = 512ull << 20;

uint16_t le16(const unsigned char *p) {
    return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
uint32_t le32(const unsigned char *p) {
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
           (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t le64(const unsigned char *p) {
    return le32(p) | (static_cast<uint64_t>(le32(p + 4)) << 32);
}

const unsigned char *bytes(const std::string &s) {
    return reinterpret_cast<const unsigned char *>(s.data());
}

std::string num(uint64_t v) {
    return std::to_string(v);
}

} // namespace

// ---- ReadOnlyFile ----------------------------------------------------------------------

ReadOnlyFile::ReadOnlyFile(const std::string &path, std::string label)
    : path_(path), label_(std::move(label)) {
    if (label_.empty()) label_ = "file '" + path + "'";
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw Error(label_ + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd_);
        fd_ = -1;
        throw Error(label_ + ": not a regular file");
    }
    size_ = static_cast<uint64_t>(st.st_size);
}

ReadOnlyFile::~ReadOnlyFile() {
    if (fd_ >= 0) ::close(fd_);
}

void ReadOnlyFile::readAt(uint64_t offset, void *dst, size_t n) const {
    if (offset > size_ || n > size_ - offset)
        throw Error(label_ + ": read of " + num(n) + " bytes at byte " + num(offset) +
                    " runs past the end (" + num(size_) + " bytes)");
    auto *out = static_cast<char *>(dst);
    while (n > 0) {
        // Large reads go in chunks: some kernels cap a single pread near 2 GiB.
        const size_t chunk = std::min<size_t>(n, size_t{1} << 30);
        const ssize_t got = ::pread(fd_, out, chunk, static_cast<off_t>(offset));
        if (got < 0) {
            if (errno == EINTR) continue;
            throw Error(label_ + ": read failed at byte " + num(offset) + ": " + std::strerror(errno));
        }
        if (got == 0)
            throw Error(label_ + ": ends at byte " + num(offset) + ", " + num(n) +
                        " bytes short (was the file truncated while reading?)");
        out += got;
        offset += static_cast<uint64_t>(got);
        n -= static_cast<size_t>(got);
    }
}

std::string ReadOnlyFile::readString(uint64_t offset, size_t n) const {
    std::string s(n, '\0');
    readAt(offset, s.data(), n);
    return s;
}

// ---- ZipArchive ------------------------------------------------------------------------

bool ZipArchive::looksLikeZip(std::string_view head) {
    return head.size() >= 4 && head[0] == 'P' && head[1] == 'K' &&
           ((head[2] == 3 && head[3] == 4) || (head[2] == 5 && head[3] == 6));
}

ZipArchive ZipArchive::open(const std::string &path, const std::string &label) {
    ZipArchive za;
    auto file = std::make_shared<ReadOnlyFile>(path, label.empty() ? "zip archive '" + path + "'" : label);
    za.file_ = file;
    const std::string &lbl = file->label();
    auto fail = [&](const std::string &why) { return Error(lbl + ": " + why); };
    const uint64_t fsize = file->size();
    if (fsize < kEocdSize) throw fail("too short to be a zip archive (" + num(fsize) + " bytes)");

    // 1. End-of-central-directory: scan back over at most the longest possible comment.
    const uint64_t tailLen = std::min(fsize, kMaxEocdScan);
    const uint64_t tailStart = fsize - tailLen;
    const std::string tail = file->readString(tailStart, tailLen);
    int64_t found = -1, loose = -1;
    for (int64_t i = static_cast<int64_t>(tailLen - kEocdSize); i >= 0; --i) {
        const unsigned char *p = bytes(tail) + i;
        if (le32(p) != kEocdSig) continue;
        const uint64_t end = static_cast<uint64_t>(i) + kEocdSize + le16(p + 20);
        if (end == tailLen) {
            found = i;
            break;
        }
        if (end <= tailLen && loose < 0) loose = i;
    }
    if (found < 0) found = loose;
    if (found < 0)
        throw fail("no end-of-central-directory record: not a complete zip archive (truncated or damaged "
                   "download?)");
    const uint64_t eocdPos = tailStart + static_cast<uint64_t>(found);
    const unsigned char *e = bytes(tail) + found;
    uint64_t diskNo = le16(e + 4), cdDisk = le16(e + 6), entriesOnDisk = le16(e + 8),
             entriesTotal = le16(e + 10);
    uint64_t cdSize = le32(e + 12), cdOffset = le32(e + 16);
    uint64_t endOfData = eocdPos; // the directory and every entry lie before this

    // 2. ZIP64: the locator sits right before the end record and points at the ZIP64 record.
    bool zip64 = false;
    if (eocdPos >= kZip64LocatorSize) {
        unsigned char loc[kZip64LocatorSize];
        file->readAt(eocdPos - kZip64LocatorSize, loc, sizeof loc);
        if (le32(loc) == kZip64LocatorSig) {
            zip64 = true;
            const uint64_t recPos = le64(loc + 8);
            if (le32(loc + 4) != 0 || le32(loc + 16) > 1)
                throw fail("multi-disk zip archives are not supported");
            if (recPos > eocdPos - kZip64LocatorSize || eocdPos - kZip64LocatorSize - recPos < kZip64EocdSize)
                throw fail("ZIP64 end record offset " + num(recPos) + " lies outside the file");
            unsigned char rec[kZip64EocdSize];
            file->readAt(recPos, rec, sizeof rec);
            if (le32(rec) != kZip64EocdSig)
                throw fail("no ZIP64 end-of-central-directory record at byte " + num(recPos));
            diskNo = le32(rec + 16);
            cdDisk = le32(rec + 20);
            entriesOnDisk = le64(rec + 24);
            entriesTotal = le64(rec + 32);
            cdSize = le64(rec + 40);
            cdOffset = le64(rec + 48);
            endOfData = recPos;
        }
    }
    if (!zip64 && (entriesTotal == 0xffff || cdSize == 0xffffffff || cdOffset == 0xffffffff))
        throw fail("end record says ZIP64 but there is no ZIP64 locator (damaged archive)");
    if (diskNo != 0 || cdDisk != 0 || entriesOnDisk != entriesTotal)
        throw fail("multi-disk zip archives are not supported");
    if (cdOffset > endOfData || cdSize > endOfData - cdOffset)
        throw fail("central directory (byte " + num(cdOffset) + ", " + num(cdSize) +
                   " bytes) lies outside the archive (" + num(fsize) + " bytes)");
    if (cdSize > kMaxCentralDirBytes)
        throw fail("central directory of " + num(cdSize) + " bytes is implausibly large");
    if (entriesTotal > cdSize / kCentralSize)
        throw fail("central directory of " + num(cdSize) + " bytes cannot hold " + num(entriesTotal) +
                   " entries");

    // 3. Central directory entries; each data offset comes from its own local header.
    const std::string cd = file->readString(cdOffset, cdSize);
    std::unordered_set<std::string> names;
    za.entries_.reserve(entriesTotal);
    uint64_t pos = 0;
    for (uint64_t i = 0; i < entriesTotal; ++i) {
        const std::string at = "central directory entry " + num(i) + " (byte " + num(cdOffset + pos) + ")";
        if (cdSize - pos < kCentralSize) throw fail(at + " runs past the directory's end");
        const unsigned char *c = bytes(cd) + pos;
        if (le32(c) != kCentralSig) throw fail(at + " has a bad signature");
        const uint16_t flags = le16(c + 8);
        Entry en;
        en.method = le16(c + 10);
        en.compressedSize = le32(c + 20);
        en.size = le32(c + 24);
        const uint64_t nameLen = le16(c + 28), extraLen = le16(c + 30), commentLen = le16(c + 32);
        const uint32_t diskStart = le16(c + 34);
        en.localHeaderOffset = le32(c + 42);
        if (cdSize - pos - kCentralSize < nameLen + extraLen + commentLen)
            throw fail(at + ": name/extra/comment run past the directory's end");
        en.name.assign(cd.data() + pos + kCentralSize, nameLen);
        const std::string ent = "entry '" + en.name + "'";
        // ZIP64 extra field: 64-bit values for exactly those fields saturated above, in order.
        const unsigned char *x = c + kCentralSize + nameLen;
        for (uint64_t xp = 0; xp + 4 <= extraLen;) {
            const uint16_t id = le16(x + xp), len = le16(x + xp + 2);
            if (extraLen - xp - 4 < len) throw fail(ent + ": extra field runs past its header");
            if (id == 0x0001) {
                const unsigned char *z = x + xp + 4;
                uint64_t zp = 0;
                auto take = [&](uint64_t &field) {
                    if (len - zp < 8) throw fail(ent + ": ZIP64 extra field is too short");
                    field = le64(z + zp);
                    zp += 8;
                };
                if (en.size == 0xffffffff) take(en.size);
                if (en.compressedSize == 0xffffffff) take(en.compressedSize);
                if (en.localHeaderOffset == 0xffffffff) take(en.localHeaderOffset);
            }
            xp += 4 + len;
        }
        if (diskStart != 0 && diskStart != 0xffff) throw fail(ent + " lies on another disk");
        if (flags & 1) throw fail(ent + " is encrypted");
        if (!names.insert(en.name).second) throw fail(ent + " is listed twice");
        pos += kCentralSize + nameLen + extraLen + commentLen;

        // Local header: its own name and extra lengths decide where the data begins.
        const uint64_t lho = en.localHeaderOffset;
        if (lho > cdOffset || cdOffset - lho < kLocalSize)
            throw fail(ent + ": local header offset " + num(lho) + " lies outside the archive's data");
        unsigned char lh[kLocalSize];
        file->readAt(lho, lh, sizeof lh);
        if (le32(lh) != kLocalSig) throw fail(ent + ": no local header at byte " + num(lho));
        const uint64_t lName = le16(lh + 26), lExtra = le16(lh + 28);
        en.dataOffset = lho + kLocalSize + lName + lExtra;
        if (en.dataOffset > cdOffset || en.compressedSize > cdOffset - en.dataOffset)
            throw fail(ent + ": data (byte " + num(en.dataOffset) + ", " + num(en.compressedSize) +
                       " bytes) runs past the archive's data (byte " + num(cdOffset) + ")");
        if (lName != nameLen || file->readString(lho + kLocalSize, lName) != en.name)
            throw fail(ent + ": local header names a different entry");
        za.entries_.push_back(std::move(en));
    }
    return za;
}

const ZipArchive::Entry *ZipArchive::find(std::string_view name) const {
    for (const Entry &e : entries_)
        if (e.name == name) return &e;
    return nullptr;
}

void ZipArchive::requireStored(const Entry &e) const {
    if (e.method != 0)
        throw Error(label() + ": entry '" + e.name + "' is compressed (method " + num(e.method) +
                    "); torch.save stores entries uncompressed and only those are read");
    if (e.size != e.compressedSize)
        throw Error(label() + ": entry '" + e.name + "' is stored but its sizes differ (" + num(e.size) +
                    " vs " + num(e.compressedSize) + ")");
}

void ZipArchive::read(const Entry &e, uint64_t offset, void *dst, size_t n) const {
    requireStored(e);
    if (offset > e.size || n > e.size - offset)
        throw Error(label() + ": read of " + num(n) + " bytes at " + num(offset) +
                    " past the end of entry '" + e.name + "' (" + num(e.size) + " bytes)");
    file_->readAt(e.dataOffset + offset, dst, n);
}

std::string ZipArchive::readAll(const Entry &e, size_t maxBytes) const {
    requireStored(e);
    if (e.size > maxBytes)
        throw Error(label() + ": entry '" + e.name + "' is " + num(e.size) + " bytes, more than the " +
                    num(maxBytes) + " allowed");
    std::string s(e.size, '\0');
    read(e, 0, s.data(), s.size());
    return s;
}

} // namespace mgd::pth
