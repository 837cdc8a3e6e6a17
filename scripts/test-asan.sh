#!/usr/bin/env bash
# The sanitizer stage: builds the `asan` preset (clang-14, ASan + UBSan, -O1 -g1, into
# build-asan/, the libFuzzer targets included) and runs the unit, e2e, conformance and
# packaging tests on it (ctest preset `asan`); the e2e tests start the sanitized `drawbridge`.
# Every sanitizer report (of a test binary or of a gateway process a test started) is written
# to build-asan/sanitizer-reports/ and printed here; any report fails the stage.
# Extra arguments go to ctest (e.g. -R Server -L e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --with-tests --with-sanitizers
tests/conformance/install.sh
if [[ -f build-asan/build.ninja ]]; then
  cmake --preset asan >/dev/null
else
  cmake --preset asan
fi
cmake --build --preset asan

reports=build-asan/sanitizer-reports
rm -rf "$reports"
mkdir -p "$reports"
rc=0
ctest --preset asan "$@" || rc=$?
if compgen -G "$reports/*" >/dev/null; then
  echo "== sanitizer reports ($(ls "$reports" | wc -l) files in $reports):"
  for f in "$reports"/*; do
    echo "-- $f"
    head -n 60 "$f"
  done
  rc=1
fi
exit "$rc"
