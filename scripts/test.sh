#!/usr/bin/env bash
# The README's test command. Installs what is missing (scripts/setup.sh), checks
# formatting, runs every test (unit, conformance vectors, property, contract, and the
# integration tests against a real tansu broker and real RocksDB), then checks that a
# stock Kafka client (Python confluent-kafka) can drive the running registry, and walks the
# console in headless Chromium and drives the API with a client generated from its OpenAPI
# document.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --without-broker
. scripts/broker_build.sh
cargo fmt --check
cargo test --locked --all-targets --no-run
broker_build_wait
# Integration tests each start a broker and a registry; on 2 cores they run one at a time.
cargo test --locked --all-targets -- --test-threads=1
./scripts/stock_client_check.sh
./scripts/console_check.sh
echo "test.sh: all checks passed"
