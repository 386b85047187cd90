// What users type, encoded by a real tokenizer.model (the demo model's): any bytes, valid
// UTF-8 or not, give ids in range that decode again.
#include <cstdlib>
#include <string_view>

#include "core/model/tokenizer.h"
#include "fuzz/fuzz_support.h"

#ifndef MGD_FUZZ_TOKENIZER
#error "MGD_FUZZ_TOKENIZER: path of a tokenizer.model"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const auto tok = mgd::Tokenizer::fromFile(MGD_FUZZ_TOKENIZER);
    const std::string_view text(reinterpret_cast<const char *>(data), size);
    for (bool bos : {false, true}) {
        const auto ids = tok.encode(text, bos);
        for (int32_t id : ids)
            if (id < 0 || id >= tok.vocabSize()) std::abort();
        (void)tok.decode(ids);
    }
    (void)tok.encodePlain(text);
    return 0;
}
