#!/usr/bin/env bash
# Starts or stops the embedded broker with durable storage: tansu 0.6.0 on SQLite by default;
# BROKER=nisshi selects nisshi 0.7.0-pre.2 on SQLite, BROKER=tansu-postgres tansu 0.6.0 on
# a PostgreSQL server of its own under DATA_DIR/pg (scripts/pg.sh), started and stopped with
# it (scripts/broker_env.sh).
#   scripts/broker.sh start [DATA_DIR] [PORT]   (defaults: var/broker, 9092)
#   scripts/broker.sh stop  [DATA_DIR]
# BROKER_STORAGE overrides the storage engine (default sqlite://tansu.db, durable;
# memory://tansu/ keeps nothing across restarts and is only for measuring the broker's cost).
# BROKER_NO_INSTALL=1 fails at once when the broker is not installed instead of building it
# (the test harness sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/broker_env.sh
action="${1:-start}"
dir="${2:-var/broker}"
port="${3:-9092}"
mkdir -p "$dir"
pidfile="$dir/broker.pid"
storage="${BROKER_STORAGE:-sqlite://tansu.db}"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "$action" in
  start)
    if running; then echo "broker: already running (pid $(cat "$pidfile"))"; exit 0; fi
    if [ ! -x "$BROKER_BIN" ]; then
      if [ -n "${BROKER_NO_INSTALL:-}" ]; then
        echo "broker: $BROKER not installed at $BROKER_BIN; run BROKER=$BROKER scripts/install-broker.sh" >&2
        exit 1
      fi
      ./scripts/install-broker.sh
    fi
    if [ "$BROKER_DB" = postgres ] && [ -z "${BROKER_STORAGE:-}" ]; then
      storage="$(./scripts/pg.sh start "$dir/pg")"
    fi
    # The broker resolves the SQLite path against its working directory.
    (cd "$dir" && exec env -u STORAGE_ENGINE -u LISTENER_URL -u ADVERTISED_LISTENER_URL \
      "$BROKER_BIN" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "$storage" \
        >broker.log 2>&1) &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        # tansu 0.6's (and nisshi 0.7.0-pre.2's) SQLite schema has no index on `header`, and its Fetch looks up the
        # headers of every record it returns, so each fetched record scanned the whole
        # header table and fetch cost grew with the log (152 commands/s after 20,000
        # records). The index keeps it flat. `create table if not exists` leaves it alone.
        if [[ "$storage" == sqlite://tansu.db ]]; then
        python3 - "$dir/tansu.db" <<'PY' || echo "broker: warning: could not add the header index" >&2
import sqlite3, sys, time
for _ in range(100):  # tansu may still be creating its schema
    try:
        db = sqlite3.connect(sys.argv[1], timeout=60)
        db.execute("create index if not exists mpr_header_topition_offset on header (topition, offset_id)")
        db.commit()
        break
    except sqlite3.OperationalError:
        time.sleep(0.1)
else:
    sys.exit(1)
PY
        fi
        echo "broker: $BROKER listening on 127.0.0.1:$port (storage $storage, log $dir/broker.log)"
        exit 0
      fi
      sleep 0.1
    done
    echo "broker: $BROKER did not start; see $dir/broker.log" >&2
    exit 1
    ;;
  stop)
    if [ "$BROKER_DB" = postgres ]; then trap './scripts/pg.sh stop "$dir/pg"' EXIT; fi
    if ! running; then echo "broker: not running"; exit 0; fi
    pid="$(cat "$pidfile")"
    kill "$pid"
    # tansu 0.6 sometimes ignores SIGTERM after heavy use (seen after a 100,000-command
    # run: still running, at a third of a core, minutes later), so it gets 10 s, then SIGKILL.
    # SQLite keeps what was committed either way.
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
      echo "broker: did not stop on SIGTERM within 10 s; killed" >&2
    fi
    rm -f "$pidfile"; echo "broker: stopped"
    ;;
  *) echo "usage: $0 start|stop [DATA_DIR] [PORT]" >&2; exit 2 ;;
esac
