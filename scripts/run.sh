#!/usr/bin/env bash
# Set-up command 1: installs what is needed, builds, and runs the gateway on the embedded
# default: 127.0.0.1:18789, SQLite under ./data, the local channel and the echo agent.
# Arguments go to `drawbridge run` (e.g. --port 18800, --config drawbridge.json).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
DRAWBRIDGE_BENCH=OFF scripts/build.sh -DDRAWBRIDGE_TESTS=OFF -DDRAWBRIDGE_BENCH=OFF
exec "${BUILD_DIR:-build}/drawbridge" run "$@"
