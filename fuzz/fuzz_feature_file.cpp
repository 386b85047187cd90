// The feature cache's entries (disk files and Redis values share the format): only an entry
// whose every check passes is used; anything else is Corrupt.
#include <ATen/ATen.h>

#include <cstring>

#include "core/cache/feature_file.h"
#include "fuzz/fuzz_support.h"

// The key of the seed entries (tests/data/fuzz/feature_file).
static const std::string kKey = "b30826b8379c2dc385db5b275f49ac2f";

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    at::Tensor out;
    const auto status = mgd::decodeFeatureBlob(data, size, kKey, out);
    if (status == mgd::FeatureFileStatus::Ok) {
        // A used entry re-encodes to the bytes it came from (checksums aside: a fuzzing build
        // accepts any) and decodes again to the same tensor.
        const std::string again = mgd::encodeFeatureBlob(kKey, out);
        if (again.size() != size) std::abort();
        at::Tensor back;
        if (mgd::decodeFeatureBlob(reinterpret_cast<const uint8_t *>(again.data()), again.size(), kKey,
                                   back) != mgd::FeatureFileStatus::Ok ||
            back.sizes() != out.sizes() || back.scalar_type() != out.scalar_type() ||
            (out.nbytes() > 0 && std::memcmp(back.data_ptr(), out.data_ptr(), out.nbytes()) != 0))
            std::abort();
    }
    const std::string path = mgd::fuzz::inputAsFile(data, size, ".mgdf");
    at::Tensor fromFile;
    if (mgd::readFeatureFile(path, kKey, fromFile) != status) std::abort();
    return 0;
}
