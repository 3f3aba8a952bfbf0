#!/usr/bin/env bash
# The README's test command. Installs what is missing (scripts/setup.sh), checks
# formatting, runs every test (unit, conformance vectors, property, contract, and the
# integration tests against a real tansu broker and real RocksDB), then checks that a
# stock Kafka client (Python confluent-kafka) can drive the running registry, and walks the
# console in headless Chromium and drives the API with a client generated from its OpenAPI
# document.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --build-only
# The broker and the check tools install beside the registry's build (scripts/beside.sh).
. scripts/beside.sh
beside broker ./scripts/install-broker.sh
beside --finish check-tools ./scripts/setup.sh --checks-only
cargo fmt --check
cargo test --locked --all-targets --no-run
beside_wait broker
# Integration tests each start a broker and a registry; on 2 cores they run one at a time.
cargo test --locked --all-targets -- --test-threads=1
beside_wait check-tools
./scripts/stock_client_check.sh
./scripts/console_check.sh
echo "test.sh: all checks passed"
