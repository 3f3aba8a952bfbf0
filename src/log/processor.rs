//! The command processor. Through the consumer group it owns some `commands` partitions;
//! for each it first catches up on the partition's `events` (and on the `catalog` log),
//! then decides every command after the last command offset an event records, appends
//! exactly one event per distinct command_id, and only then writes the derived outputs and
//! commits the consumer offset. It never uses Kafka transactions: the log itself says
//! what was decided, so a crash between event and commit re-executes nothing.
//!
//! Two processors briefly owning one partition: both append; the first event to chain
//! onto the head wins for every applier, and a writer whose event did not land at the
//! offset it expected drops its state, re-reads the log and resumes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::FutureExt;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::derive::{OutRecord, derived_batch, result_record};
use super::reader::{Record, read_to_end};
use super::{LogError, Topics, client_config, now_ms, producer_config};
use crate::codec;
use crate::config::KafkaConfig;
use crate::domain::command::CATALOG_KEY;
use crate::domain::decide::{self, StateRead};
use crate::domain::event::{CommandSource, LogId, ScopeRef};
use crate::domain::state::{
    Applied, BundleRecord, Chain, SlotRecord, UndecodableInput, infallible,
};
use crate::domain::{
    BundleId, BundleVersion, CatalogState, Command, CommandInput, CommandResult, Decision,
    ErrorCode, Grants, RegistryEvent, Rejection, Timestamp,
};
use crate::metrics::{CommandLabels, Metrics};
use crate::view::plan::{self, Write};
use crate::view::store::StateStore;

/// The catalog as every processor sees it, with the next `catalog` offset to read.
#[derive(Debug)]
pub struct SharedCatalog {
    /// The catalog log's state.
    pub state: CatalogState,
    /// Next offset of the `catalog` topic.
    pub next_offset: i64,
}

/// Shared handle on the catalog.
pub type CatalogHandle = Arc<RwLock<SharedCatalog>>;

/// A new, empty catalog handle.
pub fn new_catalog() -> CatalogHandle {
    Arc::new(RwLock::new(SharedCatalog {
        state: CatalogState::new(),
        next_offset: 0,
    }))
}

/// Applies one `catalog` record to the shared catalog.
pub fn apply_catalog_record(
    cat: &CatalogHandle,
    r: &Record,
) -> Result<Option<RegistryEvent>, LogError> {
    let e = decode_event_record("catalog", r)?;
    Ok(apply_catalog_event(cat, &e, r.offset)?.then_some(e))
}

/// Applies catalog event `e`, read at `offset`, to the shared catalog. True when it changed
/// the catalog (false for one already applied).
pub fn apply_catalog_event(
    cat: &CatalogHandle,
    e: &RegistryEvent,
    offset: i64,
) -> Result<bool, LogError> {
    let mut c = cat.write().expect("catalog lock");
    let applied = c.state.apply(e).map_err(|g| LogError::Gap(g.to_string()))?;
    c.next_offset = c.next_offset.max(offset + 1);
    Ok(applied == Applied::Applied)
}

fn decode_event_record(topic: &str, r: &Record) -> Result<RegistryEvent, LogError> {
    let bytes = r.payload.as_deref().unwrap_or_default();
    codec::decode_event(bytes).map_err(|e| LogError::Corrupt {
        topic: topic.to_owned(),
        partition: r.partition,
        offset: r.offset,
        detail: e.to_string(),
    })
}

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

/// The lagging `commands` partitions (and their committed offsets) seen at the last check.
#[derive(Debug, Default)]
struct StallWatch {
    last: Option<BTreeMap<i32, i64>>,
}

/// Marks a conflict on the catalog log in the set of conflicted partitions.
const CATALOG_PARTITION: i32 = -1;

/// One owned partition; its records live in the state store.
struct Owned {
    /// Head of its `events` chain.
    chain: Chain,
    /// Highest `commands` offset recorded in one of its events.
    last_command_offset: Option<i64>,
    /// Next offset expected on `events` for this partition.
    events_next: i64,
}

impl Owned {
    fn new(p: i32) -> Self {
        Self {
            chain: Chain::new(LogId::Events, p),
            last_command_offset: None,
            events_next: 0,
        }
    }

    /// Notes the command offset an applied event records.
    fn note(&mut self, e: &RegistryEvent) {
        self.last_command_offset = Some(
            self.last_command_offset
                .map_or(e.source.offset, |o| o.max(e.source.offset)),
        );
    }
}

/// A settled batch whose derived outputs are still being delivered, and the `commands`
/// offsets to commit once they are.
struct InFlight {
    deliveries: Vec<DeliveryFuture>,
    commit: BTreeMap<i32, i64>,
}

/// An event appended, waiting for its delivery.
struct Pending {
    partition: i32,
    source_offset: i64,
    event: RegistryEvent,
    writes: Vec<Write>,
    delivery: DeliveryFuture,
    started: Timestamp,
}

/// The processor.
pub struct Processor {
    cfg: KafkaConfig,
    topics: Topics,
    grants: Grants,
    consumer: StreamConsumer<Ctx>,
    producer: FutureProducer,
    owned: HashMap<i32, Owned>,
    /// The previous batch's derived outputs, awaited while the next batch is decided.
    in_flight: Option<InFlight>,
    store: StateStore,
    catalog: CatalogHandle,
    /// Next offset this processor expects its own catalog event to land at (set when a
    /// partition load reads the catalog log to its end).
    catalog_expected: i64,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("owned", &self.owned.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The planner's reads for catalog events, which touch no bundle or slot.
struct NoSnapshot;
impl StateRead for NoSnapshot {
    type Error = std::convert::Infallible;
    fn bundle(&self, _: &BundleId, _: &BundleVersion) -> Result<Option<BundleRecord>, Self::Error> {
        Ok(None)
    }
    fn slot(&self, _: &BundleId, _: &ScopeRef) -> Result<Option<SlotRecord>, Self::Error> {
        Ok(None)
    }
    fn result(&self, _: &uuid::Uuid) -> Result<Option<CommandResult>, Self::Error> {
        Ok(None)
    }
}

impl Processor {
    /// Joins the consumer group on `commands`; keeps partition state in `store`.
    pub fn new(
        cfg: &KafkaConfig,
        store: StateStore,
        grants: Grants,
        catalog: CatalogHandle,
        metrics: Arc<Metrics>,
    ) -> Result<Self, LogError> {
        let topics = Topics::new(&cfg.topic_prefix);
        let consumer: StreamConsumer<Ctx> = client_config(cfg)
            .set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("max.poll.interval.ms", "300000")
            .set("fetch.wait.max.ms", cfg.processor_fetch_wait_ms.to_string())
            .set("partition.assignment.strategy", "range")
            .create_with_context(Ctx::default())?;
        consumer.subscribe(&[&topics.commands])?;
        let producer: FutureProducer = producer_config(cfg).create()?;
        Ok(Self {
            cfg: cfg.clone(),
            topics,
            grants,
            consumer,
            producer,
            owned: HashMap::new(),
            in_flight: None,
            store,
            catalog,
            catalog_expected: 0,
            metrics,
        })
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), LogError> {
        info!(group = %self.cfg.group_id, "processor started");
        let mut stall = StallWatch::default();
        let mut tick = tokio::time::interval(STALL_CHECK_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            // With a batch in flight, go on while commands are waiting; when none is, finish
            // that batch (its outputs and its commit) before waiting for more.
            let waiting = if self.in_flight.is_some() {
                self.consumer
                    .recv()
                    .now_or_never()
                    .map(|m| m.map(|m| Record::from_message(&m)))
            } else {
                None
            };
            if waiting.is_none() {
                self.finish_in_flight_or_resync().await;
            }
            let first = match waiting {
                Some(m) => m,
                None => tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = tick.tick() => {
                        self.check_stalled_group(&mut stall);
                        continue;
                    }
                    m = self.consumer.recv() => m.map(|m| Record::from_message(&m)),
                },
            };
            self.handle_rebalance().await;
            let first = match first {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "commands consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let mut batch = vec![first];
            while batch.len() < 1000 {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(m)) => batch.push(Record::from_message(&m)),
                    _ => break,
                }
            }
            let now = now_ms();
            for r in &batch {
                let waited = (now - r.timestamp_ms.unwrap_or(now)).max(0) as f64 / 1000.0;
                self.metrics.command_receive_seconds.observe(waited);
            }
            self.handle_rebalance().await;
            // A failed batch is retried (after re-syncing from the log) until it succeeds:
            // its records are never dropped. Records already decided are skipped on retry.
            let mut backoff = Duration::from_millis(200);
            while let Err(e) = self.process(batch.clone()).await {
                warn!(error = %e, "batch failed; re-syncing from the log and retrying");
                // Nothing in flight is committed: the reload re-derives its outputs.
                self.in_flight = None;
                self.owned.clear();
                if *shutdown.borrow() {
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                self.handle_rebalance().await;
                // Drop records of partitions this processor no longer owns.
                let assignment = self.consumer.assignment().ok();
                if let Some(a) = assignment {
                    let owned: Vec<i32> = a.elements().iter().map(|e| e.partition()).collect();
                    batch.retain(|r| owned.contains(&r.partition));
                }
            }
        }
        if let Err(e) = self.finish_in_flight().await {
            warn!(error = %e, "derived outputs of the last batch failed; the next owner re-derives them");
        }
        let _ = self.producer.flush(Duration::from_secs(10));
        info!("processor stopped");
        Ok(())
    }

    async fn handle_rebalance(&mut self) {
        let revoked: Vec<i32> =
            std::mem::take(&mut *self.consumer.context().revoked.lock().expect("lock"));
        if !revoked.is_empty() {
            self.finish_in_flight_or_resync().await;
        }
        for p in revoked {
            debug!(partition = p, "partition revoked");
            self.owned.remove(&p);
            if let Err(e) = self.store.clear(p) {
                warn!(partition = p, error = %e, "clearing a revoked partition's state failed");
            }
        }
        let assigned: Vec<i32> =
            std::mem::take(&mut *self.consumer.context().assigned.lock().expect("lock"));
        for p in assigned {
            let committed = self.committed(p).unwrap_or(0);
            if let Err(e) = self.load(p, committed).await {
                warn!(partition = p, error = %e, "catch-up failed; will retry on the next command");
            }
        }
    }

    /// tansu 0.6 can leave a group stuck: when a member dies without leaving and another
    /// joins before the dead one's session expires, the dead member stays the leader of the
    /// new generation, the survivor is synced with no partitions, and the expiry brings no
    /// rebalance. So when this processor owns nothing while some `commands` partition has
    /// records past its committed offset, and those offsets have not moved since the last
    /// check, it leaves and rejoins the group. A healthy group (someone is committing) and
    /// an idle one (no lag) are left alone.
    fn check_stalled_group(&mut self, watch: &mut StallWatch) {
        let owns_some = self.consumer.assignment().is_ok_and(|a| a.count() > 0);
        if owns_some {
            watch.last = None;
            return;
        }
        let lagging = match tokio::task::block_in_place(|| self.lagging_partitions()) {
            Ok(l) => l,
            Err(e) => {
                debug!(error = %e, "group stall check failed");
                return;
            }
        };
        if lagging.is_empty() {
            watch.last = None;
            return;
        }
        if watch.last.as_ref() != Some(&lagging) {
            watch.last = Some(lagging);
            return;
        }
        warn!(
            ?lagging,
            "no partitions owned while commands wait and nobody commits; rejoining the group"
        );
        self.metrics.group_rejoins.inc();
        watch.last = None;
        self.consumer.unsubscribe();
        if let Err(e) = self.consumer.subscribe(&[&self.topics.commands]) {
            warn!(error = %e, "re-subscribing to commands failed");
        }
    }

    /// Committed offsets of the `commands` partitions that have records past them.
    fn lagging_partitions(&self) -> Result<BTreeMap<i32, i64>, LogError> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.cfg.partitions {
            tpl.add_partition(&self.topics.commands, p);
        }
        let committed = self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(5))?;
        let mut lagging = BTreeMap::new();
        for e in committed.elements() {
            let p = e.partition();
            let (low, high) =
                self.consumer
                    .fetch_watermarks(&self.topics.commands, p, Duration::from_secs(5))?;
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

    fn committed(&self, p: i32) -> Option<i64> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topics.commands, p);
        let c = self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .ok()?;
        match c.find_partition(&self.topics.commands, p)?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }

    /// Catches up partition `p` from the log and re-derives the outputs of every event
    /// whose command sits at or after the committed offset `committed`.
    async fn load(&mut self, p: i32, committed: i64) -> Result<(), LogError> {
        let cfg = self.cfg.clone();
        let topics = self.topics.clone();
        let catalog = self.catalog.clone();
        let store = self.store.partition(p);
        let (owned, rederive, catalog_end) =
            tokio::task::block_in_place(|| -> Result<_, LogError> {
                self.store.clear(p)?;
                let mut own = Owned::new(p);
                let mut rederive = Vec::new();
                own.events_next = read_to_end(&cfg, &topics.events, p, 0, |r| {
                    let e = decode_event_record(&topics.events, &r)?;
                    let encoded = r.payload.as_deref().unwrap_or_default();
                    let (applied, w) = store.apply(&mut own.chain, &e, encoded)?;
                    if applied == Applied::Applied {
                        own.note(&e);
                        if e.source.offset >= committed {
                            rederive.push((e, w, r.offset));
                        }
                    }
                    Ok(())
                })?;
                let from = catalog.read().expect("catalog lock").next_offset;
                let catalog_end = read_to_end(&cfg, &topics.catalog, 0, from, |r| {
                    if let Some(e) = apply_catalog_record(&catalog, &r)?
                        && e.source.partition == p
                        && e.source.offset >= committed
                    {
                        let encoded = r.payload.as_deref().unwrap_or_default();
                        let w = infallible(plan::plan(&e, encoded, &NoSnapshot));
                        rederive.push((e, w, r.offset));
                    }
                    Ok(())
                })?;
                Ok((own, rederive, catalog_end))
            })?;
        self.catalog_expected =
            catalog_end.max(self.catalog.read().expect("catalog lock").next_offset);
        info!(
            partition = p,
            last_seq = owned.chain.last_seq,
            rederived = rederive.len(),
            "partition caught up"
        );
        let mut futs = Vec::new();
        let batch = rederive.iter().map(|(e, w, off)| (e, w.as_slice(), *off));
        for r in derived_batch(&self.topics, batch) {
            futs.push(self.enqueue(&r).await?);
        }
        for f in futs {
            delivered(f.await)?;
        }
        self.owned.insert(p, owned);
        Ok(())
    }

    async fn enqueue(&self, r: &OutRecord) -> Result<DeliveryFuture, LogError> {
        let headers: Vec<(&str, &str)> = r
            .content_type
            .map(|ct| ("content-type", ct))
            .into_iter()
            .collect();
        self.send(&r.topic, None, &r.key, &r.payload, &headers)
            .await
    }

    async fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<DeliveryFuture, LogError> {
        loop {
            let mut owned = OwnedHeaders::new_with_capacity(headers.len());
            for (k, v) in headers {
                owned = owned.insert(Header {
                    key: k,
                    value: Some(*v),
                });
            }
            let mut rec = FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(owned);
            if let Some(p) = partition {
                rec = rec.partition(p);
            }
            match self.producer.send_result(rec) {
                Ok(f) => return Ok(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    fn skip_offset(&self, p: i32) -> Option<i64> {
        let own = self.owned.get(&p)?.last_command_offset;
        let cat = self
            .catalog
            .read()
            .expect("catalog lock")
            .state
            .last_command_offset
            .get(&p)
            .copied();
        own.max(cat)
    }

    /// Processes a batch; partitions where another writer was noticed are reloaded from
    /// the log and their records run again (those already decided are skipped).
    async fn process(&mut self, batch: Vec<Record>) -> Result<(), LogError> {
        let mut todo = batch;
        for _ in 0..10 {
            let conflicted = self.process_once(&todo).await?;
            if conflicted.is_empty() {
                return Ok(());
            }
            if conflicted.contains(&CATALOG_PARTITION) {
                self.reset_catalog();
            }
            todo.retain(|r| {
                conflicted.contains(&r.partition) || conflicted.contains(&CATALOG_PARTITION)
            });
        }
        Err(LogError::Topic(
            "a partition kept conflicting with another writer; giving up this batch".into(),
        ))
    }

    /// Forgets the catalog state so that the next load re-reads the catalog log.
    fn reset_catalog(&mut self) {
        let mut c = self.catalog.write().expect("catalog lock");
        c.state = CatalogState::new();
        c.next_offset = 0;
        self.owned.clear();
    }

    async fn process_once(&mut self, batch: &[Record]) -> Result<Vec<i32>, LogError> {
        let mut pending: Vec<Pending> = Vec::new();
        let mut other = Vec::new();
        let mut commit: BTreeMap<i32, i64> = BTreeMap::new();
        for rec in batch {
            let rec = rec.clone();
            let p = rec.partition;
            commit.insert(p, rec.offset + 1);
            if !self.owned.contains_key(&p) {
                self.load(p, rec.offset).await?;
            }
            if self.skip_offset(p).is_some_and(|o| rec.offset <= o) {
                continue;
            }
            let (decision, key) = self.decide(&rec, &mut other).await?;
            match decision {
                None => {}
                Some(Decision::Repeat(r)) => {
                    self.count(&r);
                    other.push(self.enqueue(&result_record(&self.topics, &r)).await?);
                }
                Some(Decision::Append(ev)) => {
                    let bytes = codec::encode_event(&ev);
                    let (topic, part, writes) = if ev.log == LogId::Catalog {
                        let w = infallible(plan::plan(&ev, &bytes, &NoSnapshot));
                        let mut c = self.catalog.write().expect("catalog lock");
                        c.state
                            .apply(&ev)
                            .map_err(|g| LogError::Gap(g.to_string()))?;
                        (self.topics.catalog.clone(), 0, w)
                    } else {
                        let own = self.owned.get_mut(&p).expect("loaded above");
                        let (_, w) = self.store.partition(p).apply(&mut own.chain, &ev, &bytes)?;
                        own.note(&ev);
                        (self.topics.events.clone(), p, w)
                    };
                    // Avro single-object encoding identifies itself (C3 01 + schema
                    // fingerprint); the one header lets consumers find a command's event
                    // without decoding.
                    let command_id = ev.command_id.to_string();
                    let delivery = self
                        .send(
                            &topic,
                            Some(part),
                            &key,
                            &bytes,
                            &[("mpr-command-id", &command_id)],
                        )
                        .await?;
                    pending.push(Pending {
                        partition: p,
                        source_offset: rec.offset,
                        event: ev,
                        writes,
                        delivery,
                        started: Timestamp::from_millis(rec.timestamp_ms.unwrap_or_else(now_ms)),
                    });
                }
            }
        }
        self.settle(pending, other, commit).await
    }

    /// Waits for the appended events, checks each landed where expected, writes derived
    /// outputs, and commits.
    async fn settle(
        &mut self,
        pending: Vec<Pending>,
        other: Vec<DeliveryFuture>,
        mut commit: BTreeMap<i32, i64>,
    ) -> Result<Vec<i32>, LogError> {
        let mut conflicted: BTreeMap<i32, i64> = BTreeMap::new();
        let mut landed: Vec<(RegistryEvent, Vec<Write>, i64)> = Vec::with_capacity(pending.len());
        debug!(
            events = pending.len(),
            other = other.len(),
            "settling batch"
        );
        for pe in pending {
            let key = if pe.event.log == LogId::Catalog {
                CATALOG_PARTITION
            } else {
                pe.partition
            };
            if conflicted.contains_key(&key) {
                continue;
            }
            let d = delivered(pe.delivery.await)?;
            let expected = if pe.event.log == LogId::Catalog {
                let exp = self.catalog_expected;
                if d.offset == exp {
                    self.catalog_expected = d.offset + 1;
                }
                exp
            } else {
                let own = self
                    .owned
                    .get_mut(&pe.partition)
                    .expect("owned while pending");
                let exp = own.events_next;
                if d.offset == exp {
                    own.events_next = d.offset + 1;
                }
                exp
            };
            if d.offset != expected {
                warn!(
                    partition = pe.partition,
                    expected,
                    landed = d.offset,
                    "another writer appended to this log; re-syncing"
                );
                self.metrics.resyncs.inc();
                conflicted.insert(key, pe.source_offset);
                continue;
            }
            self.count(&CommandResult::from_event(&pe.event));
            let lat = (now_ms() - pe.started.millis()).max(0) as f64 / 1000.0;
            self.metrics.command_seconds.observe(lat);
            landed.push((pe.event, pe.writes, d.offset));
        }
        let mut derived_futs = Vec::new();
        let batch = landed.iter().map(|(e, w, off)| (e, w.as_slice(), *off));
        for r in derived_batch(&self.topics, batch) {
            derived_futs.push(self.enqueue(&r).await?);
        }
        debug!(
            derived = derived_futs.len(),
            "events durable; derived outputs in flight"
        );
        for p in conflicted.keys() {
            self.owned.remove(p);
            commit.remove(p);
        }
        // Pipelined by one batch: this batch's derived outputs are delivered (and its
        // offsets committed) while the next batch is decided; the previous batch's are
        // awaited now. A commit still follows its outputs, so a crash re-derives them.
        let previous = self.in_flight.replace(InFlight {
            deliveries: other.into_iter().chain(derived_futs).collect(),
            commit,
        });
        if let Some(previous) = previous {
            self.finish(previous).await?;
        }
        Ok(conflicted.into_keys().collect())
    }

    /// Awaits a batch's derived outputs, then commits its offsets.
    async fn finish(&mut self, batch: InFlight) -> Result<(), LogError> {
        for f in batch.deliveries {
            delivered(f.await)?;
        }
        debug!("batch settled");
        if !batch.commit.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (p, o) in &batch.commit {
                tpl.add_partition_offset(&self.topics.commands, *p, Offset::Offset(*o))?;
            }
            self.consumer.commit(&tpl, CommitMode::Async)?;
        }
        Ok(())
    }

    /// Finishes the batch in flight, if any.
    /// Finishes the batch in flight; if its outputs fail, forgets the owned partitions so
    /// that each is reloaded (and its outputs re-derived) before its next command.
    async fn finish_in_flight_or_resync(&mut self) {
        if let Err(e) = self.finish_in_flight().await {
            warn!(error = %e, "derived outputs failed; re-syncing from the log");
            self.owned.clear();
        }
    }

    async fn finish_in_flight(&mut self) -> Result<(), LogError> {
        match self.in_flight.take() {
            Some(batch) => self.finish(batch).await,
            None => Ok(()),
        }
    }

    fn count(&self, r: &CommandResult) {
        self.metrics
            .commands
            .get_or_create(&CommandLabels {
                command_type: r.command_type.map_or("UNKNOWN", |t| t.as_str()).to_owned(),
                outcome: format!("{:?}", r.outcome).to_uppercase(),
                code: r
                    .error
                    .as_ref()
                    .map_or("none", |e| e.code.as_str())
                    .to_owned(),
            })
            .inc();
    }

    /// Decodes and decides one record. Undecodable input goes to the DLQ (its future is
    /// pushed to `other`); when its command_id is recoverable it is also rejected.
    async fn decide(
        &self,
        rec: &Record,
        other: &mut Vec<DeliveryFuture>,
    ) -> Result<(Option<Decision>, Vec<u8>), LogError> {
        let p = rec.partition;
        let key = rec.key.clone().unwrap_or_default();
        let payload = rec.payload.as_deref().unwrap_or_default();
        let source = CommandSource {
            partition: p,
            offset: rec.offset,
        };
        let observed_at = Timestamp::from_millis(rec.timestamp_ms.unwrap_or(0));
        let key_str = String::from_utf8_lossy(&key).into_owned();
        let undecodable = |command_id, error: Rejection| UndecodableInput {
            command_id,
            bundle_id: key_str.parse::<BundleId>().ok(),
            error,
            source,
            observed_at,
        };
        let own = self.owned.get(&p).expect("loaded before deciding");
        let state = self.store.partition(p);
        match codec::decode_command(payload, rec.header("content-type")) {
            Ok(envelope) => {
                if envelope.command.partition_key() != key_str {
                    let r = Rejection::new(
                        ErrorCode::InvalidPayload,
                        format!(
                            "command keyed {key_str:?} must be keyed {:?} (its bundle_id) so that a family stays in one partition",
                            envelope.command.partition_key()
                        ),
                    );
                    let d = decide::decide_undecodable(
                        &state,
                        &own.chain,
                        &undecodable(envelope.command_id, r),
                    )?;
                    return Ok((Some(d), key));
                }
                let input = CommandInput {
                    envelope,
                    source,
                    observed_at,
                };
                debug!(command_id = %input.envelope.command_id, partition = p, offset = rec.offset, "deciding");
                let d = if matches!(input.envelope.command, Command::SetCatalog(_))
                    || key_str == CATALOG_KEY
                {
                    self.catalog
                        .read()
                        .expect("catalog lock")
                        .state
                        .decide(&self.grants, &input)
                } else {
                    let c = self.catalog.read().expect("catalog lock");
                    decide::decide(&state, &own.chain, &c.state.catalog, &self.grants, &input)?
                };
                Ok((Some(d), key))
            }
            Err(e) => {
                warn!(partition = p, offset = rec.offset, code = %e.code, error = %e.message, "undecodable command to DLQ");
                self.metrics.dlq.inc();
                let mut headers = vec![
                    ("mpr-error-code", e.code.as_str().to_owned()),
                    ("mpr-error-message", e.message.clone()),
                    ("mpr-source-topic", self.topics.commands.clone()),
                    ("mpr-source-partition", p.to_string()),
                    ("mpr-source-offset", rec.offset.to_string()),
                ];
                if let Some(id) = e.command_id {
                    headers.push(("mpr-command-id", id.to_string()));
                }
                let ct = rec
                    .header("content-type")
                    .unwrap_or("application/octet-stream")
                    .to_owned();
                headers.push(("content-type", ct));
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                other.push(
                    self.send(&self.topics.dlq, Some(p), &key, payload, &headers)
                        .await?,
                );
                let d = match e.command_id {
                    Some(id) => Some(decide::decide_undecodable(
                        &state,
                        &own.chain,
                        &undecodable(id, e.rejection()),
                    )?),
                    None => None,
                };
                Ok((d, key))
            }
        }
    }
}

fn delivered(
    r: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) -> Result<rdkafka::producer::future_producer::Delivery, LogError> {
    match r {
        Ok(Ok(d)) => Ok(d),
        Ok(Err((e, _))) => Err(e.into()),
        Err(_) => Err(LogError::Topic("producer dropped before delivery".into())),
    }
}
