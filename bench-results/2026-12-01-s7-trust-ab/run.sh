#!/usr/bin/env bash
# Release A/B of the trust change, same machine, same session, alternating:
# before = 13810e6 (no signatures), after = main. Stage `commands` (throughput, then cold
# rebuilds from events and from state).
set -uo pipefail
export STAGES=commands RUNS=1 CMDS=${CMDS:-60000}
for i in 1 2 3; do
  (cd /work/wt-before && BENCH_BIN_DIR=/tmp/ab/release/before OUT=/tmp/ab/release/out/before-$i ./scripts/bench.sh > /tmp/ab/release/log-before-$i.txt 2>&1)
  (cd /work/main && BENCH_BIN_DIR=/tmp/ab/release/after OUT=/tmp/ab/release/out/after-$i ./scripts/bench.sh > /tmp/ab/release/log-after-$i.txt 2>&1)
done
/tmp/ab/release/after/mpr_bench verify --count 20000 > /tmp/ab/release/verify.json
echo finished > /tmp/ab/release/done
