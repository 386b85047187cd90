// config.json in both layouts: ours (a model folder's) and Hugging Face's (an LLM folder's).
#include <string>

#include "core/import/hf_config.h"
#include "core/model/model_config.h"
#include "fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string text(reinterpret_cast<const char *>(data), size);
    mgd::fuzz::expectCleanErrors([&] {
        const auto c = mgd::ModelConfig::fromJsonText(text, "fuzz config.json");
        (void)c.imageTokens();
        // What we write must read back.
        const auto again = mgd::ModelConfig::fromJsonText(c.toJsonText(), "rewritten config.json");
        if (again.toJsonText() != c.toJsonText()) std::abort();
    });
    mgd::fuzz::expectCleanErrors([&] { (void)mgd::hfLlamaConfigFromText(text, "fuzz HF config.json"); });
    return 0;
}
