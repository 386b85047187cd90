#pragma once
// XXH3-128 over several pieces, for identities and cache keys (model, image, prompt). Owns
// its state (RAII); xxhash.h stays out of headers.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

struct XXH3_state_s;

namespace mgd {

struct Digest128 {
    uint64_t high = 0, low = 0;
    std::string hex() const; // 32 lowercase hex digits, high word first
    uint64_t folded() const { return high ^ low; }
};

class Hasher128 {
public:
    Hasher128();
    ~Hasher128();
    Hasher128(const Hasher128 &) = delete;
    Hasher128 &operator=(const Hasher128 &) = delete;

    Hasher128 &add(const void *data, size_t bytes);
    Hasher128 &add(std::string_view text) { return add(text.data(), text.size()); }
    // The bytes of a trivially copyable value (an int, a settings struct without padding).
    template <class T> Hasher128 &addValue(const T &v) {
        static_assert(std::is_trivially_copyable_v<T>);
        return add(&v, sizeof v);
    }
    Digest128 digest() const;

private:
    struct Deleter {
        void operator()(XXH3_state_s *s) const;
    };
    std::unique_ptr<XXH3_state_s, Deleter> state_;
};

} // namespace mgd
