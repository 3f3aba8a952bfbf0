#!/usr/bin/env bash
# The README's test command. Installs what is missing (scripts/setup.sh), checks
# formatting, runs every test (unit, conformance vectors, property, contract, and the
# integration tests against a real tansu broker and real RocksDB), then checks that a
# stock Kafka client (Python confluent-kafka) can drive the running registry.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo fmt --check
cargo test --locked --all-targets
./scripts/stock_client_check.sh
echo "test.sh: all checks passed"
