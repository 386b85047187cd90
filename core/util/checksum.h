#pragma once
// Whether a stored checksum matches the computed one. Fuzzing builds (the conventional
// FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, set by fuzz/CMakeLists.txt) accept any value, so
// the fuzzer reaches the checks behind the checksums instead of failing at them; every other
// build compares.
#include <cstdint>

namespace mgd {

inline bool checksumMatches(uint64_t stored, uint64_t computed) {
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    (void)stored;
    (void)computed;
    return true;
#else
    return stored == computed;
#endif
}

} // namespace mgd
