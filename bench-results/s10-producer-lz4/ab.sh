#!/usr/bin/env bash
set -euo pipefail
cd /work/main
T=$HOME/.cache/mpr/target/release; W=$(mktemp -d)
$T/mpr keygen --out $W/r.pem >/dev/null; $T/mpr keygen --out $W/g.pem >/dev/null
run() { # $1 config $2 label $3 n
  rm -rf $W/broker $W/view $W/proc
  ./scripts/broker.sh start $W/broker 19193 >/dev/null
  export MPR_BROKERS=127.0.0.1:19193 MPR_HTTP__LISTEN=127.0.0.1:18183 MPR_VIEW__PATH=$W/view MPR_PROCESSOR__STATE_PATH=$W/proc MPR_LOG=warn MPR_TRUST__REGISTRY_KEY_FILE=$W/r.pem MPR_TRUST__GATEWAY_KEY_FILE=$W/g.pem
  $T/mpr --config $1 topics ensure >/dev/null
  $T/mpr --config $1 serve > $W/reg.log 2>&1 & P=$!
  for i in $(seq 1 300); do curl -fsS http://127.0.0.1:18183/readyz >/dev/null 2>&1 && break; sleep 0.1; done
  r=$($T/mpr_bench --gateway-key $W/g.pem --brokers 127.0.0.1:19193 --url http://127.0.0.1:18183 commands --count $3 --family-prefix ab$RANDOM)
  kill $P; wait $P 2>/dev/null || true
  echo "$2 $(echo $r | python3 -c 'import sys,json; print(round(json.loads(sys.stdin.read())["commands_per_second"]))') cmds/s broker_kib=$(du -sk $W/broker | cut -f1)"
  ./scripts/broker.sh stop $W/broker >/dev/null
}
for i in 1 2 3; do run config/local.toml none 20000; run /tmp/lz4.toml lz4 20000; done
rm -rf $W
