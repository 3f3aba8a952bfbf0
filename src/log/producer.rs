//! The registry's Kafka producer: a future per record that gives its partition and offset
//! (rdkafka's `FutureProducer` interface), on a `BaseProducer` whose delivery reports a
//! polling thread of its own serves.
//!
//! Why not rdkafka's `FutureProducer`: its `ThreadedProducer` polls in rounds of 100 ms,
//! and `BaseProducer::poll` truncates the time left to whole milliseconds, so the last
//! millisecond of every round is spent spinning on 0 ms polls. That is about 1 % of a core
//! per producer while the registry is idle (three producers: 2.7 %, measured), taken from
//! every request `/v1/resolve` serves. Here a round lasts [`POLL_ROUND`]; a report still
//! completes its future as soon as it arrives, since a round handles each event as it
//! comes. The spin is the same millisecond, once a second.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use rdkafka::client::Client;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders, ToBytes};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, FutureRecord, Producer as _, ProducerContext,
};
use rdkafka::{ClientConfig, ClientContext};

use super::driver::Produce;

/// How long one poll of the delivery-report queue lasts. The polling thread notices that
/// its producer was dropped within one round.
pub const POLL_ROUND: Duration = Duration::from_secs(1);

/// Where a record landed: its partition and offset.
pub type Landed = (i32, i64);

/// Completes each record's future from its delivery report. Logs and client errors go
/// where rdkafka's default context sends them.
#[derive(Debug)]
pub struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<oneshot::Sender<KafkaResult<Landed>>>;

    fn delivery(&self, result: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        let landed = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.clone()),
        };
        // The caller may have stopped waiting; nothing to tell then.
        let _ = tx.send(landed);
    }
}

/// The record for a driver's [`Produce`]: its topic, partition (when explicit), key,
/// payload and headers.
pub fn record(p: &Produce) -> FutureRecord<'_, Vec<u8>, Vec<u8>> {
    let mut headers = OwnedHeaders::new_with_capacity(p.headers.len());
    for (k, v) in &p.headers {
        headers = headers.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let rec = FutureRecord::to(&p.topic)
        .key(&p.key)
        .payload(&p.payload)
        .headers(headers);
    match p.partition {
        Some(part) => rec.partition(part),
        None => rec,
    }
}

/// A producer whose sends return futures (see the module comment). Cloning shares it.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

struct Inner {
    producer: Arc<BaseProducer<Reports>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    /// Tells the polling thread to stop after its round; it drops its share of the producer
    /// then (rdkafka's drop purges what is still queued), without blocking the caller.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("in_flight", &self.inner.producer.in_flight_count())
            .finish()
    }
}

impl Producer {
    /// A producer with `config`, and its polling thread.
    pub fn new(config: &ClientConfig) -> KafkaResult<Self> {
        let producer: Arc<BaseProducer<Reports>> = Arc::new(config.create_with_context(Reports)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (producer.clone(), stop.clone());
        std::thread::Builder::new()
            .name("mpr-produce-poll".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    p.poll(POLL_ROUND);
                }
            })
            .map_err(|e| KafkaError::ClientCreation(format!("producer polling thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner { producer, stop }),
        })
    }

    /// The rdkafka client (cluster metadata, cluster id).
    pub fn client(&self) -> &Client<Reports> {
        self.inner.producer.client()
    }

    /// Waits up to `timeout` for every queued record to be delivered.
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.inner.producer.flush(timeout)
    }

    /// Queues `rec`; the future gives where it landed. A full queue is refused at once
    /// (`QueueFull`), with the record given back.
    #[allow(clippy::type_complexity, clippy::result_large_err)]
    pub fn send_result<'a, K, P>(
        &self,
        rec: FutureRecord<'a, K, P>,
    ) -> Result<
        impl Future<Output = KafkaResult<Landed>> + Send + 'static + use<K, P>,
        (KafkaError, FutureRecord<'a, K, P>),
    >
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let (tx, rx) = oneshot::channel();
        let base = BaseRecord {
            topic: rec.topic,
            partition: rec.partition,
            payload: rec.payload,
            key: rec.key,
            timestamp: rec.timestamp,
            headers: rec.headers,
            delivery_opaque: Box::new(tx),
        };
        match self.inner.producer.send(base) {
            Ok(()) => Ok(async move { rx.await.unwrap_or(Err(KafkaError::Canceled)) }),
            Err((e, back)) => Err((
                e,
                FutureRecord {
                    topic: back.topic,
                    partition: back.partition,
                    payload: back.payload,
                    key: back.key,
                    timestamp: back.timestamp,
                    headers: back.headers,
                },
            )),
        }
    }

    /// Queues `rec`, retrying while the queue is full (for up to `queue_timeout`; `None`:
    /// until it is queued); the future gives where it landed.
    pub async fn queue<K, P>(
        &self,
        mut rec: FutureRecord<'_, K, P>,
        queue_timeout: Option<Duration>,
    ) -> KafkaResult<impl Future<Output = KafkaResult<Landed>> + Send + 'static + use<K, P>>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let deadline = queue_timeout.map(|t| Instant::now() + t);
        loop {
            match self.send_result(rec) {
                Ok(delivered) => return Ok(delivered),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if deadline.is_none_or(|d| Instant::now() < d) =>
                {
                    rec = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Queues `rec`, retrying while the queue is full for up to `queue_timeout`, then waits
    /// for its delivery.
    pub async fn send<K, P>(
        &self,
        rec: FutureRecord<'_, K, P>,
        queue_timeout: Duration,
    ) -> KafkaResult<Landed>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        self.queue(rec, Some(queue_timeout)).await?.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The polling thread stops within a round once the last handle is dropped, and with
    /// it the producer (its librdkafka threads).
    #[test]
    fn the_polling_thread_ends_with_the_last_handle() {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", "127.0.0.1:1");
        let p = Producer::new(&c).unwrap();
        let weak = Arc::downgrade(&p.inner.producer);
        let copy = p.clone();
        drop(p);
        assert!(weak.upgrade().is_some(), "a clone still holds it");
        drop(copy);
        let deadline = Instant::now() + POLL_ROUND * 3;
        while weak.upgrade().is_some() {
            assert!(
                Instant::now() < deadline,
                "the polling thread kept the producer"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A record nobody can deliver fails its future (here: the message timeout passes with
    /// no broker), rather than leaving it pending.
    #[tokio::test]
    async fn an_undeliverable_record_fails_its_future() {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", "127.0.0.1:1")
            .set("message.timeout.ms", "300");
        let p = Producer::new(&c).unwrap();
        let r = p
            .send(
                FutureRecord::to("t").key("k").payload("v"),
                Duration::from_secs(1),
            )
            .await;
        assert!(r.is_err(), "{r:?}");
    }
}
