#!/usr/bin/env bash
# drawbridge on PostgreSQL (store.driver "postgres"): throughput against the same load as
# bench/throughput.sh, and the failover time of the active replica after a kill -9.
#
#   bench/cluster.sh [-d SECONDS] [-c CONNECTIONS] [-F FAILOVERS] [-l LEASE_MS]
#
# Starts its own PostgreSQL (initdb in a temporary folder, Unix socket only, fsync on: the
# durability a real server has), as the postgres user when run as root; stops it at the end.
# Throughput: one replica, echo agent, closed loop. Failover: replicas a and b on one database,
# a active and b standing by; a is killed (-9) and the time until b's /readyz answers 200 is
# measured, then the roles swap; -F times.
set -uo pipefail
source "$(dirname "$0")/common.sh"

duration=20 conns=100 failovers=5 lease_ms=5000
while getopts "d:c:F:l:" o; do
  case "$o" in
    d) duration="$OPTARG" ;;
    c) conns="$OPTARG" ;;
    F) failovers="$OPTARG" ;;
    l) lease_ms="$OPTARG" ;;
    *) echo "usage: $0 [-d S] [-c N] [-F N] [-l LEASE_MS]" >&2; exit 64 ;;
  esac
done
need_bin "$DRAWBRIDGE_BIN"
need_bin "$LOADGEN_BIN"
bindir=$(for b in /usr/lib/postgresql/*/bin; do [[ -x $b/initdb ]] && echo "$b"; done | sort -V | tail -n 1)
[[ -n "$bindir" ]] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 2; }

bench_mktemp work
machine_line
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
chmod 755 "$work"  # the postgres user reaches its folder through it
pg="$work/pg"
mkdir -p "$pg"
[[ $(id -u) -eq 0 ]] && chown postgres: "$pg"
as_pg "$bindir/initdb" -D "$pg/data" -U postgres -A trust -E UTF8 --locale=C >"$work/initdb.log" 2>&1 ||
  { cat "$work/initdb.log"; exit 1; }
as_pg "$bindir/pg_ctl" start -D "$pg/data" -w -t 60 -l "$pg/log" \
  -o "-c listen_addresses='' -k $pg -c max_connections=50" >/dev/null || { cat "$pg/log"; exit 1; }
pg_pid=$(head -1 "$pg/data/postmaster.pid")
_bench_pids+=("$pg_pid")
echo "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') (pid $pg_pid), fsync on"
psql_c() { "$bindir/psql" -h "$pg" -U postgres -d postgres -Atqc "$1"; }

# pg_config FILE SCHEMA REPLICA [LEVEL]: a config on a fresh schema.
pg_config() {
  psql_c "CREATE SCHEMA IF NOT EXISTS $2" || exit 1
  write_config "$1" "${4:-warn}" "\"store\": {\"driver\": \"postgres\", \"url\": \"host=$pg dbname=postgres user=postgres options='-c search_path=$2'\"}, \"cluster\": {\"replicaId\": \"$3\", \"leaseMs\": $lease_ms}"
}

echo "=== throughput: one replica on PostgreSQL, $conns sessions, closed loop, ${duration} s"
pg_config "$work/tp.json" tp solo
port=$(free_port) || exit 2
mkdir -p "$work/data-tp"
start_gateway "$work/data-tp" "$work/tp.json" "$port" "$work/gw-tp.log"
wait_ready "$port" 20 || { cat "$work/gw-tp.log"; exit 1; }
echo "+ $LOADGEN_BIN --url ws://127.0.0.1:$port --connections $conns --duration $duration --warmup 3"
"$LOADGEN_BIN" --url "ws://127.0.0.1:$port" --token "$BENCH_TOKEN" --connections "$conns" \
  --duration "$duration" --warmup 3 --server-pid "$GW_PID" >"$work/tp.out.json"
jq -r '"throughput \(.throughput | floor) finals/s  p50 \(.latencyMs.p50) ms  p99 \(.latencyMs.p99) ms  lost \(.lost)  duplicates \(.duplicates)  gateway CPU \(.gatewayCpuPct // 0 | floor) %"' "$work/tp.out.json"
stop_gateway "$GW_PID"

echo "=== failover: kill -9 of the active replica -> the standby's /readyz 200 (leaseMs $lease_ms)"
# info: the standby's "standby:" line is how this script knows it waits.
pg_config "$work/fa.json" fo a info
pg_config "$work/fb.json" fo b info
declare -A cfg=([a]="$work/fa.json" [b]="$work/fb.json") ports=() pids=()
launch() {  # launch NAME: starts replica NAME on a fresh port
  ports[$1]=$(free_port) || exit 2
  mkdir -p "$work/data-$1"
  start_gateway "$work/data-$1" "${cfg[$1]}" "${ports[$1]}" "$work/gw-$1.log"
  pids[$1]=$GW_PID
}
launch a
GW_PID=${pids[a]}
wait_ready "${ports[a]}" 20 || { cat "$work/gw-a.log"; exit 1; }
launch b
grep -q "standby" <(timeout 10 tail -f "$work/gw-b.log" | grep -m1 standby) || { echo "b is not standing by"; cat "$work/gw-b.log"; exit 1; }
active=a standby=b
times=()
for ((i = 1; i <= failovers; i++)); do
  t0=$EPOCHREALTIME
  kill -KILL "${pids[$active]}"
  GW_PID=${pids[$standby]}
  wait_ready "${ports[$standby]}" 30 || { cat "$work/gw-$standby.log"; exit 1; }
  ms=$(ms_between "$t0" "$READY_T")
  times+=("$ms")
  echo "failover $i: $active -> $standby in $ms ms"
  launch "$active"  # comes back as the standby
  grep -q "standby" <(timeout 10 tail -f "$work/gw-$active.log" | grep -m1 standby) || { cat "$work/gw-$active.log"; exit 1; }
  tmp=$active active=$standby standby=$tmp
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "failover ms: min %s  median %s  max %s  (%d runs)\n", a[1], a[int((NR+1)/2)], a[NR], NR}'
