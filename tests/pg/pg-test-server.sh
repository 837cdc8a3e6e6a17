#!/usr/bin/env bash
# The PostgreSQL server that the unit tests of one ctest run share (ctest fixture "pg": tests
# pg.start and pg.stop, tests/CMakeLists.txt). Usage: pg-test-server.sh start|stop <dir>
#
# start: a new cluster in <dir>/data (initdb as the postgres user when run as root, fsync off),
#   reachable only through the Unix socket <dir>/.s.PGSQL.<port>, no TCP; writes <dir>/port when
#   it is up. Without PostgreSQL installed it writes the reason to <dir>/unavailable and exits 0:
#   the tests then skip with that reason (tests/fakes/pg_server.cpp reads both files).
# stop: pg_ctl stop -m immediate of the server in <dir> (this script's own, by its
#   postmaster.pid), then removes <dir>.
set -euo pipefail

usage() { echo "usage: $0 start|stop <dir>" >&2; exit 64; }
[[ $# -eq 2 ]] || usage
cmd=$1
dir=$2
[[ $dir == /* ]] || usage
port=5432 # the socket is in <dir>: no port is shared with anything

# The newest installed version (a glob would sort 9 after 15).
bindir=$(for b in /usr/lib/postgresql/*/bin; do [[ -x $b/initdb && -x $b/pg_ctl ]] && echo "$b"; done |
  sort -V | tail -n 1)

as_postgres() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

stop() {
  if [[ -n $bindir && -f $dir/data/postmaster.pid ]]; then
    as_postgres "$bindir/pg_ctl" stop -D "$dir/data" -m immediate -w -t 30 >/dev/null 2>&1 || true
  fi
  rm -rf -- "$dir"
}

case $cmd in
  start)
    stop # a server left by a run that was killed before its pg.stop
    mkdir -p -- "$dir"
    if [[ -z $bindir ]]; then
      reason="PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; scripts/install-deps.sh --with-tests installs it)"
      echo "$reason" >"$dir/unavailable"
      echo "pg.start: $reason; the PostgreSQL tests will skip"
      exit 0
    fi
    if [[ $(id -u) -eq 0 ]]; then
      chown postgres: "$dir"
    fi
    if ! as_postgres "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C -N \
      >"$dir/initdb.log" 2>&1; then
      cat "$dir/initdb.log" >&2
      exit 1
    fi
    # Members of drawbridge_password_login log in with a password (the store's password test);
    # everyone else is trusted, on this socket only.
    printf 'local all +drawbridge_password_login scram-sha-256\nlocal all all trust\n' \
      >"$dir/data/pg_hba.conf"
    cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
port = $port
fsync = off
CONF
    if ! as_postgres "$bindir/pg_ctl" start -D "$dir/data" -w -t 60 -l "$dir/server.log" \
      >/dev/null; then
      cat "$dir/server.log" >&2
      exit 1
    fi
    as_postgres "$bindir/psql" -h "$dir" -p "$port" -U postgres -d postgres -qAtX \
      -c "CREATE ROLE drawbridge_password_login NOLOGIN" >/dev/null
    echo "$port" >"$dir/port"
    echo "pg.start: $("$bindir/pg_ctl" --version) on $dir/.s.PGSQL.$port"
    ;;
  stop)
    stop
    ;;
  *) usage ;;
esac
