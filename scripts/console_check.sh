#!/usr/bin/env bash
# Checks the governance console and the OpenAPI contract against a real broker and registry
# (config/local.toml, signed mode, fresh keys, free ports):
#   (a) tests/openapi_client/check_client.py: a client generated from contracts/openapi.json
#       by openapi-python-client publishes, approves, promotes and resolves;
#   (b) tests/browser/console_walk.py: headless Chromium walks /ui as carol, alice and bob.
# Each gets a fresh registry (its own topic prefix and view). Screenshots go to
# ${MPR_ARTIFACTS:-target/test-artifacts}/console (under target/, so not committed).
# Needs scripts/setup_console.sh (Chromium, chromedriver, Selenium, openapi-python-client).
set -euo pipefail
cd "$(dirname "$0")/.."
{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] \
    && python3 -c 'import selenium' 2>/dev/null \
    && { command -v openapi-python-client || python3 -c 'import openapi_python_client'; } >/dev/null 2>&1; } \
  || { echo "console_check: run scripts/setup_console.sh first (Chromium, Selenium or openapi-python-client missing)" >&2; exit 1; }
artifacts="${MPR_ARTIFACTS:-target/test-artifacts}/console"
# mpr reads every MPR_ variable as configuration and refuses one it does not know.
unset MPR_ARTIFACTS
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kport=$(free_port); hport=$(free_port)
url="http://127.0.0.1:$hport"
reg_pid=""
stop_registry() {
  [ -n "$reg_pid" ] || return 0
  kill "$reg_pid" 2>/dev/null || true
  wait "$reg_pid" 2>/dev/null || true
  reg_pid=""
}
cleanup() {
  stop_registry
  ./scripts/broker.sh stop "$work/broker" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
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

# A fresh registry: topics under prefix $1, its own view and processor state, log $work/$2.log.
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
  echo "console_check: the registry did not become ready; log tail:" >&2
  tail -40 "$log" >&2
  exit 1
}
failed=0
log_tail() { echo "--- registry log (tail)"; tail -40 "$log"; }

start_registry "openapi." api
python3 tests/openapi_client/check_client.py "$url" "$MPR" || { log_tail; failed=1; }
stop_registry

start_registry "console." console
python3 tests/browser/console_walk.py "$url" "$MPR" "$artifacts" || { log_tail; failed=1; }
stop_registry
exit "$failed"
