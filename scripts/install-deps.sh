#!/usr/bin/env bash
# Installs the Debian packages drawbridge builds with (--with-tests: and tests with;
# --with-sanitizers: the asan preset's and the fuzzers' clang; --with-bench: what the bench/
# scripts read and draw with). Safe to run again: it installs
# only what is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libboost-dev libboost-system-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libsqlite3-dev libpq-dev libssl-dev libsystemd-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  curl
)
for arg in "$@"; do
  case "$arg" in
    --with-tests)
      # ngircd: the real IRC server the IRC channel's end-to-end tests start (tests/e2e/irc_test.cpp).
      # postgresql: the server the PostgreSQL store's tests start (tests/fakes/pg_server.cpp).
      packages+=(sqlite3 ngircd postgresql)
      # Node and npm only fetch OpenClaw's packages (and Node 24) from the npm registry: any
      # install that provides the commands will do (Debian's, or nodesource's nodejs with npm).
      if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        packages+=(nodejs npm)
      fi
      ;;
    --with-sanitizers)
      # The asan preset and the fuzz targets: clang-14, its sanitizer and libFuzzer runtimes
      # (libclang-rt-14-dev), llvm-symbolizer for file:line in reports (llvm-14).
      packages+=(clang-14 libclang-rt-14-dev llvm-14)
      ;;
    --with-bench)
      # jq reads the benches' JSON results; gnuplot draws bench/chaos.sh's picture (PNG).
      packages+=(jq gnuplot-nox)
      ;;
    *) echo "usage: $0 [--with-tests] [--with-sanitizers] [--with-bench]" >&2; exit 64 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
