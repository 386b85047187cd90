// Saved conversation state (core/cache/kv_file): only an entry whose every check passes is
// used; whatever the bytes, decoding ends in Ok, Corrupt or Stale.
#include <ATen/ATen.h>

#include "core/cache/kv_file.h"
#include "fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // What tools/make_kv_fuzz_seed.py writes the seed for.
    static const mgd::KvExpectation expect{"fuzz-model", 2, 2, 4, at::kFloat, 64};
    mgd::KvEntry e;
    const auto s = mgd::decodeKvBytes(data, size, expect, e);
    if (s == mgd::KvFileStatus::Ok) {
        if (e.layers.size() != 2) std::abort();
        for (const auto &t : e.layers)
            if (t.sizes() != at::IntArrayRef({2, 2, e.positions(), 4})) std::abort();
    }
    mgd::KvEntry fromFile;
    const std::string path = mgd::fuzz::inputAsFile(data, size, ".mgkv");
    if (mgd::readKvFile(path, expect, fromFile) != s) std::abort();
    return 0;
}
