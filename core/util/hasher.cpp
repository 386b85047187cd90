#include "core/util/hasher.h"

#include <xxhash.h>

#include <cstdio>
#include <new>

namespace mgd {

std::string Digest128::hex() const {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(high),
                  static_cast<unsigned long long>(low));
    return buf;
}

void Hasher128::Deleter::operator()(XXH3_state_s *s) const {
    XXH3_freeState(s);
}

Hasher128::Hasher128() : state_(XXH3_createState()) {
    if (!state_) throw std::bad_alloc();
    XXH3_128bits_reset(state_.get());
}

Hasher128::~Hasher128() = default;

Hasher128 &Hasher128::add(const void *data, size_t bytes) {
    XXH3_128bits_update(state_.get(), data, bytes);
    return *this;
}

Digest128 Hasher128::digest() const {
    const XXH128_hash_t h = XXH3_128bits_digest(state_.get());
    return {h.high64, h.low64};
}

} // namespace mgd
