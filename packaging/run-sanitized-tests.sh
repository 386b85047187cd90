#!/usr/bin/env bash
# The whole ctest suite again, built with AddressSanitizer + UndefinedBehaviorSanitizer
# (build-asan/): a memory error, a leak or undefined behaviour anywhere fails it. -O1 keeps
# the build within minutes on two cores. Run after packaging/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${ASAN_BUILD_DIR:-build-asan}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS=-O1 \
  -DMGD_SANITIZE=address,undefined >/dev/null
cmake --build "$BUILD"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
QT_QPA_PLATFORM=offscreen ctest --test-dir "$BUILD" --output-on-failure -j 2
