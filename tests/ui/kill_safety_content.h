#pragma once
// What kill_safety_writer writes and test_kill_safety checks: each conversation version and
// each feature entry is a pure function of its numbers, so a torn write cannot pass as whole.
#include <ATen/ATen.h>

#include <QString>
#include <cstdio>
#include <string>

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

} // namespace killsafety
