#!/usr/bin/env bash
# Starts a broker and the registry (config/local.toml, signed mode, fresh keys) on free
# ports, then drives it with a stock Kafka client (Python confluent-kafka): signed commands,
# every refusal of the trust model, and a forged event (scripts/stock_client_check.py).
# Then runs the README's autopilot demo (examples/canary_autoabort.sh) against a fresh
# registry on the same broker.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import confluent_kafka, cryptography, rfc8785, fastavro' \
  || { echo "stock_client_check: run scripts/setup.sh first (Python packages missing)" >&2; exit 1; }
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kport=$(free_port); hport=$(free_port)
cleanup() {
  [ -n "${reg_pid:-}" ] && kill "$reg_pid" 2>/dev/null || true
  ./scripts/broker.sh stop "$work/broker" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
./scripts/broker.sh start "$work/broker" "$kport" >/dev/null
cargo build --locked --bin mpr -q
MPR="${CARGO_TARGET_DIR:-target}/debug/mpr"
"$MPR" keygen --out "$work/registry.pem" >/dev/null
"$MPR" keygen --out "$work/gateway.pem" >/dev/null
export MPR_BROKERS="127.0.0.1:$kport" MPR_HTTP__LISTEN="127.0.0.1:$hport" \
  MPR_VIEW__PATH="$work/view" MPR_PROCESSOR__STATE_PATH="$work/processor" \
  MPR_KAFKA__TOPIC_PREFIX="stock." \
  MPR_TRUST__REGISTRY_KEY_FILE="$work/registry.pem" MPR_TRUST__GATEWAY_KEY_FILE="$work/gateway.pem"
"$MPR" --config config/local.toml serve >"$work/mpr.log" 2>&1 &
reg_pid=$!
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$hport/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
python3 scripts/stock_client_check.py "127.0.0.1:$kport" "http://127.0.0.1:$hport" stock. "$MPR" config/local.toml \
  || { echo "--- registry log (tail)"; tail -40 "$work/mpr.log"; exit 1; }

# The autopilot demo, as the README runs it, on fresh topics and a fresh view.
kill "$reg_pid" 2>/dev/null || true
wait "$reg_pid" 2>/dev/null || true
export MPR_KAFKA__TOPIC_PREFIX="demo." MPR_VIEW__PATH="$work/demo-view" \
  MPR_PROCESSOR__STATE_PATH="$work/demo-processor"
"$MPR" --config config/local.toml topics ensure >/dev/null
"$MPR" --config config/local.toml serve >"$work/demo.log" 2>&1 &
reg_pid=$!
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$hport/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
MPR="$MPR" MPR_URL="http://127.0.0.1:$hport" examples/canary_autoabort.sh >"$work/demo.out" 2>&1 \
  || { cat "$work/demo.out"; echo "--- registry log (tail)"; tail -40 "$work/demo.log"; exit 1; }
tail -3 "$work/demo.out"
