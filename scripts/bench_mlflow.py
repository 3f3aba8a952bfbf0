#!/usr/bin/env python3
"""Helpers for scripts/bench_mlflow.sh, the MLflow model-registry peer benchmark.

Standard library only, so it runs with any python3 (the MLflow venv is not needed here).

Subcommands:
  seed BASE MODELS [--concurrency C]
      Creates registered models fam-0000.., two versions each (source
      s3://bucket/fam-XXXX/v1 and v2) and alias "prod" -> version 1, through the REST API.
      Prints {"models", "requests", "seconds"} as JSON.
  alias-update BASE MODELS [--n N] [--seed S]
      N sequential POST /api/2.0/mlflow/registered-models/alias calls over random models,
      flipping "prod" between versions 1 and 2; one keep-alive connection; each request
      timed with time.perf_counter(). Prints {"n", "p50_ms", "p99_ms", "throughput_per_s"}.
  oha-summary FILE
      Reads one oha JSON output; prints {"rps", "p50_ms", "p99_ms", "p999_ms",
      "success_rate", "requests", "status_codes", "errors"}.
  report OUTDIR
      Reads OUTDIR/raw/mlflow-meta.json and OUTDIR/raw/mlflow-run-*.json (written by the shell script)
      and writes OUTDIR/mlflow.json with per-run figures and their medians.
"""
import argparse
import glob
import http.client
import json
import os
import random
import statistics
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

API = "/api/2.0/mlflow"


def model_name(i):
    return "fam-%04d" % i


def percentile(sorted_vals, p):
    """Nearest-rank percentile of an already sorted list (p in 0..100)."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(-(-p * len(sorted_vals) // 100)) - 1))
    return sorted_vals[k]


class Client:
    """A keep-alive HTTP/1.1 JSON client for one host; reconnects once on a dropped connection."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port or 80
        self.conn = None

    def _connect(self):
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def post(self, path, body):
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        for attempt in (0, 1):
            if self.conn is None:
                self._connect()
            try:
                self.conn.request("POST", API + path, body=data, headers=headers)
                resp = self.conn.getresponse()
                payload = resp.read()
                if resp.status != 200:
                    raise RuntimeError("POST %s %s -> %d %s" % (path, body, resp.status, payload[:300]))
                return json.loads(payload or b"{}")
            except (http.client.HTTPException, ConnectionError, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise


def cmd_seed(args):
    local = threading.local()

    def client():
        if not hasattr(local, "c"):
            local.c = Client(args.base)
        return local.c

    def seed_one(i):
        c, name = client(), model_name(i)
        c.post("/registered-models/create", {"name": name})
        for v in (1, 2):
            c.post("/model-versions/create", {"name": name, "source": "s3://bucket/%s/v%d" % (name, v)})
        c.post("/registered-models/alias", {"name": name, "alias": "prod", "version": "1"})

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        for _ in pool.map(seed_one, range(args.models)):
            pass
    secs = time.perf_counter() - t0
    print(json.dumps({"models": args.models, "requests": 4 * args.models, "seconds": round(secs, 2)}))


def cmd_alias_update(args):
    rng = random.Random(args.seed)
    c = Client(args.base)
    # Current "prod" version per model touched in this process; seeding set all to 1, but an
    # earlier run may have flipped some, so read it once before flipping (not timed).
    current = {}
    lat = []
    t_start = time.perf_counter()
    for _ in range(args.n):
        name = model_name(rng.randrange(args.models))
        if name not in current:
            current[name] = get_alias_version(args.base, name)
        target = "2" if current[name] == "1" else "1"
        t0 = time.perf_counter()
        c.post("/registered-models/alias", {"name": name, "alias": "prod", "version": target})
        lat.append(time.perf_counter() - t0)
        current[name] = target
    # Throughput over the timed requests only (excludes the untimed reads above).
    busy = sum(lat)
    lat.sort()
    print(json.dumps({
        "n": args.n,
        "p50_ms": round(statistics.median(lat) * 1000, 3),
        "p99_ms": round(percentile(lat, 99) * 1000, 3),
        "max_ms": round(lat[-1] * 1000, 3),
        "throughput_per_s": round(args.n / busy, 2),
        "wall_s": round(time.perf_counter() - t_start, 2),
    }))


def get_alias_version(base, name):
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        q = urllib.parse.urlencode({"name": name, "alias": "prod"})
        conn.request("GET", API + "/registered-models/alias?" + q)
        resp = conn.getresponse()
        body = json.loads(resp.read())
        if resp.status != 200:
            raise RuntimeError("alias lookup %s -> %d %s" % (name, resp.status, body))
        return body["model_version"]["version"]
    finally:
        conn.close()


def oha_summary(path):
    with open(path) as f:
        d = json.load(f)
    s = d["summary"]
    pct = d.get("latencyPercentiles") or {}
    codes = {str(k): v for k, v in (d.get("statusCodeDistribution") or {}).items()}
    errors = d.get("errorDistribution") or {}
    n_resp = sum(codes.values())
    n_ok = sum(v for k, v in codes.items() if k.startswith("2"))
    n_err = sum(errors.values())
    # oha's own successRate counts any HTTP response as success; here success means a 2xx
    # out of every request sent (responses plus transport errors and deadline aborts).
    total = n_resp + n_err

    def ms(key):
        v = pct.get(key)
        return None if v is None else round(v * 1000, 3)

    return {
        "rps": round(s["requestsPerSec"], 2),
        "p50_ms": ms("p50"),
        "p99_ms": ms("p99"),
        "p999_ms": ms("p99.9"),
        "success_rate": round(n_ok / total, 5) if total else None,
        "requests": total,
        "status_codes": codes,
        "errors": errors,
    }


def cmd_oha_summary(args):
    print(json.dumps(oha_summary(args.file)))


def median_of(runs, section, field):
    vals = [r[section][field] for r in runs if r.get(section) and r[section].get(field) is not None]
    return round(statistics.median(vals), 3) if vals else None


def cmd_report(args):
    raw = os.path.join(args.outdir, "raw")
    with open(os.path.join(raw, "mlflow-meta.json")) as f:
        meta = json.load(f)
    runs = []
    for path in sorted(glob.glob(os.path.join(raw, "mlflow-run-*.json")), key=lambda p: int(p.rsplit("-", 1)[1][:-5])):
        with open(path) as f:
            r = json.load(f)
        sat = oha_summary(os.path.join(raw, r["saturation_file"]))
        fix = oha_summary(os.path.join(raw, r["fixed_rate_file"]))
        runs.append({
            "lookup_saturation": {k: sat[k] for k in ("rps", "p50_ms", "p99_ms", "p999_ms", "success_rate")},
            "lookup_fixed_rate": {"rate": meta["rate"], "achieved_rps": fix["rps"],
                                  **{k: fix[k] for k in ("p50_ms", "p99_ms", "p999_ms", "success_rate")}},
            "alias_update": r["alias_update"],
        })
    fields = {
        "lookup_saturation": ["rps", "p50_ms", "p99_ms", "p999_ms", "success_rate"],
        "lookup_fixed_rate": ["rate", "achieved_rps", "p50_ms", "p99_ms", "p999_ms", "success_rate"],
        "alias_update": ["n", "p50_ms", "p99_ms", "throughput_per_s"],
    }
    medians = {sec: {f: median_of(runs, sec, f) for f in fs} for sec, fs in fields.items()}
    sat_rps = medians["lookup_saturation"]["rps"]
    out = {
        "mlflow_version": meta["mlflow_version"],
        "workers": meta["workers"],
        "models": meta["models"],
        "runs": runs,
        "medians": medians,
        # A fixed rate near or above the saturation throughput measures queueing, not latency.
        "fixed_rate_sustainable": bool(sat_rps and meta["rate"] <= 0.8 * sat_rps),
        "setup": {k: v for k, v in meta.items() if k not in ("mlflow_version", "workers", "models")},
    }
    with open(os.path.join(args.outdir, "mlflow.json"), "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print(json.dumps({"medians": medians, "fixed_rate_sustainable": out["fixed_rate_sustainable"]}, indent=2))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("seed")
    s.add_argument("base")
    s.add_argument("models", type=int)
    s.add_argument("--concurrency", type=int, default=4)
    s.set_defaults(fn=cmd_seed)
    a = sub.add_parser("alias-update")
    a.add_argument("base")
    a.add_argument("models", type=int)
    a.add_argument("--n", type=int, default=300)
    a.add_argument("--seed", type=int, default=1)
    a.set_defaults(fn=cmd_alias_update)
    o = sub.add_parser("oha-summary")
    o.add_argument("file")
    o.set_defaults(fn=cmd_oha_summary)
    r = sub.add_parser("report")
    r.add_argument("outdir")
    r.set_defaults(fn=cmd_report)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
