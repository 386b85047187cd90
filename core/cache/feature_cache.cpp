#include "core/cache/feature_cache.h"

#include <ATen/ATen.h>
#include <xxhash.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/util/error.h"
#include "core/util/fd_io.h"

namespace fs = std::filesystem;

namespace mgd {

namespace {

constexpr const char *kExt = ".mgdf";
constexpr size_t kKeyChars = 32;
// A temp file this old cannot belong to a write in progress: a crash left it.
constexpr auto kStaleTemp = std::chrono::minutes(10);

bool isEntryFileName(const std::string &name, std::string &key) {
    const size_t ext = std::strlen(kExt);
    if (name.size() != kKeyChars + ext || name.compare(kKeyChars, ext, kExt) != 0) return false;
    key = name.substr(0, kKeyChars);
    return isFeatureKey(key) &&
           std::none_of(key.begin(), key.end(), [](char c) { return c >= 'A' && c <= 'F'; });
}

at::Device parseDevice(const std::string &name) {
    try {
        return at::Device(name);
    } catch (const std::exception &) {
        return at::Device(at::kCPU);
    }
}

} // namespace

// ---------------------------------------------------------------------------------------------

namespace {

enum Tier { kDevice = 0, kHost = 1, kDisk = 2, kTiers = 3 };
// Filling: bytes are charged to the tier, the data is being copied in (or the file written)
// outside the lock by the thread that set it; that thread holds a pin, so nothing evicts it.
enum class Slot : uint8_t { None, Filling, Resident };

struct Entry {
    std::string key;
    uint64_t lastUse = 0, uses = 0;
    uint32_t pins = 0;
    Slot slot[kTiers] = {Slot::None, Slot::None, Slot::None};
    uint64_t charged[kTiers] = {0, 0, 0};
    at::Tensor deviceValue, hostValue; // hostValue: host tier without a BlockStore
    std::vector<int32_t> blocks;       // host tier with a BlockStore
    at::ScalarType dtype = at::kFloat; // of the block copy
    std::vector<int64_t> shape;

    bool resident(Tier t) const { return slot[t] == Slot::Resident; }
    bool inAnyTier() const {
        return slot[kDevice] != Slot::None || slot[kHost] != Slot::None || slot[kDisk] != Slot::None;
    }
};

using EntryPtr = std::shared_ptr<Entry>;

} // namespace

struct FeatureCache::Core {
    mutable std::mutex mu;
    FeatureCacheSettings settings;
    BlockStore *store = nullptr;
    uint64_t blockBytes = 0;
    at::Device storeDevice{at::kCPU};
    bool deviceOn = false;
    at::Device device{at::kCPU};
    bool diskOn = false;
    std::string dir;
    uint64_t diskGen = 0; // bumped when the disk index is rebuilt; in-flight I/O checks it
    std::string diskError;
    std::unordered_map<std::string, EntryPtr> entries;
    uint64_t tick = 0, pinnedEntries = 0;
    TierCounters tiers[kTiers];
    uint64_t lookups = 0, hits = 0, misses = 0;

    ~Core() {
        if (store)
            for (auto &[k, e] : entries)
                for (int32_t b : e->blocks) store->releaseBlock(b);
    }

    uint64_t budget(int t) const {
        switch (t) {
        case kDevice: return deviceOn ? settings.deviceBytes : 0;
        case kHost: return settings.enabled ? settings.hostBytes : 0;
        default: return diskOn ? settings.diskBytes : 0;
        }
    }

    std::string pathOf(const std::string &key) const { return dir + "/" + key + kExt; }

    void configure() {
        const at::Device dev = parseDevice(settings.device);
        deviceOn = settings.enabled && settings.deviceBytes > 0 && dev.is_cuda() && at::hasCUDA();
        device = deviceOn ? dev : at::Device(at::kCPU);
    }

    void count(int t, bool hit) {
        ++tiers[t].lookups;
        ++(hit ? tiers[t].hits : tiers[t].misses);
    }

    void countTotal(bool hit) {
        ++lookups;
        ++(hit ? hits : misses);
    }

    void touch(Entry &e) {
        e.lastUse = ++tick;
        ++e.uses;
    }

    void addPin(Entry &e) {
        if (e.pins++ == 0) ++pinnedEntries;
    }

    EntryPtr findOrCreate(const std::string &key) {
        EntryPtr &e = entries[key];
        if (!e) {
            e = std::make_shared<Entry>();
            e->key = key;
        }
        return e;
    }

    void charge(Entry &e, int t, uint64_t bytes, Slot s) {
        e.slot[t] = s;
        e.charged[t] = bytes;
        tiers[t].bytes += bytes;
        ++tiers[t].entries;
    }

    // Takes the entry out of tier t; its blocks go to `freed` (released after unlocking), its
    // file is deleted here, under the lock, so no rename of the same name can interleave.
    void drop(Entry &e, int t, std::vector<int32_t> &freed) {
        if (e.slot[t] == Slot::None) return;
        tiers[t].bytes -= e.charged[t];
        --tiers[t].entries;
        e.slot[t] = Slot::None;
        e.charged[t] = 0;
        if (t == kDevice) e.deviceValue = at::Tensor();
        if (t == kHost) {
            e.hostValue = at::Tensor();
            freed.insert(freed.end(), e.blocks.begin(), e.blocks.end());
            e.blocks.clear();
        }
        if (t == kDisk) ::unlink(pathOf(e.key).c_str());
    }

    void forgetIfIdle(const Entry &e) {
        if (e.pins > 0 || e.inAnyTier()) return;
        auto it = entries.find(e.key);
        if (it != entries.end() && it->second.get() == &e) entries.erase(it);
    }

    void evict(Entry &e, int t, std::vector<int32_t> &freed) {
        drop(e, t, freed);
        ++tiers[t].evictions;
        forgetIfIdle(e);
    }

    bool before(const Entry &a, const Entry &b) const {
        if (settings.policy == CachePolicy::Lfu && a.uses != b.uses) return a.uses < b.uses;
        return a.lastUse < b.lastUse;
    }

    // The unpinned resident entry of tier t that goes first under the policy, or null.
    Entry *victim(int t) const {
        Entry *best = nullptr;
        for (const auto &[k, e] : entries)
            if (e->pins == 0 && e->resident(static_cast<Tier>(t)) && (!best || before(*e, *best)))
                best = e.get();
        return best;
    }

    // Evicts unpinned entries until `need` more bytes fit in tier t. Evicts nothing and returns
    // false when they cannot fit even then (counted in rejectedFull).
    bool makeRoom(int t, uint64_t need, std::vector<int32_t> &freed) {
        const uint64_t cap = budget(t);
        if (tiers[t].bytes + need <= cap) return true;
        uint64_t evictable = 0;
        for (const auto &[k, e] : entries)
            if (e->pins == 0 && e->resident(static_cast<Tier>(t))) evictable += e->charged[t];
        if (need > cap || tiers[t].bytes - evictable + need > cap) {
            ++tiers[t].rejectedFull;
            return false;
        }
        while (tiers[t].bytes + need > cap) evict(*victim(t), t, freed);
        return true;
    }

    // Brings every tier back within budget as far as pins allow.
    void trim(std::vector<int32_t> &freed) {
        for (int t = 0; t < kTiers; ++t)
            while (tiers[t].bytes > budget(t)) {
                Entry *v = victim(t);
                if (!v) break;
                evict(*v, t, freed);
            }
    }

    void release(const std::vector<int32_t> &blocks) {
        for (int32_t b : blocks) store->releaseBlock(b);
    }

    void unpin(Entry &e) {
        std::vector<int32_t> freed;
        {
            std::lock_guard lk(mu);
            if (--e.pins == 0) {
                --pinnedEntries;
                trim(freed); // a budget shrunk below pinned bytes is restored now
                forgetIfIdle(e);
            }
        }
        release(freed);
    }

    // Rebuilds the disk index from the folder: every <key>.mgdf is an entry, mtime its age.
    // Called under the lock (or from the constructor); a folder that cannot be made turns
    // the disk tier off with a message.
    void indexDisk(std::vector<int32_t> &freed) {
        ++diskGen;
        for (auto &[k, e] : entries)
            if (e->slot[kDisk] != Slot::None) {
                e->slot[kDisk] = Slot::None;
                e->charged[kDisk] = 0;
            }
        for (auto it = entries.begin(); it != entries.end();)
            it = it->second->pins == 0 && !it->second->inAnyTier() ? entries.erase(it) : std::next(it);
        tiers[kDisk].bytes = tiers[kDisk].entries = 0;
        diskOn = false;
        diskError.clear();
        dir = settings.diskDir;
        if (dir.empty()) return;

        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec || ::access(dir.c_str(), W_OK | X_OK) != 0) {
            diskError = "feature cache folder '" + dir + "' cannot be used (" +
                        (ec ? ec.message() : errnoText()) + "); the disk tier is off";
            return;
        }
        struct Found {
            std::string key;
            uint64_t bytes;
            fs::file_time_type mtime;
        };
        std::vector<Found> found;
        const auto now = fs::file_time_type::clock::now();
        try {
            for (const fs::directory_entry &d : fs::directory_iterator(dir)) {
                std::error_code e1;
                if (!d.is_regular_file(e1)) continue;
                const std::string name = d.path().filename().string();
                const auto mtime = d.last_write_time(e1);
                std::string key;
                if (name.ends_with(".tmp") && !e1 && now - mtime > kStaleTemp)
                    fs::remove(d.path(), e1);
                else if (isEntryFileName(name, key) && !e1)
                    found.push_back({key, d.file_size(e1), mtime});
            }
        } catch (const std::exception &ex) {
            diskError = "feature cache folder '" + dir + "' cannot be listed (" + ex.what() +
                        "); the disk tier is off";
            return;
        }
        std::sort(found.begin(), found.end(), [](const Found &a, const Found &b) {
            return a.mtime != b.mtime ? a.mtime < b.mtime : a.key < b.key;
        });
        for (const Found &f : found) {
            EntryPtr e = findOrCreate(f.key);
            charge(*e, kDisk, f.bytes, Slot::Resident);
            if (e->lastUse == 0) e->lastUse = ++tick; // oldest file = least recently used
        }
        diskOn = true;
        trim(freed);
    }
};

namespace {

// One pin on an entry, shared by all copies of a FeatureHandle. Destroyed outside the lock.
struct Pin {
    std::shared_ptr<FeatureCache::Core> core;
    EntryPtr entry;
    Pin(std::shared_ptr<FeatureCache::Core> c, EntryPtr e) : core(std::move(c)), entry(std::move(e)) {}
    ~Pin() { core->unpin(*entry); }
};

void touchFile(const std::string &path) {
    if (!path.empty()) ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);
}

// Copies between a CPU tensor and BlockStore blocks; blocks on a device go through at:: copies.
void copyToBlocks(BlockStore &store, const std::vector<int32_t> &blocks, uint64_t blockBytes,
                  at::Device where, const at::Tensor &cpu) {
    const auto *src = static_cast<const uint8_t *>(cpu.data_ptr());
    uint64_t left = cpu.nbytes();
    for (int32_t b : blocks) {
        const uint64_t n = std::min(left, blockBytes);
        if (where.is_cpu()) {
            std::memcpy(store.blockData(b), src, n);
        } else {
            at::Tensor dst = at::from_blob(store.blockData(b), {static_cast<int64_t>(n)},
                                           at::TensorOptions().dtype(at::kByte).device(where));
            dst.copy_(at::from_blob(const_cast<uint8_t *>(src), {static_cast<int64_t>(n)}, at::kByte));
        }
        src += n;
        left -= n;
    }
}

at::Tensor copyFromBlocks(BlockStore &store, const std::vector<int32_t> &blocks, uint64_t blockBytes,
                          at::Device where, at::ScalarType dtype, const std::vector<int64_t> &shape) {
    at::Tensor out = at::empty(shape, at::TensorOptions().dtype(dtype));
    auto *dst = static_cast<uint8_t *>(out.data_ptr());
    uint64_t left = out.nbytes();
    for (int32_t b : blocks) {
        const uint64_t n = std::min(left, blockBytes);
        if (where.is_cpu()) {
            std::memcpy(dst, store.blockData(b), n);
        } else {
            at::Tensor src = at::from_blob(store.blockData(b), {static_cast<int64_t>(n)},
                                           at::TensorOptions().dtype(at::kByte).device(where));
            at::from_blob(dst, {static_cast<int64_t>(n)}, at::kByte).copy_(src);
        }
        dst += n;
        left -= n;
    }
    return out;
}

// Stores copies of a value into the tiers of `e` that lack it: the device tier, the host tier
// and (toDisk) the disk tier. Runs without the lock; the caller holds a pin on `e`. `cpu` is a
// contiguous CPU tensor; `owned` says the host tier may keep it as is (no one else writes it).
// `onDevice` is the value when the caller already has it on a device. Returns the device copy
// when the device tier took one.
at::Tensor fillTiers(FeatureCache::Core &c, const EntryPtr &e, const at::Tensor &cpu, bool owned,
                     const at::Tensor &onDevice, bool toDisk) {
    std::vector<int32_t> freed;
    std::string syncPath; // a renamed file's folder is fsynced after the lock is released
    std::unique_lock lk(c.mu);
    const uint64_t bytes = cpu.nbytes();
    at::Tensor deviceCopy;

    // Device tier: the copy is made before taking room, so a failed copy (out of memory)
    // costs nothing but the skipped tier.
    if (c.deviceOn && e->slot[kDevice] == Slot::None) {
        if (bytes > c.budget(kDevice)) {
            ++c.tiers[kDevice].rejectedFull;
        } else {
            const at::Device dev = c.device;
            lk.unlock();
            try {
                deviceCopy = onDevice.defined() && onDevice.device() == dev
                                 ? onDevice.clone()
                                 : cpu.to(dev, /*non_blocking=*/false, /*copy=*/true);
            } catch (const std::exception &) {
                deviceCopy = at::Tensor();
            }
            lk.lock();
            if (!deviceCopy.defined()) {
                ++c.tiers[kDevice].rejectedFull;
            } else if (c.deviceOn && c.device == dev && e->slot[kDevice] == Slot::None &&
                       c.makeRoom(kDevice, bytes, freed)) {
                c.charge(*e, kDevice, bytes, Slot::Resident);
                e->deviceValue = deviceCopy;
            } else {
                deviceCopy = e->resident(kDevice) ? e->deviceValue : at::Tensor();
            }
        }
    }

    // Host tier.
    if (e->slot[kHost] == Slot::None && c.budget(kHost) > 0) {
        if (!c.store) {
            if (c.makeRoom(kHost, bytes, freed)) {
                c.charge(*e, kHost, bytes, Slot::Resident);
                e->hostValue = owned ? cpu : cpu.clone();
            }
        } else {
            const uint64_t nBlocks = (bytes + c.blockBytes - 1) / c.blockBytes;
            if (c.makeRoom(kHost, nBlocks * c.blockBytes, freed)) {
                c.charge(*e, kHost, nBlocks * c.blockBytes, Slot::Filling);
                BlockStore &store = *c.store;
                const uint64_t blockBytes = c.blockBytes;
                const at::Device where = c.storeDevice;
                lk.unlock();
                c.release(freed);
                freed.clear();
                std::vector<int32_t> blocks;
                bool ok = true;
                while (ok && blocks.size() < nBlocks) {
                    const int32_t b = store.allocateBlock();
                    if (b >= 0) {
                        blocks.push_back(b);
                        continue;
                    }
                    // The store is full: give up one of our own entries, least valuable first.
                    {
                        std::lock_guard g(c.mu);
                        Entry *v = c.victim(kHost);
                        if (v)
                            c.evict(*v, kHost, freed);
                        else
                            ok = false;
                    }
                    c.release(freed);
                    freed.clear();
                }
                if (ok) {
                    try {
                        copyToBlocks(store, blocks, blockBytes, where, cpu);
                    } catch (const std::exception &) {
                        ok = false;
                    }
                }
                lk.lock();
                // Nothing but this thread changes a Filling slot, so it is still ours.
                if (ok) {
                    e->slot[kHost] = Slot::Resident;
                    e->blocks = std::move(blocks);
                    e->dtype = cpu.scalar_type();
                    e->shape = cpu.sizes().vec();
                } else {
                    c.drop(*e, kHost, freed); // un-charges; the partial blocks go back below
                    freed.insert(freed.end(), blocks.begin(), blocks.end());
                    ++c.tiers[kHost].rejectedFull;
                }
            }
        }
    }

    // Disk tier: room is taken first, the file written outside the lock, renamed under it.
    if (toDisk && c.diskOn && e->slot[kDisk] == Slot::None && featureFileBytes(cpu) != 0) {
        const uint64_t fileBytes = featureFileBytes(cpu);
        if (c.makeRoom(kDisk, fileBytes, freed)) {
            c.charge(*e, kDisk, fileBytes, Slot::Filling);
            const uint64_t gen = c.diskGen;
            const std::string path = c.pathOf(e->key);
            lk.unlock();
            std::string tmp, error;
            try {
                tmp = writeFeatureTempFile(path, e->key, cpu, kFeatureFileVersion);
            } catch (const std::exception &ex) {
                error = ex.what();
            }
            lk.lock();
            if (gen != c.diskGen) {
                // The folder was re-indexed meanwhile (settings changed): this file is stale.
                if (!tmp.empty()) ::unlink(tmp.c_str());
            } else if (!tmp.empty() && ::rename(tmp.c_str(), path.c_str()) == 0) {
                e->slot[kDisk] = Slot::Resident;
                c.diskError.clear();
                syncPath = path;
            } else {
                if (error.empty()) error = "feature file '" + path + "': cannot rename: " + errnoText();
                if (!tmp.empty()) ::unlink(tmp.c_str());
                c.drop(*e, kDisk, freed);
                c.diskError = error;
            }
        }
    }
    lk.unlock();
    c.release(freed);
    if (!syncPath.empty()) syncParentDir(syncPath);
    return deviceCopy;
}

} // namespace

FeatureCache::FeatureCache(FeatureCacheSettings s, BlockStore *hostStore) : core_(std::make_shared<Core>()) {
    Core &c = *core_;
    c.settings = std::move(s);
    c.store = hostStore;
    if (hostStore) {
        c.blockBytes = hostStore->blockBytes();
        if (c.blockBytes == 0) throw Error("feature cache: the block store has zero-byte blocks");
        const at::Device sd =
            parseDevice(c.settings.storeDevice.empty() ? c.settings.device : c.settings.storeDevice);
        c.storeDevice = sd.is_cuda() && at::hasCUDA() ? sd : at::Device(at::kCPU);
    }
    c.configure();
    std::vector<int32_t> freed;
    c.indexDisk(freed);
    if (c.store) c.release(freed);
}

FeatureCache::~FeatureCache() = default;

FeatureHandle FeatureCache::lookup(const std::string &rawKey) {
    const std::string key = normalizedFeatureKey(rawKey);
    Core &c = *core_;
    std::shared_ptr<Pin> pin; // declared before the lock: it must die after the lock is released
    std::unique_lock lk(c.mu);
    if (!c.settings.enabled) {
        c.count(kHost, false);
        c.countTotal(false);
        return {};
    }
    auto it = c.entries.find(key);
    const EntryPtr e = it == c.entries.end() ? nullptr : it->second;
    const auto pinIt = [&] {
        c.touch(*e);
        c.addPin(*e);
        pin = std::make_shared<Pin>(core_, e);
    };
    const std::string diskPath = e && e->resident(kDisk) ? c.pathOf(key) : std::string();

    if (c.deviceOn) {
        const bool hit = e && e->resident(kDevice);
        c.count(kDevice, hit);
        if (hit) {
            c.countTotal(true);
            pinIt();
            at::Tensor v = e->deviceValue;
            lk.unlock();
            touchFile(diskPath);
            return FeatureHandle(std::move(v), "device", pin);
        }
    }

    const bool hostHit = e && e->resident(kHost);
    c.count(kHost, hostHit);
    if (hostHit) {
        c.countTotal(true);
        pinIt();
        at::Tensor v = e->hostValue;
        const bool wantDevice = c.deviceOn;
        lk.unlock();
        touchFile(diskPath);
        // A pinned entry keeps its blocks, so they can be read without the lock.
        if (!v.defined())
            v = copyFromBlocks(*c.store, e->blocks, c.blockBytes, c.storeDevice, e->dtype, e->shape);
        if (wantDevice) {
            at::Tensor d = fillTiers(c, e, v, /*owned=*/c.store != nullptr, at::Tensor(), false);
            if (d.defined()) v = d;
        }
        return FeatureHandle(std::move(v), "host", pin);
    }

    if (!c.diskOn || !e || !e->resident(kDisk)) {
        if (c.diskOn) c.count(kDisk, false);
        c.countTotal(false);
        return {};
    }
    pinIt();
    const uint64_t gen = c.diskGen;
    lk.unlock();
    at::Tensor v;
    const FeatureFileStatus status = readFeatureFile(diskPath, key, v);
    lk.lock();
    const bool ok = status == FeatureFileStatus::Ok;
    c.count(kDisk, ok);
    c.countTotal(ok);
    if (!ok) {
        // Another reader may have rejected it first, or the folder changed: count it once.
        if (gen == c.diskGen && e->resident(kDisk)) {
            std::vector<int32_t> none;
            c.drop(*e, kDisk, none);
            ++c.tiers[kDisk].rejectedCorrupt;
        }
        lk.unlock();
        return {};
    }
    lk.unlock();
    touchFile(diskPath);
    at::Tensor d = fillTiers(c, e, v, /*owned=*/true, at::Tensor(), false);
    return FeatureHandle(d.defined() ? d : v, "disk", pin);
}

FeatureHandle FeatureCache::insert(const std::string &rawKey, const at::Tensor &value) {
    const std::string key = normalizedFeatureKey(rawKey);
    if (!value.defined()) throw Error("feature cache: insert of an undefined tensor for " + key);
    at::Tensor given = value.detach().contiguous();
    Core &c = *core_;
    std::shared_ptr<Pin> pin;
    std::unique_lock lk(c.mu);
    if (!c.settings.enabled) return FeatureHandle(std::move(given), "new", nullptr);
    EntryPtr e = c.findOrCreate(key);
    c.touch(*e);
    c.addPin(*e);
    pin = std::make_shared<Pin>(core_, e);
    const std::string diskPath = e->resident(kDisk) ? c.pathOf(key) : std::string();
    lk.unlock();
    touchFile(diskPath);
    const bool onCpu = given.device().is_cpu();
    const at::Tensor cpu = onCpu ? given : given.to(at::kCPU);
    fillTiers(c, e, cpu, /*owned=*/!onCpu, onCpu ? at::Tensor() : given, true);
    return FeatureHandle(std::move(given), "new", pin);
}

bool FeatureCache::contains(const std::string &rawKey) const {
    const std::string key = normalizedFeatureKey(rawKey);
    std::lock_guard lk(core_->mu);
    auto it = core_->entries.find(key);
    if (it == core_->entries.end()) return false;
    const Entry &e = *it->second;
    return e.resident(kDevice) || e.resident(kHost) || e.resident(kDisk);
}

uint64_t FeatureCache::evictHost(uint64_t bytes) {
    Core &c = *core_;
    std::vector<int32_t> freed;
    uint64_t freedBytes = 0;
    {
        std::lock_guard lk(c.mu);
        while (freedBytes < bytes) {
            Entry *v = c.victim(kHost);
            if (!v) break;
            freedBytes += v->charged[kHost];
            c.evict(*v, kHost, freed);
        }
    }
    if (c.store) c.release(freed);
    return freedBytes;
}

void FeatureCache::applySettings(const FeatureCacheSettings &s) {
    Core &c = *core_;
    std::vector<int32_t> freed;
    {
        std::lock_guard lk(c.mu);
        const FeatureCacheSettings old = c.settings;
        c.settings = s;
        c.settings.storeDevice = old.storeDevice; // the store does not move
        const at::Device oldDevice = c.device;
        c.configure();
        if (c.device != oldDevice) // copies on the old device are no use: drop the unpinned
            for (auto it = c.entries.begin(); it != c.entries.end();) {
                Entry &e = *(it++)->second;
                if (e.pins == 0 && e.resident(kDevice)) c.evict(e, kDevice, freed);
            }
        if (s.diskDir != c.dir) c.indexDisk(freed);
        c.trim(freed);
    }
    if (c.store) c.release(freed);
}

void FeatureCache::clear() {
    Core &c = *core_;
    std::vector<int32_t> freed;
    {
        std::lock_guard lk(c.mu);
        for (auto it = c.entries.begin(); it != c.entries.end();) {
            Entry &e = *(it++)->second;
            if (e.pins > 0) continue;
            for (int t = 0; t < kTiers; ++t) c.drop(e, t, freed);
            c.forgetIfIdle(e);
        }
        // Files written by someone else since indexing are entries too.
        if (c.diskOn) {
            std::error_code ec;
            fs::directory_iterator it(c.dir, ec), end;
            for (; !ec && it != end; it.increment(ec)) {
                std::string key;
                if (!isEntryFileName(it->path().filename().string(), key)) continue;
                auto known = c.entries.find(key);
                std::error_code e1;
                if (known == c.entries.end() || known->second->slot[kDisk] == Slot::None)
                    fs::remove(it->path(), e1);
            }
        }
    }
    if (c.store) c.release(freed);
}

FeatureCacheStats FeatureCache::stats() const {
    const Core &c = *core_;
    std::lock_guard lk(c.mu);
    FeatureCacheStats s;
    TierCounters *out[kTiers] = {&s.device, &s.host, &s.disk};
    for (int t = 0; t < kTiers; ++t) {
        *out[t] = c.tiers[t];
        out[t]->budget = c.budget(t);
    }
    s.pinned = c.pinnedEntries;
    s.lookups = c.lookups;
    s.hits = c.hits;
    s.misses = c.misses;
    return s;
}

std::string FeatureCache::diskError() const {
    std::lock_guard lk(core_->mu);
    return core_->diskError;
}

} // namespace mgd
