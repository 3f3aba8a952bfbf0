#!/usr/bin/env bash
# Peer benchmark: MLflow's model registry on this machine, to set beside MPR's own figures.
#
# Usage: scripts/bench_mlflow.sh OUTDIR [RUNS]        (RUNS defaults to 3)
#
# What it does:
#   1. Installs mlflow (PyPI, version $MLFLOW_VERSION) into a venv at
#      ${MPR_TOOLS:-$HOME/.cache/mpr}/mlflow-venv, unless it is already there.
#   2. Starts the stock tracking server (`mlflow server`, uvicorn) with a SQLite backend in
#      a temp dir, on a free loopback port, with ONE worker process (the machine has 2 cores
#      and the load generator needs the other). MLflow's background job runner (huey
#      consumers for GenAI jobs, unrelated to the registry) is switched off by default with
#      MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false so that its ~8 idle Python processes do not
#      compete for the 2 cores; MLFLOW_BENCH_JOBS=1 keeps it on.
#   3. Seeds it through its REST API (scripts/bench_mlflow.py seed): $MLFLOW_MODELS registered
#      models fam-0000.. (default 1000), 2 versions each, alias "prod" -> version 1.
#   4. Alias lookup (GET /api/2.0/mlflow/registered-models/alias), compared with MPR's
#      resolve, with oha (${MPR_TOOLS}/bin/oha; waits up to 10 min for it to appear):
#        a. saturation:  oha -z 10s -c 32                      -> rps, p50/p99/p99.9
#        b. fixed rate:  oha -z 10s -c 32 -q $MLFLOW_RATE --latency-correction
#                        (200 req/s, or half the warm-up saturation throughput if that
#                        is lower; MLFLOW_RATE fixes it)       -> p50/p99/p99.9, success rate
#      Lookups are spread over all seeded models with oha's --rand-regex-url when it has it,
#      else they all hit fam-0001 (recorded as setup.lookup_target).
#   5. Alias update (POST /api/2.0/mlflow/registered-models/alias), compared with MPR's
#      promote: N=$MLFLOW_UPDATES (300) sequential calls flipping "prod" between versions 1
#      and 2 on random models, each timed with time.perf_counter() on a keep-alive connection.
#   Steps 4-5 are repeated RUNS times.
#   6. Writes OUTDIR/mlflow.json (per-run figures and medians across runs; latencies in ms)
#      and keeps oha's raw JSON in OUTDIR/raw/mlflow-*.json. The server is stopped on exit.
#
# Environment knobs: MPR_TOOLS, MLFLOW_VERSION, MLFLOW_MODELS, MLFLOW_RATE, MLFLOW_UPDATES,
# MLFLOW_DURATION (oha -z, default 10s), MLFLOW_CONC (oha -c, default 32), MLFLOW_BENCH_JOBS.
# Only loopback (127.0.0.1) is ever targeted; every load step is bounded in time or count.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 OUTDIR [RUNS]" >&2
  exit 2
fi
OUTDIR=$1
RUNS=${2:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
TOOLS=${MPR_TOOLS:-$HOME/.cache/mpr}
VENV=$TOOLS/mlflow-venv
OHA=$TOOLS/bin/oha
# 3.18.0 is on PyPI but its mlflow-skinny dependency was not; 3.17.2 installs on Python 3.11.
MLFLOW_VERSION=${MLFLOW_VERSION:-3.17.2}
MODELS=${MLFLOW_MODELS:-1000}
RATE=${MLFLOW_RATE:-200}
UPDATES=${MLFLOW_UPDATES:-300}
DURATION=${MLFLOW_DURATION:-10s}
CONC=${MLFLOW_CONC:-32}
WORKERS=1
PY=python3

log() { echo "bench_mlflow: $*" >&2; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$OUTDIR/raw"
OUTDIR=$(cd "$OUTDIR" && pwd)
RAW=$OUTDIR/raw
rm -f "$RAW"/mlflow-*.json

# --- 1. MLflow in its own venv ------------------------------------------------------------
if ! "$VENV/bin/python" -c "import mlflow, sys; sys.exit(mlflow.__version__ != '$MLFLOW_VERSION')" >/dev/null 2>&1; then
  log "installing mlflow==$MLFLOW_VERSION into $VENV (about a minute)"
  mkdir -p "$TOOLS"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "mlflow==$MLFLOW_VERSION" >&2
fi
INSTALLED=$("$VENV/bin/python" -c 'import mlflow; print(mlflow.__version__)')
log "mlflow $INSTALLED"

# --- oha ----------------------------------------------------------------------------------
for i in $(seq 1 120); do
  [ -x "$OHA" ] && break
  [ "$i" = 1 ] && log "waiting up to 10 min for $OHA"
  sleep 5
done
if [ ! -x "$OHA" ]; then
  log "no oha at $OHA"
  exit 1
fi
OHA_HELP=$("$OHA" --help)
has_flag() { grep -q -- "$1" <<<"$OHA_HELP"; }
OHA_FLAGS=()
if has_flag "--output-format"; then OHA_FLAGS+=(--output-format json)
elif has_flag "--json"; then OHA_FLAGS+=(--json)
else log "this oha has no JSON output"; exit 1; fi
has_flag "--no-tui" && OHA_FLAGS+=(--no-tui)
# Requests still in flight at the deadline are otherwise aborted and counted as errors.
has_flag "--wait-ongoing-requests-after-deadline" && OHA_FLAGS+=(--wait-ongoing-requests-after-deadline)
OHA_VERSION=$("$OHA" --version 2>/dev/null | head -1 || echo unknown)

# --- 2. the server --------------------------------------------------------------------------
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    # setsid made the server a process-group leader: stop the group (uvicorn and children).
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
  fi
  [ -f "$WORK/server.log" ] && tail -n 200 "$WORK/server.log" >"$RAW/mlflow-server.log.tail" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
JOBS=false
[ "${MLFLOW_BENCH_JOBS:-0}" = 1 ] && JOBS=true
log "starting mlflow server on $BASE (workers=$WORKERS, sqlite in $WORK, job execution=$JOBS)"
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=$JOBS setsid "$VENV/bin/mlflow" server \
  --backend-store-uri "sqlite:///$WORK/mlflow.db" \
  --default-artifact-root "$WORK/artifacts" \
  --host 127.0.0.1 --port "$PORT" --workers "$WORKERS" \
  >"$WORK/server.log" 2>&1 </dev/null &
SERVER_PID=$!
for i in $(seq 1 240); do
  curl -fsS "$BASE/health" >/dev/null 2>&1 && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "server exited; log:"; tail -n 30 "$WORK/server.log" >&2; exit 1
  fi
  [ "$i" = 240 ] && { log "server not up after 120 s"; tail -n 30 "$WORK/server.log" >&2; exit 1; }
  sleep 0.5
done

# --- 3. seed --------------------------------------------------------------------------------
log "seeding $MODELS models (2 versions each, alias prod -> 1)"
SEED=$($PY "$HERE/bench_mlflow.py" seed "$BASE" "$MODELS" --concurrency 4)
log "seeded: $SEED"

# Lookup target: a regex over every seeded model when oha supports it, else fam-0001.
LOOKUP_URL="$BASE/api/2.0/mlflow/registered-models/alias?name=fam-0001&alias=prod"
LOOKUP_ARGS=("$LOOKUP_URL")
LOOKUP_TARGET="fam-0001 only"
if has_flag "--rand-regex-url"; then
  if [ "$MODELS" = 1000 ]; then NAME_RE='fam-0[0-9]{3}'
  elif [ $((MODELS % 100)) = 0 ] && [ "$MODELS" -le 1000 ]; then NAME_RE="fam-0[0-$((MODELS / 100 - 1))][0-9]{2}"
  else NAME_RE=""; fi
  if [ -n "$NAME_RE" ]; then
    # oha's URL regex treats '.' literally (do not escape it); '?' must be escaped.
    url_re="http://127.0.0.1:$PORT/api/2.0/mlflow/registered-models/alias\\?name=${NAME_RE}&alias=prod"
    sample=$("$OHA" --dump-urls 1 --rand-regex-url "$url_re")
    if [[ "$sample" =~ ^$BASE/api/2\.0/mlflow/registered-models/alias\?name=fam-[0-9]{4}\&alias=prod$ ]]; then
      LOOKUP_ARGS=(--rand-regex-url "$url_re")
      LOOKUP_TARGET="random over $NAME_RE (oha --rand-regex-url)"
    else
      log "oha --rand-regex-url produced '$sample'; falling back to fam-0001"
    fi
  fi
fi
log "lookups: $LOOKUP_TARGET"

# Warm-up and calibration (kept only as its raw file): first requests pay lazy imports and
# a cold SQLite cache. Without MLFLOW_RATE, the fixed rate is 200 req/s or half of this
# saturation throughput if that is lower, so that the open-loop run measures latency at a
# load MLflow sustains rather than an ever-growing queue.
"$OHA" -z 5s -c "$CONC" "${OHA_FLAGS[@]}" "${LOOKUP_ARGS[@]}" >"$RAW/mlflow-warmup.json"
WARM=$($PY "$HERE/bench_mlflow.py" oha-summary "$RAW/mlflow-warmup.json")
log "warm-up: $WARM"
WARM_RPS=$($PY -c 'import json,sys; print(int(json.loads(sys.argv[1])["rps"]))' "$WARM")
if [ -n "${MLFLOW_RATE:-}" ]; then
  RATE_SOURCE="MLFLOW_RATE"
elif [ $((WARM_RPS / 2)) -lt 200 ]; then
  RATE=$(( (WARM_RPS / 2) / 10 * 10 )); [ "$RATE" -ge 10 ] || RATE=10
  RATE_SOURCE="auto: half of the warm-up saturation throughput ($WARM_RPS req/s), rounded down to 10"
else
  RATE_SOURCE="default 200 (below half of the warm-up saturation throughput, $WARM_RPS req/s)"
fi
log "fixed rate: $RATE req/s ($RATE_SOURCE)"

# --- 4-5. measured runs ---------------------------------------------------------------------
for run in $(seq 1 "$RUNS"); do
  sat=mlflow-lookup-saturation-$run.json
  fix=mlflow-lookup-fixed-rate-$run.json
  log "run $run/$RUNS: lookup saturation (-z $DURATION -c $CONC)"
  "$OHA" -z "$DURATION" -c "$CONC" "${OHA_FLAGS[@]}" "${LOOKUP_ARGS[@]}" >"$RAW/$sat"
  log "  $($PY "$HERE/bench_mlflow.py" oha-summary "$RAW/$sat")"
  sleep 2
  log "run $run/$RUNS: lookup fixed rate (-q $RATE --latency-correction)"
  "$OHA" -z "$DURATION" -c "$CONC" -q "$RATE" --latency-correction "${OHA_FLAGS[@]}" "${LOOKUP_ARGS[@]}" >"$RAW/$fix"
  log "  $($PY "$HERE/bench_mlflow.py" oha-summary "$RAW/$fix")"
  sleep 2
  log "run $run/$RUNS: alias update x$UPDATES"
  upd=$($PY "$HERE/bench_mlflow.py" alias-update "$BASE" "$MODELS" --n "$UPDATES" --seed "$run")
  log "  $upd"
  printf '{"saturation_file": "%s", "fixed_rate_file": "%s", "alias_update": %s}\n' "$sat" "$fix" "$upd" >"$RAW/mlflow-run-$run.json"
done

# --- 6. report ------------------------------------------------------------------------------
$PY - "$RAW/mlflow-meta.json" <<EOF
import json, os, sys
meta = {
    "mlflow_version": "$INSTALLED",
    "workers": $WORKERS,
    "models": $MODELS,
    "rate": $RATE,
    "rate_source": "$RATE_SOURCE",
    "runs": $RUNS,
    "server": "mlflow server (uvicorn), --workers $WORKERS, sqlite backend, job execution $JOBS",
    "seed": json.loads('''$SEED'''),
    "oha": "$OHA_VERSION",
    "oha_saturation": "-z $DURATION -c $CONC",
    "oha_fixed_rate": "-z $DURATION -c $CONC -q $RATE --latency-correction",
    "lookup_target": "$LOOKUP_TARGET",
    "alias_update_client": "sequential, one keep-alive HTTP/1.1 connection, python http.client",
    "cores": os.cpu_count(),
    "loadavg_at_start": [float(x) for x in "$LOAD_START".split()],
    "loadavg_at_end": os.getloadavg(),
}
json.dump(meta, open(sys.argv[1], "w"), indent=2)
EOF
$PY "$HERE/bench_mlflow.py" report "$OUTDIR"
log "wrote $OUTDIR/mlflow.json"
