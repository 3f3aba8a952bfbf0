#!/usr/bin/env bash
# Installs the embedded default broker, tansu 0.6.0 (Apache-Kafka-compatible, in Rust),
# under $MPR_TOOLS (default ~/.cache/mpr) when it is missing. The libsql and dynostore
# features give it durable storage; without a storage feature it discards data.
set -euo pipefail
MPR_TOOLS="${MPR_TOOLS:-$HOME/.cache/mpr}"
TANSU="$MPR_TOOLS/bin/tansu"
if [ -x "$TANSU" ]; then
  exit 0
fi
echo "install-broker: building tansu 0.6.0 into $MPR_TOOLS (about 18 minutes on 2 cores, once)"
mkdir -p "$MPR_TOOLS"
cargo install tansu@0.6.0 --locked --features libsql,dynostore --root "$MPR_TOOLS"
