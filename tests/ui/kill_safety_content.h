#pragma once
// What kill_safety_writer writes and test_kill_safety checks: each conversation version and
// each feature entry is a pure function of its numbers, so a torn write cannot pass as whole.
#include <ATen/ATen.h>

#include <QString>
#include <cstdio>
#include <string>

#include "core/cache/kv_file.h"

namespace killsafety {

inline constexpr int kConversations = 5;
inline constexpr uint64_t kFeatureDiskBytes = 1u << 20; // ~15 entries: the cache evicts too
inline constexpr int64_t kFeatureValues = 16384;        // 64 KiB of float32 per entry

inline QString conversationId(int c) {
    return QString("kill-safety-%1").arg(c);
}
inline QString title(int c, int version) {
    return QString("conversation %1 version %2").arg(c).arg(version);
}
inline int versionOfTitle(const QString &t) {
    return t.section(' ', -1).toInt();
}
// Grows with the version (up to 40 messages) so files differ in size and take time to write.
inline int messageCount(int version) {
    return 2 + (version % 20) * 2;
}
inline QString messageText(int c, int version, int m) {
    return QString("c%1 v%2 m%3 ").arg(c).arg(version).arg(m).repeated(40 + m);
}

inline std::string featureKey(int64_t entry) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%032llx", static_cast<unsigned long long>(entry));
    return buf;
}
inline int64_t entryOfKey(const std::string &key) {
    return std::stoll(key, nullptr, 16);
}
// [entry, entry+1, ..., entry+n-1] as floats (exact below 2^24).
inline at::Tensor featureValue(int64_t entry) {
    return at::arange(kFeatureValues, at::kFloat).add_(static_cast<double>(entry % 1000000));
}

// A saved conversation state (core/cache/kv_file) for conversation c at `version`: its
// positions and values are functions of both.
inline const mgd::KvExpectation &kvExpectation() {
    static const mgd::KvExpectation e{"kill-safety-model", 2, 2, 8, at::kFloat, 4096};
    return e;
}
inline mgd::KvEntry kvEntry(int c, int version) {
    mgd::KvEntry e;
    const int64_t positions = 64 + version % 200;
    for (int64_t p = 0; p < positions; ++p) e.keys.push_back(c * 100000 + version);
    for (int l = 0; l < 2; ++l)
        e.layers.push_back(at::full({2, 2, positions, 8}, static_cast<float>(version * 10 + l)));
    e.meta.messages.push_back({true, std::to_string(version), {}});
    return e;
}
inline bool kvEntryIsWhole(const mgd::KvEntry &e, int c, int *version) {
    if (e.meta.messages.size() != 1) return false;
    *version = std::stoi(e.meta.messages[0].textHash);
    const mgd::KvEntry want = kvEntry(c, *version);
    if (e.keys != want.keys || e.layers.size() != want.layers.size()) return false;
    for (size_t l = 0; l < e.layers.size(); ++l)
        if (!at::equal(e.layers[l], want.layers[l])) return false;
    return true;
}

} // namespace killsafety
