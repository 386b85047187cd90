#pragma once
// The shared tier behind the host and disk tiers: image features in Redis, so that a team's
// desks (and a restarted one) never encode the same image twice. Never worse than no Redis:
// every call is bounded by the connect / operation timeouts, a failed or slow server is a miss
// (the image is encoded locally), writes happen on a thread of their own after the answer's
// encode, a value that does not check out (header, checksum, key, version) is rejected, and a
// lost connection is retried with back-off rather than on every lookup.
//
// Keys: mgd:v<format>:feat:<vision model id>:<feature key>; values: the feature file format
// (versioned header with key, dtype, shape and checksums, then the raw bytes).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>

namespace mgd {

struct RemoteTierSettings {
    std::string url;     // redis://... or unix://... (see redis_url.h)
    std::string modelId; // the vision model's identity (hex), part of every key
    int connectTimeoutMs = 1000;
    int opTimeoutMs = 200;
    uint64_t maxEntryBytes = 64ull << 20; // larger values are neither written nor read
    int ttlSeconds = 0;                   // 0: entries do not expire (Redis's maxmemory evicts)
    int maxPendingWrites = 64;            // more are dropped, never queued without bound
};

struct RemoteTierStats {
    std::string endpoint; // the URL without its password
    bool reachable = false;
    std::string lastError;
    uint64_t hits = 0, misses = 0, errors = 0, rejected = 0; // rejected: corrupt or mismatched
    uint64_t writes = 0, droppedWrites = 0, bytesRead = 0, bytesWritten = 0;
};

class RemoteFeatureTier {
public:
    // Parses the URL (throws mgd::Error on a bad one); connects on first use, not here.
    explicit RemoteFeatureTier(RemoteTierSettings s);
    ~RemoteFeatureTier(); // finishes queued writes (each bounded by the timeouts)
    RemoteFeatureTier(const RemoteFeatureTier &) = delete;
    RemoteFeatureTier &operator=(const RemoteFeatureTier &) = delete;

    // The checked value stored under `featureKey` (32 hex chars), or an undefined tensor on a
    // miss, an error, a timeout or a value that does not check out. rttMs: the round trip, or
    // -1 when no request was sent (server in back-off).
    at::Tensor get(const std::string &featureKey, double *rttMs = nullptr);
    // Queues the value to be written; returns at once.
    void put(const std::string &featureKey, const at::Tensor &value);
    // Waits up to timeoutMs for the queued writes; true when none is left.
    bool flush(int timeoutMs);
    RemoteTierStats stats() const;
    std::string redisKey(const std::string &featureKey) const;

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

} // namespace mgd
