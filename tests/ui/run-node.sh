#!/usr/bin/env bash
# Runs one UI test with the Node 24 of the OpenClaw install (tests/ui/install.sh):
#   tests/ui/run-node.sh <test.mjs> <path to the drawbridge binary>
# Artefacts (screenshots, pane captures, frame logs, the gateway's log) go to $UI_ARTIFACTS,
# by default <the binary's folder>/ui-artifacts/<test>/. The exit code is the test's.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 <test.mjs> <drawbridge-binary>" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
test_file="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
bin="$2"
[[ "$bin" = /* ]] || bin="$PWD/$bin"

env_file="$here/node_modules/.drawbridge-ui.env"
if [[ ! -f "$env_file" ]]; then
  echo "$0: $env_file missing: run tests/ui/install.sh" >&2
  exit 1
fi
# NODE_BIN, OPENCLAW_MJS, CONTROL_UI_ROOT, CHROMIUM, as install.sh found them.
# shellcheck source=/dev/null
source "$env_file"
for f in "$NODE_BIN" "$CHROMIUM"; do
  [[ -x "$f" ]] || { echo "$0: $f missing: run tests/ui/install.sh" >&2; exit 1; }
done
[[ -f "$OPENCLAW_MJS" ]] || { echo "$0: $OPENCLAW_MJS missing: run tests/ui/install.sh" >&2; exit 1; }
[[ -f "$CONTROL_UI_ROOT/index.html" ]] || { echo "$0: $CONTROL_UI_ROOT/index.html missing: run tests/ui/install.sh" >&2; exit 1; }
if [[ ! -x "$bin" ]]; then
  echo "$0: drawbridge binary $bin not found or not executable" >&2
  exit 1
fi
artifacts="${UI_ARTIFACTS:-$(dirname "$bin")/ui-artifacts}"
mkdir -p "$artifacts"

# A throw-away HOME so that nothing (OpenClaw's CLI, Chromium, node) touches the real one.
scratch="$(mktemp -d "${TMPDIR:-/tmp}/drawbridge-ui.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/home"

cd "$here"
set +e
env HOME="$scratch/home" XDG_CONFIG_HOME="$scratch/home/.config" \
  XDG_STATE_HOME="$scratch/home/.local/state" XDG_CACHE_HOME="$scratch/home/.cache" \
  TMPDIR="$scratch" DRAWBRIDGE_BIN="$bin" UI_ARTIFACTS="$artifacts" \
  NODE_BIN="$NODE_BIN" OPENCLAW_MJS="$OPENCLAW_MJS" CONTROL_UI_ROOT="$CONTROL_UI_ROOT" CHROMIUM="$CHROMIUM" \
  "$NODE_BIN" --test --test-reporter=spec --test-timeout=110000 "$test_file"
rc=$?
set -e
echo "artefacts: $artifacts/$(basename "$test_file" .test.mjs)/"
exit $rc
