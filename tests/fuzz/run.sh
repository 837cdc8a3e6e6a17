#!/usr/bin/env bash
# Runs one libFuzzer target on a copy of its seed corpus, so the tree is not modified:
#   tests/fuzz/run.sh build-asan/tests/fuzz/fuzz_frames -max_total_time=600
# Options after the binary go to libFuzzer (https://llvm.org/docs/LibFuzzer.html#options).
# The seeds are tests/fuzz/corpus/<target>/, the dictionary tests/fuzz/<target>.dict.
# Inputs that crash are kept in $FUZZ_ARTIFACTS (default: fuzz-artifacts/ beside the binary),
# named crash-<sha1> / timeout-<sha1> / oom-<sha1>; reproduce one with
#   build-asan/tests/fuzz/fuzz_frames fuzz-artifacts/fuzz_frames/crash-<sha1>
# FUZZ_KEEP_CORPUS=DIR keeps the grown corpus in DIR (to add good inputs to the seeds by hand).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
fuzzer="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
shift
name="$(basename "$fuzzer")"
seeds="$here/corpus/$name"
[[ -d "$seeds" ]] || { echo "no seed corpus at $seeds" >&2; exit 2; }

artifacts="${FUZZ_ARTIFACTS:-$(dirname "$fuzzer")/fuzz-artifacts}/$name"
mkdir -p "$artifacts"
corpus="${FUZZ_KEEP_CORPUS:-}"
if [[ -z "$corpus" ]]; then
  corpus="$(mktemp -d "${TMPDIR:-/tmp}/drawbridge-$name.XXXXXX")"
  trap 'rm -rf "$corpus"' EXIT
fi
mkdir -p "$corpus"
cp -r "$seeds"/. "$corpus"/

opts=(-artifact_prefix="$artifacts/" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1)
[[ -f "$here/$name.dict" ]] && opts+=(-dict="$here/$name.dict")

# Symbolized stacks with file:line; UBSan findings are fatal and show their stack.
export ASAN_SYMBOLIZER_PATH="${ASAN_SYMBOLIZER_PATH:-$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# Every input makes a fresh server: a smaller quarantine keeps the RSS and the page faults down
# (use-after-free is still caught within an input, which is where it matters here).
export ASAN_OPTIONS="${ASAN_OPTIONS:-quarantine_size_mb=64:malloc_context_size=10}"

before="$(ls "$artifacts" | wc -l)"
echo "fuzzing $name: seeds $seeds ($(ls "$seeds" | wc -l) files), artifacts $artifacts"
# A stack overflow's report has thousands of frames of nlohmann templates: keep the first 40
# frames of each stack and 400 characters of each line (the input is kept whole anyway).
"$fuzzer" "${opts[@]}" "$@" "$corpus" 2>&1 | awk '
  /^    #[0-9]+ / { if (++n > 40) { if (n == 41) print "    ... (further frames cut by run.sh)"; next } }
  !/^    #[0-9]+ / { n = 0 }
  { print substr($0, 1, 400); fflush() }'
rc=${PIPESTATUS[0]}
if ((rc != 0)); then
  echo "== $name failed (exit $rc); inputs kept in $artifacts:"
  for f in $(ls -t "$artifacts" | head -n 3); do
    echo "-- $f ($(stat -c %s "$artifacts/$f") bytes), first 256 bytes:"
    head -c 256 "$artifacts/$f" | od -A d -c | head -n 12
  done
  echo "reproduce: $fuzzer $artifacts/<file>   (FUZZ_LOG=debug for the server's log;"
  echo "  a stack overflow's report is cut at the top: gdb -batch -ex run -ex 'bt -12' --args $fuzzer <file>)"
elif (( $(ls "$artifacts" | wc -l) > before )); then
  echo "new files in $artifacts although the run passed"
fi
exit "$rc"
