// torch.save checkpoints (.pth/.bin): the zip archive or legacy stream, the inert unpickler
// and the validation of every tensor against its storage, then reading the tensors' bytes.
#include <vector>

#include "core/import/torch_file.h"
#include "fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string path = mgd::fuzz::inputAsFile(data, size, ".pth");
    mgd::fuzz::expectCleanErrors([&] {
        const auto file = mgd::pth::TorchFile::open(path);
        std::vector<char> buffer;
        for (const auto &t : file.tensors()) {
            const uint64_t n = mgd::pth::nbytes(*t.ref);
            if (n > (1u << 20)) continue;
            buffer.resize(n);
            file.readContiguous(*t.ref, buffer.data());
        }
        std::vector<std::string> ignored;
        if (file.root().is(mgd::pth::Value::Kind::Dict))
            mgd::pth::tensorsOf(file.root(), &ignored, file.label());
    });
    return 0;
}
