#pragma once
// Whole reads and writes on a file descriptor, retrying short transfers and EINTR, for the
// cache entry formats (feature files, saved conversation state).
#include <cstddef>
#include <cstdint>
#include <string>

namespace mgd {

std::string errnoText(); // strerror(errno)
bool writeAll(int fd, const void *data, size_t n);
bool readAll(int fd, void *data, size_t n);
bool preadAll(int fd, void *data, size_t n, uint64_t offset);

} // namespace mgd
