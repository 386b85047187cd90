#!/usr/bin/env bash
# The ctest suite again, built with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/):
# a memory error, a leak or undefined behaviour fails it. -O1 keeps the build within minutes on
# two cores. Run after packaging/install-deps.sh.
#
# Left out by default, to keep CI's wall time (this stage was half of it): tests labelled
# window (the whole window driven offscreen: Qt widget code, run unsanitized by the test
# command), kill (100 SIGKILLed writers; the store they write is tested here by
# test_conversation_store), train (the demo trainer, not in the apps) and fuzz (the corpus
# replays: CI's fuzz stage runs the same inputs with ASan + UBSan). MGD_SANITIZE_ALL=1 builds
# and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${ASAN_BUILD_DIR:-build-asan}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS=-O1 \
  -DMGD_SANITIZE=address,undefined >/dev/null
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
if [ "${MGD_SANITIZE_ALL:-0}" = 1 ]; then
  cmake --build "$BUILD"
  QT_QPA_PLATFORM=offscreen ctest --test-dir "$BUILD" --output-on-failure -j 2
  exit
fi
EXCLUDE='window|kill|train|fuzz'
# Each test's executable is named as the test; the CLI is what several of them run.
mapfile -t tests < <(ctest --test-dir "$BUILD" -N -LE "$EXCLUDE" | sed -n 's/^ *Test *#[0-9]*: *//p')
[ ${#tests[@]} -gt 0 ] || { echo "no tests found in $BUILD" >&2; exit 1; }
echo "sanitized: ${#tests[@]} tests (left out: labels $EXCLUDE; MGD_SANITIZE_ALL=1 runs all)"
cmake --build "$BUILD" --target minigpt-cli "${tests[@]}"
QT_QPA_PLATFORM=offscreen ctest --test-dir "$BUILD" --output-on-failure -j 2 -LE "$EXCLUDE"
