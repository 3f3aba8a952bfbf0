# Sourced by the check scripts (stock_client_check.sh, console_check.sh,
# console_screenshot.sh): a broker and registries on free ports under a temporary
# directory, with fresh signing keys, config/local.toml and signed mode.
#   stack_init NAME        $work, $url and $MPR (PREBUILT_MPR, or the debug build); starts
#                          the broker; an EXIT trap stops everything and removes $work
#   start_registry P L     a fresh registry: topics under prefix P, its own view and
#                          processor state, its log in $log ($work/L.log); waits for /readyz
#   stop_registry, log_tail
# mpr reads every MPR_ variable as configuration and refuses one it does not know, so the
# scripts export no other MPR_ names.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

stack_init() {
  stack_name="$1"
  work=$(mktemp -d)
  local kport hport
  kport=$(free_port); hport=$(free_port)
  url="http://127.0.0.1:$hport"
  reg_pid=""
  trap stack_cleanup EXIT
  ./scripts/broker.sh start "$work/broker" "$kport" >/dev/null
  # PREBUILT_MPR: an already built mpr to use instead of building one.
  if [ -n "${PREBUILT_MPR:-}" ]; then MPR="$PREBUILT_MPR"; else
    cargo build --locked --bin mpr -q
    MPR="${CARGO_TARGET_DIR:-target}/debug/mpr"
  fi
  case "$MPR" in /*) ;; *) MPR="$PWD/$MPR" ;; esac
  "$MPR" keygen --out "$work/registry.pem" >/dev/null
  "$MPR" keygen --out "$work/gateway.pem" >/dev/null
  export MPR_BROKERS="127.0.0.1:$kport" MPR_HTTP__LISTEN="127.0.0.1:$hport" \
    MPR_TRUST__REGISTRY_KEY_FILE="$work/registry.pem" MPR_TRUST__GATEWAY_KEY_FILE="$work/gateway.pem"
}

stop_registry() {
  [ -n "$reg_pid" ] || return 0
  kill "$reg_pid" 2>/dev/null || true
  wait "$reg_pid" 2>/dev/null || true
  reg_pid=""
}

stack_cleanup() {
  stop_registry
  ./scripts/broker.sh stop "$work/broker" >/dev/null || true
  rm -rf "$work"
}

start_registry() {
  export MPR_KAFKA__TOPIC_PREFIX="$1" MPR_VIEW__PATH="$work/$2-view" \
    MPR_PROCESSOR__STATE_PATH="$work/$2-processor"
  log="$work/$2.log"
  "$MPR" --config config/local.toml topics ensure >/dev/null
  "$MPR" --config config/local.toml serve >"$log" 2>&1 &
  reg_pid=$!
  for _ in $(seq 1 300); do
    curl -fsS "$url/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$reg_pid" 2>/dev/null || break
    sleep 0.2
  done
  echo "$stack_name: the registry did not become ready; log tail:" >&2
  tail -40 "$log" >&2
  exit 1
}

log_tail() { echo "--- registry log (tail)"; tail -40 "$log"; }
