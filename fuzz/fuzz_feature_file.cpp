// The feature cache's entries (disk files and Redis values share the format): only an entry
// whose every check passes is used; anything else is Corrupt.
#include <ATen/ATen.h>

#include "core/cache/feature_file.h"
#include "fuzz/fuzz_support.h"

// The key of the seed entries (tests/data/fuzz/feature_file).
static const std::string kKey = "b30826b8379c2dc385db5b275f49ac2f";

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    at::Tensor out;
    const auto status = mgd::decodeFeatureBlob(data, size, kKey, out);
    if (status == mgd::FeatureFileStatus::Ok) {
        // A used entry re-encodes to exactly the bytes it came from.
        const std::string again = mgd::encodeFeatureBlob(kKey, out);
        if (again.size() != size || std::memcmp(again.data(), data, size) != 0) std::abort();
    }
    const std::string path = mgd::fuzz::inputAsFile(data, size, ".mgdf");
    at::Tensor fromFile;
    if (mgd::readFeatureFile(path, kKey, fromFile) != status) std::abort();
    return 0;
}
