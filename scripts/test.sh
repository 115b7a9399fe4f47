#!/usr/bin/env bash
# Builds referrald and runs the whole test suite (unit and integration,
# against a private PostgreSQL that the suite starts and removes).
#
# Usage: scripts/test.sh [--no-sanitize] [ctest args...]
#   By default the suite runs in a build with AddressSanitizer and
#   UndefinedBehaviorSanitizer (build-asan/); a plain build (build/) is also
#   compiled so that warnings in either configuration fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=ON
if [[ ${1:-} == --no-sanitize ]]; then
	sanitize=OFF
	shift
fi
jobs=$(nproc)

cmake -S . -B build -DBUILD_TESTING=ON >/dev/null
cmake --build build -j"$jobs"

dir=build
if [[ $sanitize == ON ]]; then
	dir=build-asan
	cmake -S . -B "$dir" -DBUILD_TESTING=ON -DREFERRAL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build "$dir" -j"$jobs"
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi

cd "$dir"
ctest --output-on-failure -j"$jobs" "$@"
