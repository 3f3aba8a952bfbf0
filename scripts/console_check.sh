#!/usr/bin/env bash
# Checks the governance console and the OpenAPI contract against a real broker and registry
# (config/local.toml, signed mode, fresh keys, free ports):
#   (a) tests/openapi_client/check_client.py: a client generated from contracts/openapi.json
#       by openapi-python-client publishes, approves, promotes and resolves;
#   (b) tests/browser/console_walk.py: headless Chromium walks /ui as carol, alice and bob.
# Each gets a fresh registry (its own topic prefix and view). Screenshots go to
# ${MPR_ARTIFACTS:-target/test-artifacts}/console (under target/, so not committed).
# Needs scripts/setup_console.sh (Chromium, chromedriver, Selenium, openapi-python-client).
set -euo pipefail
cd "$(dirname "$0")/.."
{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] \
    && python3 -c 'import selenium' 2>/dev/null \
    && { command -v openapi-python-client || python3 -c 'import openapi_python_client'; } >/dev/null 2>&1; } \
  || { echo "console_check: run scripts/setup_console.sh first (Chromium, Selenium or openapi-python-client missing)" >&2; exit 1; }
artifacts="${MPR_ARTIFACTS:-target/test-artifacts}/console"
# mpr reads every MPR_ variable as configuration and refuses one it does not know.
unset MPR_ARTIFACTS
. scripts/stack.sh
stack_init console_check
failed=0

start_registry "openapi." api
python3 tests/openapi_client/check_client.py "$url" "$MPR" || { log_tail; failed=1; }
stop_registry

start_registry "console." console
python3 tests/browser/console_walk.py "$url" "$MPR" "$artifacts" || { log_tail; failed=1; }
stop_registry
exit "$failed"
