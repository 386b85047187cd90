#include "core/cache/remote_feature_tier.h"

#include <ATen/ATen.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "core/cache/feature_cache.h"
#include "core/cache/redis_url.h"
#include "core/util/error.h"

namespace mgd {

namespace {

using Clock = std::chrono::steady_clock;

timeval toTimeval(int ms) {
    return timeval{ms / 1000, (ms % 1000) * 1000};
}

struct ReplyDeleter {
    void operator()(redisReply *r) const {
        if (r) freeReplyObject(r);
    }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// One connection, used by one thread at a time. After a failure it stays closed until the
// back-off has passed (0.5 s, doubling to 30 s), so a dead server costs nothing per lookup.
class Connection {
public:
    Connection(const RedisEndpoint &e, const RemoteTierSettings &s) : endpoint_(e), settings_(s) {}
    ~Connection() { close(); }

    enum class Outcome { Ok, ServerError, Failed, Waiting }; // Waiting: in back-off, nothing sent

    // The reply when Ok; else `error` says why.
    Reply command(const std::vector<std::string> &args, std::string &error, Outcome &outcome) {
        if (!connect(error, outcome)) return nullptr;
        Reply r = send(args);
        if (!r) {
            error = endpoint_.display() + ": " + (ctx_->errstr[0] ? ctx_->errstr : "no reply");
            outcome = Outcome::Failed;
            fail();
            return nullptr;
        }
        backoffMs_ = 0;
        if (r->type == REDIS_REPLY_ERROR) {
            error = endpoint_.display() + ": " + std::string(r->str, r->len);
            outcome = Outcome::ServerError; // the server answered: the connection is fine
            return nullptr;
        }
        outcome = Outcome::Ok;
        return r;
    }

private:
    // One binary-safe command on the open connection; null on a connection error or timeout.
    Reply send(const std::vector<std::string> &args) {
        std::vector<const char *> argv;
        std::vector<size_t> lens;
        for (const auto &a : args) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }
        return Reply(
            static_cast<redisReply *>(redisCommandArgv(ctx_, int(argv.size()), argv.data(), lens.data())));
    }

    bool connect(std::string &error, Outcome &outcome) {
        if (ctx_) return true;
        if (Clock::now() < retryAt_) {
            error = lastError_ + " (retrying in a moment)";
            outcome = Outcome::Waiting;
            return false;
        }
        outcome = Outcome::Failed;
        const timeval ct = toTimeval(settings_.connectTimeoutMs);
        ctx_ = endpoint_.unixSocket ? redisConnectUnixWithTimeout(endpoint_.path.c_str(), ct)
                                    : redisConnectWithTimeout(endpoint_.host.c_str(), endpoint_.port, ct);
        if (!ctx_ || ctx_->err) {
            lastError_ = error = "cannot connect to " + endpoint_.display() + ": " +
                                 (ctx_ ? std::string(ctx_->errstr) : std::string("out of memory"));
            fail();
            return false;
        }
        redisSetTimeout(ctx_, toTimeval(settings_.opTimeoutMs));
        std::vector<std::vector<std::string>> hello;
        if (!endpoint_.password.empty())
            hello.push_back(endpoint_.user.empty()
                                ? std::vector<std::string>{"AUTH", endpoint_.password}
                                : std::vector<std::string>{"AUTH", endpoint_.user, endpoint_.password});
        if (endpoint_.db != 0) hello.push_back({"SELECT", std::to_string(endpoint_.db)});
        for (const auto &args : hello) {
            Reply r = send(args);
            if (!r || r->type == REDIS_REPLY_ERROR) {
                lastError_ = error = endpoint_.display() + ": " + args[0] + " failed: " +
                                     (r ? std::string(r->str, r->len) : std::string(ctx_->errstr));
                fail();
                return false;
            }
        }
        lastError_.clear();
        return true;
    }

    void fail() {
        close();
        backoffMs_ = backoffMs_ == 0 ? 500 : std::min(backoffMs_ * 2, 30000);
        retryAt_ = Clock::now() + std::chrono::milliseconds(backoffMs_);
    }

    void close() {
        if (ctx_) redisFree(ctx_);
        ctx_ = nullptr;
    }

    RedisEndpoint endpoint_;
    RemoteTierSettings settings_;
    redisContext *ctx_ = nullptr;
    int backoffMs_ = 0;
    Clock::time_point retryAt_{};
    std::string lastError_;
};

} // namespace

struct RemoteFeatureTier::Impl {
    RemoteTierSettings settings;
    RedisEndpoint endpoint;
    std::string prefix; // "mgd:v1:feat:<model>:"

    std::mutex readMutex; // the lookup connection
    std::unique_ptr<Connection> reader;

    mutable std::mutex mutex; // queue and stats
    std::condition_variable wake, idle;
    std::deque<std::pair<std::string, at::Tensor>> queue;
    bool writing = false, stopping = false;
    RemoteTierStats stats;
    std::thread writer;

    // Under `mutex`: what an operation's outcome says of the server.
    void record(Connection::Outcome o) {
        if (o == Connection::Outcome::Ok) stats.reachable = true;
        if (o == Connection::Outcome::ServerError) {
            stats.reachable = true;
            ++stats.errors;
        }
        if (o == Connection::Outcome::Failed) {
            stats.reachable = false;
            ++stats.errors;
        }
    }

    void writeLoop() {
        Connection conn(endpoint, settings);
        std::unique_lock<std::mutex> lock(mutex);
        for (;;) {
            wake.wait(lock, [&] { return stopping || !queue.empty(); });
            if (queue.empty()) return; // stopping, and everything written
            auto [key, value] = std::move(queue.front());
            queue.pop_front();
            writing = true;
            lock.unlock();
            std::string error;
            Connection::Outcome outcome = Connection::Outcome::Failed;
            size_t bytes = 0;
            try {
                const std::string blob = encodeFeatureBlob(key, value);
                bytes = blob.size();
                if (bytes <= settings.maxEntryBytes) {
                    std::vector<std::string> args{"SET", prefix + key, blob};
                    if (settings.ttlSeconds > 0) {
                        args.push_back("EX");
                        args.push_back(std::to_string(settings.ttlSeconds));
                    }
                    conn.command(args, error, outcome);
                } else {
                    error = "an entry of " + std::to_string(bytes) + " bytes is over the per-entry cap";
                    outcome = Connection::Outcome::Waiting; // not the server's fault
                }
            } catch (const std::exception &e) {
                error = e.what();
                outcome = Connection::Outcome::Waiting;
            }
            lock.lock();
            writing = false;
            if (outcome == Connection::Outcome::Ok) {
                ++stats.writes;
                stats.bytesWritten += bytes;
            } else {
                ++stats.droppedWrites;
                stats.lastError = error;
            }
            record(outcome);
            if (queue.empty()) idle.notify_all();
        }
    }
};

RemoteFeatureTier::RemoteFeatureTier(RemoteTierSettings s) : impl_(std::make_unique<Impl>()) {
    impl_->endpoint = parseRedisUrl(s.url);
    if (s.modelId.empty()) throw Error("Redis tier: no model identity for its keys");
    impl_->settings = std::move(s);
    impl_->prefix = "mgd:v" + std::to_string(kFeatureFileVersion) + ":feat:" + impl_->settings.modelId + ":";
    impl_->stats.endpoint = impl_->endpoint.display();
    impl_->reader = std::make_unique<Connection>(impl_->endpoint, impl_->settings);
    impl_->writer = std::thread([this] { impl_->writeLoop(); });
}

RemoteFeatureTier::~RemoteFeatureTier() {
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        impl_->stopping = true;
    }
    impl_->wake.notify_all();
    impl_->writer.join();
}

std::string RemoteFeatureTier::redisKey(const std::string &featureKey) const {
    return impl_->prefix + featureKey;
}

at::Tensor RemoteFeatureTier::get(const std::string &featureKey, double *rttMs) {
    if (rttMs) *rttMs = -1;
    std::lock_guard<std::mutex> lock(impl_->readMutex);
    const auto t0 = Clock::now();
    std::string error;
    Connection::Outcome outcome = Connection::Outcome::Failed;
    Reply r = impl_->reader->command({"GET", impl_->prefix + featureKey}, error, outcome);
    if (rttMs && outcome != Connection::Outcome::Waiting)
        *rttMs = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    std::lock_guard<std::mutex> s(impl_->mutex);
    impl_->record(outcome);
    if (!r) {
        ++impl_->stats.misses;
        impl_->stats.lastError = error;
        return {};
    }
    if (r->type != REDIS_REPLY_STRING) {
        ++impl_->stats.misses;
        return {};
    }
    at::Tensor out;
    if (r->len > impl_->settings.maxEntryBytes ||
        decodeFeatureBlob(reinterpret_cast<const uint8_t *>(r->str), r->len, featureKey, out) !=
            FeatureFileStatus::Ok) {
        ++impl_->stats.rejected;
        ++impl_->stats.misses;
        return {};
    }
    ++impl_->stats.hits;
    impl_->stats.bytesRead += r->len;
    return out;
}

void RemoteFeatureTier::put(const std::string &featureKey, const at::Tensor &value) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    if (int(impl_->queue.size()) >= impl_->settings.maxPendingWrites) {
        ++impl_->stats.droppedWrites;
        return;
    }
    impl_->queue.emplace_back(featureKey, value);
    impl_->wake.notify_one();
}

bool RemoteFeatureTier::flush(int timeoutMs) {
    std::unique_lock<std::mutex> lock(impl_->mutex);
    return impl_->idle.wait_for(lock, std::chrono::milliseconds(timeoutMs),
                                [&] { return impl_->queue.empty() && !impl_->writing; });
}

RemoteTierStats RemoteFeatureTier::stats() const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return impl_->stats;
}

} // namespace mgd
