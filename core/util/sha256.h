#pragma once
// SHA-256 of a file, streamed (OpenSSL's libcrypto), for an import's provenance record.
#include <cstdint>
#include <functional>
#include <string>

namespace mgd {

// Hex digest of the file's bytes. `progress(bytesDone)` is called every few MiB; it returns
// false to cancel (then mgd::Error "cancelled" is thrown). Throws mgd::Error naming the file.
std::string sha256File(const std::string &path, const std::function<bool(uint64_t)> &progress = {});

} // namespace mgd
