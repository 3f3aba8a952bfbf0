#!/usr/bin/env bash
# Chaos soak (never part of ./scripts/test.sh): a stock client drives a mixed command stream
# into two registry instances on one tansu broker while instances are kill -9ed and restarted
# and the broker is restarted; then every invariant in RELIABILITY.md is checked.
#   ./scripts/chaos.sh          300 seconds of chaos (then draining and checks)
#   ./scripts/chaos.sh 30       the short variant CI can run
# Everything lives under var/chaos/ (broker data, views, logs a.log and b.log, report.json).
# Exits non-zero when an invariant fails. See scripts/chaos.py for the knobs (CHAOS_*).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
./scripts/setup.sh
cargo build --locked --bin mpr -q
MPR="${CHAOS_MPR_BIN:-${CARGO_TARGET_DIR:-target}/debug/mpr}"
# The registry's and the API gateway's signing keys that config/local.toml names, made once
# per checkout as run.sh makes them.
mkdir -p var/keys
for k in registry gateway; do
  [ -f "var/keys/$k.pem" ] || "$MPR" keygen --out "var/keys/$k.pem" >/dev/null
done
exec python3 scripts/chaos.py run --seconds "$seconds" --mpr "$MPR"
