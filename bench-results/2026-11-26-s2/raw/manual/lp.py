import sys, time, threading
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
w = int(sys.argv[1]); topic = "lp%d" % w
a = AdminClient({"bootstrap.servers": "127.0.0.1:19093"}); a.create_topics([NewTopic(topic, 1, 1)])[topic].result(); time.sleep(1)
c = Consumer({"bootstrap.servers": "127.0.0.1:19093", "group.id": "lp", "fetch.wait.max.ms": w, "enable.auto.commit": False})
c.assign([TopicPartition(topic, 0, 0)])
p = Producer({"bootstrap.servers": "127.0.0.1:19093", "linger.ms": 0})
lat = []
for i in range(20):
    time.sleep(0.137)
    t = time.time(); p.produce(topic, str(t).encode()); p.flush()
    while True:
        m = c.poll(2)
        if m and not m.error(): lat.append((time.time() - float(m.value())) * 1000); break
lat.sort(); print("wait", w, "latency ms p50 %.1f max %.1f" % (lat[10], lat[-1]))
