//! The command processor's I/O shell around the sans-IO [`Driver`]: it moves records,
//! rebalances, delivery reports, finished catch-ups and the time into the driver, and
//! carries out the driver's actions with rdkafka (produce, commit, pause, resume) and on
//! blocking threads (catch-up). It decides nothing itself.
//!
//! Through the consumer group it owns some `commands` partitions. It never uses Kafka
//! transactions: the log itself says what was decided, so a crash between an event and
//! its commit re-executes nothing. The consumer is polled all the time, also while
//! outputs are in flight and while partitions catch up, so group membership (heartbeats,
//! rebalances) never waits on the registry's own work.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::catalog::CatalogHandle;
use super::catchup::{KafkaLog, catch_up};
use super::driver::{Action, Driver, Limits, Loaded, Produce};
use super::producer::Producer;
use super::reader::Record;
use super::{LogError, Topics, client_config, now_ms, producer_config};
use crate::config::{KafkaConfig, ProcessorConfig};
use crate::domain::Grants;
use crate::domain::trust::{KeySet, Signer};
use crate::metrics::Metrics;
use crate::view::store::{LAYOUT, StateStore, StoreIdentity};

/// Rebalance notifications handed from librdkafka's callback to the loop.
#[derive(Default)]
struct Ctx {
    assigned: Mutex<Vec<i32>>,
    revoked: Mutex<Vec<i32>>,
}

impl ClientContext for Ctx {}
impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = r {
            let mut rv = self.revoked.lock().expect("revoked lock");
            rv.extend(tpl.elements().iter().map(|e| e.partition()));
        }
    }
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = r {
            let mut a = self.assigned.lock().expect("assigned lock");
            a.extend(tpl.elements().iter().map(|e| e.partition()));
        }
    }
}

/// How often a processor that owns no partitions checks whether its group has stalled.
const STALL_CHECK_PERIOD: Duration = Duration::from_secs(10);
/// Largest record the producer sends: a command (256 KiB) becomes an event somewhat larger.
const MAX_RECORD_BYTES: usize = 4 << 20;

/// The lagging `commands` partitions (and their committed offsets) seen at the last check,
/// and how many checks in a row have seen them unchanged.
#[derive(Debug, Default)]
struct StallWatch {
    last: Option<BTreeMap<i32, i64>>,
    unchanged: u32,
}

/// Checks in a row that must see the same orphaned lag before a processor that owns some
/// partitions rejoins: about 30 s, longer than a partition's catch-up from its kept
/// position. One that owns none rejoins at the second check.
const STALL_CHECKS: u32 = 3;

type Delivery = Pin<Box<dyn Future<Output = (u64, Result<i64, LogError>)> + Send>>;

/// The processor.
pub struct Processor {
    cfg: KafkaConfig,
    topics: Topics,
    consumer: Arc<StreamConsumer<Ctx>>,
    producer: Producer,
    store: Arc<StateStore>,
    catalog: CatalogHandle,
    /// Registry keys accepted on the events a catch-up reads.
    accepted: Arc<KeySet>,
    driver: Driver,
    metrics: Arc<Metrics>,
    deliveries: FuturesUnordered<Delivery>,
    loads_tx: mpsc::UnboundedSender<(i32, u64, Result<Loaded, LogError>)>,
    loads_rx: mpsc::UnboundedReceiver<(i32, u64, Result<Loaded, LogError>)>,
    stall_tx: mpsc::UnboundedSender<Result<BTreeMap<i32, i64>, LogError>>,
    stall_rx: mpsc::UnboundedReceiver<Result<BTreeMap<i32, i64>, LogError>>,
    stall_check_running: bool,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("driver", &self.driver)
            .finish_non_exhaustive()
    }
}

impl Processor {
    /// Joins the consumer group on `commands`; keeps partition state in the store at
    /// `pcfg.state_path`, which survives restarts.
    pub fn new(
        cfg: &KafkaConfig,
        pcfg: &ProcessorConfig,
        grants: Grants,
        registry: Signer,
        accepted: KeySet,
        catalog: CatalogHandle,
        metrics: Arc<Metrics>,
    ) -> Result<Self, LogError> {
        let topics = Topics::new(&cfg.topic_prefix);
        let mut cc = client_config(cfg);
        if let Some(id) = &cfg.group_instance_id {
            cc.set("group.instance.id", id);
        }
        let consumer: StreamConsumer<Ctx> = cc
            .set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // See `KafkaConfig::session_timeout_ms` and docs/burst_stall.md.
            .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (cfg.session_timeout_ms / 15).max(500).to_string(),
            )
            .set("max.poll.interval.ms", "300000")
            .set("fetch.wait.max.ms", cfg.processor_fetch_wait_ms.to_string())
            .set("partition.assignment.strategy", "range")
            .create_with_context(Ctx::default())?;
        consumer.subscribe(&[&topics.commands])?;
        let producer = Producer::new(
            producer_config(cfg).set("message.max.bytes", MAX_RECORD_BYTES.to_string()),
        )?;
        let cluster_id = producer
            .client()
            .fetch_cluster_id(Duration::from_secs(10))
            .unwrap_or_default();
        let identity = StoreIdentity {
            layout: LAYOUT,
            cluster_id,
            events_topic: topics.events.clone(),
        };
        let store = Arc::new(StateStore::open(
            &pcfg.state_path,
            pcfg.state_cache_mib,
            &identity,
        )?);
        let driver = Driver::new(
            store.clone(),
            grants,
            registry,
            catalog.clone(),
            topics.clone(),
            Limits::default(),
            metrics.clone(),
        );
        let (loads_tx, loads_rx) = mpsc::unbounded_channel();
        let (stall_tx, stall_rx) = mpsc::unbounded_channel();
        Ok(Self {
            cfg: cfg.clone(),
            topics,
            consumer: Arc::new(consumer),
            producer,
            store,
            catalog,
            accepted: Arc::new(accepted),
            driver,
            metrics,
            deliveries: FuturesUnordered::new(),
            loads_tx,
            loads_rx,
            stall_tx,
            stall_rx,
            stall_check_running: false,
        })
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), LogError> {
        info!(group = %self.cfg.group_id, "processor started");
        let mut stall = StallWatch::default();
        let mut stall_tick = tokio::time::interval(STALL_CHECK_PERIOD);
        stall_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let consumer = self.consumer.clone();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = stall_tick.tick() => self.spawn_stall_check(),
                Some(lagging) = self.stall_rx.recv() => {
                    self.stall_check_running = false;
                    match lagging {
                        Ok(l) => self.check_stalled_group(&mut stall, l),
                        Err(e) => debug!(error = %e, "group stall check failed"),
                    }
                }
                _ = tick.tick() => {}
                Some((token, r)) = self.deliveries.next() => {
                    self.driver.delivered(token, r, now_ms());
                    // Take every report already in.
                    while let Some(Some((token, r))) = self.deliveries.next().now_or_never() {
                        self.driver.delivered(token, r, now_ms());
                    }
                }
                Some((p, generation, r)) = self.loads_rx.recv() => {
                    self.driver.loaded(p, generation, r, now_ms());
                }
                m = consumer.recv() => match m {
                    Ok(m) => {
                        self.take_record(Record::from_message(&m));
                        // Take what is already fetched, up to a batch.
                        for _ in 0..1000 {
                            match consumer.recv().now_or_never() {
                                Some(Ok(m)) => self.take_record(Record::from_message(&m)),
                                _ => break,
                            }
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "commands consumer error");
                    }
                },
            }
            self.rebalance();
            self.driver.step(now_ms());
            self.act().await;
        }
        // Let what is in flight land (bounded), then commit what is finished, so that a
        // restart neither re-derives nor re-reads it.
        let drain = async {
            while let Some((token, r)) = self.deliveries.next().await {
                self.driver.delivered(token, r, now_ms());
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
        let finals = self.driver.final_commits();
        if !finals.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (p, o) in &finals {
                let _ = tpl.add_partition_offset(&self.topics.commands, *p, Offset::Offset(*o));
            }
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
                warn!(error = %e, "the final commit failed; a restart re-derives the outputs");
            }
        }
        let _ = self.producer.flush(Duration::from_secs(10));
        info!("processor stopped");
        Ok(())
    }

    fn take_record(&mut self, r: Record) {
        // librdkafka runs the rebalance callback inside the poll that returned this
        // record: hand the driver the assignment before the record, or the first record of
        // a newly assigned partition would reach a driver that does not own it yet.
        self.rebalance();
        let now = now_ms();
        let waited = (now - r.timestamp_ms.unwrap_or(now)).max(0) as f64 / 1000.0;
        self.metrics.command_receive_seconds.observe(waited);
        self.driver.record(r);
    }

    /// Hands the rebalances librdkafka reported to the driver.
    fn rebalance(&mut self) {
        let revoked = std::mem::take(&mut *self.consumer.context().revoked.lock().expect("lock"));
        if !revoked.is_empty() {
            self.driver.revoked(&revoked);
        }
        let assigned = std::mem::take(&mut *self.consumer.context().assigned.lock().expect("lock"));
        if !assigned.is_empty() {
            info!(?assigned, "partitions assigned");
            self.driver.assigned(&assigned);
        }
    }

    /// Carries out the driver's actions.
    async fn act(&mut self) {
        while let Some(a) = self.driver.poll_action() {
            match a {
                Action::Produce { token, record } => {
                    let d = send(&self.producer, token, record).await;
                    self.deliveries.push(d);
                }
                Action::Commit { p, offset } => {
                    debug!(partition = p, offset, "commit");
                    let mut tpl = TopicPartitionList::new();
                    let r = tpl
                        .add_partition_offset(&self.topics.commands, p, Offset::Offset(offset))
                        .and_then(|()| self.consumer.commit(&tpl, CommitMode::Async));
                    if let Err(e) = r {
                        // The next commit covers it; a new owner re-derives, never re-decides.
                        debug!(partition = p, error = %e, "commit failed");
                    }
                }
                Action::Pause(p) | Action::Resume(p) => {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition(&self.topics.commands, p);
                    let r = if matches!(a, Action::Pause(_)) {
                        self.consumer.pause(&tpl)
                    } else {
                        self.consumer.resume(&tpl)
                    };
                    if let Err(e) = r {
                        warn!(partition = p, error = %e, "pausing or resuming failed");
                    }
                }
                Action::Load { p, generation } => self.spawn_load(p, generation),
            }
        }
    }

    /// Catches partition `p` up on a blocking thread; the result comes back on `loads`.
    fn spawn_load(&self, p: i32, generation: u64) {
        let (cfg, topics, store, catalog, keys, consumer, tx) = (
            self.cfg.clone(),
            self.topics.clone(),
            self.store.clone(),
            self.catalog.clone(),
            self.accepted.clone(),
            self.consumer.clone(),
            self.loads_tx.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let t0 = std::time::Instant::now();
            let c = committed(&consumer, &topics.commands, p);
            let t1 = std::time::Instant::now();
            let r = c.and_then(|c| {
                catch_up(&mut KafkaLog(&cfg), &topics, &store, &catalog, &keys, p, c)
            });
            info!(
                partition = p,
                committed_lookup_ms = (t1 - t0).as_millis() as u64,
                catch_up_ms = t1.elapsed().as_millis() as u64,
                ok = r.is_ok(),
                "catch-up finished"
            );
            let _ = tx.send((p, generation, r));
        });
    }

    /// tansu 0.6 can leave a group stuck: a member that dies or leaves may not be expired,
    /// or its partitions never handed to a survivor (the dead member stays the leader of
    /// the new generation and the survivor is synced with nothing, or no rebalance comes
    /// at all). So when some `commands` partition that this processor does not own has
    /// records past its committed offset, and that offset has not moved since the last
    /// check, it leaves and rejoins the group, which forces a rebalance. A healthy group
    /// (the owner commits as it goes) and an idle one (no lag) are left alone.
    fn check_stalled_group(&mut self, watch: &mut StallWatch, lagging: BTreeMap<i32, i64>) {
        let owned: Vec<i32> = self
            .consumer
            .assignment()
            .map(|a| a.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        let orphaned: BTreeMap<i32, i64> = lagging
            .into_iter()
            .filter(|(p, _)| !owned.contains(p))
            .collect();
        if orphaned.is_empty() {
            watch.last = None;
            return;
        }
        if watch.last.as_ref() != Some(&orphaned) {
            watch.last = Some(orphaned);
            watch.unchanged = 0;
            return;
        }
        watch.unchanged += 1;
        // Owning nothing while work waits is stuck for sure: rejoin at the second check.
        // Owning some, the orphaned partitions' owner may only be slow: wait longer.
        let needed = if owned.is_empty() {
            1
        } else {
            STALL_CHECKS - 1
        };
        if watch.unchanged < needed {
            return;
        }
        warn!(
            lagging = ?orphaned,
            ?owned,
            "partitions owned by nobody here wait with no commit for a check period; rejoining the group"
        );
        self.metrics.group_rejoins.inc();
        watch.last = None;
        self.consumer.unsubscribe();
        if let Err(e) = self.consumer.subscribe(&[&self.topics.commands]) {
            warn!(error = %e, "re-subscribing to commands failed");
        }
    }

    /// Asks, on a blocking thread, which `commands` partitions have records past their
    /// committed offsets; the answer comes back on `stall_rx`. The loop never waits for the
    /// broker's answers (each may take seconds while the group is busy).
    fn spawn_stall_check(&mut self) {
        if self.stall_check_running {
            return;
        }
        self.stall_check_running = true;
        let (consumer, topic, partitions, tx) = (
            self.consumer.clone(),
            self.topics.commands.clone(),
            self.cfg.partitions,
            self.stall_tx.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(lagging_partitions(&consumer, &topic, partitions));
        });
    }
}

/// Committed offsets of the `commands` partitions that have records past them (blocking).
fn lagging_partitions(
    consumer: &StreamConsumer<Ctx>,
    topic: &str,
    partitions: i32,
) -> Result<BTreeMap<i32, i64>, LogError> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(5))?;
    let mut lagging = BTreeMap::new();
    for e in committed.elements() {
        let p = e.partition();
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(5))?;
        let at = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        if at < high {
            lagging.insert(p, at);
        }
    }
    Ok(lagging)
}

/// What a committed-offset lookup of one partition says.
#[derive(Debug, PartialEq)]
enum Committed {
    /// The next offset to read.
    At(i64),
    /// The group has never committed this partition: it starts at its beginning.
    Never,
    /// The lookup failed or its answer lacks the partition: ask again, never assume 0.
    Retry(String),
}

/// Reads a committed-offset answer for partition `p` (pure, so that every case is tested).
fn interpret_committed(answer: Result<Option<Offset>, KafkaError>) -> Committed {
    match answer {
        Ok(Some(Offset::Offset(o))) => Committed::At(o),
        Ok(Some(Offset::Invalid)) => Committed::Never,
        Ok(Some(other)) => Committed::Retry(format!("unexpected committed offset {other:?}")),
        Ok(None) => Committed::Retry("the answer lacks the partition".into()),
        Err(e) => Committed::Retry(e.to_string()),
    }
}

/// The committed offset of `commands` partition `p` (blocking). A failed lookup is
/// retried, never taken for "nothing committed": that would re-derive the partition's
/// whole history (and send every CloudEvent again). Only a partition the group has truly
/// never committed starts at 0.
fn committed(consumer: &StreamConsumer<Ctx>, topic: &str, p: i32) -> Result<i64, LogError> {
    let mut backoff = Duration::from_millis(100);
    let mut last = String::new();
    for _ in 0..8 {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, p);
        let answer = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .map(|c| c.find_partition(topic, p).map(|e| e.offset()));
        match interpret_committed(answer) {
            Committed::At(o) => return Ok(o),
            Committed::Never => return Ok(0),
            Committed::Retry(why) => {
                debug!(partition = p, error = %why, "committed offset lookup failed; retrying");
                last = why;
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    Err(LogError::Topic(format!(
        "{topic}/{p}: committed offset lookup kept failing: {last}"
    )))
}

/// Queues one record with `producer`, waiting while its queue is full; the returned future
/// gives the record's offset.
async fn send(producer: &Producer, token: u64, r: Produce) -> Delivery {
    let rec = super::producer::record(&r);
    match producer.queue(rec, None).await {
        Ok(f) => Box::pin(f.map(move |d| {
            let r = match d {
                Ok((_, offset)) => Ok(offset),
                Err(KafkaError::Canceled) => {
                    Err(LogError::Topic("producer dropped before delivery".into()))
                }
                Err(e) => Err(e.into()),
            };
            (token, r)
        })),
        Err(e) => {
            let e: LogError = e.into();
            Box::pin(async move { (token, Err(e)) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode;

    /// A failed lookup is never "start from 0" (which re-derived a partition's whole
    /// history and re-sent every CloudEvent); only "never committed" is.
    #[test]
    fn a_failed_committed_lookup_is_retried_not_read_as_zero() {
        let failed = interpret_committed(Err(KafkaError::MetadataFetch(
            RDKafkaErrorCode::RequestTimedOut,
        )));
        assert!(matches!(failed, Committed::Retry(_)), "{failed:?}");
        assert!(matches!(interpret_committed(Ok(None)), Committed::Retry(_)));
        assert_eq!(
            interpret_committed(Ok(Some(Offset::Invalid))),
            Committed::Never
        );
        assert_eq!(
            interpret_committed(Ok(Some(Offset::Offset(42)))),
            Committed::At(42)
        );
    }
}
