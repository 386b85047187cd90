#pragma once
// Read-only ZIP reader for torch.save archives: STORED entries only (torch never compresses),
// ZIP64 aware so 10+ GB checkpoints work. Nothing in the archive is trusted: every offset and
// size is checked against the file before it is used, and entries are read with pread.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mgd::pth {

// A read-only file read by offset (pread); shared by the archive and what it hands out.
class ReadOnlyFile {
public:
    // `label` names the file in messages, e.g. "checkpoint 'x.pth'".
    ReadOnlyFile(const std::string &path, std::string label);
    ~ReadOnlyFile();
    ReadOnlyFile(const ReadOnlyFile &) = delete;
    ReadOnlyFile &operator=(const ReadOnlyFile &) = delete;

    const std::string &path() const { return path_; }
    const std::string &label() const { return label_; }
    uint64_t size() const { return size_; }
    // Reads exactly n bytes at `offset`; throws mgd::Error when they are not all there.
    void readAt(uint64_t offset, void *dst, size_t n) const;
    std::string readString(uint64_t offset, size_t n) const;

private:
    std::string path_;
    std::string label_;
    int fd_ = -1;
    uint64_t size_ = 0;
};

class ZipArchive {
public:
    struct Entry {
        std::string name;
        uint16_t method = 0; // 0 = stored; anything else is refused when read
        uint64_t size = 0;   // uncompressed size
        uint64_t compressedSize = 0;
        uint64_t localHeaderOffset = 0;
        uint64_t dataOffset = 0; // from the LOCAL header: 30 + name + extra past it
    };

    // Opens and validates the archive (end-of-central-directory, ZIP64 records, central
    // directory, every local header). `label` names it in messages (default "zip archive
    // '<path>'"). Throws mgd::Error.
    static ZipArchive open(const std::string &path, const std::string &label = "");
    // True when the first bytes look like a ZIP (local header or empty-archive record).
    static bool looksLikeZip(std::string_view head);

    const std::string &path() const { return file_->path(); }
    const std::string &label() const { return file_->label(); }
    const std::shared_ptr<const ReadOnlyFile> &file() const { return file_; }
    const std::vector<Entry> &entries() const { return entries_; }
    const Entry *find(std::string_view name) const;

    // Reads n bytes at `offset` inside the entry's data; refuses compressed entries and
    // ranges past the entry's end.
    void read(const Entry &e, uint64_t offset, void *dst, size_t n) const;
    // The whole entry; refuses entries larger than maxBytes (so a hostile size cannot make
    // us allocate it).
    std::string readAll(const Entry &e, size_t maxBytes) const;
    // Throws unless the entry is stored (method 0) with equal sizes.
    void requireStored(const Entry &e) const;

private:
    std::shared_ptr<const ReadOnlyFile> file_;
    std::vector<Entry> entries_;
};

} // namespace mgd::pth
