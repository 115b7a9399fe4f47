#!/usr/bin/env bash
# Builds the libFuzzer target with clang (ASan + UBSan) in build-fuzz/ and
# runs it: every corpus and regression input once, then 60 s of fuzzing
# (REFERRAL_FUZZ_SECONDS to change). A crash leaves its input in
# build-fuzz/tests/fuzz/crash-*: fix the bug, then keep the input in
# tests/fuzz/regressions/.
#
# Usage: tests/fuzz/run.sh [--regressions-only]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${REFERRAL_FUZZ_SECONDS:-60}
CC=${FUZZ_CC:-clang} cmake -S . -B build-fuzz -DREFERRAL_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug \
	-DREFERRAL_FUZZ_SECONDS="$seconds" >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz_dispatch
cd build-fuzz
if [[ ${1:-} == --regressions-only ]]; then
	exec ctest --output-on-failure -R fuzz.regressions
fi
exec ctest --output-on-failure -L fuzz
