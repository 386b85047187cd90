// Engine: conversation state kept on disk across restarts (the KV of each tagged
// conversation and its answers' token ids), in the tier core/cache/conversation_kv_store.
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "core/cache/conversation_kv_store.h"
#include "core/model/llama.h"
#include "core/model/minigpt_model.h"
#include "core/model/tokenizer.h"
#include "core/runtime/conversation.h"
#include "core/runtime/engine.h"
#include "core/util/error.h"
#include "core/util/hasher.h"

namespace fs = std::filesystem;

namespace mgd {

namespace {

std::string defaultStateDir() {
    const char *xdg = std::getenv("XDG_CACHE_HOME");
    const char *home = std::getenv("HOME");
    const fs::path base = xdg && *xdg ? fs::path(xdg) : (home && *home ? fs::path(home) / ".cache" : "/tmp");
    return (base / "minigpt-desk" / "conversation-state").string();
}

// What the KV depends on: the LLM's weights (named by their files: hashing gigabytes at every
// load would cost more than the tier saves), its configuration and the compute dtype.
std::string llmIdentity(const MiniGptModel &m, bool int8) {
    Hasher128 h;
    std::error_code ec;
    h.add(fs::weakly_canonical(m.dir(), ec).string()).add("|").add(m.config().toJsonText());
    h.add("|").add(c10::toString(m.llm().kvShape().dtype)).add(int8 ? "|int8" : "");
    std::vector<fs::path> files;
    for (const auto &e : fs::directory_iterator(m.dir(), ec))
        if (e.path().extension() == ".safetensors") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto &f : files) {
        std::error_code e1, e2;
        const auto size = fs::file_size(f, e1);
        const auto mtime = fs::last_write_time(f, e2).time_since_epoch().count();
        h.add(f.filename().string()).addValue(size).addValue(mtime);
    }
    return h.digest().hex();
}

std::string textHash(const std::string &text) {
    return Hasher128().add(text).digest().hex();
}

} // namespace

void Engine::setupKvStore() {
    kvStore_.reset();
    if (!model_ || settings_.kvDiskBytes == 0 || !settings_.kvReuse) return;
    const KvShape s = kvShape();
    // Entries hold the dequantized state of an int8 KV: another identity than a full-width one.
    KvExpectation e{llmIdentity(*model_, s.int8), s.layers, s.kvHeads, s.headDim, s.dtype, s.maxPositions};
    try {
        kvStore_ = std::make_unique<ConversationKvStore>(
            settings_.kvDiskDir.empty() ? defaultStateDir() : settings_.kvDiskDir, settings_.kvDiskBytes, e);
    } catch (const Error &) {
        // A folder that cannot be made: the app works without the tier (the panel shows it off).
        metrics_->addCounter("conversation_state_errors");
    }
}

void Engine::saveState(const Conversation &c) {
    if (!kvStore_ || c.tag.empty() || c.session.length() == 0) return;
    KvEntry e;
    e.meta.conversation = c.tag;
    for (const ChatMessage &m : c.messages)
        e.meta.messages.push_back({m.fromUser, textHash(m.text), m.answerIds});
    e.keys = c.session.keys();
    e.keys.resize(static_cast<size_t>(c.session.length()));
    e.layers = c.session.exportKv(); // a copy: the pool's blocks change with the next turn
    kvStore_->save(c.tag, std::move(e));
    metrics_->addCounter("conversation_state_saves");
}

void Engine::restoreSavedState(Conversation &c) {
    if (!kvStore_ || c.tag.empty()) return;
    std::optional<KvEntry> e = kvStore_->load(c.tag);
    if (!e) return;
    // Checksums prove the bytes are what was written, not that a writer was ours: ids must
    // be ones the tokenizer (and the embedding) knows.
    const int32_t vocab = model().tokenizer().vocabSize();
    for (const SavedMessage &sm : e->meta.messages)
        for (int32_t id : sm.answerIds)
            if (id >= vocab) return;
    for (int64_t k : e->keys)
        if (k >= vocab) return;
    // Answers keep the exact tokens they were generated as, while the history matches what was
    // saved; from the first message that differs (edited elsewhere) the text is tokenized.
    const size_t n = std::min(e->meta.messages.size(), c.messages.size());
    for (size_t i = 0; i < n; ++i) {
        const SavedMessage &sm = e->meta.messages[i];
        ChatMessage &m = c.messages[i];
        if (sm.fromUser != m.fromUser || sm.textHash != textHash(m.text)) break;
        if (!m.fromUser) m.answerIds = sm.answerIds;
    }
    // The KV is used only as far as its keys match the next prompt (Session::prefill); a
    // pool without room leaves the conversation to prefill normally.
    if (c.session.importState(kvShape(), std::move(e->keys), e->layers)) {
        metrics_->addCounter("conversation_state_restores");
        // Its full blocks are shared at once: a new conversation on the same image after the
        // restart starts from them, and restored conversations on one image hold it once.
        if (settings_.kvReuse && settings_.prefixCache) c.session.shareBlocks();
    }
    pushPoolStats();
}

void Engine::forgetSavedState(const std::string &tag) {
    if (kvStore_ && !tag.empty()) kvStore_->remove(tag);
}

ConversationKvStats Engine::savedStateStats() const {
    return kvStore_ ? kvStore_->stats() : ConversationKvStats{};
}

void Engine::flushSavedState() {
    if (kvStore_) kvStore_->flush();
}

} // namespace mgd
