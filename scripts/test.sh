#!/usr/bin/env bash
# Set-up command 2: installs what is needed (Debian packages; OpenClaw's protocol package, its
# reference client, its CLI and Control UI, Node 24 from npm), builds everything once, and runs
# every test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --with-tests
tests/conformance/install.sh
# OpenClaw's Control UI and terminal UI for tests/ui: Chromium and tmux (apt), puppeteer-core,
# the OpenClaw CLI (shared with bench/peer), the Control UI files.
tests/ui/install.sh
# No debug info unless asked (DRAWBRIDGE_DEBUG_INFO=ON): no test reads it, and it costs 20-30 %
# of the compile time of the heavy files. The sanitizer and fuzz stages are
# scripts/test-asan.sh and scripts/fuzz.sh (.ci/run runs all three).
scripts/build.sh -DDRAWBRIDGE_TESTS=ON -DDRAWBRIDGE_BENCH=ON \
  -DDRAWBRIDGE_DEBUG_INFO="${DRAWBRIDGE_DEBUG_INFO:-OFF}"
cd "${BUILD_DIR:-build}"
ctest -j2 --output-on-failure --timeout 300 "$@"
