#!/usr/bin/env bash
# Installs what a fresh machine needs to build, test and run MPR: libclang (for the
# rocksdb crate), the embedded broker (scripts/install-broker.sh), and the check tools:
# Python's confluent-kafka and friends (a stock Kafka client for checks), Chromium and
# Selenium (the console's checks). Idempotent: it skips what is already there.
#   setup.sh                  everything
#   setup.sh --without-broker everything but the broker
#   setup.sh --build-only     what the registry's build needs (libclang)
#   setup.sh --checks-only    the check tools
# test.sh and run.sh install the broker and the check tools beside the registry's build
# (scripts/beside.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"
case "$mode" in
  all|--without-broker|--build-only|--checks-only) ;;
  *) echo "setup.sh: unknown option $mode" >&2; exit 2 ;;
esac

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

if [ "$mode" != --checks-only ] && ! dpkg -s libclang-dev >/dev/null 2>&1; then
  echo "setup: installing libclang-dev"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libclang-dev >/dev/null
fi

if [ "$mode" = all ]; then
  ./scripts/install-broker.sh
fi
if [ "$mode" = --build-only ]; then
  exit 0
fi

# Stock-client checks (scripts/stock_client_check.sh): Kafka (confluent-kafka), Ed25519
# (cryptography), RFC 8785 (rfc8785) and Avro (fastavro), all well-known PyPI packages.
if ! python3 -c 'import confluent_kafka, cryptography, rfc8785, fastavro' >/dev/null 2>&1; then
  echo "setup: installing confluent-kafka, cryptography, rfc8785, fastavro (Python) for stock-client checks"
  python3 -m pip install -q confluent-kafka cryptography rfc8785 fastavro >/dev/null 2>&1 \
    || { echo "setup: cannot install the Python packages the stock-client checks need" >&2; exit 1; }
fi

# The console's checks (scripts/console_check.sh): Chromium and chromedriver (Debian),
# Selenium and openapi-python-client (PyPI).
./scripts/setup_console.sh
