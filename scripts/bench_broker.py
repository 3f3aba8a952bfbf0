"""The broker's own ceiling on this machine, with a stock client (confluent-kafka), for
comparison with the registry's pipeline figures: records/s produced in large batches and
in one-record requests, and records/s fetched back. Prints one JSON line.
  python3 scripts/bench_broker.py BROKERS [RECORDS] [SIZE] [HEADERS]"""
import json, os, sys, time, uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

brokers = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
size = int(sys.argv[3]) if len(sys.argv) > 3 else 600
parts = 3
topic = f"bench-broker-{uuid.uuid4().hex[:8]}"
admin = AdminClient({"bootstrap.servers": brokers})
admin.create_topics([NewTopic(topic, parts, 1)])[topic].result()
time.sleep(1)
payload = os.urandom(size)
n_headers = int(sys.argv[4]) if len(sys.argv) > 4 else 1
headers = [(f"mpr-h{i}", str(uuid.uuid4()).encode()) for i in range(n_headers)]


def produce(count, linger_ms, flush_every):
    p = Producer({"bootstrap.servers": brokers, "acks": "all", "linger.ms": linger_ms,
                  "enable.idempotence": False, "max.in.flight.requests.per.connection": 1,
                  "queue.buffering.max.messages": 2_000_000})
    t0 = time.time()
    for i in range(count):
        while True:
            try:
                p.produce(topic, payload, key=str(i).encode(), partition=i % parts, headers=headers)
                break
            except BufferError:
                p.poll(0.01)
        if flush_every and i % flush_every == flush_every - 1:
            p.flush()
        elif i % 1000 == 0:
            p.poll(0)
    p.flush(600)
    return count / (time.time() - t0)


batched = produce(n, 5, 0)
single = produce(min(n // 10, 5000), 0, 1)
total = n + min(n // 10, 5000)
c = Consumer({"bootstrap.servers": brokers, "group.id": topic, "enable.auto.commit": False,
              "fetch.wait.max.ms": 10})
c.assign([TopicPartition(topic, p, 0) for p in range(parts)])
got, t0 = 0, time.time()
while got < total and time.time() - t0 < 1200:
    got += sum(1 for m in c.consume(10000, 0.05) if not m.error())
fetched = got / (time.time() - t0)
c.close()
print(json.dumps({"bench": "broker", "records": n, "record_bytes": size, "headers": n_headers,
                  "produce_batched_per_s": batched, "produce_one_per_request_per_s": single,
                  "fetch_per_s": fetched, "fetched": got}))
