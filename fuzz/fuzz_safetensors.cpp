// safetensors: the header (length, JSON, dtypes, shapes, offsets) and the tensors it maps.
#include <ATen/ATen.h>

#include <cstring>

#include "core/model/safetensors.h"
#include "fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string path = mgd::fuzz::inputAsFile(data, size, ".safetensors");
    mgd::fuzz::expectCleanErrors([&] {
        auto file = std::make_shared<const mgd::SafetensorsFile>(path);
        for (const auto &[name, info] : file->tensors()) {
            if (info.end - info.begin > (1u << 20)) continue;
            at::Tensor copy = file->load(name);
            at::Tensor view = mgd::SafetensorsFile::view(file, name);
            // Bytes, not values: NaN != NaN.
            if (view.defined() &&
                (view.nbytes() != copy.nbytes() ||
                 (copy.nbytes() > 0 && std::memcmp(view.data_ptr(), copy.data_ptr(), copy.nbytes()) != 0)))
                std::abort();
            file->release(name);
        }
    });
    return 0;
}
