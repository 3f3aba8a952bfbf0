#!/usr/bin/env bash
# Benchmarks (never part of the tests): command throughput and latency through the real
# pipeline, cold rebuild from `events` and from `state`, footprint, resolve throughput and
# open-loop latency with oha, and MLflow's registry as a peer on the same machine.
#   ./scripts/bench.sh              full run (RUNS=3, CMDS=100000)
#   SMOKE=1 ./scripts/bench.sh      a tiny run that only checks the benchmarks still work
#   BROKER_STORAGE=memory://tansu/ ./scripts/bench.sh
#                                   the same against tansu's in-memory storage (keeps nothing;
#                                   only to tell the broker's storage cost from the registry's)
# Results: bench-results/<timestamp>/ (raw outputs, summary.json, summary.md).
set -euo pipefail
cd "$(dirname "$0")/.."
MPR_TOOLS="${MPR_TOOLS:-$HOME/.cache/mpr}"
if [ -n "${SMOKE:-}" ]; then
  RUNS=${RUNS:-1}; CMDS=${CMDS:-2000}; RATE=${RATE:-200}; LAT_SECONDS=${LAT_SECONDS:-3}
  FAMILIES=${FAMILIES:-20}; TENANTS=${TENANTS:-5}; LOAD_SECONDS=${LOAD_SECONDS:-2}; RESOLVE_RATE=${RESOLVE_RATE:-500}
  SKIP_MLFLOW=${SKIP_MLFLOW:-1}; SCALE_BUNDLES=${SCALE_BUNDLES:-3000}; BROKER_RECORDS=${BROKER_RECORDS:-5000}
  TAKEOVER_EVENTS=${TAKEOVER_EVENTS:-3000}
  SIG_FAMILIES=${SIG_FAMILIES:-5}; SIG_BURST=${SIG_BURST:-2000}; SIG_RATE=${SIG_RATE:-200}; SIG_SECONDS=${SIG_SECONDS:-6}
  FLOOD_RATE=${FLOOD_RATE:-1000}; SIG_CMD_RATE=${SIG_CMD_RATE:-100}
  CONSOLE_VERSIONS=${CONSOLE_VERSIONS:-1000}; CONSOLE_REQUESTS=${CONSOLE_REQUESTS:-50}; RECORDS_CMDS=${RECORDS_CMDS:-400}
else
  RUNS=${RUNS:-3}; CMDS=${CMDS:-100000}; RATE=${RATE:-1000}; LAT_SECONDS=${LAT_SECONDS:-20}
  FAMILIES=${FAMILIES:-1000}; TENANTS=${TENANTS:-50}; LOAD_SECONDS=${LOAD_SECONDS:-10}; RESOLVE_RATE=${RESOLVE_RATE:-10000}
  SCALE_BUNDLES=${SCALE_BUNDLES:-1000000}; TAKEOVER_EVENTS=${TAKEOVER_EVENTS:-1000000}
  SIG_FAMILIES=${SIG_FAMILIES:-40}; SIG_BURST=${SIG_BURST:-100000}; SIG_RATE=${SIG_RATE:-1000}; SIG_SECONDS=${SIG_SECONDS:-40}
  FLOOD_RATE=${FLOOD_RATE:-10000}; SIG_CMD_RATE=${SIG_CMD_RATE:-300}
  CONSOLE_VERSIONS=${CONSOLE_VERSIONS:-10000}; CONSOLE_REQUESTS=${CONSOLE_REQUESTS:-1000}; RECORDS_CMDS=${RECORDS_CMDS:-10000}
fi
OUT=${OUT:-bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT/raw"
TARGET="${CARGO_TARGET_DIR:-target}"

./scripts/install-broker.sh
. scripts/broker_env.sh
# BENCH_PROFILE=debug measures a debug build: for quick relative checks only; every figure of
# record in BENCHMARKS.md comes from the release build.
PROFILE="${BENCH_PROFILE:-release}"
if [ -n "${BENCH_BIN_DIR:-}" ]; then
  : # BENCH_BIN_DIR=dir: measure the mpr and mpr_bench binaries there (A/B runs of two builds)
elif [ "$PROFILE" = release ]; then
  cargo build --release --locked --features testkit --bin mpr --bin mpr_bench
else
  cargo build --locked --features testkit --bin mpr --bin mpr_bench
fi
OHA="$MPR_TOOLS/bin/oha"
if [[ " ${STAGES:-resolve} " == *" resolve "* ]]; then
  [ -x "$OHA" ] || cargo install oha --locked --root "$MPR_TOOLS"
fi
MPR="${BENCH_BIN_DIR:-$TARGET/$PROFILE}/mpr"; BENCH="${BENCH_BIN_DIR:-$TARGET/$PROFILE}/mpr_bench"

{
  echo "date: $(date -u +%FT%TZ)"; echo "cores: $(nproc)"; free -g | sed -n 2p | awk '{print "memory_gib: " $2}'
  echo "kernel: $(uname -r)"; echo "rustc: $(rustc -V)"; echo "broker: ${BROKER:-tansu} ($("$BROKER_BIN" --version 2>&1 | head -1))"
  echo "oha: $("$OHA" --version 2>/dev/null || echo none)"; echo "mpr: $(git rev-parse --short HEAD) ($PROFILE build)"
  echo "broker_storage: ${BROKER_STORAGE:-$([ "$BROKER_DB" = postgres ] && echo "postgres ($("$PG_BINDIR/postgres" --version), scripts/pg.sh)" || echo sqlite://tansu.db)}"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d)
REG_PID=""
stop_stack() {
  [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null || true
  REG_PID=""
  ./scripts/broker.sh stop "$WORK/broker" >/dev/null 2>&1 || true
}
trap 'stop_stack; rm -rf "$WORK"' EXIT
# The registry's and the gateway's keys of this run (config/local.toml runs in signed mode);
# mpr_bench and the Python producers sign with the gateway's, as the HTTP API does.
mkdir -p "$WORK/keys"
"$MPR" keygen --out "$WORK/keys/registry.pem" >/dev/null
"$MPR" keygen --out "$WORK/keys/gateway.pem" >/dev/null
export MPR_TRUST__REGISTRY_KEY_FILE="$WORK/keys/registry.pem" MPR_TRUST__GATEWAY_KEY_FILE="$WORK/keys/gateway.pem"
export BENCH_GATEWAY_KEY="$WORK/keys/gateway.pem"

start_stack() { # $1 = run name
  stop_stack
  rm -rf "$WORK/broker"
  [ -n "${KEEP_VIEW:-}" ] || rm -rf "$WORK/view-$1"
  KPORT=$(free_port); HPORT=$(free_port)
  ./scripts/broker.sh start "$WORK/broker" "$KPORT" >/dev/null
  export MPR_BROKERS="127.0.0.1:$KPORT" MPR_HTTP__LISTEN="127.0.0.1:$HPORT" MPR_VIEW__PATH="$WORK/view-$1" \
    MPR_PROCESSOR__STATE_PATH="$WORK/processor-$1" MPR_LOG="warn"
  "$MPR" --config config/local.toml serve >"$OUT/raw/registry-$1.log" 2>&1 &
  REG_PID=$!
  URL="http://127.0.0.1:$HPORT"
  for _ in $(seq 1 600); do curl -fsS "$URL/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "registry did not become ready" >&2; exit 1
}

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# CPU seconds (user+system) a process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
broker_pid() { cat "$WORK/broker/broker.pid"; }
# The broker's CPU seconds so far: the broker process, and with BROKER=tansu-postgres its
# PostgreSQL server too (the postmaster, its live backends, and those that have exited).
broker_cpu_s() {
  python3 - "$(broker_pid)" "$WORK/broker/pg/data/postmaster.pid" <<'PY'
import os, sys
hz = os.sysconf("SC_CLK_TCK")
def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()
def cpu(pid, children=False):
    s = stat(pid)  # fields from 3 (state); utime is field 14
    t = int(s[11]) + int(s[12])
    return t + (int(s[13]) + int(s[14]) if children else 0)
total = cpu(sys.argv[1])
if os.path.exists(sys.argv[2]):
    pm = open(sys.argv[2]).readline().strip()
    total += cpu(pm, children=True)
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if stat(p)[1] == pm:
                    total += cpu(p)
            except (OSError, IndexError):
                pass
print(total / hz)
PY
}

STAGES=${STAGES:-broker commands latency records signals console scale takeover resolve mlflow}
stage() { [[ " $STAGES " == *" $1 "* ]]; }

# The broker's own ceiling with a stock client, on a fresh broker (evidence for the
# pipeline figures, which all run through it).
stage broker && for run in $(seq 1 "$RUNS"); do
  echo "== broker ceiling run $run"
  stop_stack; rm -rf "$WORK/broker"; KPORT=$(free_port)
  ./scripts/broker.sh start "$WORK/broker" "$KPORT" >/dev/null
  python3 scripts/bench_broker.py "127.0.0.1:$KPORT" "${BROKER_RECORDS:-200000}" | tee "$OUT/raw/broker-$run.json"
  # The same without headers: tansu stores each header as a row, as costly as a record.
  python3 scripts/bench_broker.py "127.0.0.1:$KPORT" "${BROKER_RECORDS:-200000}" 600 0 | tee "$OUT/raw/broker-noheaders-$run.json"
  ./scripts/broker.sh stop "$WORK/broker" >/dev/null
  # The broker's own floor for produce-to-visible: a stock client relays each record once
  # (commands -> events) and a third consumer reads it, at the latency stage's rate, with
  # the processor's default fetch wait; on a fresh broker.
  rm -rf "$WORK/broker"; KPORT=$(free_port)
  ./scripts/broker.sh start "$WORK/broker" "$KPORT" >/dev/null
  python3 scripts/bench_broker_hops.py "127.0.0.1:$KPORT" "$RATE" "$LAT_SECONDS" 1 20 | tee "$OUT/raw/broker-hops-$run.json"
  ./scripts/broker.sh stop "$WORK/broker" >/dev/null
done

stage commands && for run in $(seq 1 "$RUNS"); do
  echo "== commands run $run: $CMDS commands"
  start_stack "cmd$run"
  rss0=$(rss_kib "$REG_PID"); reg_cpu0=$(cpu_s "$REG_PID"); brk_cpu0=$(broker_cpu_s)
  "$BENCH" --gateway-key "$WORK/keys/gateway.pem" --brokers "$MPR_BROKERS" --url "$URL" commands --count "$CMDS" --family-prefix "thr$run" | tee "$OUT/raw/commands-$run.json"
  rss1=$(rss_kib "$REG_PID"); reg_cpu1=$(cpu_s "$REG_PID"); brk_cpu1=$(broker_cpu_s)
  # How the commands ended (a run of refusals would measure something else).
  curl -fsS "$URL/metrics" | grep '^mpr_commands_total' >"$OUT/raw/commands-outcomes-$run.txt" || true
  echo "{\"bench\":\"cpu\",\"registry_cpu_s\":$(python3 -c "print(round($reg_cpu1 - $reg_cpu0, 2))"),\"broker_cpu_s\":$(python3 -c "print(round($brk_cpu1 - $brk_cpu0, 2))")}" | tee "$OUT/raw/cpu-$run.json"
  kill "$REG_PID"; wait "$REG_PID" 2>/dev/null || true; REG_PID=""
  du_kib=$(du -sk "$WORK/view-cmd$run" | cut -f1)
  echo "{\"bench\":\"footprint\",\"bundles\":$((CMDS / 4)),\"rss_start_kib\":$rss0,\"rss_end_kib\":$rss1,\"rocksdb_kib\":$du_kib}" | tee "$OUT/raw/footprint-$run.json"
  for src in events state; do
    rm -rf "$WORK/rebuild"
    /usr/bin/time -v "$MPR" --config config/local.toml view rebuild --from "$src" --path "$WORK/rebuild" \
      >"$OUT/raw/rebuild-$src-$run.txt" 2>"$OUT/raw/rebuild-$src-$run.time"
    cat "$OUT/raw/rebuild-$src-$run.txt"
  done
  echo "live view: $("$MPR" --config config/local.toml view digest "$WORK/view-cmd$run")" | tee -a "$OUT/raw/rebuild-events-$run.txt"
  # Determinism: both rebuilds must hold the live view (`mpr view diff` names what differs).
  for src in events state; do
    if [ "$(grep -o 'digest [0-9a-f]*' "$OUT/raw/rebuild-$src-$run.txt" | head -1 | cut -d' ' -f2)" != \
         "$(grep '^live view:' "$OUT/raw/rebuild-events-$run.txt" | awk '{print $4}')" ]; then
      echo "DIGEST MISMATCH: the rebuild from $src differs from the live view (run $run)" | tee -a "$OUT/raw/digest-mismatch.txt" >&2
    fi
  done
done

stage latency && for run in $(seq 1 "$RUNS"); do
  echo "== latency run $run: $RATE commands/s for $LAT_SECONDS s"
  start_stack "lat$run"
  "$BENCH" --gateway-key "$WORK/keys/gateway.pem" --brokers "$MPR_BROKERS" --url "$URL" latency --rate "$RATE" --seconds "$LAT_SECONDS" --family-prefix "lat$run" | tee "$OUT/raw/latency-$run.json"
  # Where the time went: the registry's histograms from each command's log timestamp to
  # the processor receiving it, to its durable event, and to its event in the view.
  curl -fsS "$URL/metrics" | grep -E '^mpr_(command_receive|command_processing|view_visible)_seconds' >"$OUT/raw/latency-metrics-$run.txt" || true
done

# Runtime signals (MPR2 §9): a burst's ingest rate (first produce until the view applied
# every signal's OBSERVE), and the time from a triggering signal's produce to resolve
# answering the rolled-back bundle, with SIG_RATE signals/s around it. Then command latency
# at SIG_CMD_RATE commands/s (below the pipeline's capacity, so that the figure is latency,
# not a queue) on a fresh stack, alone and next to a FLOOD_RATE signals/s flood about unbound
# families: what a noisy monitor costs commands.
stage signals && for run in $(seq 1 "$RUNS"); do
  echo "== signals run $run"
  start_stack "sig$run"
  "$BENCH" --gateway-key "$BENCH_GATEWAY_KEY" --brokers "$MPR_BROKERS" --url "$URL" signals --families "$SIG_FAMILIES" \
    --burst "$SIG_BURST" --rate "$SIG_RATE" --seconds "$SIG_SECONDS" --family-prefix "sig$run" | tee "$OUT/raw/signals-$run.json"
  start_stack "quiet$run"
  "$BENCH" --gateway-key "$BENCH_GATEWAY_KEY" --brokers "$MPR_BROKERS" --url "$URL" latency --rate "$SIG_CMD_RATE" \
    --seconds "$LAT_SECONDS" --family-prefix "quiet$run" | tee "$OUT/raw/latency-quiet-$run.json"
  start_stack "flood$run"
  "$BENCH" --gateway-key "$BENCH_GATEWAY_KEY" --brokers "$MPR_BROKERS" --url "$URL" flood --rate "$FLOOD_RATE" \
    --seconds $((LAT_SECONDS + 15)) >"$OUT/raw/flood-$run.json" &
  FLOOD_PID=$!
  sleep 5
  "$BENCH" --gateway-key "$BENCH_GATEWAY_KEY" --brokers "$MPR_BROKERS" --url "$URL" latency --rate "$SIG_CMD_RATE" \
    --seconds "$LAT_SECONDS" --family-prefix "flood$run" | tee "$OUT/raw/latency-flood-$run.json"
  wait "$FLOOD_PID"; cat "$OUT/raw/flood-$run.json"
  curl -fsS "$URL/metrics" | grep -E '^mpr_signals_(read|applied)_total' | tee "$OUT/raw/flood-metrics-$run.txt" || true
done

# What one command costs the broker: RECORDS_CMDS commands of the lifecycle mix (publish,
# nominate, approve, promote) on a fresh stack, then every topic read whole with a stock
# client (scripts/bench_records.py): records, headers and client-visible bytes per command,
# and the broker's storage on disk per command.
stage records && {
  echo "== records: $RECORDS_CMDS commands"
  start_stack records
  "$BENCH" --gateway-key "$WORK/keys/gateway.pem" --brokers "$MPR_BROKERS" --url "$URL" commands --count "$RECORDS_CMDS" --family-prefix rec >/dev/null
  python3 scripts/bench_records.py "$MPR_BROKERS" mpr. | tee "$OUT/raw/records.json"
  echo "{\"bench\":\"broker_disk\",\"commands\":$RECORDS_CMDS,\"broker_kib\":$(du -sk "$WORK/broker" | cut -f1)}" | tee "$OUT/raw/records-broker-disk.json"
}

# The console's pages over an in-process view of CONSOLE_VERSIONS bundle versions, through
# the registry's own router on a loopback socket (no broker): p50/p99 per page.
stage console && for run in $(seq 1 "$RUNS"); do
  echo "== console run $run"
  "$BENCH" console --versions "$CONSOLE_VERSIONS" --requests "$CONSOLE_REQUESTS" | tee "$OUT/raw/console-$run.json"
done

# Footprint and cold rebuilds at scale: SCALE_BUNDLES publish commands (one bundle and one
# event each, 100 versions per family) through the pipeline, then the registry's RSS, the
# view's and the broker's size on disk, and RUNS rebuilds from `events` and from `state`.
if stage scale; then
  echo "== scale: $SCALE_BUNDLES bundles"
  start_stack scale
  rss0=$(rss_kib "$REG_PID")
  "$BENCH" --gateway-key "$WORK/keys/gateway.pem" --brokers "$MPR_BROKERS" --url "$URL" commands --publish-only --count "$SCALE_BUNDLES" --family-prefix scale | tee "$OUT/raw/scale-commands.json"
  sleep 5 # let RocksDB settle its flushes
  rss1=$(rss_kib "$REG_PID"); hwm=$(awk '/VmHWM/ {print $2}' "/proc/$REG_PID/status")
  kill "$REG_PID"; wait "$REG_PID" 2>/dev/null || true; REG_PID=""
  echo "{\"bench\":\"scale-footprint\",\"bundles\":$SCALE_BUNDLES,\"rss_start_kib\":$rss0,\"rss_end_kib\":$rss1,\"rss_peak_kib\":$hwm,\"rocksdb_kib\":$(du -sk "$WORK/view-scale" | cut -f1),\"state_store_kib\":$(du -sk "$WORK/processor-scale" | cut -f1),\"broker_kib\":$(du -sk "$WORK/broker" | cut -f1)}" | tee "$OUT/raw/scale-footprint.json"
  # The rebuild from `state` at this scale is opt-in (SCALE_STATE=1): tansu 0.6's Fetch
  # computes a running byte sum over every record from the fetch offset to the high
  # watermark before it applies max_bytes, so reading one partition of 5.5 million records
  # from the start grows with the square of its length; a first attempt ran 16 minutes.
  srcs="events"; [ -n "${SCALE_STATE:-}" ] && srcs="events state"
  for run in $(seq 1 "$RUNS"); do
    for src in $srcs; do
      rm -rf "$WORK/rebuild"
      /usr/bin/time -v "$MPR" --config config/local.toml view rebuild --from "$src" --path "$WORK/rebuild" \
        >"$OUT/raw/scale-rebuild-$src-$run.txt" 2>"$OUT/raw/scale-rebuild-$src-$run.time" \
        || echo "rebuild from $src failed; see $OUT/raw/scale-rebuild-$src-$run.time" >&2
      cat "$OUT/raw/scale-rebuild-$src-$run.txt"
    done
  done
  echo "live view: $("$MPR" --config config/local.toml view digest "$WORK/view-scale")" | tee -a "$OUT/raw/scale-rebuild-events-1.txt"
  stop_stack
fi

# Takeover: one `commands` partition whose `events` hold TAKEOVER_EVENTS events; the
# registry is stopped and started again, and a stock client's command is timed from the
# start to its result. Once with the state store kept (catch-up from its position), once
# with it removed (the whole partition replayed from offset 0, as every assignment did
# before the store kept its position).
if stage takeover; then
  echo "== takeover: $TAKEOVER_EVENTS events in one partition"
  MPR_KAFKA__PARTITIONS=1 start_stack takeover
  python3 scripts/bench_populate.py "$MPR_BROKERS" "$TAKEOVER_EVENTS" | tee "$OUT/raw/takeover-populate.json"
  probe() { # $1 = mode, $2 = run, $3 = start ms
    python3 scripts/bench_takeover.py "$MPR_BROKERS" "$3" examples/bundles/fraud-scorer-1.0.0.publish.json \
      | sed "s/}$/,\"mode\":\"$1\",\"run\":$2}/" | tee "$OUT/raw/takeover-$1-$2.json"
  }
  serve() { MPR_KAFKA__PARTITIONS=1 "$MPR" --config config/local.toml serve >>"$OUT/raw/registry-takeover.log" 2>&1 & REG_PID=$!; }
  # kept / replayed: a graceful stop (the member leaves the group), then a start with the
  # state store kept or removed. kill9: kill -9 and an immediate start (the dead member
  # stays in the group until its session expires).
  for run in $(seq 1 "$RUNS"); do
    for mode in kept replayed kill9; do
      if [ "$mode" = kill9 ]; then kill -9 "$REG_PID"; else kill "$REG_PID"; fi
      wait "$REG_PID" 2>/dev/null || true
      [ "$mode" = replayed ] && rm -rf "$WORK/processor-takeover"
      start_ms=$(date +%s%3N); serve; probe "$mode" "$run" "$start_ms"
    done
  done
  # kill9-static: the same under static membership (kafka.group_instance_id), on a stack of
  # its own where every incarnation is static (a static member joining behind a killed
  # dynamic leader stayed unassigned on tansu 0.6), and last, since a static member never
  # leaves the group. The takeover cost here is the group's, not catch-up's.
  export MPR_KAFKA__GROUP_INSTANCE_ID=bench-takeover
  MPR_KAFKA__PARTITIONS=1 start_stack takeover-static
  for run in $(seq 1 "$RUNS"); do
    kill -9 "$REG_PID"; wait "$REG_PID" 2>/dev/null || true
    start_ms=$(date +%s%3N); serve; probe kill9-static "$run" "$start_ms"
  done
  unset MPR_KAFKA__GROUP_INSTANCE_ID
  stop_stack
fi

if stage resolve; then
# Seeding 21,000 commands through tansu takes minutes (the broker is the bottleneck, see
# BENCHMARKS.md), so the resolve view is built in-process with the same domain and view code
# (mpr_bench apply), then served by the registry with an empty broker: resolve reads only
# the view. Promotes go through the broker as usual.
echo "== resolve: view of $FAMILIES families x 3 environments x 50 tenants (10% tenant-specific)"
rm -rf "$WORK/view-resolve"
"$BENCH" apply --dir "$WORK/view-resolve" --resolve-families "$FAMILIES" --count 0 | tee "$OUT/raw/seed-resolve.json"
RURL_TAIL="/v1/resolve\\?environment=(prod|stage|dev)&bundle_id=fam-0[0-9]{3}&tenant_id=tenant-[0-4][0-9]"
[ "$FAMILIES" -lt 1000 ] && RURL_TAIL="/v1/resolve\\?environment=(prod|stage|dev)&bundle_id=fam-000[0-9]&tenant_id=tenant-0[0-4]"
AUTH="Authorization: Bearer dev-reader-token"
# One scope that exists (tenant-specific or global, resolve answers it either way).
FIXED_TAIL="/v1/resolve?environment=prod&bundle_id=fam-0001&tenant_id=tenant-01"
saturate() { # $1 = output name, $2 = base URL, $3 = URL tail, rest = extra oha flags
  local name=$1 base=$2 tail=$3; shift 3
  "$OHA" --no-tui --output-format json -z "${LOAD_SECONDS}s" -c 64 "$@" -H "$AUTH" "$base$tail" >"$OUT/raw/$name.json"
}
resolve_load() { # $1 = label; saturation, then the fixed open-loop rate, RUNS times
  for run in $(seq 1 "$RUNS"); do
    saturate "$1-saturation-$run" "$URL" "$RURL_TAIL" --rand-regex-url
    "$OHA" --no-tui --output-format json -z "${LOAD_SECONDS}s" -c 64 -q "$RESOLVE_RATE" --latency-correction --rand-regex-url -H "$AUTH" "$URL$RURL_TAIL" >"$OUT/raw/$1-rate-$run.json"
  done
}
# With the resolve cache: one warm-up pass asks for every scope once (3 environments x
# FAMILIES x TENANTS; 150,000 in the full run), so the measured runs see a warm cache, as a
# steady Decision Fabric does. 512 MiB holds all of them (the default 256 MiB holds about
# 150,000 answers of this size, so it would evict while measuring).
KEEP_VIEW=1 MPR_KAFKA__PARTITIONS=1 MPR_HTTP__RESOLVE_CACHE_MIB=512 start_stack resolve
python3 scripts/bench_warm.py "$URL" "$FAMILIES" "$TENANTS" dev-reader-token | tee "$OUT/raw/resolve-warm-pass.json"
saturate resolve-warmup "$URL" "$RURL_TAIL" --rand-regex-url
# The machine's HTTP ceiling, loaded the same way in the same run: a trivial axum handler
# with a 900-byte body on /v1/resolve that checks nothing (mpr_bench trivial), given the
# same URLs and bearer header, so the load generator does the same work for both. Each run
# alternates registry and trivial handler (A/B), twice: random scopes (oha's regex URLs,
# which cost the load generator CPU on the same 2 cores) and one fixed scope (the
# cheapest load: the server's own cost weighs most). bench_summary.py records both ratios.
TRIVIAL_PORT=$(free_port)
"$BENCH" trivial --listen "127.0.0.1:$TRIVIAL_PORT" & TRIVIAL_PID=$!
sleep 1
TRIVIAL="http://127.0.0.1:$TRIVIAL_PORT"
# Server CPU per request at one fixed rate both servers sustain (CPU_RATE, default 20,000/s,
# random scopes): what each request costs the server itself, which the load generator's
# share of the 2 cores blurs in the saturation figures.
cpu_at_rate() { # $1 = output name, $2 = server pid, $3 = base URL
  local c0 c1
  c0=$(cpu_s "$2")
  "$OHA" --no-tui --output-format json -z "${LOAD_SECONDS}s" -c 64 -q "${CPU_RATE:-20000}" --latency-correction \
    --rand-regex-url -H "$AUTH" "$3$RURL_TAIL" >"$OUT/raw/$1.json"
  c1=$(cpu_s "$2")
  python3 - "$OUT/raw/$1.json" "$c0" "$c1" <<'PY' | tee "$OUT/raw/$1-server.json"
import json, sys
d = json.load(open(sys.argv[1]))
n = sum(int(v) for v in d.get("statusCodeDistribution", {}).values())
cpu = float(sys.argv[3]) - float(sys.argv[2])
print(json.dumps({"bench": "server_cpu", "requests": n, "cpu_s": round(cpu, 3),
                  "us_per_request": round(cpu / n * 1e6, 2) if n else None}))
PY
}
for run in $(seq 1 "$RUNS"); do
  saturate "resolve-saturation-$run" "$URL" "$RURL_TAIL" --rand-regex-url
  saturate "trivial-saturation-$run" "$TRIVIAL" "$RURL_TAIL" --rand-regex-url
  saturate "resolve-fixed-saturation-$run" "$URL" "$FIXED_TAIL"
  saturate "trivial-fixed-saturation-$run" "$TRIVIAL" "$FIXED_TAIL"
  cpu_at_rate "resolve-cpu-$run" "$REG_PID" "$URL"
  cpu_at_rate "trivial-cpu-$run" "$TRIVIAL_PID" "$TRIVIAL"
  "$OHA" --no-tui --output-format json -z "${LOAD_SECONDS}s" -c 64 -q "$RESOLVE_RATE" --latency-correction --rand-regex-url -H "$AUTH" "$URL$RURL_TAIL" >"$OUT/raw/resolve-rate-$run.json"
done
kill "$TRIVIAL_PID"; wait "$TRIVIAL_PID" 2>/dev/null || true
# Without it: every request reads RocksDB and renders JSON.
KEEP_VIEW=1 MPR_KAFKA__PARTITIONS=1 MPR_HTTP__RESOLVE_CACHE_MIB=0 start_stack resolve
resolve_load resolve-nocache
# Promotes go through the broker, so they need a log-built view of their own.
start_stack promote
for run in $(seq 1 "$RUNS"); do
  "$BENCH" --gateway-key "$WORK/keys/gateway.pem" --brokers "$MPR_BROKERS" --url "$URL" promote --n "${PROMOTES:-300}" | tee "$OUT/raw/promote-$run.json"
done
stop_stack
fi

if stage mlflow && [ -z "${SKIP_MLFLOW:-}" ]; then
  echo "== MLflow peer"
  ./scripts/bench_mlflow.sh "$OUT" "$RUNS" || echo "MLflow peer failed; see its output" >&2
fi

python3 scripts/bench_summary.py "$OUT" | tee "$OUT/summary.md"
