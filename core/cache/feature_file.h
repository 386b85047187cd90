#pragma once
// The feature cache's entry format, on disk (one file per entry) and in memory (the shared
// Redis tier's values): what is written, and every check a read makes before trusting it.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace mgd {

// The disk tier's file format, public for tests and tools. Little-endian:
//   "MGDFEAT\0" | u32 version | char key[32] | u8 dtype | u8 ndim | u16 0 | i64 shape[ndim] |
//   u64 payload bytes | u64 XXH3-64(payload) | u64 XXH3-64(all header bytes before it) | payload
inline constexpr uint32_t kFeatureFileVersion = 1;
// Writes atomically (temp file in the same folder, fsync, rename); throws mgd::Error.
void writeFeatureFile(const std::string &path, const std::string &key, const at::Tensor &value,
                      uint32_t version = kFeatureFileVersion);
enum class FeatureFileStatus { Ok, Missing, Corrupt };
// Reads and verifies one file; out is set only when Ok.
FeatureFileStatus readFeatureFile(const std::string &path, const std::string &key, at::Tensor &out);
// The same format in memory (the shared Redis tier's values): encode throws mgd::Error on a bad
// key or an unsupported dtype; decode checks everything a file read checks, from n bytes at p.
std::string encodeFeatureBlob(const std::string &key, const at::Tensor &value,
                              uint32_t version = kFeatureFileVersion);
FeatureFileStatus decodeFeatureBlob(const uint8_t *p, size_t n, const std::string &key, at::Tensor &out);

// For the cache: keys are 32 hex characters, stored lower-case (throws mgd::Error naming a bad
// one); an entry's file size (0: dtype or rank not storable); a complete entry written next to
// `path` under a unique temporary name, fsynced, its name returned for the caller to rename
// (throws mgd::Error); and the fsync of `path`'s folder that makes a rename durable.
bool isFeatureKey(const std::string &key);
std::string normalizedFeatureKey(const std::string &key);
uint64_t featureFileBytes(const at::Tensor &cpu);
std::string writeFeatureTempFile(const std::string &path, const std::string &key, const at::Tensor &cpu,
                                 uint32_t version);
void syncParentDir(const std::string &path);

} // namespace mgd
