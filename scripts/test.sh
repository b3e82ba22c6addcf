#!/usr/bin/env bash
# The README's test command: install dependencies, build, and run every test.
#   1. release build (-Werror) + ctest: unit, crash, integration, fuzz-smoke
#   2. ASan + UBSan build + ctest
#   3. libFuzzer build (clang) + each fuzz target for FUZZ_SECONDS (default 20)
#   4. clang-format check of every C file
# Usage: scripts/test.sh            (everything)
#        SKIP_FUZZ=1 scripts/test.sh (skip step 3)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=$(nproc)
FUZZ_SECONDS=${FUZZ_SECONDS:-20}

scripts/install-deps.sh

step() { echo; echo "=== $* ==="; }

step "format check"
mapfile -t CFILES < <(git ls-files '*.c' '*.h' 2>/dev/null || find common node router tests -name '*.[ch]')
clang-format --dry-run -Werror "${CFILES[@]}"

step "release build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTRATA_WERROR=ON >/dev/null
ninja -C build
step "release tests"
ctest --test-dir build --output-on-failure -j"$JOBS"

step "ASan+UBSan build"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSTRATA_WERROR=ON -DSTRATA_SANITIZE=ON >/dev/null
ninja -C build-asan
step "ASan+UBSan tests"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  STRATA_TEST_SCALE=${STRATA_TEST_SCALE_ASAN:-0.25} \
  ctest --test-dir build-asan --output-on-failure -j"$JOBS"

if [ "${SKIP_FUZZ:-0}" != "1" ]; then
  step "libFuzzer build"
  CC=clang cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTRATA_FUZZ=ON >/dev/null
  ninja -C build-fuzz
  step "fuzzing ${FUZZ_SECONDS}s per target"
  for f in build-fuzz/tests/fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    name=$(basename "$f")
    corpus="$ROOT/build-fuzz/corpus/$name"
    mkdir -p "$corpus"
    seeds=()
    [ -d "$ROOT/tests/fuzz/seeds/$name" ] && seeds=("$ROOT/tests/fuzz/seeds/$name")
    (cd build-fuzz && "./tests/fuzz/$name" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 \
        -print_final_stats=0 "$corpus" "${seeds[@]}" >"$ROOT/build-fuzz/$name.log" 2>&1) || {
      echo "FUZZ FAILURE in $name:"; tail -40 "build-fuzz/$name.log"; exit 1; }
    echo "$name: $(grep -Eo '#[0-9]+' "build-fuzz/$name.log" | tail -1 | tr -d '#') runs, no crash"
  done
fi
echo
echo "all test stages passed"
