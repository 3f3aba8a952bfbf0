"""The broker's own floor for produce-to-visible, with a stock client (confluent-kafka) and no
registry logic: records produced at a fixed rate cross HOPS topics, each hop a consumer that
re-produces what it reads (acks=all) into the next topic, like the registry's command ->
event -> view path. Prints one JSON line with p50/p99 from the first produce call to the
last consumer's receipt.
  python3 scripts/bench_broker_hops.py BROKERS [RATE] [SECONDS] [HOPS] [FETCH_WAIT_MS]"""
import json, os, sys, threading, time, uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

brokers = sys.argv[1]
rate = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 10
hops = int(sys.argv[4]) if len(sys.argv) > 4 else 2  # 0: produce, then consume
wait_ms = int(sys.argv[5]) if len(sys.argv) > 5 else 20
warmup = 30
parts = 3
run = uuid.uuid4().hex[:8]
topics = [f"bench-hop-{run}-{i}" for i in range(hops + 1)]
admin = AdminClient({"bootstrap.servers": brokers})
for f in admin.create_topics([NewTopic(t, parts, 1) for t in topics]).values():
    f.result()
time.sleep(1)


def producer():
    return Producer({"bootstrap.servers": brokers, "acks": "all", "linger.ms": 5})


def consumer(topic):
    c = Consumer({"bootstrap.servers": brokers, "group.id": f"{topic}-g",
                  "enable.auto.commit": False, "fetch.wait.max.ms": wait_ms})
    c.assign([TopicPartition(topic, p, 0) for p in range(parts)])
    return c


stop = threading.Event()


def relay(src, dst):
    c, p = consumer(src), producer()
    while not stop.is_set():
        for m in c.consume(1000, 0.002):
            if not m.error():
                p.produce(dst, m.value(), key=m.key(), partition=m.partition())
        p.poll(0)
        p.flush(5)
    c.close()


threads = [threading.Thread(target=relay, args=(topics[i], topics[i + 1])) for i in range(hops)]
for t in threads:
    t.start()
seen, lat = {}, []
total = warmup + int(rate * seconds)


def sink():
    c = consumer(topics[-1])
    while not stop.is_set() and len(seen) < total:
        for m in c.consume(1000, 0.002):
            if not m.error():
                seen[int(m.key())] = time.monotonic()
    c.close()


st = threading.Thread(target=sink)
st.start()
p = producer()
sent = {}
for i in range(warmup):  # wait for the first records to cross, as the registry bench does
    sent[i] = time.monotonic()
    p.produce(topics[0], os.urandom(600), key=str(i).encode(), partition=i % parts)
p.flush(30)
t_end = time.monotonic() + 60
while len(seen) < warmup and time.monotonic() < t_end:
    time.sleep(0.01)
t0 = time.monotonic()
for i in range(warmup, total):
    due = t0 + (i - warmup) / rate
    while time.monotonic() < due:
        p.poll(0)
        time.sleep(max(0.0, min(0.001, due - time.monotonic())))
    sent[i] = time.monotonic()
    p.produce(topics[0], os.urandom(600), key=str(i).encode(), partition=i % parts)
    p.poll(0)
p.flush(30)
t_end = time.monotonic() + 60
while len(seen) < total and time.monotonic() < t_end:
    time.sleep(0.01)
stop.set()
for t in threads + [st]:
    t.join()
lat = sorted((seen[i] - sent[i]) * 1000 for i in range(warmup, total) if i in seen)


def pct(q):
    return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None


print(json.dumps({"bench": "broker_hops", "hops": hops, "rate": rate, "fetch_wait_ms": wait_ms,
                  "measured": len(lat), "expected": total - warmup,
                  "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": lat[-1] if lat else None}))
