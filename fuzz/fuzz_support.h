#pragma once
// Shared by the fuzz targets: the input as a file for readers that take a path, and the one
// rule every target checks: bad bytes end in mgd::Error (a clear message) or a refusal,
// never in a crash, a sanitizer report or any other exception (those escape and libFuzzer
// reports them).
#include <cstdint>
#include <cstdio>
#include <string>
#include <unistd.h>

#include "core/util/error.h"

namespace mgd::fuzz {

// A per-process file holding the input (tmpfs when there is one: a file per execution).
inline std::string inputAsFile(const uint8_t *data, size_t size, const char *suffix) {
    static const std::string dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    const std::string path = dir + "/mgd-fuzz-" + std::to_string(getpid()) + suffix;
    FILE *f = std::fopen(path.c_str(), "wb");
    if (!f) std::abort();
    if (size && std::fwrite(data, 1, size, f) != size) std::abort();
    std::fclose(f);
    return path;
}

// Runs fn; an mgd::Error is the expected outcome for bad input.
template <class Fn> void expectCleanErrors(Fn &&fn) {
    try {
        fn();
    } catch (const mgd::Error &) {
    }
}

} // namespace mgd::fuzz
