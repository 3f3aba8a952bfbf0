#!/usr/bin/env bash
# A PostgreSQL server of the broker's own, for BROKER=tansu-postgres (scripts/broker_env.sh):
# PostgreSQL 17.10 as scripts/install-broker.sh installs it (tansu 0.6.0's queries need 16
# or later; Debian 12 ships 15), its data under DIR, listening on 127.0.0.1 only, with tansu
# 0.6.0's schema (scripts/broker/tansu-0.6.0-postgres.sql, from tansu's
# repository at tag v0.6.0: the crates do not ship it) created at the first start.
#   scripts/pg.sh start DIR    prints the storage URL tansu takes (postgres://...)
#   scripts/pg.sh stop DIR
# The port is chosen free at the first start and kept in DIR/port, so a restart keeps it.
# PostgreSQL refuses to run as root; as root the server runs as the system user `postgres`
# (scripts/install-broker.sh creates it when missing), and DIR is made theirs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
action="${1:?usage: $0 start|stop DIR}"
dir="${2:?usage: $0 start|stop DIR}"
BROKER=tansu-postgres . "$here/broker_env.sh"
bindir="$PG_BINDIR"
if [ ! -x "$bindir/initdb" ]; then
  echo "pg: no PostgreSQL server at $bindir (BROKER=tansu-postgres scripts/install-broker.sh installs it)" >&2
  exit 1
fi
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
data="$dir/data"

case "$action" in
  start)
    if [ ! -f "$data/PG_VERSION" ]; then
      if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
        # The server must reach DIR: every directory above it needs search permission.
        d="$dir"
        while [ "$d" != / ]; do d="$(dirname "$d")"; chmod o+x "$d"; done
      fi
      port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
      as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust --no-instructions >"$dir/initdb.log" 2>&1
      cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 100
shared_buffers = 256MB
EOF
      echo "$port" >"$dir/port"
      fresh=1
    fi
    port="$(cat "$dir/port")"
    if ! as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
      as_owner "$bindir/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 start >/dev/null
    fi
    if [ "${fresh:-0}" = 1 ]; then
      psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -f "$here/broker/tansu-0.6.0-postgres.sql" >"$dir/schema.log" 2>&1 || {
        echo "pg: the schema did not apply; see $dir/schema.log" >&2; exit 1; }
    fi
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    if [ -f "$data/PG_VERSION" ] && as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
      as_owner "$bindir/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
    fi
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
