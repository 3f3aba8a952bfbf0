#!/usr/bin/env bash
# Manual: populate N publishes once, then time `mpr view rebuild --from events` with given binaries.
set -euo pipefail
cd /work/main
N=${N:-200000}
REL=$HOME/.cache/mpr/target/release
W=/tmp/rb; rm -rf $W; mkdir -p $W
"$REL/mpr" keygen --out "$W/registry.pem" >/dev/null; "$REL/mpr" keygen --out "$W/gateway.pem" >/dev/null
export MPR_TRUST__REGISTRY_KEY_FILE="$W/registry.pem" MPR_TRUST__GATEWAY_KEY_FILE="$W/gateway.pem"
KPORT=39092
./scripts/broker.sh start "$W/broker" "$KPORT" >/dev/null
export MPR_BROKERS="127.0.0.1:$KPORT" MPR_HTTP__LISTEN=127.0.0.1:18081 MPR_VIEW__PATH="$W/view-live" \
  MPR_PROCESSOR__STATE_PATH="$W/proc" MPR_LOG=warn
"$REL/mpr" --config config/local.toml serve >"$W/reg.log" 2>&1 & REG=$!
for _ in $(seq 1 600); do curl -fsS http://127.0.0.1:18081/readyz >/dev/null 2>&1 && break; sleep 0.1; done
"$REL/mpr_bench" --gateway-key "$W/gateway.pem" --brokers "$MPR_BROKERS" --url http://127.0.0.1:18081 commands --publish-only --count "$N" --family-prefix scale
kill $REG; wait $REG || true
echo "populated"
