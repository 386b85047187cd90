#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (build-fuzz/) and runs each for SECONDS from its
# corpus: the seeds and regression inputs in tests/data/fuzz/<target>/ plus what earlier runs
# found (build-fuzz/corpus/<target>/). Two targets run at a time. A crash leaves its input in
# build-fuzz/crashes/<target>/ and fails the script: copy it to tests/data/fuzz/<target>/
# (the regression replay ctest runs it from then on) and fix the parser.
# Usage: fuzz/run-fuzz.sh [SECONDS] [target...]   (default 30 s, every target)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-30}
shift || true
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
cmake -S . -B "$BUILD" -G Ninja -DMGD_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=None >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(ls "$BUILD"/build.ninja >/dev/null && grep -oE 'build fuzz/fuzz_[a-z_]+: CXX_EXECUTABLE_LINKER' "$BUILD"/build.ninja |
    sed 's|build fuzz/fuzz_||; s|: .*||' | sort -u)
fi
cmake --build "$BUILD" --target $(printf 'fuzz_%s ' "${targets[@]}")

run_one() {
  local t=$1
  mkdir -p "$BUILD/corpus/$t" "$BUILD/crashes/$t"
  local log="$BUILD/fuzz_$t.log"
  # -timeout: one input over 10 s is a hang; -rss_limit_mb: the parsers must refuse huge sizes.
  if "$BUILD/fuzz/fuzz_$t" "$BUILD/corpus/$t" "tests/data/fuzz/$t" -max_total_time="$SECONDS_EACH" \
      -timeout=10 -rss_limit_mb=3072 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$BUILD/crashes/$t/" >"$log" 2>&1; then
    echo "fuzz_$t: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') executions in ${SECONDS_EACH} s, no crash"
  else
    echo "fuzz_$t: FAILED (log $log, input in $BUILD/crashes/$t/)"
    grep -m3 -E 'ERROR|SUMMARY|uncaught|runtime error' "$log" || tail -5 "$log"
    return 1
  fi
}

status=0
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  run_one "${targets[i]}" & a=$!
  b=""
  if [ $((i + 1)) -lt ${#targets[@]} ]; then run_one "${targets[i + 1]}" & b=$!; fi
  wait $a || status=1
  if [ -n "$b" ]; then wait $b || status=1; fi
done
exit $status
