#!/usr/bin/env python3
"""Records, headers and bytes per command on every topic of a registry (bench.sh stage
`records`): reads each topic whole with a stock client (confluent-kafka) and divides by
the number of commands on `commands`. Bytes are key + value + header keys and values, as
a client sees them (what the broker stores per record is its own business).

Usage: bench_records.py BROKERS PREFIX
Prints one JSON object.
"""
import json
import sys

from confluent_kafka import Consumer, TopicPartition

TOPICS = ["commands", "events", "catalog", "state", "results", "lifecycle", "bundle_promoted", "dlq", "signals"]


def read_all(brokers: str, topic: str) -> dict:
    c = Consumer({"bootstrap.servers": brokers, "group.id": f"records-{topic}", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "enable.partition.eof": True})
    md = c.list_topics(topic, timeout=10).topics.get(topic)
    if md is None or md.error is not None:
        c.close()
        return {"records": 0, "headers": 0, "bytes": 0}
    parts = [TopicPartition(topic, p) for p in md.partitions]
    ends = {}
    for tp in parts:
        lo, hi = c.get_watermark_offsets(tp, timeout=10)
        ends[tp.partition] = (lo, hi)
    c.assign([TopicPartition(topic, p, lo) for p, (lo, hi) in ends.items() if hi > lo])
    left = {p for p, (lo, hi) in ends.items() if hi > lo}
    out = {"records": 0, "headers": 0, "bytes": 0}
    while left:
        m = c.poll(5.0)
        if m is None:
            break
        if m.error():
            left.discard(m.partition())
            continue
        out["records"] += 1
        hs = m.headers() or []
        out["headers"] += len(hs)
        out["bytes"] += len(m.key() or b"") + len(m.value() or b"") + sum(len(k) + len(v or b"") for k, v in hs)
        if m.offset() + 1 >= ends[m.partition()][1]:
            left.discard(m.partition())
    c.close()
    return out


def main() -> int:
    brokers, prefix = sys.argv[1], sys.argv[2]
    per = {t: read_all(brokers, prefix + t) for t in TOPICS}
    n = per["commands"]["records"] or 1
    derived = {t: v for t, v in per.items() if t != "commands"}
    print(json.dumps({
        "commands": per["commands"]["records"],
        "records_per_command": round(sum(v["records"] for v in derived.values()) / n, 2),
        "headers_per_command": round(sum(v["headers"] for v in derived.values()) / n, 2),
        "bytes_per_command": round(sum(v["bytes"] for v in derived.values()) / n, 1),
        "by_topic": {t: {k: round(x / n, 2) for k, x in v.items()} for t, v in per.items()},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
