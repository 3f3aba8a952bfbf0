#!/usr/bin/env bash
# Installs the embedded broker that BROKER selects (scripts/broker_env.sh; default tansu
# 0.6.0, Apache-Kafka-compatible, in Rust) under $MPR_TOOLS (default ~/.cache/mpr) when it
# is missing. The libsql and dynostore features give it durable storage; without a storage
# feature it discards data.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/broker_env.sh
if [ -x "$BROKER_BIN" ]; then
  exit 0
fi
echo "install-broker: building $BROKER_CRATE into $BROKER_ROOT (about 15 to 18 minutes on 2 cores, once)"
mkdir -p "$BROKER_ROOT"
# In a temporary target directory of its own (not CARGO_TARGET_DIR): the registry's build
# may run beside it (scripts/beside.sh), and a shared directory would serialize them.
env -u CARGO_TARGET_DIR cargo install "$BROKER_CRATE" --locked --features "$BROKER_FEATURES" --root "$BROKER_ROOT"
