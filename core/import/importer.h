#pragma once
// From the files a user downloaded for the original MiniGPT-4 / MiniGPT-v2 to a model folder
// in our format: config.json (with where every input came from), safetensors shards,
// tokenizer.model. Streams tensor by tensor; writes into a temporary folder that is renamed
// at the end, so a cancelled or failed import leaves nothing that loads.
#include <atomic>
#include <functional>

#include "core/import/import_options.h"

namespace mgd {

// Throws mgd::Error naming the file and key at fault (with a hint for the known mix-ups:
// a 13B checkpoint with a 7B LLM, a LLaMA-2 checkpoint imported as minigpt4, ...).
// `cancel` may be set from another thread; the import then stops with "import cancelled".
ImportSummary importModel(const ImportOptions &options,
                          const std::function<void(const ImportProgress &)> &progress = {},
                          const std::atomic<bool> *cancel = nullptr);

} // namespace mgd
