#!/usr/bin/env bash
# drawbridge on PostgreSQL (store.driver "postgres"): throughput with 1, 2 and 3 replicas
# against the same load as bench/throughput.sh, the failover time of a channel account's lease
# after a kill -9, and rolling restarts under load (lost and duplicated finals).
#
#   bench/cluster.sh [-d SECONDS] [-c CONNECTIONS] [-F FAILOVERS] [-l LEASE_MS] [-R RESTARTS]
#                    [-p PARTS]   (PARTS: comma list of throughput,failover,rolling; default all)
#
# Starts its own PostgreSQL (initdb in a temporary folder, Unix socket only, fsync on: the
# durability a real server has), as the postgres user when run as root; stops it at the end.
# Throughput: N replicas (1, 2, 3) on one database, echo agent, closed loop, the connections
# spread evenly over the replicas (one loadgen per replica, its own sessions): every replica
# accepts and runs the turns of the sessions it claimed (those of its own clients). Failover:
# replicas a and b with one IRC account on a local ngircd (its lease "channel:irc:..."), a
# keeps the connection and b stands by; a is killed (-9) and the time until b has taken the
# account's lease over, and until it is registered on the server, is measured, then the roles
# swap; -F times. Rolling: three replicas under load (WebSocket, and a bot on the fake Bot API,
# drawbridge_telegram_fake, as a process of its own), each restarted in turn (SIGUSR1) -R times
# in all, each restart waited for; loadgen reconnects and counts lost and duplicated finals,
# the fake counts lost and duplicated replies and the most getUpdates in flight at once.
set -uo pipefail
source "$(dirname "$0")/common.sh"

duration=20 conns=100 failovers=5 lease_ms=5000 restarts=20 parts=throughput,failover,rolling
keep_logs=""
while getopts "d:c:F:l:R:p:L:" o; do
  case "$o" in
    d) duration="$OPTARG" ;;
    c) conns="$OPTARG" ;;
    F) failovers="$OPTARG" ;;
    l) lease_ms="$OPTARG" ;;
    R) restarts="$OPTARG" ;;
    p) parts="$OPTARG" ;;
    L) keep_logs="$OPTARG" ;;
    *) echo "usage: $0 [-d S] [-c N] [-F N] [-l LEASE_MS] [-R N] [-p PARTS]" >&2; exit 64 ;;
  esac
done
part() { [[ ",$parts," == *",$1,"* ]]; }
# -L DIR: the gateways' logs are copied there at the end.
keep() { [[ -n "$keep_logs" ]] && mkdir -p "$keep_logs" && cp "$work"/gw-*.log "$keep_logs"/ 2>/dev/null; true; }
need_bin "$DRAWBRIDGE_BIN"
need_bin "$LOADGEN_BIN"
TELEGRAM_FAKE_BIN="${TELEGRAM_FAKE_BIN:-$BUILD_DIR/bench/drawbridge_telegram_fake}"
part rolling && need_bin "$TELEGRAM_FAKE_BIN"
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

# pg_config FILE SCHEMA REPLICA [LEVEL] [GATEWAY] [EXTRA]: a config on a schema (created when
# missing); GATEWAY: more keys of "gateway"; EXTRA: more top-level keys.
pg_config() {
  psql_c "SET client_min_messages = warning; CREATE SCHEMA IF NOT EXISTS $2" || exit 1
  write_config "$1" "${4:-warn}" "\"store\": {\"driver\": \"postgres\", \"url\": \"host=$pg dbname=postgres user=postgres options='-c search_path=$2'\"}, \"cluster\": {\"replicaId\": \"$3\", \"leaseMs\": $lease_ms}${6:+, $6}" "${5:-}"
}

declare -A cfg=() ports=() pids=()
# launch NAME: starts replica NAME (config cfg[NAME]) on a fresh port, without waiting.
launch() {
  ports[$1]=$(free_port) || exit 2
  mkdir -p "$work/data-$1"
  start_gateway "$work/data-$1" "${cfg[$1]}" "${ports[$1]}" "$work/gw-$1.log"
  pids[$1]=$GW_PID
}
# launch_ready NAME: launch, then wait for /readyz 200 (a standby is ready too: it serves).
launch_ready() {
  launch "$1"
  GW_PID=${pids[$1]}
  wait_ready "${ports[$1]}" 20 || { cat "$work/gw-$1.log"; exit 1; }
}
# wait_log NAME TEXT TIMEOUT_S: until replica NAME's log has TEXT (tail -f, no polling).
wait_log() {
  timeout "$3" grep -q -m1 -F "$2" <(tail -n +1 -f "$work/gw-$1.log") 2>/dev/null
}
# loadgens NAMES...: one loadgen per replica, conns/N connections each, in parallel; prints
# the summed line and leaves the reports in $work/lg-NAME.json. Extra loadgen options in LG_EXTRA.
loadgens() {
  local n=$# per=$((conns / $#)) lp=() name
  for name in "$@"; do
    "$LOADGEN_BIN" --url "ws://127.0.0.1:${ports[$name]}" --token "$BENCH_TOKEN" \
      --connections "$per" --duration "$duration" --warmup 3 --session-prefix "lg-$name-" \
      ${LG_EXTRA:-} >"$work/lg-$name.json" 2>"$work/lg-$name.err" &
    lp+=($!)
  done
  wait "${lp[@]}"
  local files=()
  for name in "$@"; do files+=("$work/lg-$name.json"); done
  jq -s -r --arg n "$n" '"\($n) replica(s): throughput \(map(.throughput) | add | floor) finals/s  p50 \(map(.latencyMs.p50) | max) ms  p99 \(map(.latencyMs.p99) | max) ms  lost \(map(.lost) | add)  duplicates \(map(.duplicates) | add)"' "${files[@]}"
}
stop_all() { local name; for name in "${!pids[@]}"; do stop_gateway "${pids[$name]}"; done; pids=(); }

if part throughput; then
  for n in 1 2 3; do
    echo "=== throughput: $n replica(s) on one PostgreSQL, $conns sessions over them, closed loop, ${duration} s"
    names=()
    for ((i = 1; i <= n; i++)); do
      pg_config "$work/tp$n-$i.json" "tp$n" "r$i"
      cfg[r$i]="$work/tp$n-$i.json"
      launch_ready "r$i"
      names+=("r$i")
    done
    echo "+ $LOADGEN_BIN --url ws://127.0.0.1:PORT --connections $((conns / n)) --duration $duration --warmup 3 (one per replica)"
    LG_EXTRA="" loadgens "${names[@]}"
    stop_all
  done
fi

if part failover; then
  ngircd=$(command -v ngircd || ls /usr/sbin/ngircd 2>/dev/null)
  [[ -x "$ngircd" ]] || { echo "ngircd is not installed (scripts/install-deps.sh --with-tests)" >&2; exit 2; }
  irc_port=$(free_port) || exit 2
  mkdir -p "$work/ngircd.conf.d"
  printf '%s\n' "[Global]" "Name = irc.bench.test" "Info = drawbridge bench" "AdminInfo1 = bench" \
    "AdminInfo2 = bench" "AdminEMail = bench@localhost" "Listen = 127.0.0.1" "Ports = $irc_port" \
    "MotdPhrase = bench" "[Limits]" "MaxConnectionsIP = 0" "MaxNickLength = 30" "[Options]" \
    "PAM = no" "Ident = no" "DNS = no" "IncludeDir = $work/ngircd.conf.d" >"$work/ngircd.conf"
  "$ngircd" -n -f "$work/ngircd.conf" >"$work/ngircd.log" 2>&1 &
  _bench_pids+=($!)
  for ((i = 0; i < 100; i++)); do { exec 3<>"/dev/tcp/127.0.0.1/$irc_port"; } 2>/dev/null && break; sleep 0.05; done
  exec 3<&- 3>&-
  irc="\"channels\": {\"irc\": {\"host\": \"127.0.0.1\", \"port\": $irc_port, \"nick\": \"benchbot\", \"dmPolicy\": \"open\", \"groupPolicy\": \"disabled\"}}"
  echo "=== failover: kill -9 of the replica that keeps an IRC connection -> the other takes the account's lease and connects (leaseMs $lease_ms)"
  pg_config "$work/fa.json" fo a info "" "$irc"
  pg_config "$work/fb.json" fo b info "" "$irc"
  cfg[a]="$work/fa.json" cfg[b]="$work/fb.json"
  launch_ready a
  wait_log a "registered on 127.0.0.1 as benchbot" 10 || { echo "a did not connect"; cat "$work/gw-a.log"; exit 1; }
  launch_ready b
  wait_log b "is connected by replica a" 10 || { echo "b is not standing by"; cat "$work/gw-b.log"; exit 1; }
  holder=a standby=b
  times=() connected=()
  for ((i = 1; i <= failovers; i++)); do
    t0=$EPOCHREALTIME
    kill -KILL "${pids[$holder]}"
    wait_log "$standby" "replica $standby keeps the connection of benchbot" 30 || { cat "$work/gw-$standby.log"; exit 1; }
    ms=$(ms_between "$t0" "$EPOCHREALTIME")
    wait_log "$standby" "registered on 127.0.0.1 as benchbot" 10 || { cat "$work/gw-$standby.log"; exit 1; }
    reg=$(ms_between "$t0" "$EPOCHREALTIME")
    times+=("$ms") connected+=("$reg")
    echo "failover $i: $holder -> $standby: lease in $ms ms, registered in $reg ms"
    launch_ready "$holder"  # comes back and stands by
    wait_log "$holder" "is connected by replica $standby" 10 || { cat "$work/gw-$holder.log"; exit 1; }
    tmp=$holder holder=$standby standby=$tmp
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "failover ms (lease taken): min %s  median %s  max %s  (%d runs)\n", a[1], a[int((NR+1)/2)], a[NR], NR}'
  printf '%s\n' "${connected[@]}" | sort -n | awk '{a[NR]=$1} END {printf "failover ms (registered): min %s  median %s  max %s  (%d runs)\n", a[1], a[int((NR+1)/2)], a[NR], NR}'
  stop_all
fi

if part rolling; then
  echo "=== rolling restarts: 3 replicas under load, $restarts in-process restarts (SIGUSR1), each in turn"
  # A bot on the fake Bot API (a process of its own): 20 updates/s over 10 chats all along;
  # every replica may poll it, one at a time under the bot's lease.
  export BENCH_TG_TOKEN="777001:bench-cluster-token"
  rm -f "$work/tg.url"
  "$TELEGRAM_FAKE_BIN" --token "$BENCH_TG_TOKEN" --url-file "$work/tg.url" --rate 20 --chats 10 \
    --settle 60 >"$work/tg.json" 2>"$work/tg.err" &
  tg_pid=$!
  _bench_pids+=("$tg_pid")
  i=0
  while [[ ! -s "$work/tg.url" ]] && ((i++ < 200)); do sleep 0.05; done
  [[ -s "$work/tg.url" ]] || { echo "the fake Bot API did not start"; cat "$work/tg.err"; exit 1; }
  bot="\"channels\": {\"local\": {}, \"telegram\": {\"botTokenEnv\": \"BENCH_TG_TOKEN\", \"apiRoot\": \"$(cat "$work/tg.url")\", \"allowFrom\": [1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010], \"sendRate\": {\"chatPerSecond\": 0}}}"
  for name in x y z; do
    pg_config "$work/roll-$name.json" roll "$name" info '"restart": {"delayMs": 0, "cooldownMs": 0}' "$bot"
    cfg[$name]="$work/roll-$name.json"
    launch_ready "$name"
  done
  # The load runs for the whole sequence; each restart is waited for (its next generation ready).
  total=$((restarts * 2 + 10))
  lg_pids=()
  for name in x y z; do
    "$LOADGEN_BIN" --url "ws://127.0.0.1:${ports[$name]}" --token "$BENCH_TOKEN" \
      --connections $((conns / 3)) --duration "$total" --warmup 1 --session-prefix "roll-$name-" \
      --reconnect --grace 30 >"$work/roll-lg-$name.json" 2>"$work/roll-lg-$name.err" &
    lg_pids+=($!)
  done
  sleep 2  # the load is under way (a fixed lead time; the load generators report everything)
  names=(x y z)
  declare -A gen=([x]=1 [y]=1 [z]=1)
  for ((i = 0; i < restarts; i++)); do
    name=${names[$((i % 3))]}
    gen[$name]=$((gen[$name] + 1))
    t0=$EPOCHREALTIME
    kill -USR1 "${pids[$name]}"
    wait_log "$name" "generation ${gen[$name]} ready" 30 || { echo "restart $i of $name did not finish"; cat "$work/gw-$name.log"; exit 1; }
    echo "restart $((i + 1)): $name ready again in $(ms_between "$t0" "$EPOCHREALTIME") ms"
  done
  wait "${lg_pids[@]}"
  kill -TERM "$tg_pid"  # stops pushing; waits (at most 60 s) for the last answers, then reports
  wait "$tg_pid"
  keep
  jq -s -r '"rolling: sent \(map(.sent) | add)  finals \(map(.finals) | add)  lost \(map(.lost) | add)  duplicates \(map(.duplicates) | add)  reconnects \(map(.reconnect.reconnects // 0) | add)"' "$work"/roll-lg-*.json
  jq -r '"telegram: pushed \(.pushed)  answered \(.answered)  lost \(.lost)  duplicates \(.duplicates)  most polls at once \(.maxConcurrentPolls)"' "$work/tg.json"
  stop_all
fi
