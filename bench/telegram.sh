#!/usr/bin/env bash
# The Telegram channel against the fake Bot API (issue 12): runs drawbridge_telegram_bench,
# which starts the tests' fake Telegram server in its own process and the real gateway as a
# child (fresh data folder, free 127.0.0.1 port, echo agent, send rate limits off), and
# measures throughput (updates/s from the first push to the last reply), latency (update
# available -> its reply received by the fake, open loop) and a lifecycle run (restarts,
# channel reloads and kill -9 while updates flow: lost, duplicated, overlapping polls).
#
#   bench/telegram.sh [drawbridge_telegram_bench options]
#   e.g. bench/telegram.sh -q 300 -R 3 -p throughput,latency
#        bench/telegram.sh -q 300 -p lifecycle --restarts 20 --reloads 20 --kills 5
# Options (see --help): -p PARTS, -n UPDATES, -c CHATS, -r RATE, -d SECONDS, -w WARMUP_S,
# --lifecycle-rate R, --restarts N, --reloads N, --kills N, -R REPEATS, -q MAX_WAIT_S (wait for
# the machine to be >= 80% idle before each run), -L DIR (keep logs), --json FILE.
# Environment: DRAWBRIDGE_BIN, TELEGRAM_BENCH_BIN, BUILD_DIR, BENCH_TMP.
set -uo pipefail
source "$(dirname "$0")/common.sh"
TELEGRAM_BENCH_BIN="${TELEGRAM_BENCH_BIN:-$BUILD_DIR/bench/drawbridge_telegram_bench}"
need_bin "$DRAWBRIDGE_BIN"
need_bin "$TELEGRAM_BENCH_BIN"

machine_line
echo "commit: $(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
  [[ -n "$(git -C "$BENCH_ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]] && echo ' (working tree has changes)')"
echo "+ $TELEGRAM_BENCH_BIN --bin $DRAWBRIDGE_BIN --tmp $BENCH_TMP $*"
"$TELEGRAM_BENCH_BIN" --bin "$DRAWBRIDGE_BIN" --tmp "$BENCH_TMP" "$@"
rc=$?
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$rc"
