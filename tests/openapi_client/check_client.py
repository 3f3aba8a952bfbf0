#!/usr/bin/env python3
"""Drives a running registry with a client generated from contracts/openapi.json.

    python3 tests/openapi_client/check_client.py URL [MPR_BINARY]

Generates a Python client with openapi-python-client (a stock generator) into a temporary
directory, imports it, and with it publishes examples/bundles/fraud-scorer-1.1.0, nominates
and approves it as alice, promotes it into staging as bob and resolves it as the reader.
The gate key and the staging catalog are set up with the `mpr` CLI (MPR_BINARY, default
$MPR or ${CARGO_TARGET_DIR:-target}/debug/mpr); every other call goes through the
generated client. The registry should be fresh (scripts/console_check.sh starts one).
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import typing
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "contracts" / "openapi.json"
BUNDLE_FILE = ROOT / "examples" / "bundles" / "fraud-scorer-1.1.0.publish.json"
STAGING_CATALOG = ROOT / "examples" / "catalog" / "staging.json"
GATE_OWNER = "fraud-offline-eval-v4"
GATE_PUBLIC_KEY = "43ebc75c39cd5692b3589c901242096f0247cfe84a46b7596f4e384d482a0a5d"

ADMIN = "dev-admin-token"
PUBLISHER = "dev-publisher-token"
APPROVER = "dev-approver-token"
DEPLOYER = "dev-deployer-token"
READER = "dev-reader-token"

OPERATIONS = ["post_publish", "post_lifecycle", "post_promote", "post_promote_dry_run",
              "get_resolve", "get_bundle", "get_command_result"]


class CheckFailed(Exception):
    pass


def fail(msg: str) -> typing.NoReturn:
    raise CheckFailed(msg)


def default_mpr() -> str:
    if os.environ.get("MPR"):
        return os.environ["MPR"]
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(Path(target) / "debug" / "mpr")


def cli(mpr: str, url: str, token: str, *args: str) -> str:
    p = subprocess.run([mpr, "--url", url, "--token", token, *args],
                       capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        fail(f"mpr {' '.join(args)} exited {p.returncode}: {p.stderr.strip() or p.stdout.strip()}")
    return p.stdout


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- the generated client

def generate(workdir: Path) -> tuple[typing.Any, list[str]]:
    """Generates the client into workdir and imports its package; returns it and the
    generator's warnings."""
    cfg = workdir / "openapi-python-client.yaml"
    cfg.write_text("post_hooks: []\n")  # no ruff formatting: not needed to import it
    out = workdir / "mpr_api_client"
    exe = shutil.which("openapi-python-client")
    cmd = [exe] if exe else [sys.executable, "-m", "openapi_python_client"]
    p = subprocess.run(cmd + ["generate", "--path", str(SPEC), "--output-path", str(out),
                              "--meta", "none", "--config", str(cfg)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        fail(f"openapi-python-client failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    warnings = [line.strip() for line in (p.stdout + p.stderr).splitlines()
                if line.strip().startswith("WARNING")]
    # With --meta none the output directory is the package; other layouts nest it.
    candidates = [out] + sorted(d for d in out.rglob("*") if d.is_dir())
    pkg_dir = next((d for d in candidates
                    if (d / "client.py").is_file() and (d / "api").is_dir()), None)
    if pkg_dir is None:
        fail(f"no package (client.py next to api/) under {out}")
    sys.path.insert(0, str(pkg_dir.parent))
    pkg = importlib.import_module(pkg_dir.name)
    return pkg, warnings


def operation(pkg: typing.Any, op_id: str) -> typing.Any:
    """The module of one operation: <pkg>.api.<tag>.<op_id>, whatever the tag."""
    api_dir = Path(pkg.__file__).parent / "api"
    hits = sorted(api_dir.rglob(f"{op_id}.py"))
    if not hits:
        fail(f"the generated client has no operation {op_id} (under {api_dir})")
    rel = hits[0].relative_to(api_dir.parent).with_suffix("")
    return importlib.import_module(pkg.__name__ + "." + ".".join(rel.parts))


def body_type(mod: typing.Any) -> typing.Any | None:
    """The model class of an operation's `body` parameter, or None when it takes none."""
    hints = typing.get_type_hints(mod.sync_detailed)
    if "body" not in hints:
        return None
    t = hints["body"]
    for c in (t, *typing.get_args(t)):
        if hasattr(c, "from_dict"):
            return c
    fail(f"{mod.__name__}: body type {t!r} has no model with from_dict")


def value(x: typing.Any) -> typing.Any:
    return getattr(x, "value", x)


class Api:
    def __init__(self, pkg: typing.Any, url: str):
        self.pkg, self.url = pkg, url
        self.ops = {op: operation(pkg, op) for op in OPERATIONS}
        self.client_mod = importlib.import_module(pkg.__name__ + ".client")

    def client(self, token: str) -> typing.Any:
        import httpx
        return self.client_mod.AuthenticatedClient(
            base_url=self.url, token=token, timeout=httpx.Timeout(30.0),
            raise_on_unexpected_status=False)

    def call(self, op: str, token: str, command_id: str | None = None, **kw: typing.Any):
        """sync_detailed of one operation. A command the registry has not decided within
        its timeout is answered 202 (PendingCommand): then its result is polled with
        get_command_result."""
        c = self.client(token)
        try:
            r = self.ops[op].sync_detailed(client=c, **kw)
        except (KeyError, TypeError, ValueError) as e:
            fail(f"{op}: the generated client could not parse the answer: {e!r}")
        if int(r.status_code) != 202:
            return r
        pending = getattr(r.parsed, "command_id", None) or command_id
        if pending is None:
            fail(f"{op}: 202 without a command_id: {r.content[:300]!r}")
        for _ in range(30):
            r = self.ops["get_command_result"].sync_detailed(str(pending), client=c, wait_ms=1000)
            if int(r.status_code) != 404 and int(r.status_code) != 202:
                return r
            time.sleep(0.5)
        fail(f"{op}: no result for command {pending} after 202")


def expect(r: typing.Any, status: int, what: str) -> typing.Any:
    if int(r.status_code) != status:
        fail(f"{what}: HTTP {int(r.status_code)}, expected {status}: "
             f"{r.content.decode(errors='replace')[:600]}")
    if r.parsed is None:
        fail(f"{what}: the generated client parsed nothing from {r.content[:300]!r}")
    return r.parsed


def lifecycle(api: Api, token: str, bundle_id: str, version: str, action: str,
              reason: str, notes: list[str]) -> typing.Any:
    mod = api.ops["post_lifecycle"]
    bt = body_type(mod)
    kw: dict[str, typing.Any] = {}
    cid = None
    if bt is not None:
        cid = str(uuid.uuid4())
        kw["body"] = bt.from_dict({"command_id": cid, "reason": reason})
    elif "post_lifecycle takes no body" not in notes:
        notes.append("post_lifecycle takes no body")
    r = api.call("post_lifecycle", token, cid, bundle_id=bundle_id, version=version,
                 action=action, **kw)
    return expect(r, 200, f"post_lifecycle {action} {bundle_id}@{version}")


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    url = sys.argv[1].rstrip("/")
    mpr = sys.argv[2] if len(sys.argv) > 2 else default_mpr()
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mpr-openapi-client-") as tmp:
        pkg, warnings = generate(Path(tmp))
        notes += [f"generator: {w}" for w in warnings]
        api = Api(pkg, url)

        # Set-up the contract gives no typed body for: the gate's key and the catalog.
        cli(mpr, url, ADMIN, "key", "register", "--kind", "gate", "--owner", GATE_OWNER,
            "--public-key", GATE_PUBLIC_KEY)
        cli(mpr, url, ADMIN, "catalog", "set", str(STAGING_CATALOG))

        # Publish as the publisher.
        req = json.loads(BUNDLE_FILE.read_text())
        bundle_id = req["bundle"]["bundle_id"]
        version = req["bundle"]["bundle_version"]
        req["command_id"] = str(uuid.uuid4())
        req["submitted_at_utc"] = now_utc()
        pub_body = body_type(api.ops["post_publish"])
        if pub_body is None:
            fail("post_publish takes no body in the generated client")
        r = api.call("post_publish", PUBLISHER, req["command_id"],
                     body=pub_body.from_dict(req))
        p = expect(r, 201, "post_publish")
        if value(p.status) != "ACCEPTED":
            fail(f"post_publish: status {value(p.status)}, expected ACCEPTED")

        # Nominate and approve as alice.
        res = lifecycle(api, APPROVER, bundle_id, version, "nominate",
                        "openapi client check: nominate", notes)
        if value(res.event_type) != "BUNDLE_NOMINATED":
            fail(f"nominate: event {value(res.event_type)}")
        res = lifecycle(api, APPROVER, bundle_id, version, "approve",
                        "openapi client check: approve", notes)
        if value(res.event_type) != "BUNDLE_APPROVED":
            fail(f"approve: event {value(res.event_type)}")

        # A deployer may not approve: a typed ErrorResponse.
        kw = {}
        meta = body_type(api.ops["post_lifecycle"])
        if meta is not None:  # (openapi-python-client 0.29 sends an unset optional body
            # as the JSON of its UNSET marker, which fails: always give one)
            kw["body"] = meta.from_dict({"reason": "a deployer tries to approve"})
        r = api.call("post_lifecycle", DEPLOYER, None, bundle_id=bundle_id,
                     version=version, action="approve", **kw)
        err = expect(r, 403, "post_lifecycle approve as the deployer")
        if value(err.code) != "FORBIDDEN":
            fail(f"approve as the deployer: code {value(err.code)}, expected FORBIDDEN")

        # Promote into staging as bob.
        promote_body = body_type(api.ops["post_promote"])
        if promote_body is None:
            fail("contracts/openapi.json gives post_promote (POST /v1/promotions) no "
                 "requestBody, so the generated client cannot send a promotion")
        cid = str(uuid.uuid4())
        # PromoteBody: the PROMOTE payload (degrade false: the PRIMARY slot) plus meta.
        promotion = {"command_id": cid, "bundle_id": bundle_id, "bundle_version": version,
                     "environment": "staging", "tenant_id": "*", "degrade": False,
                     "reason": "openapi client check: promote"}
        try:
            body = promote_body.from_dict(promotion)
        except Exception as e:  # the model does not describe what the route takes
            fail(f"post_promote: the generated {promote_body.__name__} does not take "
                 f"{sorted(promotion)}: {e!r}")
        sent = body.to_dict()
        missing = sorted(k for k in promotion if k not in sent)
        if missing:
            fail(f"post_promote: the generated {promote_body.__name__} drops {missing}")

        # The dry run first: it would be accepted, and nothing is written.
        dry_body = body_type(api.ops["post_promote_dry_run"])
        if dry_body is None:
            fail("post_promote_dry_run takes no body in the generated client")
        r = api.call("post_promote_dry_run", DEPLOYER,
                     body=dry_body.from_dict({k: v for k, v in promotion.items()
                                              if k != "command_id"}))
        dry = expect(r, 200, "post_promote_dry_run")
        if value(dry.outcome) != "ACCEPTED":
            fail(f"post_promote_dry_run: outcome {value(dry.outcome)}: {r.content[:400]!r}")
        # Into a scope whose environment has no catalog: refused, still 200.
        refused = dict(promotion, environment="prod")
        del refused["command_id"]
        r = api.call("post_promote_dry_run", DEPLOYER, body=dry_body.from_dict(refused))
        dry = expect(r, 200, "post_promote_dry_run prod")
        if value(dry.outcome) != "REJECTED" or not isinstance(dry.error, object) \
                or getattr(dry.error, "code", None) is None:
            fail(f"post_promote_dry_run prod: expected REJECTED with an error: {r.content[:400]!r}")
        dry_code = value(dry.error.code)

        r = api.call("post_promote", DEPLOYER, cid, body=body)
        res = expect(r, 200, "post_promote")
        if value(res.event_type) != "BUNDLE_PROMOTED":
            fail(f"promote: event {value(res.event_type)}")

        # The bundle's state, as the reader.
        b = api.call("get_bundle", READER, bundle_id=bundle_id, version=version)
        rec = expect(b, 200, "get_bundle")
        state = value(getattr(rec, "state", None))
        if state != "ACTIVE":
            fail(f"get_bundle: state {state!r}, expected ACTIVE: {b.content[:300]!r}")

        # Resolve as the reader (the view has the promotion: its result was answered).
        resolved = None
        for _ in range(25):
            r = api.call("get_resolve", READER, environment="staging",
                         bundle_id=bundle_id, tenant_id="acme")
            if int(r.status_code) == 200:
                resolved = expect(r, 200, "get_resolve")
                break
            time.sleep(0.2)
        if resolved is None:
            expect(r, 200, "get_resolve staging")
        got = resolved.active_bundle_ref.bundle_version
        if got != version:
            fail(f"get_resolve: active_bundle_ref.bundle_version {got}, expected {version}")

        # Nothing in prod: NO_ACTIVE_BUNDLE as a typed ErrorResponse.
        r = api.call("get_resolve", READER, environment="prod", bundle_id=bundle_id)
        err = expect(r, 404, "get_resolve prod")
        if value(err.code) != "NO_ACTIVE_BUNDLE":
            fail(f"get_resolve prod: code {value(err.code)}, expected NO_ACTIVE_BUNDLE")

    extra = f" (notes: {'; '.join(notes)})" if notes else ""
    print(f"check_client: generated client {pkg.__name__} published, nominated, approved, "
          f"dry-ran (staging ACCEPTED, prod {dry_code}), promoted {bundle_id}@{version} to "
          f"staging (state {state}) and resolved it{extra}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as e:
        print(f"check_client: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
