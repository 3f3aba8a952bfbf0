#!/usr/bin/env bash
# Makes docs/img/console-scope.png: the console's scope page of staging/*/fraud-scorer after
# 1.0.0 and 1.1.0 were promoted there and 1.1.0 was rolled back, seen by bob (deployer).
# Starts its own broker and registry on free ports, like scripts/console_check.sh.
# Needs scripts/setup_console.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import selenium' 2>/dev/null && [ -x /usr/bin/chromium ] \
  || { echo "console_screenshot: run scripts/setup_console.sh first" >&2; exit 1; }
out="${1:-docs/img/console-scope.png}"
. scripts/stack.sh
stack_init console_screenshot
start_registry "screenshot." screenshot
mkdir -p "$(dirname "$out")"
python3 - "$url" "$MPR" "$work" "$out" <<'PY' || { log_tail; exit 1; }
import sys
from pathlib import Path
sys.path.insert(0, "tests/browser")
import console_walk as w

url, mpr, work, out = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
try:
    w.register_gate_and_catalogs(mpr, url, work)
    for v in ("1.0.0", "1.1.0"):
        w.publish_and_approve(mpr, url, v)
        w.cli(mpr, url, w.DEPLOYER, "promote", f"fraud-scorer@{v}", "--env", "staging",
              "--reason", f"staging rollout of {v}")
    w.cli(mpr, url, w.DEPLOYER, "rollback", "--env", "staging", "--bundle-id", "fraud-scorer",
          "--reason", "p99 regression in staging")
    d = w.make_driver()
    try:
        c = w.Console(d, url, None)
        c.go("/ui/login")
        c.sign_in(w.DEPLOYER, "bob")
        c.go("/ui/scopes/staging/*/fraud-scorer")
        c.has("current", "1.0.0")
        c.el("history")
        # The window as tall as the page (plus what the window keeps for itself).
        height, chrome = d.execute_script(
            "return [Math.ceil(document.body.getBoundingClientRect().bottom + window.scrollY),"
            " window.outerHeight - window.innerHeight]")
        d.set_window_size(1280, min(max(int(height) + 24, 600), 2400) + int(chrome))
        d.save_screenshot(out)
    finally:
        d.quit()
except w.WalkFailed as e:
    sys.exit(f"console_screenshot: FAILED: {e}")
print(f"console_screenshot: wrote {out}")
PY
