//! The processor's partition driver: the sans-IO core of the command processor, as
//! quinn-proto's `Connection` is to its endpoint. It owns what the processor knows of each
//! `commands` partition it is assigned (phase, position, the window of records not yet
//! committed, what is in flight) and turns inputs (assignments, revocations, finished
//! catch-ups, records, delivery reports, the time) into [`Action`]s: load a partition,
//! produce a record, commit an offset, pause or resume fetching. It does no network I/O
//! and reads no clock; the shell in [`super::processor`] does both. It decides through the
//! pure domain (`decide`) against the processor's RocksDB state store.
//!
//! Partitions are independent: a failed write, a conflicting writer or an oversized record
//! on one partition sends that partition alone back to catch-up (with backoff); the others
//! go on. Records are kept in the partition's window until every output of their command
//! is delivered, and only then is their offset committed, so nothing is lost across a
//! failure, a reload or a crash.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use super::derive::{OutRecord, derived_batch, result_record};
use super::reader::Record;
use super::{LogError, Topics};
use crate::codec;
use crate::domain::decide::{self, StateRead};
use crate::domain::event::{CommandSource, LogId, ScopeRef};
use crate::domain::state::{BundleRecord, SlotRecord, UndecodableInput, infallible};
use crate::domain::trust::{SIGNATURE_HEADER, Signer, StateMac};
use crate::domain::{
    BundleId, BundleVersion, CatalogState, CommandInput, CommandResult, Decision, ErrorCode,
    Grants, RegistryEvent, Rejection, Timestamp,
};
use crate::metrics::{CommandLabels, Metrics};
use crate::view::plan::{self, Write};
use crate::view::store::{Outbox, Position, StateStore};

use super::catalog::CatalogHandle;

/// Limits of the driver.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Records a partition may hold uncommitted before its fetching is paused.
    pub window: usize,
    /// Bytes of an undecodable record's payload copied to the DLQ; the rest is dropped
    /// and the record is identified by its coordinates and SHA-256.
    pub dlq_payload_bytes: usize,
    /// First retry delay of a failed partition, doubled per failure.
    pub backoff_ms: i64,
    /// Longest retry delay.
    pub backoff_max_ms: i64,
    /// Shortest time between two commits of one partition.
    pub commit_interval_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            window: 5_000,
            dlq_payload_bytes: 64 * 1024,
            backoff_ms: 200,
            backoff_max_ms: 5_000,
            commit_interval_ms: 100,
        }
    }
}

/// What a finished catch-up of one partition found.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The partition's position after catch-up.
    pub pos: Position,
    /// Its committed `commands` offset.
    pub committed: i64,
    /// Events (with their view writes and `events` offsets) whose command is at or after
    /// `committed`: their outputs are produced again.
    pub rederive: Vec<(RegistryEvent, Vec<Write>, i64)>,
    /// The end of the `catalog` log the catch-up read to.
    pub catalog_end: i64,
    /// Events the catch-up read and applied.
    pub applied: u64,
}

/// One record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produce {
    /// Topic.
    pub topic: String,
    /// Explicit partition, or by key.
    pub partition: Option<i32>,
    /// Key.
    pub key: Vec<u8>,
    /// Payload.
    pub payload: Vec<u8>,
    /// Headers.
    pub headers: Vec<(&'static str, String)>,
}

impl From<OutRecord> for Produce {
    fn from(r: OutRecord) -> Self {
        Self {
            topic: r.topic,
            partition: None,
            key: r.key,
            payload: r.payload,
            headers: r
                .content_type
                .map(|ct| ("content-type", ct.to_owned()))
                .into_iter()
                .collect(),
        }
    }
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Catch partition `p` up from the log and report [`Driver::loaded`] with `generation`.
    Load {
        /// Partition.
        p: i32,
        /// The partition's generation, handed back with the result.
        generation: u64,
    },
    /// Produce a record and report its delivery with `token`.
    Produce {
        /// Handed back to [`Driver::delivered`].
        token: u64,
        /// The record.
        record: Produce,
    },
    /// Commit `offset` (the next record to read) of `commands` partition `p`.
    Commit {
        /// Partition.
        p: i32,
        /// Offset.
        offset: i64,
    },
    /// Stop fetching partition `p`: its window is full.
    Pause(i32),
    /// Fetch partition `p` again.
    Resume(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A catch-up is running.
    Loading,
    /// Deciding.
    Ready,
    /// Failed; catch up again at this time.
    Waiting(i64),
}

/// One assigned partition.
#[derive(Debug)]
struct Part {
    generation: u64,
    phase: Phase,
    pos: Position,
    /// Records received and not committed, in offset order.
    window: VecDeque<Record>,
    /// Index in `window` of the next record to decide.
    cursor: usize,
    /// Deliveries outstanding per `commands` offset.
    outstanding: BTreeMap<i64, u32>,
    /// Events landed and not yet derived, for their derived outputs.
    landed: Vec<(RegistryEvent, Vec<Write>, i64)>,
    /// `commands` offsets of the decided events whose append is not yet reported. Landed
    /// events wait behind the first of them: delivery reports can arrive out of order (the
    /// processor polls them unordered), and derived outputs must follow the decision order,
    /// or a `state` record of an earlier event would overwrite a later one's.
    appending: BTreeSet<i64>,
    /// Every record below this offset is decided and its outputs delivered.
    done: i64,
    /// Last committed offset (the next to read).
    committed: i64,
    /// When the last commit was made.
    committed_at_ms: i64,
    failures: u32,
    paused: bool,
}

impl Part {
    fn new(p: i32, generation: u64) -> Self {
        Self {
            generation,
            phase: Phase::Loading,
            pos: Position::new(p),
            window: VecDeque::new(),
            cursor: 0,
            outstanding: BTreeMap::new(),
            landed: Vec::new(),
            appending: BTreeSet::new(),
            done: 0,
            committed: 0,
            committed_at_ms: i64::MIN,
            failures: 0,
            paused: false,
        }
    }

    fn expect(&mut self, offset: i64, n: u32) {
        if n > 0 {
            *self.outstanding.entry(offset).or_default() += n;
        }
    }

    fn done(&mut self, offset: i64) {
        if let Some(n) = self.outstanding.get_mut(&offset) {
            *n -= 1;
            if *n == 0 {
                self.outstanding.remove(&offset);
            }
        }
    }

    /// The offset up to which every record is decided and every output delivered.
    fn commit_point(&self) -> i64 {
        let undecided = self.window.get(self.cursor).map(|r| r.offset);
        let undelivered = self.outstanding.keys().next().copied();
        let last = self.window.back().map_or(self.done, |r| r.offset + 1);
        [undecided, undelivered]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(last)
            .max(self.done)
    }
}

/// What a produced record is for.
#[derive(Debug)]
enum Token {
    /// An event appended to `events` (or `catalog`), expected at `expected`.
    Event {
        p: i32,
        generation: u64,
        expected: i64,
        event: Box<RegistryEvent>,
        writes: Vec<Write>,
        started_ms: i64,
    },
    /// Any other output of the command at `source_offset`.
    Output {
        p: i32,
        generation: u64,
        source_offset: i64,
    },
}

/// The partition driver.
pub struct Driver {
    store: Arc<StateStore>,
    grants: Grants,
    /// The registry key: signs every event.
    signer: Signer,
    /// The MAC key of `state` records, derived from the registry key.
    state_mac: StateMac,
    catalog: CatalogHandle,
    topics: Topics,
    limits: Limits,
    metrics: Arc<Metrics>,
    parts: BTreeMap<i32, Part>,
    tokens: HashMap<u64, Token>,
    next_token: u64,
    next_generation: u64,
    /// Next offset this processor expects its own catalog event to land at.
    catalog_expected: i64,
    /// Catalog events appended and not yet delivered.
    catalog_in_flight: usize,
    /// Partitions with a catch-up running (at most one each, even across a revocation).
    loading: std::collections::BTreeSet<i32>,
    actions: VecDeque<Action>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("parts", &self.parts.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The planner's reads for catalog events, which touch no bundle or slot.
pub(crate) struct NoSnapshot;
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

impl Driver {
    /// A driver deciding with `grants` against `store` and the shared `catalog`, signing
    /// with the registry key `signer`.
    pub fn new(
        store: Arc<StateStore>,
        grants: Grants,
        signer: Signer,
        catalog: CatalogHandle,
        topics: Topics,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            grants,
            state_mac: StateMac::of(&signer),
            signer,
            catalog,
            topics,
            limits,
            metrics,
            parts: BTreeMap::new(),
            tokens: HashMap::new(),
            next_token: 0,
            next_generation: 0,
            catalog_expected: 0,
            catalog_in_flight: 0,
            loading: std::collections::BTreeSet::new(),
            actions: VecDeque::new(),
        }
    }

    /// Starts partition `p`'s catch-up for its current generation, unless one is running:
    /// its result then comes back stale and starts this one.
    fn request_load(&mut self, p: i32) {
        let Some(part) = self.parts.get_mut(&p) else {
            return;
        };
        part.phase = Phase::Loading;
        if self.loading.insert(p) {
            let generation = part.generation;
            self.actions.push_back(Action::Load { p, generation });
        }
    }

    /// The next action for the shell, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Partitions assigned now.
    pub fn owned(&self) -> Vec<i32> {
        self.parts.keys().copied().collect()
    }

    /// Whether partition `p` is assigned and deciding.
    pub fn is_ready(&self, p: i32) -> bool {
        self.parts.get(&p).is_some_and(|x| x.phase == Phase::Ready)
    }

    /// When the driver next needs [`Driver::step`] for a timer (a failed partition's retry).
    pub fn next_timeout(&self) -> Option<i64> {
        self.parts
            .values()
            .filter_map(|x| match x.phase {
                Phase::Waiting(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// Partitions assigned by the group: each is caught up before its records are decided.
    pub fn assigned(&mut self, ps: &[i32]) {
        for &p in ps {
            if self.parts.contains_key(&p) {
                continue;
            }
            let generation = self.generation();
            self.parts.insert(p, Part::new(p, generation));
            // A partition paused under an earlier assignment stays paused in the client
            // across a revocation: fetch it again.
            self.actions.push_back(Action::Resume(p));
            self.request_load(p);
        }
    }

    /// Partitions revoked by the group: nothing more is decided for them, and deliveries
    /// still outstanding for them are ignored (the next owner re-derives their outputs).
    pub fn revoked(&mut self, ps: &[i32]) {
        for p in ps {
            if self.parts.remove(p).is_some() {
                debug!(partition = p, "partition revoked");
            }
        }
    }

    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// A catch-up started by [`Action::Load`] finished.
    pub fn loaded(
        &mut self,
        p: i32,
        generation: u64,
        result: Result<Loaded, LogError>,
        now_ms: i64,
    ) {
        self.loading.remove(&p);
        let Some(part) = self.parts.get_mut(&p) else {
            return;
        };
        if part.phase != Phase::Loading {
            return;
        }
        if part.generation != generation {
            // A newer catch-up was asked for while this one ran.
            self.request_load(p);
            return;
        }
        let loaded = match result {
            Ok(l) => l,
            Err(e) => {
                warn!(partition = p, error = %e, "catch-up failed; retrying after a backoff");
                self.fail(p, now_ms, true);
                return;
            }
        };
        self.metrics.catchups.inc();
        self.metrics.catchup_events.inc_by(loaded.applied);
        info!(
            partition = p,
            applied = loaded.applied,
            last_seq = loaded.pos.chain.last_seq,
            committed = loaded.committed,
            rederived = loaded.rederive.len(),
            "partition caught up"
        );
        part.pos = loaded.pos;
        part.committed = part.committed.max(loaded.committed);
        part.done = part.done.max(part.committed);
        let committed = part.done;
        while part.window.front().is_some_and(|r| r.offset < committed) {
            part.window.pop_front();
        }
        part.cursor = 0;
        part.outstanding.clear();
        part.landed.clear();
        part.appending.clear();
        part.phase = Phase::Ready;
        if self.catalog_in_flight == 0 {
            // Never backwards: the catch-up's watermark may predate a catalog event this
            // processor appended since (only `reset_catalog` moves it back).
            let next = self.catalog.read().expect("catalog lock").next_offset;
            self.catalog_expected = self.catalog_expected.max(loaded.catalog_end).max(next);
        }
        if let Some(min) = loaded
            .rederive
            .iter()
            .map(|(e, _, _)| e.source.offset)
            .min()
        {
            let batch = loaded
                .rederive
                .iter()
                .map(|(e, w, o)| (e, w.as_slice(), *o));
            let out = derived_batch(&self.topics, &self.state_mac, batch);
            self.produce_outputs(p, min, out);
        }
    }

    /// A record of `commands`, in offset order per partition.
    pub fn record(&mut self, r: Record) {
        let p = r.partition;
        let Some(part) = self.parts.get_mut(&p) else {
            warn!(
                partition = p,
                offset = r.offset,
                "a record of a partition not owned; dropped"
            );
            return;
        };
        if r.offset < part.done || part.window.back().is_some_and(|b| b.offset >= r.offset) {
            return;
        }
        part.window.push_back(r);
        if part.window.len() >= self.limits.window && !part.paused {
            part.paused = true;
            self.actions.push_back(Action::Pause(p));
        }
    }

    /// The delivery report of the record produced with `token`: its offset, or the error.
    pub fn delivered(&mut self, token: u64, result: Result<i64, LogError>, now_ms: i64) {
        let Some(t) = self.tokens.remove(&token) else {
            return;
        };
        match t {
            Token::Output {
                p,
                generation,
                source_offset,
            } => {
                let Some(part) = self.live(p, generation) else {
                    return;
                };
                match result {
                    Ok(_) => part.done(source_offset),
                    Err(e) => {
                        warn!(partition = p, error = %e, "an output failed; re-syncing this partition");
                        self.fail(p, now_ms, true);
                    }
                }
            }
            Token::Event {
                p,
                generation,
                expected,
                event,
                writes,
                started_ms,
            } => {
                let catalog = event.log == LogId::Catalog;
                if catalog {
                    self.catalog_in_flight = self.catalog_in_flight.saturating_sub(1);
                }
                if self.live(p, generation).is_none() {
                    return;
                }
                let landed = match result {
                    Ok(o) => o,
                    Err(e) => {
                        warn!(partition = p, error = %e, "an event append failed; re-syncing this partition");
                        if catalog {
                            self.reset_catalog(now_ms);
                        }
                        self.fail(p, now_ms, true);
                        return;
                    }
                };
                if landed != expected {
                    warn!(
                        partition = p,
                        expected,
                        landed,
                        catalog,
                        "another writer appended to this log; re-syncing"
                    );
                    self.metrics.resyncs.inc();
                    if catalog {
                        self.reset_catalog(now_ms);
                    } else {
                        self.fail(p, now_ms, false);
                    }
                    return;
                }
                self.count(&CommandResult::from_event(&event));
                let lat = (now_ms - started_ms).max(0) as f64 / 1000.0;
                self.metrics.command_seconds.observe(lat);
                // The command stays outstanding until its outputs are queued.
                let part = self.parts.get_mut(&p).expect("live above");
                part.failures = 0;
                part.appending.remove(&event.source.offset);
                part.landed.push((*event, writes, landed));
            }
        }
    }

    /// The partition `p` of `generation`, when it is still assigned in that generation.
    fn live(&mut self, p: i32, generation: u64) -> Option<&mut Part> {
        self.parts
            .get_mut(&p)
            .filter(|x| x.generation == generation && x.phase == Phase::Ready)
    }

    /// Sends partition `p` back to catch-up, at once or after a backoff. Its window is
    /// kept: every record not committed is decided again (those the log shows decided are
    /// skipped), and what was in flight is ignored.
    fn fail(&mut self, p: i32, now_ms: i64, backoff: bool) {
        let generation = self.generation();
        let limits = self.limits;
        let Some(part) = self.parts.get_mut(&p) else {
            return;
        };
        self.metrics.partition_failures.inc();
        part.generation = generation;
        part.cursor = 0;
        part.outstanding.clear();
        part.landed.clear();
        part.appending.clear();
        if backoff {
            part.failures += 1;
            let delay = (limits.backoff_ms << part.failures.min(10).saturating_sub(1))
                .min(limits.backoff_max_ms);
            part.phase = Phase::Waiting(now_ms + delay);
        } else {
            self.request_load(p);
        }
    }

    /// Another writer won the catalog log: forget the catalog and catch every partition up
    /// again (their decisions read the catalog).
    fn reset_catalog(&mut self, now_ms: i64) {
        {
            let mut c = self.catalog.write().expect("catalog lock");
            c.state = CatalogState::new();
            c.next_offset = 0;
        }
        for p in self.owned() {
            self.fail(p, now_ms, false);
        }
    }

    /// Fires due retries, decides every record it can, produces the derived outputs of
    /// landed events, and commits what is finished.
    pub fn step(&mut self, now_ms: i64) {
        let due: Vec<i32> = self
            .parts
            .iter()
            .filter(|(_, x)| matches!(x.phase, Phase::Waiting(at) if at <= now_ms))
            .map(|(p, _)| *p)
            .collect();
        for p in due {
            self.request_load(p);
        }
        for p in self.owned() {
            self.flush_landed(p);
            if let Err(e) = self.decide_ready(p, now_ms) {
                warn!(partition = p, error = %e, "deciding failed; re-syncing this partition");
                self.fail(p, now_ms, true);
            }
            self.commit(p, now_ms);
        }
    }

    /// Produces the derived outputs of the landed events that no earlier event of the
    /// partition is still waiting for, in decision order.
    fn flush_landed(&mut self, p: i32) {
        let part = self.parts.get_mut(&p).expect("owned");
        if part.landed.is_empty() {
            return;
        }
        part.landed.sort_by_key(|(e, _, _)| e.source.offset);
        let ready = match part.appending.first() {
            Some(&first) => part
                .landed
                .partition_point(|(e, _, _)| e.source.offset < first),
            None => part.landed.len(),
        };
        if ready == 0 {
            return;
        }
        let waiting = part.landed.split_off(ready);
        let landed = std::mem::replace(&mut part.landed, waiting);
        let min = landed
            .iter()
            .map(|(e, _, _)| e.source.offset)
            .min()
            .expect("non-empty");
        let batch = landed.iter().map(|(e, w, o)| (e, w.as_slice(), *o));
        let out = derived_batch(&self.topics, &self.state_mac, batch);
        self.produce_outputs(p, min, out);
        let part = self.parts.get_mut(&p).expect("owned");
        for (e, _, _) in &landed {
            part.done(e.source.offset);
        }
    }

    /// At shutdown: the commits of everything decided and delivered so far, without the
    /// commit interval. Nothing more is decided or produced.
    pub fn final_commits(&mut self) -> Vec<(i32, i64)> {
        for p in self.owned() {
            self.commit(p, i64::MAX);
        }
        let mut out = Vec::new();
        self.actions.retain(|a| match a {
            Action::Commit { p, offset } => {
                out.push((*p, *offset));
                false
            }
            _ => true,
        });
        out
    }

    fn produce_outputs(&mut self, p: i32, source_offset: i64, out: Vec<OutRecord>) {
        let part = self.parts.get_mut(&p).expect("owned");
        let generation = part.generation;
        part.expect(source_offset, out.len() as u32);
        for r in out {
            let token = self.token(Token::Output {
                p,
                generation,
                source_offset,
            });
            self.actions.push_back(Action::Produce {
                token,
                record: r.into(),
            });
        }
    }

    fn token(&mut self, t: Token) -> u64 {
        self.next_token += 1;
        self.tokens.insert(self.next_token, t);
        self.next_token
    }

    fn commit(&mut self, p: i32, now_ms: i64) {
        let window = self.limits.window;
        let interval = self.limits.commit_interval_ms;
        let Some(part) = self.parts.get_mut(&p) else {
            return;
        };
        if part.phase != Phase::Ready {
            return;
        }
        let at = part.commit_point();
        let mut popped = 0;
        while part.window.front().is_some_and(|r| r.offset < at) {
            part.window.pop_front();
            popped += 1;
        }
        part.cursor -= popped;
        if part.paused && part.window.len() < window / 2 {
            part.paused = false;
            self.actions.push_back(Action::Resume(p));
        }
        part.done = at;
        if at > part.committed && now_ms.saturating_sub(part.committed_at_ms) >= interval {
            part.committed = at;
            part.committed_at_ms = now_ms;
            self.actions.push_back(Action::Commit { p, offset: at });
            if let Err(e) = self.store.prune(p, at) {
                warn!(partition = p, error = %e, "pruning the outbox failed");
            }
        }
    }

    fn skip_offset(&self, p: i32, part: &Part) -> Option<i64> {
        let cat = self
            .catalog
            .read()
            .expect("catalog lock")
            .state
            .last_command_offset
            .get(&p)
            .copied();
        part.pos.last_command_offset.max(cat)
    }

    fn decide_ready(&mut self, p: i32, now_ms: i64) -> Result<(), LogError> {
        loop {
            let part = self.parts.get(&p).expect("owned");
            if part.phase != Phase::Ready {
                return Ok(());
            }
            let Some(rec) = part.window.get(part.cursor).cloned() else {
                return Ok(());
            };
            let skip = self.skip_offset(p, part).is_some_and(|o| rec.offset <= o);
            self.parts.get_mut(&p).expect("owned").cursor += 1;
            if !skip {
                self.decide_record(&rec, now_ms)?;
            }
        }
    }

    /// Decides one record: its event (or repeated result) and, for undecodable input, its
    /// dead letter.
    fn decide_record(&mut self, rec: &Record, now_ms: i64) -> Result<(), LogError> {
        let p = rec.partition;
        let (decision, key) = self.decide(rec)?;
        match decision {
            None => {}
            Some(Decision::Repeat(r)) => {
                self.count(&r);
                self.produce_outputs(p, rec.offset, vec![result_record(&self.topics, &r)]);
            }
            Some(Decision::Append(mut ev)) => {
                ev.sign(&self.signer);
                let bytes = codec::encode_event(&ev);
                let part = self.parts.get_mut(&p).expect("owned");
                let generation = part.generation;
                let (topic, partition, expected, writes) = if ev.log == LogId::Catalog {
                    let w = infallible(plan::plan(&ev, &bytes, &NoSnapshot));
                    let mut c = self.catalog.write().expect("catalog lock");
                    c.state
                        .apply(&ev)
                        .map_err(|g| LogError::Gap(g.to_string()))?;
                    let expected = self.catalog_expected;
                    self.catalog_expected += 1;
                    self.catalog_in_flight += 1;
                    (self.topics.catalog.clone(), 0, expected, w)
                } else {
                    let expected = part.pos.events_next;
                    let (_, w) = self.store.partition(p).apply(
                        &mut part.pos,
                        &ev,
                        &bytes,
                        expected,
                        Outbox::Undoable,
                    )?;
                    (self.topics.events.clone(), p, expected, w)
                };
                part.expect(rec.offset, 1);
                part.appending.insert(rec.offset);
                debug!(
                    partition = p,
                    offset = rec.offset,
                    seq = ev.seq,
                    expected,
                    "decided"
                );
                let command_id = ev.command_id.to_string();
                let token = self.token(Token::Event {
                    p,
                    generation,
                    expected,
                    event: Box::new(ev),
                    writes,
                    started_ms: rec.timestamp_ms.unwrap_or(now_ms),
                });
                // Avro single-object encoding identifies itself; the one header lets
                // consumers find a command's event without decoding.
                self.actions.push_back(Action::Produce {
                    token,
                    record: Produce {
                        topic,
                        partition: Some(partition),
                        key,
                        payload: bytes,
                        headers: vec![("mpr-command-id", command_id)],
                    },
                });
            }
        }
        Ok(())
    }

    /// Decodes and decides one record. Undecodable input is dead-lettered; when its
    /// command_id is readable it is also rejected, so its caller gets a result.
    fn decide(&mut self, rec: &Record) -> Result<(Option<Decision>, Vec<u8>), LogError> {
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
        let part = self.parts.get(&p).expect("owned");
        let state = self.store.partition(p);
        let chain = &part.pos.chain;
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
                        chain,
                        &undecodable(envelope.command_id, r),
                    )?;
                    return Ok((Some(d), key));
                }
                let input = CommandInput {
                    envelope,
                    source,
                    observed_at,
                    credential: codec::command_credential(
                        payload,
                        rec.header("content-type"),
                        rec.header(SIGNATURE_HEADER),
                    ),
                };
                let c = self.catalog.read().expect("catalog lock");
                let d = decide::route(&state, chain, &c.state, &self.grants, &input)?;
                Ok((Some(d), key))
            }
            Err(e) => {
                warn!(partition = p, offset = rec.offset, bytes = payload.len(), code = %e.code, error = %e.message, "undecodable command to DLQ");
                self.metrics.dlq.inc();
                let d = match e.command_id {
                    Some(id) => Some(decide::decide_undecodable(
                        &state,
                        chain,
                        &undecodable(id, e.rejection()),
                    )?),
                    None => None,
                };
                let letter = dead_letter(&self.topics, rec, &e, self.limits.dlq_payload_bytes);
                let generation = part.generation;
                self.parts.get_mut(&p).expect("owned").expect(rec.offset, 1);
                let token = self.token(Token::Output {
                    p,
                    generation,
                    source_offset: rec.offset,
                });
                self.actions.push_back(Action::Produce {
                    token,
                    record: letter,
                });
                Ok((d, key))
            }
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
}

/// The DLQ record of an undecodable `commands` record: its key, its payload (the first
/// `max_payload` bytes of it), and headers with the error, its coordinates, its size and
/// the SHA-256 of the whole payload, so that a record of any size the broker accepts can
/// be dead-lettered and still identified.
pub fn dead_letter(
    topics: &Topics,
    rec: &Record,
    e: &codec::DecodeError,
    max_payload: usize,
) -> Produce {
    let payload = rec.payload.as_deref().unwrap_or_default();
    let mut headers = vec![
        ("mpr-error-code", e.code.as_str().to_owned()),
        ("mpr-error-message", e.message.clone()),
        ("mpr-source-topic", topics.commands.clone()),
        ("mpr-source-partition", rec.partition.to_string()),
        ("mpr-source-offset", rec.offset.to_string()),
        ("mpr-source-bytes", payload.len().to_string()),
        ("mpr-source-sha256", hex::encode(Sha256::digest(payload))),
    ];
    if let Some(id) = e.command_id {
        headers.push(("mpr-command-id", id.to_string()));
    }
    if payload.len() > max_payload {
        headers.push(("mpr-truncated", "true".to_owned()));
    }
    let ct = rec
        .header("content-type")
        .unwrap_or("application/octet-stream");
    headers.push(("content-type", ct.to_owned()));
    Produce {
        topic: topics.dlq.clone(),
        partition: Some(rec.partition),
        key: rec.key.clone().unwrap_or_default(),
        payload: payload[..payload.len().min(max_payload)].to_vec(),
        headers,
    }
}

#[cfg(test)]
mod tests {
    //! Every race and failure of the processor, fed to the driver in a chosen order,
    //! against a real RocksDB state store in a temp directory and no broker.

    use super::*;
    use crate::domain::event::Outcome;
    use crate::domain::{CommandEnvelope, RegistryEventType};
    use crate::log::catalog::new_catalog;
    use crate::testkit;
    use crate::view::store::StoreIdentity;

    struct H {
        driver: Driver,
        topics: Topics,
        // Dropped after the driver (which holds the store).
        _dir: tempfile::TempDir,
    }

    fn harness(limits: Limits) -> H {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            StateStore::open(&dir.path().join("state"), 8, &StoreIdentity::scratch()).unwrap(),
        );
        let topics = Topics::new("mpr.");
        let driver = Driver::new(
            store,
            Grants::default(),
            testkit::registry_signer(),
            new_catalog(),
            topics.clone(),
            limits,
            Arc::new(Metrics::new()),
        );
        H {
            driver,
            topics,
            _dir: dir,
        }
    }

    fn json_record(p: i32, offset: i64, env: &CommandEnvelope) -> Record {
        raw_record(
            p,
            offset,
            env.command.partition_key(),
            serde_json::to_vec(env).unwrap(),
            true,
        )
    }

    fn raw_record(p: i32, offset: i64, key: &str, payload: Vec<u8>, json: bool) -> Record {
        Record {
            topic: "mpr.commands".into(),
            partition: p,
            offset,
            key: Some(key.as_bytes().to_vec()),
            payload: Some(payload),
            timestamp_ms: Some(1_800_000_000_000 + offset),
            headers: if json {
                vec![("content-type".into(), b"application/json".to_vec())]
            } else {
                Vec::new()
            },
        }
    }

    fn drain(d: &mut Driver) -> Vec<Action> {
        std::iter::from_fn(|| d.poll_action()).collect()
    }

    /// Assigns `ps` and finishes their catch-ups with empty partitions.
    fn ready(h: &mut H, ps: &[i32]) {
        h.driver.assigned(ps);
        for a in drain(&mut h.driver) {
            let Action::Load { p, generation } = a else {
                assert!(matches!(a, Action::Resume(_)), "loads and resumes: {a:?}");
                continue;
            };
            let loaded = Loaded {
                pos: Position::new(p),
                committed: 0,
                rederive: Vec::new(),
                catalog_end: 0,
                applied: 0,
            };
            h.driver.loaded(p, generation, Ok(loaded), 0);
        }
        for &p in ps {
            assert!(h.driver.is_ready(p));
        }
    }

    /// The produced records among `actions`, with their tokens.
    fn produced(actions: &[Action]) -> Vec<(u64, &Produce)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Produce { token, record } => Some((*token, record)),
                _ => None,
            })
            .collect()
    }

    fn events_of<'a>(h: &H, ps: &'a [(u64, &'a Produce)]) -> Vec<(u64, RegistryEvent)> {
        ps.iter()
            .filter(|(_, r)| r.topic == h.topics.events)
            .map(|(t, r)| (*t, codec::decode_event(&r.payload).unwrap()))
            .collect()
    }

    fn commits(actions: &[Action]) -> Vec<(i32, i64)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Commit { p, offset } => Some((*p, *offset)),
                _ => None,
            })
            .collect()
    }

    fn err() -> LogError {
        LogError::Topic("injected".into())
    }

    /// Delivers every produced record of `actions` at consecutive offsets from `next`.
    fn deliver_all(d: &mut Driver, actions: &[Action], next: &mut BTreeMap<String, i64>) {
        for (token, r) in produced(actions) {
            let o = next
                .entry(format!("{}/{:?}", r.topic, r.partition))
                .or_default();
            d.delivered(token, Ok(*o), 0);
            *o += 1;
        }
    }

    #[test]
    fn a_failed_output_stalls_its_partition_only() {
        let mut h = harness(Limits::default());
        ready(&mut h, &[0, 1]);
        h.driver
            .record(json_record(0, 0, &testkit::publish("mf", "fam-a", "1.0.0")));
        h.driver
            .record(json_record(1, 0, &testkit::publish("mf", "fam-b", "1.0.0")));
        h.driver.step(0);
        let a = drain(&mut h.driver);
        let mut next = BTreeMap::new();
        deliver_all(&mut h.driver, &a, &mut next);
        h.driver.step(1);
        // Both events landed: their outputs are in flight.
        let outputs = drain(&mut h.driver);
        let p = produced(&outputs);
        // Partition 0's CloudEvent (keyed by its family) fails; every other output lands.
        let failing = p
            .iter()
            .find(|(_, r)| r.key == b"fam-a" && r.topic == h.topics.lifecycle)
            .map(|(t, _)| *t)
            .unwrap();
        for (t, _) in &p {
            let r = if *t == failing { Err(err()) } else { Ok(0) };
            h.driver.delivered(*t, r, 2);
        }
        h.driver.step(2);
        let a = drain(&mut h.driver);
        assert_eq!(
            commits(&a),
            vec![(1, 1)],
            "partition 1 commits, partition 0 does not"
        );
        assert!(!h.driver.is_ready(0), "partition 0 waits to catch up again");
        // Partition 1 goes on deciding while partition 0 waits.
        h.driver
            .record(json_record(1, 1, &testkit::publish("mf", "fam-b", "1.0.1")));
        h.driver.step(3);
        let a = drain(&mut h.driver);
        let ev = events_of(&h, &produced(&a));
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].1.partition, 1);
        // After the backoff, partition 0 catches up again, and its record is not lost.
        h.driver.step(10_000);
        let a = drain(&mut h.driver);
        assert!(a.iter().any(|a| matches!(a, Action::Load { p: 0, .. })));
    }

    #[test]
    fn an_oversized_record_is_dead_lettered_truncated_and_rejected() {
        let mut h = harness(Limits::default());
        ready(&mut h, &[0]);
        let env = testkit::publish("mf", "fam-a", "1.0.0");
        let mut v = serde_json::to_value(&env).unwrap();
        v["reason"] = serde_json::Value::String("x".repeat(3 << 20));
        let payload = serde_json::to_vec(&v).unwrap();
        let digest = hex::encode(Sha256::digest(&payload));
        h.driver
            .record(raw_record(0, 0, "fam-a", payload.clone(), true));
        // An Avro command padded past the limit keeps its id readable too.
        let avro_env = testkit::publish("mf", "fam-a", "1.0.1");
        let mut avro = codec::avro::encode_command(&avro_env);
        avro.resize(3 << 20, 0xAB);
        h.driver.record(raw_record(0, 1, "fam-a", avro, false));
        h.driver.step(0);
        let a = drain(&mut h.driver);
        let p = produced(&a);
        let dlq: Vec<_> = p.iter().filter(|(_, r)| r.topic == h.topics.dlq).collect();
        assert_eq!(dlq.len(), 2);
        let limit = Limits::default().dlq_payload_bytes;
        for (_, r) in &dlq {
            assert_eq!(r.payload.len(), limit);
            let h = |k: &str| {
                r.headers
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.clone())
            };
            assert_eq!(h("mpr-truncated").as_deref(), Some("true"));
            assert!(h("mpr-source-sha256").is_some());
            assert_eq!(h("mpr-source-partition").as_deref(), Some("0"));
        }
        let first = |k: &str| {
            dlq[0]
                .1
                .headers
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(first("mpr-source-sha256"), Some(digest));
        assert_eq!(first("mpr-source-bytes"), Some(payload.len().to_string()));
        assert_eq!(first("mpr-source-offset").as_deref(), Some("0"));
        let ev = events_of(&h, &p);
        assert_eq!(
            ev.len(),
            2,
            "both commands are rejected, so each gets a result"
        );
        for ((_, e), id) in ev.iter().zip([env.command_id, avro_env.command_id]) {
            assert_eq!(e.command_id, id);
            assert_eq!(e.event_type, RegistryEventType::CommandRejected);
            assert_eq!(e.error.as_ref().unwrap().code, ErrorCode::InvalidPayload);
        }
    }

    #[test]
    fn records_of_a_revoked_partition_are_never_decided() {
        let mut h = harness(Limits::default());
        ready(&mut h, &[0]);
        h.driver
            .record(json_record(0, 0, &testkit::publish("mf", "fam-a", "1.0.0")));
        h.driver.revoked(&[0]);
        h.driver.step(0);
        assert!(produced(&drain(&mut h.driver)).is_empty());
        // A record of a partition not owned is dropped, not loaded.
        h.driver
            .record(json_record(2, 0, &testkit::publish("mf", "fam-c", "1.0.0")));
        h.driver.step(1);
        assert!(drain(&mut h.driver).is_empty());
    }

    #[test]
    fn a_delivery_of_a_revoked_generation_is_ignored() {
        let mut h = harness(Limits::default());
        ready(&mut h, &[0]);
        h.driver
            .record(json_record(0, 0, &testkit::publish("mf", "fam-a", "1.0.0")));
        h.driver.step(0);
        let a = drain(&mut h.driver);
        let (token, _) = produced(&a)[0];
        // Revoked and assigned again before the report arrives.
        h.driver.revoked(&[0]);
        ready(&mut h, &[0]);
        h.driver.delivered(token, Ok(0), 1);
        h.driver.step(1);
        assert!(
            drain(&mut h.driver).is_empty(),
            "no outputs, no commit for the old generation"
        );
    }

    #[test]
    fn another_writer_sends_the_partition_back_to_catch_up_at_once() {
        let mut h = harness(Limits::default());
        ready(&mut h, &[0, 1]);
        h.driver
            .record(json_record(0, 0, &testkit::publish("mf", "fam-a", "1.0.0")));
        h.driver.step(0);
        let a = drain(&mut h.driver);
        let (token, _) = produced(&a)[0];
        // Expected at offset 0; another writer's event is there.
        h.driver.delivered(token, Ok(1), 1);
        let a = drain(&mut h.driver);
        assert!(matches!(a[..], [Action::Load { p: 0, .. }]), "{a:?}");
        assert!(h.driver.is_ready(1), "the other partition is untouched");
    }

    /// Delivery reports may come back out of order (the processor polls them unordered);
    /// the derived outputs still follow the decision order, so the last `state` record of a
    /// key is the latest event's. Found by the candidates benchmark: a bootstrap from
    /// `state` held a bundle as REGISTERED that the events and the live view held ACTIVE.
    #[test]
    fn outputs_follow_the_decision_order_when_reports_do_not() {
        let mut h = harness(Limits::default());
        ready(&mut h, &[0]);
        h.driver
            .record(json_record(0, 0, &testkit::publish("mf", "fam-a", "1.0.0")));
        h.driver.step(0);
        let first = drain(&mut h.driver);
        h.driver.record(json_record(
            0,
            1,
            &testkit::envelope(
                "mf",
                crate::domain::Command::Nominate(testkit::target("fam-a", "1.0.0")),
            ),
        ));
        h.driver.step(1);
        let second = drain(&mut h.driver);
        let (e0, e1) = (
            events_of(&h, &produced(&first)),
            events_of(&h, &produced(&second)),
        );
        assert_eq!(e1[0].1.event_type, RegistryEventType::BundleNominated);
        // The nominate's append is reported first: nothing of it is derived yet.
        h.driver.delivered(e1[0].0, Ok(1), 2);
        h.driver.step(2);
        assert!(
            produced(&drain(&mut h.driver)).is_empty(),
            "the nominate's outputs wait for the publish's append"
        );
        h.driver.delivered(e0[0].0, Ok(0), 3);
        h.driver.step(3);
        let outputs = drain(&mut h.driver);
        let p = produced(&outputs);
        let results: Vec<u64> = p
            .iter()
            .filter(|(_, r)| r.topic == h.topics.results)
            .map(|(_, r)| {
                let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
                v["seq"].as_u64().unwrap()
            })
            .collect();
        assert_eq!(
            results,
            vec![e0[0].1.seq, e1[0].1.seq],
            "results in seq order"
        );
        let key = [&[crate::view::Table::Bundles as u8][..], b"fam-a\x001.0.0"].concat();
        let states: Vec<&Produce> = p
            .iter()
            .map(|(_, r)| *r)
            .filter(|r| r.topic == h.topics.state && r.key == key)
            .collect();
        assert_eq!(states.len(), 1, "one state record per key per batch");
        let value = &states[0].payload[..states[0].payload.len() - 32];
        let record: serde_json::Value = serde_json::from_slice(value).unwrap();
        assert_eq!(record["state"], "CANDIDATE");
        assert_eq!(record["last_seq"], e1[0].1.seq);
    }

    #[test]
    fn a_commit_waits_for_every_output_of_its_command() {
        let mut h = harness(Limits::default());
        ready(&mut h, &[0]);
        h.driver
            .record(json_record(0, 0, &testkit::publish("mf", "fam-a", "1.0.0")));
        h.driver
            .record(json_record(0, 1, &testkit::publish("mf", "fam-a", "1.0.1")));
        h.driver.step(0);
        let a = drain(&mut h.driver);
        let mut next = BTreeMap::new();
        deliver_all(&mut h.driver, &a, &mut next);
        h.driver.step(1);
        let outputs = drain(&mut h.driver);
        assert!(commits(&outputs).is_empty(), "outputs are in flight");
        let p = produced(&outputs);
        let (last, rest) = p.split_last().unwrap();
        for (t, _) in rest {
            h.driver.delivered(*t, Ok(0), 2);
        }
        h.driver.step(2);
        assert!(
            commits(&drain(&mut h.driver)).is_empty(),
            "one output is still in flight"
        );
        h.driver.delivered(last.0, Ok(0), 3);
        h.driver.step(3);
        assert_eq!(commits(&drain(&mut h.driver)), vec![(0, 2)]);
    }

    #[test]
    fn a_full_window_pauses_fetching_until_it_drains() {
        let mut h = harness(Limits {
            window: 4,
            ..Limits::default()
        });
        h.driver.assigned(&[0]);
        let load: Vec<_> = drain(&mut h.driver)
            .into_iter()
            .filter(|a| matches!(a, Action::Load { .. }))
            .collect();
        for i in 0..4 {
            h.driver.record(json_record(
                0,
                i,
                &testkit::publish("mf", "fam-a", &format!("1.0.{i}")),
            ));
        }
        assert_eq!(drain(&mut h.driver), vec![Action::Pause(0)]);
        let Action::Load { generation, .. } = load[0] else {
            panic!("load");
        };
        h.driver.loaded(
            0,
            generation,
            Ok(Loaded {
                pos: Position::new(0),
                committed: 0,
                rederive: Vec::new(),
                catalog_end: 0,
                applied: 0,
            }),
            0,
        );
        let mut next = BTreeMap::new();
        for now in 0..3 {
            h.driver.step(now);
            let a = drain(&mut h.driver);
            if a.contains(&Action::Resume(0)) {
                assert_eq!(commits(&a), vec![(0, 4)]);
                return;
            }
            deliver_all(&mut h.driver, &a, &mut next);
        }
        panic!("fetching was never resumed");
    }

    #[test]
    fn a_repeated_command_id_gets_its_first_result_and_no_event() {
        let mut h = harness(Limits::default());
        ready(&mut h, &[0]);
        let env = testkit::publish("mf", "fam-a", "1.0.0");
        h.driver.record(json_record(0, 0, &env));
        h.driver.record(json_record(0, 1, &env));
        h.driver.step(0);
        let a = drain(&mut h.driver);
        let p = produced(&a);
        let ev = events_of(&h, &p);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].1.outcome, Outcome::Accepted);
        let results: Vec<_> = p
            .iter()
            .filter(|(_, r)| r.topic == h.topics.results)
            .collect();
        assert_eq!(results.len(), 1, "the repeat answers with the first result");
        let r: CommandResult = serde_json::from_slice(&results[0].1.payload).unwrap();
        assert_eq!(r.event_id, ev[0].1.event_id);
    }

    #[test]
    fn a_record_the_log_shows_decided_is_skipped_after_catch_up() {
        let mut h = harness(Limits::default());
        h.driver.assigned(&[0]);
        let Some(Action::Load { generation, .. }) = drain(&mut h.driver)
            .into_iter()
            .find(|a| matches!(a, Action::Load { .. }))
        else {
            panic!("load");
        };
        h.driver
            .record(json_record(0, 5, &testkit::publish("mf", "fam-a", "1.0.0")));
        h.driver
            .record(json_record(0, 6, &testkit::publish("mf", "fam-a", "1.0.1")));
        let mut pos = Position::new(0);
        pos.last_command_offset = Some(5);
        h.driver.loaded(
            0,
            generation,
            Ok(Loaded {
                pos,
                committed: 5,
                rederive: Vec::new(),
                catalog_end: 0,
                applied: 0,
            }),
            0,
        );
        h.driver.step(0);
        let a = drain(&mut h.driver);
        let ev = events_of(&h, &produced(&a));
        assert_eq!(ev.len(), 1, "offset 5 was decided by an earlier owner");
        assert_eq!(ev[0].1.source.offset, 6);
    }
}
