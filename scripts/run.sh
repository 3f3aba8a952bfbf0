#!/usr/bin/env bash
# The README's run command: installs what is missing, starts the embedded broker with
# durable storage under var/broker, creates the topics, and serves the registry on
# 127.0.0.1:8080 with config/local.toml. Point it at another Kafka cluster with
# MPR_BROKERS=host:port (the embedded broker is then not started).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --build-only
if [ -z "${MPR_BROKERS:-}" ]; then
  # The broker builds beside the registry (scripts/beside.sh).
  . scripts/beside.sh
  beside broker ./scripts/install-broker.sh
fi
cargo build --locked --bin mpr
if [ -z "${MPR_BROKERS:-}" ]; then
  beside_wait broker
  ./scripts/broker.sh start var/broker 9092
fi
MPR="${CARGO_TARGET_DIR:-target}/debug/mpr"
# The registry's and the API gateway's signing keys (config/local.toml names them): made
# once per checkout, never shipped.
mkdir -p var/keys
for k in registry gateway; do
  [ -f "var/keys/$k.pem" ] || "$MPR" keygen --out "var/keys/$k.pem" >/dev/null
done
"$MPR" --config config/local.toml topics ensure
exec "$MPR" --config config/local.toml serve
