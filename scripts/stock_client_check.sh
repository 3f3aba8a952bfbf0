#!/usr/bin/env bash
# Starts a broker and the registry on free ports, sends a JSON command with a stock Kafka
# client (Python confluent-kafka), and checks that its event and result appear.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import confluent_kafka' >/dev/null 2>&1; then
  echo "stock_client_check: confluent-kafka is not installed; skipping" >&2
  exit 0
fi
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
MPR_BROKERS="127.0.0.1:$kport" MPR_HTTP__LISTEN="127.0.0.1:$hport" MPR_VIEW__PATH="$work/view" MPR_KAFKA__TOPIC_PREFIX="stock." \
  "$MPR" --config config/local.toml serve >"$work/mpr.log" 2>&1 &
reg_pid=$!
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$hport/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
python3 scripts/stock_client_check.py "127.0.0.1:$kport" "http://127.0.0.1:$hport" examples/bundles/fraud-scorer-1.0.0.publish.json
