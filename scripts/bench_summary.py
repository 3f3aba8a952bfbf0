"""Summarises a bench-results/<run> directory: the median of every figure across runs, with
its spread (min..max), as Markdown (stdout) and summary.json."""
import glob, json, os, re, statistics, sys

out = sys.argv[1]
raw = os.path.join(out, "raw")


def load(pattern):
    rows = []
    for f in sorted(glob.glob(os.path.join(raw, pattern))):
        try:
            rows.append(json.load(open(f)))
        except Exception:
            pass
    return rows


def load_lines(pattern):
    """JSON lines: every object of every file."""
    rows = []
    for f in sorted(glob.glob(os.path.join(raw, pattern))):
        for line in open(f):
            try:
                rows.append(json.loads(line))
            except Exception:
                pass
    return rows


def oha(pattern):
    rows = []
    for d in load(pattern):
        s = d.get("summary", {})
        p = d.get("latencyPercentiles", {})
        rows.append({
            "rps": s.get("requestsPerSec"),
            "success_rate": s.get("successRate"),
            "p50_ms": (p.get("p50") or 0) * 1000,
            "p99_ms": (p.get("p99") or 0) * 1000,
            "p999_ms": (p.get("p99.9") or 0) * 1000,
        })
    return rows


def rebuild(src, prefix=""):
    rows = []
    for f in sorted(glob.glob(os.path.join(raw, f"{prefix}rebuild-{src}-*.txt"))):
        m = re.search(r"(\d+) records in ([\d.]+)s \((\d+)/s\).*digest (\w+)", open(f).read())
        if m:
            rows.append({"records": int(m[1]), "seconds": float(m[2]), "records_per_s": float(m[3]), "digest": m[4]})
    return rows


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


summary = {
    "broker_produce_batched_per_s": med(load("broker-[0-9]*.json"), "produce_batched_per_s"),
    "broker_produce_one_per_request_per_s": med(load("broker-[0-9]*.json"), "produce_one_per_request_per_s"),
    "broker_fetch_per_s": med(load("broker-[0-9]*.json"), "fetch_per_s"),
    "broker_noheaders_produce_batched_per_s": med(load("broker-noheaders-*.json"), "produce_batched_per_s"),
    "broker_noheaders_fetch_per_s": med(load("broker-noheaders-*.json"), "fetch_per_s"),
    "commands_per_s": med(load("commands-*.json"), "commands_per_second"),
    "broker_hops_p50_ms": med(load("broker-hops-*.json"), "p50_ms"),
    "broker_hops_p99_ms": med(load("broker-hops-*.json"), "p99_ms"),
    "latency_p50_ms": med(load("latency-*.json"), "p50_ms"),
    "latency_p99_ms": med(load("latency-*.json"), "p99_ms"),
    "rebuild_events_per_s": med(rebuild("events"), "records_per_s"),
    "rebuild_state_records_per_s": med(rebuild("state"), "records_per_s"),
    "scale_commands_per_s": med(load("scale-commands.json"), "commands_per_second"),
    "scale_rebuild_events_per_s": med(rebuild("events", "scale-"), "records_per_s"),
    "scale_rebuild_state_records_per_s": med(rebuild("state", "scale-"), "records_per_s"),
    "resolve_rps": med(oha("resolve-saturation-*.json"), "rps"),
    "resolve_saturation_p99_ms": med(oha("resolve-saturation-*.json"), "p99_ms"),
    "resolve_fixed_rate_p50_ms": med(oha("resolve-rate-*.json"), "p50_ms"),
    "resolve_fixed_rate_p99_ms": med(oha("resolve-rate-*.json"), "p99_ms"),
    "resolve_fixed_rate_p999_ms": med(oha("resolve-rate-*.json"), "p999_ms"),
    "resolve_fixed_rate_achieved_rps": med(oha("resolve-rate-*.json"), "rps"),
    "resolve_nocache_rps": med(oha("resolve-nocache-saturation-*.json"), "rps"),
    "resolve_nocache_fixed_rate_p50_ms": med(oha("resolve-nocache-rate-*.json"), "p50_ms"),
    "resolve_nocache_fixed_rate_p99_ms": med(oha("resolve-nocache-rate-*.json"), "p99_ms"),
    "resolve_nocache_fixed_rate_p999_ms": med(oha("resolve-nocache-rate-*.json"), "p999_ms"),
    "resolve_warmup_rps": med(oha("resolve-warmup.json"), "rps"),
    "trivial_handler_rps": med(oha("trivial-saturation-*.json"), "rps"),
    "resolve_fixed_scope_rps": med(oha("resolve-fixed-saturation-*.json"), "rps"),
    "trivial_handler_fixed_url_rps": med(oha("trivial-fixed-saturation-*.json"), "rps"),
    "resolve_server_cpu_us_per_request": med(load("resolve-cpu-*-server.json"), "us_per_request"),
    "trivial_server_cpu_us_per_request": med(load("trivial-cpu-*-server.json"), "us_per_request"),
    "promote_p50_ms": med(load("promote-*.json"), "p50_ms"),
    "promote_p99_ms": med(load("promote-*.json"), "p99_ms"),
}
# Resolve against the machine's HTTP ceiling (a trivial handler, same load, same run).
if summary["resolve_rps"] and summary["trivial_handler_rps"]:
    summary["resolve_to_trivial_ratio"] = round(
        summary["resolve_rps"]["median"] / summary["trivial_handler_rps"]["median"], 3)
if summary["resolve_fixed_scope_rps"] and summary["trivial_handler_fixed_url_rps"]:
    summary["resolve_to_trivial_fixed_url_ratio"] = round(
        summary["resolve_fixed_scope_rps"]["median"]
        / summary["trivial_handler_fixed_url_rps"]["median"], 3)

# The same, by server CPU per request at one fixed rate: trivial's cost over resolve's.
if summary["resolve_server_cpu_us_per_request"] and summary["trivial_server_cpu_us_per_request"]:
    summary["trivial_to_resolve_cpu_per_request_ratio"] = round(
        summary["trivial_server_cpu_us_per_request"]["median"]
        / summary["resolve_server_cpu_us_per_request"]["median"], 3)

# The console's pages (mpr_bench console): per page, the medians over runs of p50 and p99.
for page in ("bundles_first_page", "bundles_state_filter", "bundles_text_search", "bundle_version"):
    rows = [r for r in load_lines("console-*.json") if r.get("page") == page]
    summary[f"console_{page}_p50_ms"] = med(rows, "p50_ms")
    summary[f"console_{page}_p99_ms"] = med(rows, "p99_ms")


# Mean seconds per command of the registry's latency histograms (warm-up included, so the
# first ~30 commands' start-up wait is in the sums).
def hist_means(name):
    rows = []
    for f in sorted(glob.glob(os.path.join(raw, "latency-metrics-*.txt"))):
        vals = dict(l.split()[:2] for l in open(f) if l.startswith(f"mpr_{name}_seconds_") and " " in l)
        n, total = float(vals.get(f"mpr_{name}_seconds_count", 0)), float(vals.get(f"mpr_{name}_seconds_sum", 0))
        if n:
            rows.append({"mean_ms": total / n * 1000})
    return med(rows, "mean_ms")


for h in ("command_receive", "command_processing", "view_visible"):
    summary[f"latency_{h}_mean_ms"] = hist_means(h)
fp = load("footprint-*.json")
if fp:
    # Raw figures only: RSS growth over a small run is mostly caches and buffers, so a linear
    # extrapolation to 1M bundles would mislead.
    summary["rss_end_mib"] = med([{"v": r["rss_end_kib"] / 1024} for r in fp], "v")
    summary["rocksdb_mib_per_1000_bundles"] = med([{"v": r["rocksdb_kib"] / 1024 * 1000 / max(r["bundles"], 1)} for r in fp], "v")
    summary["footprint_raw"] = fp
sfp = load("scale-footprint.json")
if sfp:
    r = sfp[0]
    per_m = 1_000_000 / max(r["bundles"], 1)
    summary["scale_footprint"] = dict(r, rss_end_mib_per_1m_bundles=r["rss_end_kib"] / 1024 * per_m,
                                      rocksdb_mib_per_1m_bundles=r["rocksdb_kib"] / 1024 * per_m)
mlf = os.path.join(out, "mlflow.json")
if os.path.exists(mlf):
    summary["mlflow"] = json.load(open(mlf))
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)

print("| figure | median | spread (min..max) | runs |")
print("|---|---|---|---|")
for k, v in summary.items():
    if isinstance(v, dict) and "median" in v:
        print(f"| {k} | {v['median']:.3f} | {v['min']:.3f}..{v['max']:.3f} | {v['n']} |")
    elif isinstance(v, float):
        print(f"| {k} | {v:.3f} | (of medians) | |")
