"""Takeover benchmark population: produces N JSON commands keyed by one family, as fast as
a batching stock client (confluent-kafka) takes them, and waits until the registry has a
result for the last one. Each is a NOMINATE of a version that was never published, so each
is decided into one COMMAND_REJECTED event (NOT_FOUND) on that family's partition: N
events to catch up, without building N bundles.
    python3 scripts/bench_populate.py BROKERS N"""
import json, sys, time, uuid
from confluent_kafka import Consumer, Producer, TopicPartition
from mpr_sign import headers

brokers, n = sys.argv[1], int(sys.argv[2])
family = "takeover-fam"
p = Producer({"bootstrap.servers": brokers, "linger.ms": 20, "batch.num.messages": 10000,
              "queue.buffering.max.messages": 1000000})
t0 = time.time()
last = None
for i in range(n):
    last = str(uuid.uuid4())
    cmd = {"command_id": last, "actor": "alice", "submitted_at_utc": "2026-12-01T00:00:00.000Z",
           "command_type": "NOMINATE",
           "payload": {"bundle_id": family, "bundle_version": f"0.0.{i}"}}
    while True:
        try:
            p.produce("mpr.commands", key=family, value=json.dumps(cmd), headers=headers(cmd))
            break
        except BufferError:
            p.poll(0.05)
    if i % 10000 == 0:
        p.poll(0)
p.flush(120)
produced = time.time() - t0
c = Consumer({"bootstrap.servers": brokers, "group.id": "populate-probe", "enable.auto.commit": False})
parts = c.list_topics("mpr.results", timeout=30).topics["mpr.results"].partitions
c.assign([TopicPartition("mpr.results", q, 0) for q in parts])
seen = 0
deadline = time.time() + 3600
while time.time() < deadline:
    m = c.poll(1.0)
    if m is None or m.error() is not None:
        continue
    seen += 1
    if m.key() and m.key().decode() == last:
        break
print(json.dumps({"bench": "takeover-populate", "commands": n, "produce_s": round(produced, 1),
                  "decided_s": round(time.time() - t0, 1), "decided_per_s": round(n / (time.time() - t0))}))
