#!/usr/bin/env bash
# Manual profile of resolve at saturation (profiling build), fixed and random scopes.
set -euo pipefail
cd /work/main
BIN=${BIN:-$HOME/.cache/mpr/target/profiling}
OHA=$HOME/.cache/mpr/bin/oha
W=$(mktemp -d)
"$BIN/mpr" keygen --out "$W/registry.pem" >/dev/null; "$BIN/mpr" keygen --out "$W/gateway.pem" >/dev/null
export MPR_TRUST__REGISTRY_KEY_FILE="$W/registry.pem" MPR_TRUST__GATEWAY_KEY_FILE="$W/gateway.pem"
"$BIN/mpr_bench" apply --dir "$W/view-resolve" --resolve-families 1000 --count 0 >/dev/null
KPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
./scripts/broker.sh start "$W/broker" "$KPORT" >/dev/null
trap './scripts/broker.sh stop "$W/broker" >/dev/null 2>&1; kill $REG 2>/dev/null; rm -rf "$W"' EXIT
export MPR_BROKERS="127.0.0.1:$KPORT" MPR_HTTP__LISTEN=127.0.0.1:18080 MPR_VIEW__PATH="$W/view-resolve" \
  MPR_PROCESSOR__STATE_PATH="$W/proc" MPR_LOG=warn MPR_KAFKA__PARTITIONS=1 MPR_HTTP__RESOLVE_CACHE_MIB=512
"$BIN/mpr" --config config/local.toml serve >"$W/reg.log" 2>&1 & REG=$!
for _ in $(seq 1 600); do curl -fsS http://127.0.0.1:18080/readyz >/dev/null 2>&1 && break; sleep 0.1; done
python3 scripts/bench_warm.py http://127.0.0.1:18080 1000 50 dev-reader-token
AUTH="Authorization: Bearer dev-reader-token"
FIXED="http://127.0.0.1:18080/v1/resolve?environment=prod&bundle_id=fam-0001&tenant_id=tenant-01"
"$OHA" --no-tui -z 5s -c 64 -H "$AUTH" "$FIXED" | grep -E "Requests/sec"
perf record -F 1999 -p $REG -o /tmp/perf-fixed.data -- sleep 8 >/dev/null 2>&1 &
"$OHA" --no-tui -z 10s -c 64 -H "$AUTH" "$FIXED" | grep -E "Requests/sec"
wait %2 2>/dev/null || sleep 1
perf report -i /tmp/perf-fixed.data --no-children --sort dso,symbol --percent-limit 0.7 --stdio 2>/dev/null | grep -v "^#" | grep -v "^$" | head -70
