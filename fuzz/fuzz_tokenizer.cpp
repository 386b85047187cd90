// tokenizer.model (SentencePiece protobuf): loading it, then encoding and decoding with it.
#include <string_view>

#include "core/model/tokenizer.h"
#include "fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mgd::fuzz::expectCleanErrors([&] {
        const auto tok = mgd::Tokenizer::fromBytes(
            std::string_view(reinterpret_cast<const char *>(data), size), "fuzz tokenizer.model");
        for (const char *text :
             {"Hello world", "  What colour is the circle?\n###", "naïve 日本 😀 <s></s>"}) {
            const auto ids = tok.encode(text, true);
            for (int32_t id : ids)
                if (id < 0 || id >= tok.vocabSize()) std::abort();
            (void)tok.decode(ids);
        }
        for (int32_t id = 0; id < tok.vocabSize() && id < 300; ++id) (void)tok.tokenBytes(id);
    });
    return 0;
}
