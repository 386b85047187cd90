#pragma once
// An unpickler for torch.save streams that EXECUTES NOTHING. It builds an inert tree of
// values; the few calls a checkpoint needs (OrderedDict, the torch tensor rebuilders, sets,
// byte strings) are recognised by name and evaluated as pure data transforms. Any other
// GLOBAL stays an inert Global; REDUCE/NEWOBJ/BUILD on it stays an inert Call, and by default
// a stream holding such a Call is refused after parsing, naming the global. Every length,
// memo index, stack access and size is checked before it is used.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/util/error.h"

namespace mgd::pth {

// Element types of the storages we read (torch.<X>Storage or torch.<dtype>).
enum class ScalarKind : uint8_t { F16, BF16, F32, F64, I64, I32, I16, I8, U8, Bool };

size_t elementSize(ScalarKind k);
// torch's name: "float16", "bfloat16", "float32", "float64", "int64", ..., "uint8", "bool".
const char *scalarKindName(ScalarKind k);

// A tensor as the pickle describes it: a strided view on a storage found elsewhere in the file.
// Nothing here is validated against the storage; TorchFile does that.
struct TensorRef {
    ScalarKind dtype = ScalarKind::F32;
    bool dtypeKnown = true;  // false when storageType names no supported dtype
    std::string storageType; // as pickled, e.g. "torch.FloatStorage"
    std::vector<int64_t> shape, stride;
    int64_t storageOffset = 0; // in elements
    std::string storageKey;
    int64_t storageNumel = 0; // as declared in the persistent id
    std::string location;     // "cpu", "cuda:0", ...
    bool requiresGrad = false;
};

class Value {
public:
    enum class Kind : uint8_t {
        None,
        Bool,
        Int,
        BigInt,
        Float,
        String,
        Bytes,
        List,
        Tuple,
        Dict,
        Global,
        Call,
        Persistent,
        Tensor
    };
    using Entry = std::pair<const Value *, const Value *>;

    Kind kind() const { return kind_; }
    bool is(Kind k) const { return kind_ == k; }
    const char *kindName() const;

    bool boolean() const { return flag_; }            // Bool
    int64_t integer() const { return u_.i; }          // Int
    double real() const { return u_.f; }              // Float
    const std::string &text() const { return text_; } // String (UTF-8), Bytes (raw), BigInt (decimal)

    const std::vector<const Value *> &items() const;               // List, Tuple (empty for other kinds)
    const std::vector<Entry> &entries() const { return entries_; } // Dict, in insertion order
    const Value *find(std::string_view key) const; // Dict entry with that string key, or nullptr
    bool ordered() const { return kind_ == Kind::Dict && flag_; } // Dict made by OrderedDict
    // Dict: the state BUILD gave it (OrderedDict attributes such as _metadata), or nullptr.
    const Value *attributes() const;
    const Value *metadata() const; // attributes()["_metadata"], or nullptr

    std::string_view module() const;                           // Global
    std::string_view name() const;                             // Global
    const std::string &qualifiedName() const { return text_; } // Global: "module.name"

    const Value *callee() const;                      // Call
    const Value *args() const;                        // Call (None for BUILD on a global)
    const Value *state() const;                       // Call: state given by BUILD, or nullptr
    uint64_t offset() const { return u_.off; }        // Call: byte offset of its REDUCE/NEWOBJ/BUILD
    const Value *persistentId() const;                // Persistent
    const TensorRef &tensor() const { return *u_.t; } // Tensor

private:
    friend class Unpickler;
    Kind kind_ = Kind::None;
    bool flag_ = false;
    union {
        int64_t i;
        double f;
        uint64_t off;
        size_t split; // Global: length of the module part of text_
        const TensorRef *t;
    } u_{};
    std::string text_;
    std::vector<const Value *> items_; // List/Tuple; Call: callee, args[, state]; Persistent: id; Dict: attrs
    std::vector<Entry> entries_;
};

struct PickleLimits {
    uint64_t maxValues = 50'000'000;      // values created
    uint64_t maxReferences = 200'000'000; // stack pushes, repeated GET/DUP included
    size_t maxDepth = 1000;               // MARK nesting and nesting of the result
    size_t maxBigIntBytes = 2048;         // LONG1/LONG4 beyond int64 become decimal text
};

struct PickleOptions {
    std::string context;     // names the file in messages, e.g. "checkpoint 'x.pth'"
    std::string part;        // the pickle inside it, e.g. "archive/data.pkl"; may be empty
    uint64_t baseOffset = 0; // added to byte offsets in messages
    PickleLimits limits;
    // Refuse (mgd::Error) a stream whose tree holds any Call that is not on the allow-list.
    bool refuseUnknownCalls = true;
};

// The values of one pickle. Owns them; pointers stay valid while it lives (moves included).
class PickleDocument {
public:
    PickleDocument();
    ~PickleDocument();
    PickleDocument(PickleDocument &&) noexcept;
    PickleDocument &operator=(PickleDocument &&) noexcept;

    const Value &root() const { return *root_; }
    uint64_t endOffset() const { return end_; } // bytes consumed, STOP included
    size_t valueCount() const;
    // Every Tensor value the stream made, in creation order (reachable from the root or not).
    const std::vector<const Value *> &tensors() const { return tensors_; }

private:
    friend class Unpickler;
    struct Arena;
    std::unique_ptr<Arena> arena_;
    const Value *root_ = nullptr;
    uint64_t end_ = 0;
    std::vector<const Value *> tensors_;
};

// Thrown when the bytes end before STOP: the legacy reader then retries with more of them.
class PickleTruncated : public Error {
public:
    using Error::Error;
};

// Parses one pickle (from the start of `bytes` up to its STOP). Throws mgd::Error naming
// options.context, the part and the byte offset at fault.
PickleDocument unpickle(std::string_view bytes, const PickleOptions &options = {});

// Short rendering for messages: 'key', 12, <Tensor>, ...
std::string describe(const Value &v);

} // namespace mgd::pth
