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
. scripts/stack.sh
stack_init stock_client_check
start_registry "stock." stock
python3 scripts/stock_client_check.py "$MPR_BROKERS" "$url" stock. "$MPR" config/local.toml \
  || { log_tail; exit 1; }

# The autopilot demo, as the README runs it, on fresh topics and a fresh view.
stop_registry
start_registry "demo." demo
MPR="$MPR" MPR_URL="$url" examples/canary_autoabort.sh >"$work/demo.out" 2>&1 \
  || { cat "$work/demo.out"; log_tail; exit 1; }
tail -3 "$work/demo.out"
