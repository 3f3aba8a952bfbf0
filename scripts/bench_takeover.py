"""Takeover benchmark probe: right after a registry (re)starts, sends one JSON publish
command to mpr.commands with confluent-kafka and waits for its result on mpr.results.
Prints the time from the registry's start (argument 2, Unix ms) to that result.
    python3 scripts/bench_takeover.py BROKERS START_MS EXAMPLE_JSON"""
import json, sys, time, uuid
from confluent_kafka import Consumer, Producer, TopicPartition
from mpr_sign import headers

brokers, start_ms, example = sys.argv[1], int(sys.argv[2]), sys.argv[3]
req = json.load(open(example))
command_id = str(uuid.uuid4())
bundle = dict(req["bundle"])
family = bundle["bundle_id"]
command = {
    "command_id": command_id,
    "actor": "model-factory",
    "submitted_at_utc": req["submitted_at_utc"],
    "command_type": "PUBLISH",
    "payload": {"bundle": bundle, "gate_receipt": req["gate_receipt"]},
}
c = Consumer({"bootstrap.servers": brokers, "group.id": "takeover-probe", "enable.auto.commit": False})
parts = c.list_topics("mpr.results", timeout=30).topics["mpr.results"].partitions
tps = []
for p in parts:
    _, high = c.get_watermark_offsets(TopicPartition("mpr.results", p), timeout=30)
    tps.append(TopicPartition("mpr.results", p, high))
c.assign(tps)
p = Producer({"bootstrap.servers": brokers})
p.produce("mpr.commands", key=family, value=json.dumps(command), headers=headers(command))
p.flush(30)
deadline = time.time() + 600
while time.time() < deadline:
    m = c.poll(0.2)
    if m is None or m.error() is not None:
        continue
    if m.key() and m.key().decode() == command_id:
        done = int(time.time() * 1000)
        r = json.loads(m.value())
        print(json.dumps({"bench": "takeover", "first_result_ms": done - start_ms,
                          "outcome": r["outcome"], "seq": r["seq"]}))
        sys.exit(0)
print(json.dumps({"bench": "takeover", "first_result_ms": None}))
sys.exit(1)
