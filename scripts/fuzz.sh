#!/usr/bin/env bash
# The fuzz stage: each libFuzzer target (tests/fuzz) for DRAWBRIDGE_FUZZ_SECONDS (default 60)
# from a copy of its seed corpus, two at a time (ctest preset `fuzz`, on the asan build that
# scripts/test-asan.sh made; built here if it is not). A crash fails the stage and prints the
# input's first bytes; the input is kept in build-asan/tests/fuzz/fuzz-artifacts/<target>/.
# docs/TESTING.md: running one target longer, reproducing a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --with-tests --with-sanitizers
cmake --preset asan -DDRAWBRIDGE_FUZZ_SECONDS="${DRAWBRIDGE_FUZZ_SECONDS:-60}" >/dev/null
# Only the fuzz targets: the sanitized test binaries are scripts/test-asan.sh's.
cmake --build --preset asan --target fuzz_config fuzz_frames fuzz_http
exec ctest --preset fuzz "$@"
