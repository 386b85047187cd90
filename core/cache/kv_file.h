#pragma once
// A conversation's saved attention state on disk, so a restarted app continues it without
// prefilling its history again. Format (little-endian), version 1:
//   header (64 bytes): magic "MGDKV\r\n\x1a", u32 version, u32 metaBytes, u64 keysBytes,
//     u64 payloadBytes, u64 XXH3-64(meta + keys), u64 XXH3-64(payload), u64 0,
//     u64 XXH3-64(the 56 bytes before it)
//   meta: JSON {model, conversation, layers, kvHeads, headDim, dtype, positions, messages}
//   keys: positions x i64 (the session's position keys: token ids, image identities)
//   payload: per layer, K then V, each [kvHeads, positions, headDim] in dtype
// Nothing in a file is trusted: every size is checked against the file and the expected
// model before anything is allocated, and every byte against its checksum before it is used.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mgd {

inline constexpr uint32_t kKvFileVersion = 1;

// What the conversation held when its KV was saved, so a restore can check that the saved
// state belongs to the messages it is given and reuse the answers' exact token ids.
struct SavedMessage {
    bool fromUser = true;
    std::string textHash;           // Digest128 hex of the message text
    std::vector<int32_t> answerIds; // assistant: the tokens kept for the answer
};

struct KvEntryMeta {
    std::string model;        // identity of the LLM weights, dtype and KV layout
    std::string conversation; // the app's id of the conversation
    int64_t layers = 0, kvHeads = 0, headDim = 0;
    at::ScalarType dtype = at::kFloat;
    std::vector<SavedMessage> messages;
};

struct KvEntry {
    KvEntryMeta meta;
    std::vector<int64_t> keys;
    std::vector<at::Tensor> layers; // each [2, kvHeads, positions, headDim], CPU, contiguous
    int64_t positions() const { return static_cast<int64_t>(keys.size()); }
};

// What a reader requires of an entry: the loaded model's identity and KV layout.
struct KvExpectation {
    std::string model;
    int64_t layers = 0, kvHeads = 0, headDim = 0;
    at::ScalarType dtype = at::kFloat;
    int64_t maxPositions = 0;
};

enum class KvFileStatus { Ok, Missing, Corrupt, Stale };

// Writes atomically (temporary file, fsync, rename, directory fsync); throws mgd::Error.
// Returns the bytes written.
uint64_t writeKvFile(const std::string &path, const KvEntry &entry, uint32_t version = kKvFileVersion);
// Corrupt: damaged, truncated, not ours or another version; Stale: whole and ours but for
// another model or layout. `why` says which check failed (for the log and tests).
KvFileStatus readKvFile(const std::string &path, const KvExpectation &expect, KvEntry &out,
                        std::string *why = nullptr);
// The same checks on bytes in memory (the fuzz target's entry point).
KvFileStatus decodeKvBytes(const uint8_t *data, size_t size, const KvExpectation &expect, KvEntry &out,
                           std::string *why = nullptr);

} // namespace mgd
