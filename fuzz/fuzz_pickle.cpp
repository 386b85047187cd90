// The unpickler alone, on raw pickle streams (inside a checkpoint it sits behind the zip
// reader, which most mutations break before the pickle is reached).
#include <string_view>

#include "core/import/pickle.h"
#include "fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mgd::fuzz::expectCleanErrors([&] {
        mgd::pth::PickleOptions options;
        options.context = "fuzz input";
        options.limits.maxValues = 1'000'000; // keep each execution short
        options.limits.maxReferences = 4'000'000;
        const auto doc =
            mgd::pth::unpickle(std::string_view(reinterpret_cast<const char *>(data), size), options);
        if (doc.endOffset() > size) std::abort();
        (void)mgd::pth::describe(doc.root());
    });
    return 0;
}
