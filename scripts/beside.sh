# Sourced by test.sh and run.sh: runs set-up work in the background while the caller builds
# the registry. On a fresh machine the registry's build and the broker's each take a quarter
# of an hour on 2 cores and neither keeps both cores busy, so side by side they finish
# sooner than one after the other; the check tools (apt and PyPI downloads) mostly wait on
# the network. `beside NAME CMD...` starts CMD; `beside_wait NAME` waits for it, prints its
# log, and fails with that log if it failed. An exit before the wait stops what still runs,
# except what was started with `beside --finish NAME CMD...` (package installs: killing
# apt-get mid-install would leave dpkg half-configured), which the exit waits for.
declare -A beside_pid=() beside_log=() beside_finish=()
beside_cleanup() {
  local n
  for n in "${!beside_pid[@]}"; do
    if [ -n "${beside_finish[$n]:-}" ]; then
      wait "${beside_pid[$n]}" 2>/dev/null || true
    else
      kill "${beside_pid[$n]}" 2>/dev/null || true
    fi
  done
  for n in "${!beside_log[@]}"; do rm -f "${beside_log[$n]}"; done
}
trap beside_cleanup EXIT
beside() {
  local finish=""
  if [ "$1" = --finish ]; then finish=1; shift; fi
  local name=$1; shift
  beside_log[$name]=$(mktemp)
  beside_finish[$name]=$finish
  "$@" >"${beside_log[$name]}" 2>&1 &
  beside_pid[$name]=$!
}
beside_wait() {
  local name=$1
  if ! wait "${beside_pid[$name]}"; then
    cat "${beside_log[$name]}" >&2
    echo "$name failed (above)" >&2
    exit 1
  fi
  unset 'beside_pid[$name]'
  cat "${beside_log[$name]}"
}
