#!/usr/bin/env bash
# The broker candidates side by side, in one run (BENCHMARKS.md "Broker candidates"): the
# same scripts/bench.sh stages against each embedded broker BROKER can select
# (scripts/broker_env.sh), one after the other on the same machine, with the same release
# build. Results: bench-results/<timestamp>-candidates/<broker>/.
#   ./scripts/bench_candidates.sh
#   CANDIDATES="tansu nisshi" STAGES="commands" ./scripts/bench_candidates.sh
# Defaults: RUNS=3; the broker ceiling, commands (CMDS=30000), latency, records and scale
# (SCALE_BUNDLES=200000; per-1,000,000 figures scale from it) stages.
set -euo pipefail
cd "$(dirname "$0")/.."
CANDIDATES=${CANDIDATES:-tansu nisshi}
ROOT=${ROOT:-bench-results/$(date -u +%Y%m%dT%H%M%SZ)-candidates}
export RUNS=${RUNS:-3} CMDS=${CMDS:-30000} SCALE_BUNDLES=${SCALE_BUNDLES:-200000}
export STAGES=${STAGES:-broker commands latency records scale}
for b in $CANDIDATES; do
  echo "=== candidate $b"
  BROKER=$b ./scripts/install-broker.sh
  BROKER=$b OUT="$ROOT/$b" ./scripts/bench.sh
done
echo "candidates: results under $ROOT"
