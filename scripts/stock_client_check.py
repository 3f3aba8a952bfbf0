"""Stock-client checks of MPR through the real broker, with Python's confluent-kafka.

It is also the documented signing example (README, "Who can change what, and how you can
prove it"): a producer that signs its own commands with Ed25519 (the `cryptography`
package) over the RFC 8785 form of the JSON envelope (the `rfc8785` package), inside a
DSSE pre-authentication encoding (scripts/mpr_signing.py), and sends the signature in the
`mpr-signature` header.

Each check fails if the protection it names is removed:
  1. a command signed by a registered key of its actor is ACCEPTED; its event records the key
  2. an unsigned command is refused (UNAUTHENTICATED), and the refusal is an event
  3. a command signed with another principal's key is refused
  4. a command naming platform-admin but signed by the publisher is refused
  5. a self-asserted PASS receipt (unsigned, or signed by a non-gate key) is refused
     (GATE_RECEIPT_UNVERIFIED)
  6. a forged, correctly chained and hashed PROMOTE event appended to the events topic leaves
     resolve unchanged, is counted, does not stop the family, and `mpr verify-audit` flags it
  7. a signed checkpoint (GET /v1/audit/checkpoints) taken before the forgery still holds
     (`verify-audit --checkpoint`), and one altered after signing is refused
  8. a forged, correctly chained and hashed KEY_REGISTERED appended to the catalog log, giving
     an attacker's key to platform-admin, gives it nothing: a command signed with that key
     is refused (UNAUTHENTICATED), and `mpr verify-audit` flags the record

Usage: stock_client_check.py BROKERS URL PREFIX MPR_BINARY CONFIG
(the registry was started with CONFIG and MPR_* overrides this script also passes on).
"""
import copy, hashlib, io, json, os, subprocess, sys, time, urllib.error, urllib.request, uuid

import fastavro
import rfc8785
from confluent_kafka import Consumer, Producer, TopicPartition

brokers, url, prefix, mpr_bin, config = sys.argv[1:6]
ADMIN, APPROVER, DEPLOYER, READER = ("dev-admin-token", "dev-approver-token",
                                     "dev-deployer-token", "dev-reader-token")


# --- signing, as MPR2 §8 defines it: scripts/mpr_signing.py -----------------------------
from mpr_signing import Key, sign_command, sign_receipt  # noqa: E402


# --- talking to the registry -------------------------------------------------------------
producer = Producer({"bootstrap.servers": brokers})


def send(command: dict, signature: str | None):
    headers = [("content-type", b"application/json")]
    if signature is not None:
        headers.append(("mpr-signature", signature.encode()))
    key = command["payload"].get("bundle", command["payload"]).get("bundle_id", "__platform_catalog__")
    producer.produce(f"{prefix}commands", key=key, value=json.dumps(command), headers=headers)
    producer.flush(30)


def http(method: str, path: str, token: str, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{url}{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def result_of(command_id: str) -> dict:
    deadline = time.time() + 60
    while time.time() < deadline:
        status, body = http("GET", f"/v1/commands/{command_id}", READER)
        if status == 200:
            return body
        time.sleep(0.2)
    raise AssertionError(f"no result for {command_id}")


def command(actor: str, command_type: str, payload: dict) -> dict:
    return {"command_id": str(uuid.uuid4()), "actor": actor,
            "submitted_at_utc": "2026-12-01T09:00:00.000Z",
            "command_type": command_type, "payload": payload}


def expect(c: dict, signature, outcome: str, code: str | None = None) -> dict:
    send(c, signature)
    r = result_of(c["command_id"])
    assert r["outcome"] == outcome, (c["command_type"], r)
    if code is not None:
        assert r["error"]["code"] == code, r
    return r


def register(kind: str, owner: str, key: Key):
    status, body = http("POST", "/v1/commands", ADMIN, {
        "command_type": "REGISTER_KEY",
        "payload": {"owner_kind": kind, "owner": owner, "public_key": key.public_hex}})
    assert status in (200, 201), (status, body)


def events(partition: int, log: str = "events") -> list[tuple[int, bytes, dict]]:
    """Every record of one partition of the events (or catalog) log: (offset, raw value,
    decoded event)."""
    schema = fastavro.parse_schema(json.load(open("schemas/registry_event.avsc")))
    c = Consumer({"bootstrap.servers": brokers, "group.id": f"stock-{uuid.uuid4()}",
                  "enable.auto.commit": False})
    low, high = c.get_watermark_offsets(TopicPartition(f"{prefix}{log}", partition), timeout=10)
    c.assign([TopicPartition(f"{prefix}{log}", partition, low)])
    out = []
    while len(out) < high - low:
        m = c.poll(5.0)
        assert m is not None, "events topic read timed out"
        if m.error() is None:
            v = m.value()
            out.append((m.offset(), v, fastavro.schemaless_reader(io.BytesIO(v[10:]), schema)))
    c.close()
    return out


def event_hash(e: dict) -> str:
    """SHA-256 over the RFC 8785 form of the event without hash and signature, and without
    the fields added with the autopilot while at their defaults (MPR2 §8.5)."""
    body = {k: v for k, v in e.items() if k not in ("hash", "signature")}
    if body.get("autopilot", 0) is None:
        del body["autopilot"]
    if isinstance(body.get("binding"), dict) and body["binding"].get("cleared") is False:
        body["binding"] = {k: v for k, v in body["binding"].items() if k != "cleared"}
    return hashlib.sha256(rfc8785.dumps(body)).hexdigest()


def resolve(env: str, family: str) -> str:
    status, body = http("GET", f"/v1/resolve?environment={env}&bundle_id={family}", READER)
    assert status == 200, (status, body)
    return body["active_bundle_ref"]["bundle_version"]


# --- the checks --------------------------------------------------------------------------
publisher, alice_key, gate = Key(), Key(), Key()
register("PRINCIPAL", "model-factory", publisher)
register("PRINCIPAL", "alice", alice_key)
register("GATE", "stock-eval", gate)

req = json.load(open("examples/bundles/fraud-scorer-1.0.0.publish.json"))
bundle = req["bundle"]
assert hashlib.sha256(rfc8785.dumps(bundle)).hexdigest() == req["gate_receipt"]["bundle_digest"]


def version(v: str) -> tuple[dict, dict]:
    b = dict(bundle, bundle_version=v)
    digest = hashlib.sha256(rfc8785.dumps(b)).hexdigest()
    r = dict(req["gate_receipt"], bundle_version=v, bundle_digest=digest,
             receipt_id=f"stock-{v}-{uuid.uuid4()}", gate_name="stock-eval")
    r.pop("signature", None)
    return b, r


# 1. Signed by the publisher's registered key: accepted, and the event names the key.
b1, r1 = version("7.0.0")
c = command("model-factory", "PUBLISH", {"bundle": b1, "gate_receipt": sign_receipt(r1, gate)})
ok = expect(c, sign_command(c, publisher), "ACCEPTED")
ev = [e for _, _, e in events(ok["partition"]) if e["command_id"] == c["command_id"]][0]
assert ev["signed_by"] == publisher.keyid and ev["via"] is None, ev
print(f"1 signed publish accepted; event seq {ev['seq']} signed_by {publisher.keyid[:12]}…")

# 2. Unsigned: refused, and the refusal is recorded.
b2, r2 = version("7.0.1")
c = command("model-factory", "PUBLISH", {"bundle": b2, "gate_receipt": sign_receipt(r2, gate)})
expect(c, None, "REJECTED", "UNAUTHENTICATED")
print("2 unsigned command refused: UNAUTHENTICATED")

# 3. Signed with another principal's (alice's) key.
c = command("model-factory", "PUBLISH", {"bundle": b2, "gate_receipt": sign_receipt(r2, gate)})
expect(c, sign_command(c, alice_key), "REJECTED", "UNAUTHENTICATED")
print("3 command signed with another principal's key refused: UNAUTHENTICATED")

# 4. Naming platform-admin, signed by the publisher.
c = command("platform-admin", "RETIRE", {"bundle_id": bundle["bundle_id"], "bundle_version": "7.0.0"})
c["payload"]["bundle_id"] = bundle["bundle_id"]
expect(c, sign_command(c, publisher), "REJECTED", "UNAUTHENTICATED")
print("4 command naming platform-admin signed by the publisher refused: UNAUTHENTICATED")

# 5. A self-asserted PASS: unsigned, then signed by a key that is not the gate's.
c = command("model-factory", "PUBLISH", {"bundle": b2, "gate_receipt": r2})
expect(c, sign_command(c, publisher), "REJECTED", "GATE_RECEIPT_UNVERIFIED")
c = command("model-factory", "PUBLISH", {"bundle": b2, "gate_receipt": sign_receipt(r2, publisher)})
expect(c, sign_command(c, publisher), "REJECTED", "GATE_RECEIPT_UNVERIFIED")
print("5 self-asserted PASS receipts refused: GATE_RECEIPT_UNVERIFIED")

# 6. A forged PROMOTE. Two real promotions (7.0.0, then 7.1.0) through the API.
b3, r3 = version("7.1.0")
c = command("model-factory", "PUBLISH", {"bundle": b3, "gate_receipt": sign_receipt(r3, gate)})
expect(c, sign_command(c, publisher), "ACCEPTED")
status, body = http("PUT", "/v1/catalog/prod", ADMIN, json.load(open("examples/catalog/prod.json")))
assert status in (200, 201), body
fam = bundle["bundle_id"]
for v in ("7.0.0", "7.1.0"):
    for action in ("nominate", "approve"):
        status, body = http("POST", f"/v1/bundles/{fam}/versions/{v}/{action}", APPROVER, {})
        assert status in (200, 201), (action, status, body)
    status, body = http("POST", "/v1/promotions", DEPLOYER,
                        {"bundle_id": fam, "bundle_version": v, "environment": "prod"})
    assert status in (200, 201), (status, body)
partition = body["partition"]
assert resolve("prod", fam) == "7.1.0"
log = events(partition)
head = log[-1][2]
first_promotion = [e for _, _, e in log
                   if e["event_type"] == "BUNDLE_PROMOTED" and e["bundle_version"] == "7.0.0"][0]
assert event_hash(head) == head["hash"], "this script must compute hashes as the registry does"
# What the API submitted records both parties: the token's actor, and the gateway.
api_promotion = [e for _, _, e in log
                 if e["event_type"] == "BUNDLE_PROMOTED" and e["bundle_version"] == "7.1.0"][0]
assert api_promotion["actor"] == "bob" and api_promotion["via"] == "api-gateway", api_promotion
assert len(api_promotion["signed_by"]) == 64, api_promotion
# An auditor pins the partition's state before the forgery: a signed checkpoint (C2SP note).
status, cps = http("GET", "/v1/audit/checkpoints", READER)
assert status == 200, cps
pinned = [c for c in cps["checkpoints"] if c["log"] == "events" and c["partition"] == partition][0]
assert pinned["seq"] == head["seq"], (pinned, head["seq"])
pin_file = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"mpr-checkpoint-{uuid.uuid4()}.note")
open(pin_file, "w").write(pinned["note"])
forged = copy.deepcopy(first_promotion)
forged["seq"] = head["seq"] + 1
forged["prev_hash"] = head["hash"]
forged["binding"]["previous_version"] = "7.1.0"
forged["hash"] = event_hash(forged)
schema = fastavro.parse_schema(json.load(open("schemas/registry_event.avsc")))
datum = io.BytesIO()
fastavro.schemaless_writer(datum, schema, forged)
forged_bytes = log[-1][1][:10] + datum.getvalue()
producer.produce(f"{prefix}events", partition=partition, key=fam, value=forged_bytes,
                 headers=[("mpr-command-id", forged["command_id"].encode())])
producer.flush(30)
forged_offset = log[-1][0] + 1
time.sleep(2)
assert resolve("prod", fam) == "7.1.0", "the forged promotion reached resolve"
with urllib.request.urlopen(f"{url}/metrics") as resp:
    metrics = resp.read().decode()
assert any(l.startswith("mpr_untrusted_records_total") and not l.rstrip().endswith(" 0")
           for l in metrics.splitlines()), "the forged record was not counted"
# The family is not stopped: a real rollback after the forgery is decided and served.
status, body = http("POST", "/v1/rollbacks", DEPLOYER, {"bundle_id": fam, "environment": "prod"})
assert status == 200 and body["outcome"] == "ACCEPTED", (status, body)
deadline = time.time() + 30
while resolve("prod", fam) != "7.0.0":
    assert time.time() < deadline, "the rollback after the forgery never reached resolve"
    time.sleep(0.2)
audit = subprocess.run([mpr_bin, "--config", config, "--json", "verify-audit", "--checkpoint", pin_file],
                       capture_output=True, text=True, env=os.environ)
assert audit.returncode == 2, ("verify-audit must fail (exit 2) on a forged record", audit.returncode, audit.stderr)
report = json.loads(audit.stdout)
flagged = [f for p in report if p["log"] == f"{prefix}events" and p["partition"] == partition
           for f in p["findings"] if f["kind"] == "FORGED"]
assert [f["offset"] for f in flagged] == [forged_offset], report
held = [c for p in report if p["log"] == f"{prefix}events" and p["partition"] == partition
        for c in p["checkpoints"]]
assert held and held[0]["ok"] and held[0]["seq"] == pinned["seq"], report
# A checkpoint altered after signing is refused.
open(pin_file, "w").write(pinned["note"].replace(f"\n{pinned['seq']}\n", f"\n{pinned['seq'] + 1}\n", 1))
bad = subprocess.run([mpr_bin, "--config", config, "verify-audit", "--checkpoint", pin_file],
                     capture_output=True, text=True, env=os.environ)
assert bad.returncode != 0 and "no signature line by a registry key verifies" in bad.stderr, bad.stderr
os.remove(pin_file)
print(f"6 forged chained PROMOTE at offset {forged_offset}: resolve unchanged, counted, "
      f"family not stopped, verify-audit flags it: {flagged[0]['reason']}")
print(f"7 a signed checkpoint taken before the forgery still holds (seq {pinned['seq']}); "
      "an altered one is refused")

# 8. A forged key registration on the catalog log: a copy of the publisher's KEY_REGISTERED,
# chained to the catalog head, naming platform-admin and an attacker's key, rehashed.
attacker = Key()
cat = events(0, "catalog")
cat_head = cat[-1][2]
real = [e for _, _, e in cat if e["event_type"] == "KEY_REGISTERED"
        and e["key"]["key_id"] == publisher.keyid][0]
forged_key = copy.deepcopy(real)
forged_key.update(seq=cat_head["seq"] + 1, prev_hash=cat_head["hash"],
                  command_id=str(uuid.uuid4()), event_id=str(uuid.uuid4()), actor="platform-admin")
forged_key["key"].update(key_id=attacker.keyid, owner="platform-admin",
                         public_key=attacker.public_hex, registered_seq=cat_head["seq"] + 1)
forged_key["hash"] = event_hash(forged_key)
datum = io.BytesIO()
fastavro.schemaless_writer(datum, schema, forged_key)
producer.produce(f"{prefix}catalog", partition=0, key="__platform_catalog__",
                 value=cat[-1][1][:10] + datum.getvalue(),
                 headers=[("mpr-command-id", forged_key["command_id"].encode())])
producer.flush(30)
forged_key_offset = cat[-1][0] + 1
time.sleep(2)
# Had the forgery been applied, platform-admin could now register any key with it.
c = command("platform-admin", "REGISTER_KEY",
            {"owner_kind": "PRINCIPAL", "owner": "model-factory", "public_key": Key().public_hex})
expect(c, sign_command(c, attacker), "REJECTED", "UNAUTHENTICATED")
audit = subprocess.run([mpr_bin, "--config", config, "--json", "verify-audit"],
                       capture_output=True, text=True, env=os.environ)
assert audit.returncode == 2, (audit.returncode, audit.stderr)
flagged = [f for p in json.loads(audit.stdout) if p["log"] == f"{prefix}catalog"
           for f in p["findings"] if f["kind"] == "FORGED"]
assert [f["offset"] for f in flagged] == [forged_key_offset], audit.stdout
print(f"8 forged chained KEY_REGISTERED at catalog offset {forged_key_offset}: its key signs "
      f"nothing (UNAUTHENTICATED), verify-audit flags it: {flagged[0]['reason']}")
print("stock client checks: all passed")
