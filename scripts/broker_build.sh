# Sourced by test.sh and run.sh: builds the embedded broker (scripts/install-broker.sh) in
# the background while the caller builds the registry. On a fresh machine each build takes
# a quarter of an hour on 2 cores and neither keeps both cores busy, so side by side they
# finish sooner than one after the other. `broker_build_wait` waits for it, and fails with
# its log if it failed; an exit before that stops it.
broker_build_log=$(mktemp)
./scripts/install-broker.sh >"$broker_build_log" 2>&1 &
broker_build_pid=$!
trap 'kill "$broker_build_pid" 2>/dev/null || true; rm -f "$broker_build_log"' EXIT
broker_build_wait() {
  if ! wait "$broker_build_pid"; then
    cat "$broker_build_log" >&2
    echo "the broker's installation failed (above)" >&2
    exit 1
  fi
  cat "$broker_build_log"
}
