#!/usr/bin/env python3
"""Walks the governance console (/ui) in headless Chromium, as carol, alice and bob.

    python3 tests/browser/console_walk.py URL MPR_BINARY [ARTIFACT_DIR]

The registry must be fresh (scripts/console_check.sh starts one). Set-up is done with the
`mpr` CLI: the gate's key, the staging catalog, a prod catalog without merchant_risk,
fraud-scorer 1.1.0 live in staging (so a rollback has somewhere to go), and
fraud-scorer 1.0.0 published by carol and nominated by alice. Then, in the browser:
separation of duties refuses carol's approval, alice approves, bob's dry run into prod is
refused as INCOMPATIBLE, his dry run into staging is accepted and he promotes, the scope
page shows 1.0.0 (and nothing before the set-up), bob rolls back, the timeline and the
audit page show it all and the audit verifies. One screenshot per step goes to
ARTIFACT_DIR (default target/test-artifacts/console). Last, a second browser with
JavaScript turned off signs in and reads the bundle list and the version page.

The helpers (make_driver, Console, cli) are used by scripts/console_screenshot.sh too.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import typing
from pathlib import Path
from urllib.parse import urlparse, unquote

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
WAIT_S = 10

ADMIN = "dev-admin-token"
PUBLISHER = "dev-publisher-token"
APPROVER = "dev-approver-token"   # alice
DEPLOYER = "dev-deployer-token"   # bob
CAROL = "dev-carol-token"         # publisher and approver
GATE_OWNER = "fraud-offline-eval-v4"
GATE_PUBLIC_KEY = "43ebc75c39cd5692b3589c901242096f0247cfe84a46b7596f4e384d482a0a5d"
BUNDLE = "fraud-scorer"
VERSION = "1.0.0"
EARLIER = "1.1.0"   # live in staging before the walk; the rollback restores it


T = typing.TypeVar("T")


class WalkFailed(Exception):
    pass


# ---------------------------------------------------------------- set-up with the CLI

def cli(mpr: str, url: str, token: str, *args: str) -> str:
    p = subprocess.run([mpr, "--url", url, "--token", token, *args],
                       capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise WalkFailed(f"set-up: mpr {' '.join(args)} exited {p.returncode}: "
                         f"{(p.stderr or p.stdout).strip()}")
    return p.stdout


def prod_catalog_without(tmp: Path, group: str) -> Path:
    entry = json.loads((ROOT / "examples/catalog/prod.json").read_text())
    entry["feature_groups"] = [g for g in entry["feature_groups"] if g["name"] != group]
    path = tmp / "prod-without-merchant-risk.json"
    path.write_text(json.dumps(entry, indent=2))
    return path


def register_gate_and_catalogs(mpr: str, url: str, tmp: Path) -> None:
    cli(mpr, url, ADMIN, "key", "register", "--kind", "gate", "--owner", GATE_OWNER,
        "--public-key", GATE_PUBLIC_KEY)
    cli(mpr, url, ADMIN, "catalog", "set", str(ROOT / "examples/catalog/staging.json"))
    cli(mpr, url, ADMIN, "catalog", "set", str(prod_catalog_without(tmp, "merchant_risk")))


def publish_and_approve(mpr: str, url: str, version: str, publisher: str = PUBLISHER) -> None:
    bundle = ROOT / f"examples/bundles/{BUNDLE}-{version}.publish.json"
    cli(mpr, url, publisher, "publish", str(bundle))
    cli(mpr, url, APPROVER, "nominate", f"{BUNDLE}@{version}")
    cli(mpr, url, APPROVER, "approve", f"{BUNDLE}@{version}")


def setup(mpr: str, url: str, tmp: Path) -> None:
    register_gate_and_catalogs(mpr, url, tmp)
    publish_and_approve(mpr, url, EARLIER)
    cli(mpr, url, DEPLOYER, "promote", f"{BUNDLE}@{EARLIER}", "--env", "staging",
        "--reason", "console walk: the version a rollback restores")
    cli(mpr, url, CAROL, "publish", str(ROOT / f"examples/bundles/{BUNDLE}-{VERSION}.publish.json"))
    cli(mpr, url, APPROVER, "nominate", f"{BUNDLE}@{VERSION}")


# ---------------------------------------------------------------- the browser

def make_driver(javascript: bool = True):
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
              "--window-size=1280,1600", "--disable-gpu", "--lang=en-US"):
        options.add_argument(a)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


class Console:
    """A signed-in browser on the console, with checks that fail with a screenshot."""

    def __init__(self, driver, base: str, artifacts: Path | None):
        self.d, self.base, self.artifacts = driver, base.rstrip("/"), artifacts
        self.shots = 0
        self.step = "start"
        if artifacts:
            artifacts.mkdir(parents=True, exist_ok=True)

    # -- plumbing
    def go(self, path: str) -> None:
        self.d.get(self.base + path)

    def path(self) -> str:
        return unquote(urlparse(self.d.current_url).path)

    def shot(self, name: str, focus: str | None = None) -> Path | None:
        """Saves a screenshot of the window, scrolled to element `focus` when given."""
        if not self.artifacts:
            return None
        if focus:
            from selenium.webdriver.common.by import By
            found = self.d.find_elements(By.ID, focus)
            try:
                if found:
                    self.d.execute_script("arguments[0].scrollIntoView({block: 'start'})",
                                          found[0])
            except Exception:  # noqa: BLE001 - a screenshot of the top will do
                pass
        self.shots += 1
        p = self.artifacts / f"{self.shots:02d}-{name}.png"
        self.d.save_screenshot(str(p))
        return p

    def fail(self, msg: str) -> typing.NoReturn:
        detail = f"[{self.step}] {msg} (at {self.d.current_url})"
        if self.artifacts:
            self.d.save_screenshot(str(self.artifacts / f"FAILED-{self.step}.png"))
            (self.artifacts / f"FAILED-{self.step}.html").write_text(self.d.page_source)
            detail += f"; screenshot and HTML in {self.artifacts}/FAILED-{self.step}.*"
        raise WalkFailed(detail)

    def el(self, elem_id: str, timeout: float = WAIT_S):
        from selenium.common.exceptions import (NoSuchElementException,
                                                StaleElementReferenceException,
                                                TimeoutException)
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        def present(d):
            # Looked for again while the document is being replaced (see `replaced`).
            try:
                return d.find_element(By.ID, elem_id)
            except (NoSuchElementException, StaleElementReferenceException):
                return False
            except Exception as e:  # noqa: BLE001 - only a replaced document is retried
                if replaced(e):
                    return False
                raise
        try:
            return WebDriverWait(self.d, timeout).until(present)
        except TimeoutException:
            self.fail(f"no element id={elem_id!r} within {timeout:g} s")

    def absent(self, elem_id: str) -> None:
        from selenium.webdriver.common.by import By
        if self.d.find_elements(By.ID, elem_id):
            self.fail(f"element id={elem_id!r} should not be on this page")

    def text(self, elem_id: str) -> str:
        # textContent, not .text: a section may be partly outside the visible area.
        return self.read(lambda: (self.el(elem_id).get_attribute("textContent") or "").strip())

    def read(self, f: typing.Callable[[], T]) -> T:
        """Runs a read of the page, once more (up to 5 tries) when the document it found
        elements in was replaced meanwhile. Only that error is retried: a missing element
        or a wrong text still fails at once."""
        import time
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
        for attempt in range(5):
            try:
                return f()
            except StaleElementReferenceException:
                pass
            except WebDriverException as e:
                if not replaced(e):
                    raise
            if attempt == 4:
                self.fail("the page kept being replaced while it was read")
            time.sleep(0.2)
            self.settle("the replaced page")
        raise AssertionError("unreachable")

    def has(self, elem_id: str, *needles: str) -> str:
        t = self.text(elem_id)
        for n in needles:
            if n not in t:
                self.fail(f"#{elem_id} does not contain {n!r}; it reads: {squash(t)[:400]!r}")
        return t

    def fill(self, elem_id: str, value: str) -> None:
        # Through `read`: the document may be replaced once more after it looked loaded,
        # and clearing first makes a second try type the value once.
        def once() -> None:
            e = self.el(elem_id)
            e.clear()
            e.send_keys(value)
        self.read(once)

    def click(self, elem_id: str) -> None:
        self.read(lambda: self.el(elem_id).click())

    def submit(self, elem_id: str) -> None:
        """Clicks a submit button and waits until the next page replaced this one."""
        from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
        old = self.read(lambda: self.d.find_element(By.TAG_NAME, "html"))
        # A stale element fails before the click is sent, so a retry cannot submit twice.
        self.read(lambda: self.el(elem_id).click())

        def gone(_d) -> bool:
            # EC.staleness_of, except that Chromium may report the old document's element
            # as "does not belong to the document" rather than stale: gone either way.
            try:
                old.is_enabled()
                return False
            except StaleElementReferenceException:
                return True
            except Exception as e:  # noqa: BLE001 - only a replaced document means gone
                if replaced(e):
                    return True
                raise
        try:
            WebDriverWait(self.d, WAIT_S).until(gone)
        except TimeoutException:
            self.fail(f"clicking #{elem_id} loaded no new page within {WAIT_S} s")
        self.settle(f"the page after clicking #{elem_id}")

    def settle(self, what: str) -> None:
        """Waits until the current document has finished loading. Right after a form's
        POST and its 303, the old page is gone but the next one may still be parsing (or,
        with Chromium, replaced once more as the redirect commits): reading it then fails
        with "Node with given id does not belong to the document"."""
        from selenium.common.exceptions import TimeoutException, WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        def loaded(d) -> bool:
            try:
                return d.execute_script("return document.readyState") == "complete"
            except WebDriverException:  # the document went away mid-call: ask again
                return False
        try:
            WebDriverWait(self.d, WAIT_S).until(loaded)
        except TimeoutException:
            self.fail(f"{what} did not finish loading within {WAIT_S} s")

    def wait_path(self, pred: typing.Callable[[str], bool], what: str) -> None:
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait
        try:
            WebDriverWait(self.d, WAIT_S).until(lambda d: pred(self.path()))
        except TimeoutException:
            self.fail(f"expected to arrive at {what}, still at {self.path()}")

    # -- console actions
    def sign_in(self, token: str, actor: str) -> None:
        if not self.path().startswith("/ui/login"):
            self.go("/ui/login")
        self.el("login-form")
        kind = self.read(lambda: self.el("token").get_attribute("type"))
        if kind != "password":
            self.fail(f"#token is type={kind!r}, expected password")
        self.fill("token", token)
        self.submit("login-submit")
        self.wait_path(lambda p: p.startswith("/ui/bundles"), "/ui/bundles after sign-in")
        self.has("whoami", actor)

    def sign_out(self) -> None:
        self.submit("logout")
        self.wait_path(lambda p: p.startswith("/ui/login"), "/ui/login after sign-out")
        self.el("login-form")

    def version_page(self, bundle_id: str = BUNDLE, version: str = VERSION) -> None:
        self.go(f"/ui/bundles/{bundle_id}/versions/{version}")
        self.el("manifest")


def replaced(e: Exception) -> bool:
    """Whether a WebDriver error says the document an element was found in was replaced
    meanwhile: Chromium reports it as an inspector error, not as a stale element, right
    after a form's POST and its 303 (the next page may be committed more than once)."""
    return "does not belong to the document" in str(e)


def where(e: BaseException) -> str:
    """The innermost line of this file an exception passed through, to tell which step of
    a walk a WebDriver error came from."""
    import traceback
    mine = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == __file__]
    return f"line {mine[-1].lineno} ({mine[-1].line})" if mine else "?"


def squash(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


def floor_minute_before(t: dt.datetime) -> str:
    """A datetime-local value (UTC, whole minutes, so any step attribute accepts it)
    strictly before t."""
    t = t.replace(second=0, microsecond=0) - dt.timedelta(minutes=1)
    return t.strftime("%Y-%m-%dT%H:%M")


# ---------------------------------------------------------------- the walk

def walk(c: Console, before_setup: dt.datetime) -> None:
    from selenium.webdriver.common.by import By

    version_path = f"/ui/bundles/{BUNDLE}/versions/{VERSION}"

    c.step = "1-sign-in-carol"
    c.go("/ui/login")
    c.sign_in(CAROL, "carol")
    c.shot("signed-in-carol")

    c.step = "2-find-bundle"
    form = c.el("bundle-filters")
    q = form.find_elements(By.NAME, "q")
    if not q:
        c.fail("#bundle-filters has no input name=q")
    q[0].clear()
    q[0].send_keys("fraud")
    c.submit("apply-filters")
    c.wait_path(lambda p: p == "/ui/bundles", "/ui/bundles")
    if "q=fraud" not in c.d.current_url:
        c.fail("applying the filters did not put q=fraud in the URL")
    table = c.el("bundles")
    links = table.find_elements(By.LINK_TEXT, f"{BUNDLE}@{VERSION}")
    if not links:
        c.fail(f"#bundles has no link {BUNDLE}@{VERSION}: {squash(table.get_attribute('textContent'))[:400]!r}")
    href = unquote(urlparse(links[0].get_attribute("href")).path)
    if href != version_path:
        c.fail(f"the {BUNDLE}@{VERSION} link goes to {href}, expected {version_path}")
    c.shot("bundles-filtered")
    links[0].click()
    c.wait_path(lambda p: p == version_path, version_path)
    c.el("manifest")
    if "Not verified" in c.has("receipt", "verified"):
        c.fail(f"#receipt says the gate receipt is not verified: {squash(c.text('receipt'))[:300]!r}")
    c.el("bindings")
    c.el("timeline")
    c.el("form-approve")  # carol is an approver: the form is offered, the decision refuses

    c.step = "3-carol-approve-refused"
    c.fill("reason-approve", "carol tries to approve her own bundle")
    c.submit("do-approve")
    t = c.has("refusal-approve", "SEPARATION_OF_DUTIES", "published")
    if c.el("refusal-approve").get_attribute("role") != "alert":
        c.fail("#refusal-approve has no role=alert")
    if not squash(t).rstrip(".").endswith("(SEPARATION_OF_DUTIES)"):
        c.fail(f"#refusal-approve does not end with the code in parentheses: {squash(t)!r}")
    c.shot("carol-approve-refused", focus="actions")

    c.step = "4-alice-approves"
    c.sign_out()
    c.sign_in(APPROVER, "alice")
    c.version_page()
    reason = "alice: offline eval and fairness slices reviewed"
    c.fill("reason-approve", reason)
    c.submit("do-approve")
    c.el("notice")
    if c.el("notice").get_attribute("role") != "status":
        c.fail("#notice has no role=status")
    if c.path() != version_path:
        c.fail(f"after approving, at {c.path()}, expected {version_path}")
    c.has("timeline", "BUNDLE_APPROVED", "alice", reason)
    c.shot("alice-approved")

    c.step = "5-bob-dry-run-prod"
    c.sign_out()
    c.sign_in(DEPLOYER, "bob")
    c.version_page()
    for action in ("approve", "nominate", "reject"):
        c.absent(f"form-{action}")
    dry_run(c, "prod", "*", "bob: prod dry run")
    c.has("dry-run-result", "INCOMPATIBLE", "merchant_risk")
    c.absent("do-promote")
    c.shot("bob-dry-run-prod-refused")

    c.step = "6-bob-promotes-staging"
    c.version_page()
    dry_run(c, "staging", "*", "bob: staging rollout of 1.0.0")
    c.has("dry-run-result", "would be accepted")
    c.el("form-promote-confirm")
    c.shot("bob-dry-run-staging-accepted")
    c.submit("do-promote")
    c.wait_path(lambda p: p.startswith("/ui/scopes/"), "the scope page after promoting")

    c.step = "7-scope-current"
    scope = f"/ui/scopes/staging/*/{BUNDLE}"
    if c.path() != scope:
        c.fail(f"promoting redirected to {c.path()}, expected {scope}")
    got = bound_version(c, "PRIMARY")
    if got != VERSION:
        c.fail(f"#current shows {got!r} bound in PRIMARY, expected {VERSION}")
    c.shot("scope-after-promotion")
    as_of = c.el("as-of")
    if as_of.get_attribute("type") != "datetime-local" or as_of.get_attribute("name") != "as_of":
        c.fail(f"#as-of is type={as_of.get_attribute('type')!r} name={as_of.get_attribute('name')!r}")
    # datetime-local is typed differently per locale; set its value the way a picker does.
    c.d.execute_script("arguments[0].value = arguments[1]", as_of,
                       floor_minute_before(before_setup))
    c.submit("apply-as-of")
    r = c.text("as-of-result")
    if VERSION in r or EARLIER in r or not re.search(
            r"nothing|no active|none|not active|NO_ACTIVE_BUNDLE|no bundle", r, re.I):
        c.fail(f"#as-of-result before the set-up should say nothing was active: {squash(r)[:400]!r}")
    c.shot("scope-as-of-before")

    c.step = "8-bob-rolls-back"
    c.go(scope)
    c.fill("reason-rollback", "bob: p99 regression in staging")
    c.submit("do-rollback")
    c.el("notice")
    rows = c.read(lambda: [x.get_attribute("textContent") or ""
                           for x in c.d.find_elements(By.CSS_SELECTOR, "#history .rollback")])
    if not rows or not any("ROLLBACK" in x for x in rows):
        c.fail(f"#history has no row of class rollback containing ROLLBACK: "
               f"{squash(c.text('history'))[:400]!r}")
    got = bound_version(c, "PRIMARY")
    if got != EARLIER:
        c.fail(f"after the rollback #current shows {got!r} bound in PRIMARY, expected {EARLIER}")
    c.shot("scope-after-rollback")

    c.step = "9-timeline-and-audit"
    c.version_page()
    # Carol's refused attempt is on the record too.
    c.has("timeline", "BUNDLE_REGISTERED", "BUNDLE_NOMINATED", "COMMAND_REJECTED",
          "BUNDLE_APPROVED", "BUNDLE_PROMOTED", "BUNDLE_ROLLED_BACK", "bob")
    c.shot("timeline", focus="timeline")
    c.go(f"/ui/audit?bundle_id={BUNDLE}")
    c.has("events", "BUNDLE_APPROVED", "BUNDLE_PROMOTED", "BUNDLE_ROLLED_BACK")
    v = c.text("audit-verification")
    if not v.startswith("Verified"):
        c.fail(f"#audit-verification does not start with 'Verified': {squash(v)[:300]!r}")
    c.shot("audit")


def bound_version(c: Console, slot: str) -> str | None:
    """The version #current shows in the row of `slot`: the first cell of that row that
    is a version number (later cells may list the rollback stack)."""
    from selenium.webdriver.common.by import By
    table = c.read(lambda: [[squash(x.get_attribute("textContent") or "")
                             for x in row.find_elements(By.XPATH, "./td|./th")]
                            for row in c.el("current").find_elements(By.TAG_NAME, "tr")])
    for cells in table:
        if slot in cells:
            for t in cells:
                if re.fullmatch(r"\d+\.\d+\.\d+(?:[-+][\w.+-]*)?", t):
                    return t
            return None
    c.fail(f"#current has no row for {slot}: {squash(c.text('current'))[:300]!r}")


def dry_run(c: Console, env: str, tenant: str, reason: str) -> None:
    from selenium.common.exceptions import NoSuchElementException
    from selenium.webdriver.support.ui import Select
    c.el("form-promote")
    c.fill("promote-env", env)
    c.fill("promote-tenant", tenant)
    slot = Select(c.el("promote-slot"))
    try:
        slot.select_by_value("PRIMARY")
    except NoSuchElementException:
        slot.select_by_visible_text("PRIMARY")
    c.fill("reason-promote", reason)
    c.submit("do-dry-run")
    c.el("dry-run-result")


def other_pages(c: Console) -> None:
    c.step = "extra-catalog"
    c.go("/ui/catalog")
    c.has("catalog-staging", "merchant_risk")
    prod = c.text("catalog-prod")
    if "merchant_risk" in prod or "txn_velocity" not in prod:
        c.fail(f"#catalog-prod should list txn_velocity and not merchant_risk: {squash(prod)[:300]!r}")
    c.shot("catalog")
    c.step = "extra-operations"
    c.go("/ui/operations")
    ready = c.text("readiness")
    if "ready" not in ready.lower() or "not ready" in ready.lower():
        c.fail(f"#readiness does not say ready: {squash(ready)[:200]!r}")
    c.el("view-lag")
    c.el("last-event")
    c.shot("operations")


def read_without_javascript(base: str, artifacts: Path | None) -> None:
    from selenium.webdriver.common.by import By
    d = make_driver(javascript=False)
    try:
        c = Console(d, base, artifacts)
        c.shots = 90
        c.step = "nojs-read"
        try:
            c.go("/ui/login")
            c.sign_in(APPROVER, "alice")
            c.go("/ui/bundles")
            if not c.el("bundles").find_elements(By.LINK_TEXT, f"{BUNDLE}@{VERSION}"):
                c.fail(f"without JavaScript, #bundles has no link {BUNDLE}@{VERSION}")
            c.version_page()
            c.has("timeline", "BUNDLE_APPROVED")
            c.has("receipt", "verified")
            c.shot("nojs-version-page", focus="timeline")
        except WalkFailed:
            raise
        except Exception as e:
            c.fail(f"{type(e).__name__} at {where(e)}: {str(e).strip()[:500]}")
    finally:
        d.quit()


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    base, mpr = sys.argv[1].rstrip("/"), sys.argv[2]
    default = Path(os.environ.get("MPR_ARTIFACTS", ROOT / "target/test-artifacts")) / "console"
    os.environ.pop("MPR_ARTIFACTS", None)  # mpr would take it for configuration
    artifacts = Path(sys.argv[3]) if len(sys.argv) > 3 else default
    artifacts.mkdir(parents=True, exist_ok=True)
    for old in artifacts.glob("*.png"):
        old.unlink()
    for old in artifacts.glob("FAILED-*"):
        old.unlink()
    try:
        before_setup = dt.datetime.now(dt.timezone.utc)
        with tempfile.TemporaryDirectory(prefix="mpr-console-walk-") as tmp:
            setup(mpr, base, Path(tmp))
        driver = make_driver()
        try:
            c = Console(driver, base, artifacts)
            try:
                walk(c, before_setup)
                other_pages(c)
            except WalkFailed:
                raise
            except Exception as e:  # a WebDriver error: keep what the browser showed
                c.fail(f"{type(e).__name__} at {where(e)}: {str(e).strip()[:500]}")
        finally:
            driver.quit()
        read_without_javascript(base, artifacts)
    except WalkFailed as e:
        print(f"console_walk: FAILED: {e}", file=sys.stderr)
        return 1
    print(f"console_walk: 9 steps passed; catalog, operations and JavaScript-off reads "
          f"passed (screenshots in {artifacts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
