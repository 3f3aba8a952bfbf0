"""Sends a JSON publish command to mpr.commands with confluent-kafka and waits for its
event on the events topic and its result through the HTTP API."""
import json, sys, time, urllib.request, uuid
from confluent_kafka import Consumer, Producer, TopicPartition

brokers, url, example = sys.argv[1], sys.argv[2], sys.argv[3]
req = json.load(open(example))
command_id = str(uuid.uuid4())
command = {
    "command_id": command_id,
    "actor": "model-factory",
    "submitted_at_utc": req["submitted_at_utc"],
    "command_type": "PUBLISH",
    "payload": {"bundle": req["bundle"], "gate_receipt": req["gate_receipt"]},
}
p = Producer({"bootstrap.servers": brokers})
p.produce("stock.commands", key=req["bundle"]["bundle_id"], value=json.dumps(command),
          headers=[("content-type", b"application/json")])
p.flush(30)

deadline = time.time() + 60
result = None
while time.time() < deadline:
    r = urllib.request.Request(f"{url}/v1/commands/{command_id}",
                               headers={"Authorization": "Bearer dev-reader-token"})
    try:
        with urllib.request.urlopen(r) as resp:
            result = json.load(resp)
            break
    except urllib.error.HTTPError:
        time.sleep(0.2)
assert result is not None, "no result for the stock client's command"
assert result["outcome"] == "ACCEPTED", result

c = Consumer({"bootstrap.servers": brokers, "group.id": "stock-check", "enable.auto.commit": False})
c.assign([TopicPartition("stock.events", result["partition"], 0)])
found = False
while time.time() < deadline and not found:
    m = c.poll(1.0)
    if m is not None and m.error() is None:
        hdrs = dict(m.headers() or [])
        found = hdrs.get("mpr-command-id", b"").decode() == command_id
c.close()
assert found, "the command's event is not on stock.events"
print(f"stock client check: command {command_id} -> {result['event_type']} seq {result['seq']} on partition {result['partition']}")
