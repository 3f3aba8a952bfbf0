#!/usr/bin/env bash
# Installs what the governance-console checks need (scripts/console_check.sh,
# scripts/console_screenshot.sh): Chromium and its driver (apt), Selenium and
# openapi-python-client (PyPI). Idempotent and quiet: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

missing=()
for pkg in chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} (apt) for the console's browser test"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

pips=()
python3 -c 'import selenium' >/dev/null 2>&1 || pips+=(selenium)
command -v openapi-python-client >/dev/null 2>&1 \
  || python3 -c 'import openapi_python_client' >/dev/null 2>&1 \
  || pips+=(openapi-python-client)
if [ ${#pips[@]} -gt 0 ]; then
  echo "setup: installing ${pips[*]} (Python) for the console checks"
  python3 -m pip install -q "${pips[@]}" >/dev/null 2>&1 \
    || { echo "setup: cannot install ${pips[*]} (Python)" >&2; exit 1; }
fi
