import sys, time
from confluent_kafka import Consumer, TopicPartition
w = int(sys.argv[1])
c = Consumer({"bootstrap.servers": "127.0.0.1:19093", "group.id": "idle", "fetch.wait.max.ms": w, "enable.auto.commit": False})
c.assign([TopicPartition("mpr.events", p, 1000000) for p in range(3)])
t0 = time.time()
while time.time() - t0 < 12: c.poll(0.5)
