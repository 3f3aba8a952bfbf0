"""Chaos soak driver for MPR (never part of the test run; scripts/chaos.sh runs it).

  python3 scripts/chaos.py run --seconds 300 --mpr target/debug/mpr
      A broker (tansu, its own data dir and port under var/chaos/) and two registry
      instances (`mpr serve`, same group, own HTTP ports, view and processor state paths)
      take a mixed command stream from a stock client (confluent-kafka) while instances are
      kill -9ed and restarted (at once, or after the session timeout), the broker is
      restarted now and then, and one burst phase produces as fast as it can. Then it drains
      and checks the invariants (see RELIABILITY.md) and exits 1 when one fails.

  python3 scripts/chaos.py burst --count 30000 --mpr target/debug/mpr
      The burst-stall reproduction (docs/burst_stall.md): one broker, one instance, N valid
      publish commands as fast as a batching producer sends them, then it watches the
      results and reports whether the registry decided them all or stalled.

Environment: CHAOS_DIR (default var/chaos), CHAOS_CLIENT_DEBUG (librdkafka `debug` of the
registry, e.g. cgrp,consumer), CHAOS_SEED, CHAOS_BURST (burst size), CHAOS_DRAIN_S,
CHAOS_STUCK_GRACE_S, MPR_LOG (the registry's log filter).
"""
import argparse
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from mpr_signing import Key, sign_command, sign_receipt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "mpr."
GROUP = "mpr-processor"
CONFIG = os.path.join(ROOT, "config", "local.toml")
SESSION_TIMEOUT_S = 45  # the processor's session.timeout.ms (kafka.session_timeout_ms)
GENESIS = "0" * 64
CATALOG_KEY = "__platform_catalog__"
# Commands are signed as the HTTP API signs them, by the gateway key config/local.toml names
# (chaos.sh makes it); receipts by a gate the soak registers first (REGISTER_KEY).
GATEWAY = None
GATE = None
GATE_NAME = "chaos-gate"
# Refusals that mean the soak itself is wrong (unsigned, or an unverifiable receipt), not the
# registry: a run with any of them exercised refusals only.
SETUP_REFUSALS = ("UNAUTHENTICATED", "GATE_RECEIPT_UNVERIFIED", "GATE_MISSING")


def log(msg):
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# --- Avro single-object decoding of registry events (schemas/registry_event.avsc) ---------

class AvroReader:
    def __init__(self, schema_path):
        self.named = {}
        self.schema = json.load(open(schema_path))
        self._register(self.schema)

    def _register(self, s):
        if isinstance(s, dict):
            if s.get("type") in ("record", "enum", "fixed"):
                self.named[s["name"]] = s
                if "namespace" in s:
                    self.named[f"{s['namespace']}.{s['name']}"] = s
            for f in s.get("fields", []):
                self._register(f["type"])
            for k in ("items", "values"):
                if k in s:
                    self._register(s[k])
        elif isinstance(s, list):
            for b in s:
                self._register(b)

    @staticmethod
    def _long(buf):
        shift = result = 0
        while True:
            b = buf.read(1)[0]
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return (result >> 1) ^ -(result & 1)

    def _read(self, s, buf):
        if isinstance(s, list):
            return self._read(s[self._long(buf)], buf)
        if isinstance(s, str):
            if s in self.named:
                return self._read(self.named[s], buf)
            if s in ("int", "long"):
                return self._long(buf)
            if s == "string":
                return buf.read(self._long(buf)).decode()
            if s == "bytes":
                return buf.read(self._long(buf))
            if s == "boolean":
                return buf.read(1) == b"\x01"
            if s == "null":
                return None
            if s == "double":
                return struct.unpack("<d", buf.read(8))[0]
            if s == "float":
                return struct.unpack("<f", buf.read(4))[0]
            raise ValueError(f"unsupported avro type {s}")
        t = s["type"]
        if t == "record":
            return {f["name"]: self._read(f["type"], buf) for f in s["fields"]}
        if t == "enum":
            return s["symbols"][self._long(buf)]
        if t == "fixed":
            return buf.read(s["size"])
        if t in ("array", "map"):
            out = [] if t == "array" else {}
            while True:
                n = self._long(buf)
                if n == 0:
                    return out
                if n < 0:
                    n = -n
                    self._long(buf)
                for _ in range(n):
                    if t == "array":
                        out.append(self._read(s["items"], buf))
                    else:
                        k = buf.read(self._long(buf)).decode()
                        out[k] = self._read(s["values"], buf)
        return self._read(t, buf)

    def decode(self, payload):
        if payload[:2] != b"\xc3\x01":
            raise ValueError("not Avro single-object encoding")
        return self._read(self.schema, io.BytesIO(payload[10:]))


# --- Commands ------------------------------------------------------------------------------

def now_utc():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


TEMPLATE = json.load(open(os.path.join(ROOT, "examples", "bundles", "fraud-scorer-1.0.0.publish.json")))


def digest(bundle):
    return hashlib.sha256(json.dumps(bundle, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()).hexdigest()


def envelope(actor, ctype, payload, reason=None):
    c = {"command_id": str(uuid.uuid4()), "actor": actor, "submitted_at_utc": now_utc(),
         "command_type": ctype, "payload": payload}
    if reason:
        c["reason"] = reason
    return c


def publish_cmd(family, version):
    b = json.loads(json.dumps(TEMPLATE["bundle"]))
    b["bundle_id"], b["bundle_version"] = family, version
    for a in b["artifacts"]:
        a["uri"] = a["uri"].replace("fraud-scorer/1.0.0", f"{family}/{version}")
    r = dict(TEMPLATE["gate_receipt"], bundle_id=family, bundle_version=version,
             bundle_digest=digest(b), receipt_id=f"gr-{family}-{version}", gate_name=GATE_NAME)
    return envelope("model-factory", "PUBLISH", {"bundle": b, "gate_receipt": sign_receipt(r, GATE)},
                    "chaos publish")


class Family:
    """One bundle family's script: publish, nominate, approve, promote, sometimes roll back."""

    def __init__(self, name, rng):
        self.name, self.rng, self.n, self.step = name, rng, 0, 0

    def next(self):
        v = f"1.{self.n}.0"
        target = {"bundle_id": self.name, "bundle_version": v}
        s = self.step
        self.step += 1
        if s == 0:
            return publish_cmd(self.name, v)
        if s == 1:
            return envelope("alice", "NOMINATE", target, "chaos nominate")
        if s == 2:
            return envelope("alice", "APPROVE", target, "chaos approve")
        if s == 3:
            env = self.rng.choice(["prod", "staging"])
            return envelope("bob", "PROMOTE", dict(target, environment=env, tenant_id="*"), "chaos promote")
        self.n += 1
        self.step = 0
        if self.n > 1 and self.rng.random() < 0.5:
            env = self.rng.choice(["prod", "staging"])
            return envelope("bob", "ROLLBACK", {"bundle_id": self.name, "environment": env, "tenant_id": "*"},
                            "chaos rollback")
        return self.next()


def catalog_cmds():
    out = [envelope("platform-admin", "REGISTER_KEY",
                    {"owner_kind": "GATE", "owner": GATE_NAME, "public_key": GATE.public_hex},
                    "chaos gate")]
    for env in ("prod", "staging"):
        entry = json.load(open(os.path.join(ROOT, "examples", "catalog", f"{env}.json")))
        out.append(envelope("platform-admin", "SET_CATALOG", entry, "chaos catalog"))
    return out


def set_up_platform(sender, tail, timeout=120):
    """Sends the platform commands (the soak's gate key, the catalog) and waits until the gate
    key's registration is decided: a publish decided before it would be refused (MPR2-ROOT-04)."""
    cmds = catalog_cmds()
    for c in cmds:
        sender.send(c)
    sender.flush(30)
    deadline = time.time() + timeout
    while cmds[0]["command_id"] not in tail.first:
        if time.time() > deadline:
            raise SystemExit("chaos: the gate key's registration was not decided within "
                             f"{timeout} s")
        time.sleep(0.1)
    outcome = tail.first[cmds[0]["command_id"]][4]
    if outcome != "ACCEPTED":
        raise SystemExit(f"chaos: registering the soak's gate key was {outcome}")


def init_keys():
    """The gateway key (config/local.toml's, made by chaos.sh) and a fresh gate key."""
    global GATEWAY, GATE
    GATEWAY = Key(os.path.join(ROOT, "var", "keys", "gateway.pem"))
    GATE = Key()


def key_of(cmd):
    p = cmd["payload"]
    if cmd["command_type"] in ("SET_CATALOG", "REGISTER_KEY"):
        return CATALOG_KEY
    return p["bundle"]["bundle_id"] if cmd["command_type"] == "PUBLISH" else p["bundle_id"]


class Sender:
    """A stock batching producer; remembers every command and when it was produced."""

    def __init__(self, brokers):
        self.p = Producer({"bootstrap.servers": brokers, "linger.ms": 5, "acks": "all",
                           "message.timeout.ms": 600000, "queue.buffering.max.messages": 200000})
        self.sent = {}  # command_id -> {type, t, acked}
        self.lock = threading.Lock()
        self.failed = 0

    def send(self, cmd):
        cid = cmd["command_id"]
        with self.lock:
            self.sent[cid] = {"type": cmd["command_type"], "t": time.time(), "acked": None}

        def done(err, _msg, cid=cid):
            with self.lock:
                self.sent[cid]["acked"] = err is None
                if err is not None:
                    self.failed += 1

        while True:
            try:
                self.p.produce(PREFIX + "commands", key=key_of(cmd), value=json.dumps(cmd),
                               headers=[("content-type", b"application/json"),
                                        ("mpr-signature", sign_command(cmd, GATEWAY).encode())],
                               on_delivery=done)
                break
            except BufferError:
                self.p.poll(0.05)
        self.p.poll(0)

    def flush(self, timeout):
        return self.p.flush(timeout)


# --- Processes -------------------------------------------------------------------------------

class Broker:
    def __init__(self, d, port):
        self.dir, self.port = d, port
        self.restarts = 0

    def _sh(self, action):
        args = [os.path.join(ROOT, "scripts", "broker.sh"), action, self.dir]
        if action == "start":
            args.append(str(self.port))
        r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"broker {action} failed: {r.stdout}{r.stderr}")

    def start(self):
        self._sh("start")

    def stop(self):
        self._sh("stop")

    def restart(self):
        self.stop()
        self.start()
        self.restarts += 1

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"


class Instance:
    def __init__(self, name, root, mpr, brokers):
        self.name, self.mpr, self.brokers = name, mpr, brokers
        self.port = free_port()
        self.dir = os.path.join(root, name)
        self.view = os.path.join(self.dir, "view")
        self.state = os.path.join(self.dir, "processor")
        self.logpath = os.path.join(root, f"{name}.log")
        self.proc = None
        self.kills = 0
        self.restart_at = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def env(self):
        e = dict(os.environ, MPR_BROKERS=self.brokers, MPR_HTTP__LISTEN=f"127.0.0.1:{self.port}",
                 MPR_VIEW__PATH=self.view, MPR_PROCESSOR__STATE_PATH=self.state,
                 MPR_LOG=os.environ.get("MPR_LOG", "info"))
        if os.environ.get("CHAOS_CLIENT_DEBUG"):
            e["MPR_KAFKA__CLIENT_DEBUG"] = os.environ["CHAOS_CLIENT_DEBUG"]
        return e

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        f = open(self.logpath, "a")
        f.write(f"\n===== chaos: start {self.name} at {time.time():.3f} =====\n")
        f.flush()
        self.proc = subprocess.Popen([self.mpr, "--config", CONFIG, "serve"], cwd=ROOT, env=self.env(),
                                     stdout=f, stderr=subprocess.STDOUT)
        self.restart_at = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            with open(self.logpath, "a") as f:
                f.write(f"\n===== chaos: kill -9 {self.name} at {time.time():.3f} =====\n")
            self.kills += 1

    def term(self, timeout=60):
        """Graceful stop (the view flushes at shutdown). True when it stopped on SIGTERM."""
        if not self.running():
            return True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return False


# --- Watchers --------------------------------------------------------------------------------

def parse_token(tok):
    if not tok or not tok.startswith("v1."):
        return None
    return [int(x) for x in tok[3:].split(".")]


class ReadyPoller(threading.Thread):
    """Polls /readyz of each instance; keeps (t, name, ready, version) samples."""

    def __init__(self, instances, period=0.2):
        super().__init__(daemon=True)
        self.instances, self.period = instances, period
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for i in self.instances:
                t = time.time()
                ready, ver = False, None
                try:
                    with urllib.request.urlopen(i.url + "/readyz", timeout=1) as r:
                        body = json.load(r)
                        ready = r.status == 200
                        ver = parse_token(body.get("view_version"))
                except (urllib.error.URLError, OSError, ValueError):
                    pass
                self.samples.append((t, i.name, ready, ver))
            self.stop.wait(self.period)

    def latest(self, name):
        for s in reversed(self.samples):
            if s[1] == name:
                return s
        return None


class ResultTail(threading.Thread):
    """Tails mpr.results with a stock consumer: when each command's result was first seen."""

    def __init__(self, brokers):
        super().__init__(daemon=True)
        self.brokers = brokers
        self.first = {}  # command_id -> (t, log, partition, seq, outcome)
        self.stop = threading.Event()

    def run(self):
        c = Consumer({"bootstrap.servers": self.brokers, "group.id": "chaos-tail",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        md = c.list_topics(PREFIX + "results", timeout=30)
        parts = list(md.topics[PREFIX + "results"].partitions)
        c.assign([TopicPartition(PREFIX + "results", p, 0) for p in parts])
        while not self.stop.is_set():
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            try:
                r = json.loads(m.value())
            except ValueError:
                continue
            cid = r.get("command_id")
            if cid and cid not in self.first:
                self.first[cid] = (time.time(), r.get("log"), r.get("partition"), r.get("seq"), r.get("outcome"))
        c.close()


def read_topic(brokers, topic, timeout=120):
    """Every record of every partition of `topic` up to its high watermark, in offset order per partition."""
    c = Consumer({"bootstrap.servers": brokers, "group.id": "chaos-check", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "fetch.max.bytes": 52428800})
    md = c.list_topics(topic, timeout=30)
    parts = sorted(md.topics[topic].partitions)
    out = {p: [] for p in parts}
    ends, tps = {}, []
    for p in parts:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        ends[p] = hi
        if hi > lo:
            tps.append(TopicPartition(topic, p, lo))
    c.assign(tps)
    remaining = {tp.partition for tp in tps}
    deadline = time.time() + timeout
    while remaining and time.time() < deadline:
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        out[m.partition()].append((m.offset(), m.key(), m.value(), dict(m.headers() or [])))
        if m.offset() + 1 >= ends[m.partition()]:
            remaining.discard(m.partition())
    c.close()
    if remaining:
        raise RuntimeError(f"could not read {topic} partitions {sorted(remaining)} to their end")
    return out


def http_json(url, token="dev-reader-token", timeout=5):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


# --- Checks ----------------------------------------------------------------------------------

def chain_walk(records, avro, topic):
    """Applies the appliers' rule (first event chaining onto the head wins) to one partition.
    Returns (chained events, skipped records, errors)."""
    last_seq, last_hash = 0, GENESIS
    chained, skipped, errors = [], 0, []
    for off, _k, v, _h in records:
        try:
            e = avro.decode(v)
        except Exception as ex:  # noqa: BLE001 - report any undecodable record
            errors.append(f"{topic}@{off}: undecodable event: {ex}")
            continue
        if e["seq"] <= last_seq or (e["seq"] == last_seq + 1 and e["prev_hash"] != last_hash):
            skipped += 1
            continue
        if e["seq"] != last_seq + 1:
            errors.append(f"{topic}@{off}: gap: seq {e['seq']} after {last_seq}")
            continue
        last_seq, last_hash = e["seq"], e["hash"]
        chained.append((off, e))
    return chained, skipped, errors


def check_log(brokers, sender, avro):
    """Every command on mpr.commands has exactly one event in the chain and exactly one
    result (byte-identical re-derivations counted apart); every acknowledged command is on
    mpr.commands."""
    failures, info = [], {}
    cmds = read_topic(brokers, PREFIX + "commands")
    on_log = {}
    for recs in cmds.values():
        for _o, _k, v, _h in recs:
            cid = json.loads(v)["command_id"]
            on_log[cid] = on_log.get(cid, 0) + 1
    info["command_records"] = sum(on_log.values())
    info["distinct_commands_on_log"] = len(on_log)
    info["duplicate_command_records"] = sum(n - 1 for n in on_log.values())
    with sender.lock:
        sent = dict(sender.sent)
    acked = [c for c, s in sent.items() if s["acked"]]
    missing = [c for c in acked if c not in on_log]
    if missing:
        failures.append(f"{len(missing)} acknowledged commands are not on mpr.commands (e.g. {missing[:3]})")
    foreign = [c for c in on_log if c not in sent]
    if foreign:
        failures.append(f"{len(foreign)} commands on mpr.commands were not sent by this run")

    events = {}  # command_id -> list of (log, partition, seq)
    raw_event_records, skipped_total = 0, 0
    for topic in (PREFIX + "events", PREFIX + "catalog"):
        for p, recs in read_topic(brokers, topic).items():
            raw_event_records += len(recs)
            chained, skipped, errors = chain_walk(recs, avro, f"{topic}/{p}")
            skipped_total += skipped
            failures.extend(errors)
            for _off, e in chained:
                events.setdefault(e["command_id"], []).append((e["log"], e["partition"], e["seq"]))
    info["event_records"] = raw_event_records
    info["chained_events"] = sum(len(v) for v in events.values())
    info["skipped_event_records"] = skipped_total

    results = {}  # command_id -> set of canonical result json
    raw_results = 0
    for recs in read_topic(brokers, PREFIX + "results").values():
        for _o, _k, v, _h in recs:
            raw_results += 1
            r = json.loads(v)
            results.setdefault(r["command_id"], set()).add(json.dumps(r, sort_keys=True))
    info["result_records"] = raw_results
    info["duplicate_result_records"] = raw_results - sum(len(s) for s in results.values())

    no_event = [c for c in on_log if len(events.get(c, [])) == 0]
    many_events = [c for c in on_log if len(events.get(c, [])) > 1]
    no_result = [c for c in on_log if c not in results]
    many_results = [c for c in on_log if len(results.get(c, ())) > 1]
    mismatch = []
    for c in on_log:
        if len(events.get(c, [])) == 1 and len(results.get(c, ())) == 1:
            r = json.loads(next(iter(results[c])))
            if (r["log"], r["partition"], r["seq"]) != events[c][0]:
                mismatch.append(c)
    stray = [c for c in events if c not in on_log]
    for what, lst in (("have no event", no_event), ("have more than one event", many_events),
                      ("have no result", no_result), ("have more than one distinct result", many_results),
                      ("have a result naming another event", mismatch)):
        if lst:
            failures.append(f"{len(lst)} commands {what} (e.g. {lst[:3]})")
    if stray:
        failures.append(f"{len(stray)} events name a command that is not on mpr.commands")
    outcomes, codes = {}, {}
    for s in results.values():
        r = json.loads(next(iter(s)))
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
        code = (r.get("error") or {}).get("code")
        if code:
            codes[code] = codes.get(code, 0) + 1
    info["outcomes"], info["refusal_codes"] = outcomes, codes
    setup = {c: n for c, n in codes.items() if c in SETUP_REFUSALS}
    if setup:
        failures.append(f"commands refused for the soak's own credentials, not exercised: {setup}")
    if not outcomes.get("ACCEPTED"):
        failures.append("no command was accepted: the soak exercised refusals only")
    return failures, info


def run_mpr(mpr, args, brokers, timeout=600):
    env = dict(os.environ, MPR_BROKERS=brokers, MPR_LOG="warn")
    return subprocess.run([mpr, "--config", CONFIG] + args, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def covers_index(samples, n_idx):
    """Per view-version component: sorted (t, prefix max over ready samples)."""
    series = [[] for _ in range(n_idx)]
    best = [-1] * n_idx
    for t, _name, ready, ver in sorted(samples, key=lambda s: s[0]):
        if not ready or ver is None:
            continue
        for i in range(min(n_idx, len(ver))):
            if ver[i] > best[i]:
                best[i] = ver[i]
                series[i].append((t, best[i]))
    return series


def first_at_least(series, v):
    lo, hi = 0, len(series)
    while lo < hi:
        mid = (lo + hi) // 2
        if series[mid][1] >= v:
            hi = mid
        else:
            lo = mid + 1
    return series[lo][0] if lo < len(series) else None


def idx_of(log_id, partition):
    return 0 if log_id == "CATALOG" else partition + 1


def availability(samples, names, t0, t1):
    """Longest time no instance answered ready, and per instance the longest not-ready time."""
    by_t = sorted(s for s in samples if t0 <= s[0] <= t1)
    longest_all, down_since = 0.0, None
    last_ready = {n: False for n in names}
    per, since = {n: 0.0 for n in names}, {n: None for n in names}
    for t, name, ready, _v in by_t:
        last_ready[name] = ready
        if not ready and since[name] is None:
            since[name] = t
        if ready and since[name] is not None:
            per[name] = max(per[name], t - since[name])
            since[name] = None
        if not any(last_ready.values()):
            if down_since is None:
                down_since = t
        elif down_since is not None:
            longest_all = max(longest_all, t - down_since)
            down_since = None
    end = by_t[-1][0] if by_t else t1
    if down_since is not None:
        longest_all = max(longest_all, end - down_since)
    for n in names:
        if since[n] is not None:
            per[n] = max(per[n], end - since[n])
    return longest_all, per


def stuck_violations(samples, tail_first, grace, n_idx):
    """Samples where an instance answered ready while its view lacked an event whose result
    had been on mpr.results for more than `grace` seconds."""
    known = [[] for _ in range(n_idx)]
    for t, log_id, part, seq, _o in sorted(tail_first.values(), key=lambda x: x[0]):
        if seq is None or part is None:
            continue
        i = idx_of(log_id, part)
        if i < n_idx and (not known[i] or seq > known[i][-1][1]):
            known[i].append((t, seq))
    out = []
    for t, name, ready, ver in samples:
        if not ready or ver is None:
            continue
        for i in range(n_idx):
            k = known[i]
            lo, hi = 0, len(k)
            while lo < hi:  # last entry with time <= t - grace
                mid = (lo + hi) // 2
                if k[mid][0] <= t - grace:
                    lo = mid + 1
                else:
                    hi = mid
            if lo and ver[i] < k[lo - 1][1]:
                out.append((t, name, i, ver[i], k[lo - 1][1], t - k[lo - 1][0]))
    return out


# --- The soak --------------------------------------------------------------------------------

def soak(args):
    init_keys()
    rng = random.Random(int(os.environ.get("CHAOS_SEED", str(int(time.time())))))
    root = os.path.join(ROOT, os.environ.get("CHAOS_DIR", "var/chaos"))
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    avro = AvroReader(os.path.join(ROOT, "schemas", "registry_event.avsc"))
    broker = Broker(os.path.join(root, "broker"), free_port())
    broker.start()
    log(f"broker on {broker.addr} (data {broker.dir})")
    r = run_mpr(args.mpr, ["topics", "ensure"], broker.addr)
    if r.returncode:
        log(f"topics ensure failed: {r.stdout}{r.stderr}")
        broker.stop()
        return 2
    insts = [Instance(n, root, args.mpr, broker.addr) for n in ("a", "b")]
    for i in insts:
        i.start()
    deadline = time.time() + 120
    while time.time() < deadline and not all(ready_now(i) for i in insts):
        time.sleep(0.2)
    if not all(ready_now(i) for i in insts):
        log("instances did not become ready")
        return 2
    log(f"instances ready: " + ", ".join(f"{i.name} {i.url}" for i in insts))

    sender = Sender(broker.addr)
    tail = ResultTail(broker.addr)
    tail.start()
    poller = ReadyPoller(insts)
    poller.start()
    set_up_platform(sender, tail)
    families = [Family(f"chaos-fam-{n}", rng) for n in range(args.families)]
    burst_n = int(os.environ.get("CHAOS_BURST", str(max(2000, args.seconds * 40))))
    burst_at = args.seconds * 0.4
    burst_done = False
    t0 = time.time()
    next_kill = t0 + rng.uniform(2, 5)
    next_broker = t0 + max(args.seconds * 0.25, min(60, args.seconds * 0.5)) + rng.uniform(0, 5)
    broker_gap = max(45.0, args.seconds / 4)
    period = 1.0 / args.rate
    log(f"chaos for {args.seconds} s: {args.rate} cmd/s over {args.families} families, "
        f"a burst of {burst_n} at {burst_at:.0f} s, kills every 3-8 s, broker restarts every ~{broker_gap:.0f} s")
    next_send = t0
    while time.time() - t0 < args.seconds:
        now = time.time()
        for i in insts:
            if not i.running() and i.restart_at is not None and now >= i.restart_at:
                i.start()
                log(f"restarted {i.name}")
        if now >= next_kill:
            victims = [i for i in insts if i.running()]
            if victims:
                v = rng.choice(victims)
                v.kill9()
                late = rng.random() < 0.4
                v.restart_at = now + (rng.uniform(SESSION_TIMEOUT_S + 1, SESSION_TIMEOUT_S + 4) if late else 0)
                log(f"kill -9 {v.name}; restart {'after the session timeout' if late else 'at once'}")
            next_kill = now + rng.uniform(3, 8)
        if now >= next_broker:
            log("restarting the broker")
            t_b = time.time()
            broker.restart()
            log(f"broker back after {time.time() - t_b:.1f} s")
            next_broker = time.time() + broker_gap + rng.uniform(-5, 5)
        if not burst_done and now - t0 >= burst_at:
            log(f"burst: {burst_n} publish commands as fast as the producer takes them")
            tb = time.time()
            for n in range(burst_n):
                sender.send(publish_cmd(f"chaos-burst-{n % 50}", f"2.{n // 50}.0"))
            log(f"burst produced in {time.time() - tb:.1f} s")
            burst_done = True
            next_send = time.time()
        if time.time() >= next_send:
            sender.send(rng.choice(families).next())
            next_send += period
        time.sleep(min(0.01, max(0.0, next_send - time.time())))
    t_end = time.time()
    log(f"chaos over after {t_end - t0:.0f} s; everything up, draining")
    for i in insts:
        if not i.running():
            i.start()
    sender.flush(120)
    drain_s = float(os.environ.get("CHAOS_DRAIN_S", "300"))
    dl = time.time() + drain_s
    last_report = 0
    while time.time() < dl:
        with sender.lock:
            ids = [c for c, s in sender.sent.items() if s["acked"]]
        pending = [c for c in ids if c not in tail.first]
        if not pending:
            break
        if time.time() - last_report > 10:
            log(f"waiting for {len(pending)} results")
            last_report = time.time()
        time.sleep(0.5)
    drained = time.time() < dl
    # Let both views reach everything the log holds.
    want = {}
    for _t, lg, p, seq, _o in tail.first.values():
        if seq is not None and p is not None:
            i = idx_of(lg, p)
            want[i] = max(want.get(i, 0), seq)
    dl2 = time.time() + 60
    views_caught_up = False
    while time.time() < dl2:
        vs = [poller.latest(i.name) for i in insts]
        if all(v and v[2] and v[3] and all(v[3][i] >= s for i, s in want.items()) for v in vs):
            views_caught_up = True
            break
        time.sleep(0.5)
    time.sleep(1)
    poller.stop.set()
    tail.stop.set()
    poller.join()
    tail.join(10)

    failures = []
    if not drained:
        failures.append(f"not every acknowledged command had a result {drain_s:.0f} s after the chaos ended")
    if not views_caught_up:
        failures.append("the instances' views did not reach the log's last seqs within 60 s after draining")
    log("reading the logs")
    f2, info = check_log(broker.addr, sender, avro)
    failures.extend(f2)

    stopped = {i.name: i.term() for i in insts}
    for n, ok in stopped.items():
        if not ok:
            failures.append(f"instance {n} did not stop on SIGTERM within 60 s")
    digests = {}
    for i in insts:
        r = run_mpr(args.mpr, ["view", "digest", i.view], broker.addr)
        digests[i.name] = r.stdout.strip() if r.returncode == 0 else f"error: {r.stderr.strip()}"
    # A rebuild from the audit log and a bootstrap from the compacted changelog both hold
    # the instances' views.
    for src, name in (("events", "rebuild"), ("state", "bootstrap")):
        rb = os.path.join(root, name)
        shutil.rmtree(rb, ignore_errors=True)
        r = run_mpr(args.mpr, ["view", "rebuild", "--from", src, "--path", rb], broker.addr)
        m = re.search(r"view_version (\S+) digest (\S+)", r.stdout)
        digests[name] = f"{m.group(1)} {m.group(2)}" if m else f"error: {r.stdout}{r.stderr}"
    if len(set(digests.values())) != 1:
        failures.append(f"view digests differ: {digests}")
    va = run_mpr(args.mpr, ["verify-audit"], broker.addr)
    if va.returncode != 0:
        failures.append(f"verify-audit failed (exit {va.returncode}): {va.stdout.strip()} {va.stderr.strip()}")

    n_idx = 1 + 3
    grace = float(os.environ.get("CHAOS_STUCK_GRACE_S", "15"))
    stuck = stuck_violations(poller.samples, tail.first, grace, n_idx)
    if stuck:
        t, name, i, have, need, age = stuck[0]
        failures.append(f"{len(stuck)} readiness samples answered 200 while the view was stuck; first: "
                        f"instance {name} at +{t - t0:.1f} s had seq {have} of view component {i} "
                        f"while seq {need} had been decided {age:.1f} s earlier")
    series = covers_index(poller.samples, n_idx)
    lat = []
    with sender.lock:
        sent = dict(sender.sent)
    for cid, (_t, lg, p, seq, _o) in tail.first.items():
        if cid in sent and seq is not None:
            tv = first_at_least(series[idx_of(lg, p)], seq)
            if tv is not None:
                lat.append(tv - sent[cid]["t"])
    lat.sort()
    unavail, per = availability(poller.samples, [i.name for i in insts], t0 + 1, t_end)
    summary = {
        "seconds": round(t_end - t0, 1),
        "commands": len(sent),
        "commands_acked": sum(1 for s in sent.values() if s["acked"]),
        "commands_failed_delivery": sender.failed,
        "burst": burst_n,
        "kills": sum(i.kills for i in insts),
        "broker_restarts": broker.restarts,
        "max_unavailability_s": round(unavail, 1),
        "max_unavailability_per_instance_s": {k: round(v, 1) for k, v in per.items()},
        "worst_produce_to_visible_s": round(lat[-1], 2) if lat else None,
        "p50_produce_to_visible_s": round(lat[len(lat) // 2], 2) if lat else None,
        "p99_produce_to_visible_s": round(lat[int(len(lat) * 0.99)], 2) if lat else None,
        "readiness_samples": len(poller.samples),
        "stuck_ready_samples": len(stuck),
        "digests": digests,
        "log": info,
        "failures": failures,
    }
    json.dump(summary, open(os.path.join(root, "report.json"), "w"), indent=2)
    broker.stop()
    print(json.dumps(summary, indent=2))
    if failures:
        log("FAILED:\n  " + "\n  ".join(failures))
        return 1
    log("all invariants held")
    return 0


def ready_now(i):
    try:
        with urllib.request.urlopen(i.url + "/readyz", timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


# --- The burst-stall reproduction ------------------------------------------------------------

def burst(args):
    init_keys()
    root = os.path.join(ROOT, os.environ.get("CHAOS_DIR", "var/chaos-burst"))
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    broker = Broker(os.path.join(root, "broker"), free_port())
    broker.start()
    run_mpr(args.mpr, ["topics", "ensure"], broker.addr)
    inst = Instance("a", root, args.mpr, broker.addr)
    inst.start()
    while not ready_now(inst):
        time.sleep(0.2)
    log(f"broker {broker.addr}, registry {inst.url} (log {inst.logpath})")
    tail = ResultTail(broker.addr)
    tail.start()
    sender = Sender(broker.addr)
    set_up_platform(sender, tail)
    t0 = time.time()
    if args.freeze_s:
        threading.Thread(target=freeze_broker, args=(broker, args.freeze_at, args.freeze_s), daemon=True).start()
    ids = set()
    for n in range(args.count):
        c = publish_cmd(f"burst-{n % 100}", f"1.{n // 100}.0")
        ids.add(c["command_id"])
        sender.send(c)
    sender.flush(300)
    log(f"produced {args.count} in {time.time() - t0:.1f} s")
    last, last_change = -1, time.time()
    while True:
        done = len(ids & tail.first.keys())
        if done != last:
            last, last_change = done, time.time()
        if done >= args.count:
            log(f"all {done} decided after {time.time() - t0:.1f} s")
            rc = 0
            break
        if time.time() - last_change > args.stall_s:
            log(f"STALL: {done}/{args.count} decided; no progress for {args.stall_s} s "
                f"(since +{last_change - t0:.1f} s)")
            rc = 1
            break
        if int(time.time() - t0) % 10 == 0:
            log(f"{done}/{args.count} decided")
        time.sleep(1)
    if args.keep:
        log("keeping the stack up (--keep); Ctrl-C to stop")
        try:
            while True:
                time.sleep(5)
        except KeyboardInterrupt:
            pass
    inst.term()
    tail.stop.set()
    broker.stop()
    return rc


def freeze_broker(broker, at, seconds):
    """Stands for an overloaded broker: SIGSTOP for `seconds` (longer than the session
    timeout, so the processor's heartbeats go unanswered), then SIGCONT."""
    time.sleep(at)
    pid = int(open(os.path.join(broker.dir, "broker.pid")).read())
    log(f"freezing the broker (pid {pid}) for {seconds} s")
    os.kill(pid, signal.SIGSTOP)
    time.sleep(seconds)
    os.kill(pid, signal.SIGCONT)
    log("broker resumed")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("run")
    s.add_argument("--seconds", type=int, default=300)
    s.add_argument("--mpr", required=True)
    s.add_argument("--rate", type=float, default=40.0, help="steady commands per second")
    s.add_argument("--families", type=int, default=8)
    b = sub.add_parser("burst")
    b.add_argument("--count", type=int, default=30000)
    b.add_argument("--mpr", required=True)
    b.add_argument("--stall-s", type=int, default=90)
    b.add_argument("--keep", action="store_true")
    b.add_argument("--freeze-at", type=float, default=20.0, help="seconds after the first produce")
    b.add_argument("--freeze-s", type=float, default=0.0, help="SIGSTOP the broker this long (0: never)")
    a = ap.parse_args()
    sys.exit(soak(a) if a.cmd == "run" else burst(a))


if __name__ == "__main__":
    main()
