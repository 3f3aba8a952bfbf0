#!/usr/bin/env bash
# Demo: a canary rollout auto-aborted by error-rate signals (MPR2 §9).
#
# Needs a running registry with config/local.toml's dev tokens (./scripts/run.sh in another
# terminal) and a fresh state (a scope that already ran this demo refuses a second canary
# of the same version until it is approved again). MPR_URL picks another registry; MPR
# the CLI binary.
#
#   1. fraud-scorer@1.0.0 is the PRIMARY of prod; 1.1.0 starts as a 10 % canary.
#   2. The deployer sets a rollback policy: the canary's error_rate above 2x the
#      primary's in 2 shared windows aborts it.
#   3. Observability reports error_rate per version for two one-minute windows: the
#      primary at 1 %, the canary at 9 %.
#   4. The processor aborts the canary as mpr-autopilot; every routing key resolves to
#      the primary; the audit shows the automated decision and the signals it used.
set -euo pipefail
cd "$(dirname "$0")/.."
MPR="${MPR:-mpr}"
export MPR_URL="${MPR_URL:-http://127.0.0.1:8080}"
ADMIN=dev-admin-token PUB=dev-publisher-token APPROVER=dev-approver-token
DEPLOYER=dev-deployer-token READER=dev-reader-token OBSERVER=dev-observer-token
step() { printf '\n== %s\n' "$*"; }
# A repeat of the set-up (after the README walkthrough) is a NOOP, not an error.
ok() { "$@" || [ $? -eq 2 ]; }

step "set-up: the example gate, the prod catalog, two approved versions, 1.0.0 PRIMARY"
ok "$MPR" --token $ADMIN key register --kind gate --owner fraud-offline-eval-v4 \
  --public-key 43ebc75c39cd5692b3589c901242096f0247cfe84a46b7596f4e384d482a0a5d
ok "$MPR" --token $ADMIN catalog set examples/catalog/prod.json
for v in 1.0.0 1.1.0; do
  ok "$MPR" --token $PUB publish "examples/bundles/fraud-scorer-$v.publish.json"
  ok "$MPR" --token $APPROVER nominate "fraud-scorer@$v"
  ok "$MPR" --token $APPROVER approve "fraud-scorer@$v"
done
ok "$MPR" --token $DEPLOYER promote fraud-scorer@1.0.0 --env prod

step "1. fraud-scorer@1.1.0 as a 10 % canary"
"$MPR" --token $DEPLOYER canary start fraud-scorer@1.1.0 --env prod --percent 10 \
  --reason "retrain, canary first"
for key in acct-1 acct-2 acct-3 acct-4 acct-5 acct-6 acct-7 acct-8 acct-9 acct-10; do
  "$MPR" --token $READER --json resolve --env prod --bundle-id fraud-scorer --routing-key $key \
    | python3 -c 'import json,sys; v=json.load(sys.stdin); print(sys.argv[1], v["active_bundle_ref"]["bundle_version"], "(canary)" if v.get("canary",{}).get("served") else "")' $key
done

step "2. the rollback policy (examples/policies/canary-error-rate.json)"
"$MPR" --token $DEPLOYER policy set --bundle-id fraud-scorer --env prod \
  --file examples/policies/canary-error-rate.json --reason "canary guard"

step "3. error_rate signals for two windows: primary 1 %, canary 9 %"
for w in 0 1; do
  start=$(date -u -d "@$(( $(date +%s) / 60 * 60 - 120 + w * 60 ))" +%Y-%m-%dT%H:%M:%S.000Z)
  end=$(date -u -d "@$(( $(date +%s) / 60 * 60 - 60 + w * 60 ))" +%Y-%m-%dT%H:%M:%S.000Z)
  "$MPR" --token $OBSERVER signal send --bundle fraud-scorer@1.0.0 --env prod \
    --name error_rate --value 0.01 --window-start "$start" --window-end "$end" --source prometheus
  "$MPR" --token $OBSERVER signal send --bundle fraud-scorer@1.1.0 --env prod \
    --name error_rate --value 0.09 --window-start "$start" --window-end "$end" --source prometheus
done

step "4. the processor aborts the canary (waiting for the view)"
for _ in $(seq 1 100); do
  if ! "$MPR" --token $READER --json resolve --env prod --bundle-id fraud-scorer \
      | python3 -c 'import json,sys; sys.exit(0 if "canary" in json.load(sys.stdin) else 1)'; then
    break
  fi
  sleep 0.2
done
for key in acct-1 acct-2 acct-3 acct-4 acct-5 acct-6 acct-7 acct-8 acct-9 acct-10; do
  v=$("$MPR" --token $READER --json resolve --env prod --bundle-id fraud-scorer --routing-key $key \
    | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["active_bundle_ref"]["bundle_version"], "canary" in v)')
  echo "$key $v"
  [ "$v" = "1.0.0 False" ] || { echo "demo: $key still answered $v" >&2; exit 1; }
done
"$MPR" --token $READER policy show --bundle-id fraud-scorer --env prod
"$MPR" --token $READER events --bundle-id fraud-scorer --automated
echo "demo: the canary was aborted by mpr-autopilot; every routing key answers 1.0.0"

step "5. 1.1.0 returns only after a fresh approval; then it grows and completes"
if out=$("$MPR" --token $DEPLOYER canary start fraud-scorer@1.1.0 --env prod --percent 10 2>&1); then
  echo "demo: an automatically aborted version was promoted again without approval" >&2; exit 1
fi
echo "$out" | grep -q REAPPROVAL_REQUIRED || { echo "demo: expected REAPPROVAL_REQUIRED, got: $out" >&2; exit 1; }
echo "refused without a fresh approval: REAPPROVAL_REQUIRED"
"$MPR" --token $APPROVER approve fraud-scorer@1.1.0
"$MPR" --token $DEPLOYER canary start fraud-scorer@1.1.0 --env prod --percent 10
# A deployer may stop a canary by hand too; starting it again needs no new approval.
"$MPR" --token $DEPLOYER canary abort --bundle-id fraud-scorer --env prod --reason "hold for the weekend"
for _ in $(seq 1 100); do
  "$MPR" --token $READER --json resolve --env prod --bundle-id fraud-scorer \
    | python3 -c 'import json,sys; sys.exit(1 if "canary" in json.load(sys.stdin) else 0)' && break
  sleep 0.2
done
"$MPR" --token $READER --json resolve --env prod --bundle-id fraud-scorer \
  | python3 -c 'import json,sys; v=json.load(sys.stdin); sys.exit("canary" in v or v["active_bundle_ref"]["bundle_version"] != "1.0.0")' \
  || { echo "demo: the canary outlived its abort" >&2; exit 1; }
echo "aborted by hand: no canary, 1.0.0 answers"
"$MPR" --token $DEPLOYER canary start fraud-scorer@1.1.0 --env prod --percent 10
"$MPR" --token $DEPLOYER canary set --bundle-id fraud-scorer --env prod --percent 50
"$MPR" --token $DEPLOYER canary complete --bundle-id fraud-scorer --env prod
for _ in $(seq 1 100); do
  v=$("$MPR" --token $READER --json resolve --env prod --bundle-id fraud-scorer \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["active_bundle_ref"]["bundle_version"])')
  [ "$v" = 1.1.0 ] && break
  sleep 0.2
done
[ "$v" = 1.1.0 ] || { echo "demo: after complete, resolve answers $v" >&2; exit 1; }
echo "demo: 1.1.0 is the PRIMARY after a fresh approval and a completed canary"
