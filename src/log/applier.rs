//! The view applier: tails every `events` partition and the `catalog` log into the RocksDB
//! view (and the shared catalog), from the positions the view recorded. Readiness: it
//! captures the high watermarks at start-up and reports ready only once every partition
//! has been read up to them, so a restarted replica never serves a stale view as current.
//! Afterwards the lag monitor ([`run_lag_monitor`]) keeps measuring how far the view is
//! behind the log, and [`ApplierStatus`] turns that into readiness and staleness.
//! Also bootstraps a view from the compacted `state` changelog.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::{info, warn};

use super::catalog::{CatalogHandle, apply_catalog_event, skip_untrusted};
use super::derive::verify_state_record;
use super::reader::{Record, read_all_to_end, read_to_end};
use super::verify::trusted_events;
use super::{LogError, Topics, client_config, now_ms};
use crate::config::KafkaConfig;
use crate::domain::RegistryEvent;
use crate::domain::event::LogId;
use crate::domain::state::Applied;
use crate::domain::trust::{KeySet, StateMac};
use crate::metrics::{Metrics, PartitionLabels, TopicLabels};
use crate::view::{Table, View, ViewVersion, Write};

/// What the applier and the lag monitor publish to the API: readiness and staleness.
#[derive(Debug)]
pub struct ApplierStatus {
    /// True once caught up to the start-up high watermarks.
    pub ready: AtomicBool,
    /// The view version after each applied event.
    pub version: watch::Sender<ViewVersion>,
    /// False once the applier has ended (returned, failed or panicked): the view is frozen.
    running: AtomicBool,
    /// The next offset the applier reads of each log (`catalog`, then each `events`
    /// partition), once what it read before is applied.
    read: Mutex<Vec<i64>>,
    /// Records between those offsets and the high watermarks at the last check; -1 before
    /// the first check.
    lag_events: AtomicI64,
    /// Wall-clock ms at which the view is known to have held every record then on the log
    /// (the start of the latest check whose watermarks the applier has read up to); -1
    /// before the first such check.
    current_at_ms: AtomicI64,
}

/// How current the view is, as the last lag check found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Records of `events` and `catalog` not yet applied; `None` before the first check.
    pub lag_events: Option<u64>,
    /// Milliseconds since the view last held everything on the log; `None` before then.
    pub age_ms: Option<u64>,
}

/// Bounds beyond which a replica reports not ready (`http.ready_max_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyBounds {
    /// Most records the view may lag behind the log.
    pub max_lag_events: u64,
    /// Most milliseconds since the view last held everything on the log; 0: no bound.
    pub max_age_ms: u64,
}

/// Why a replica is not ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// Still reading up to the start-up high watermarks.
    #[error("the view is still catching up with the log")]
    CatchingUp,
    /// The applier ended: nothing keeps the view up to date.
    #[error("the view applier stopped; the view is no longer kept up to date")]
    ApplierStopped,
    /// The view fell behind the log.
    #[error("the view is {lag} records behind the log (bound {bound})")]
    Lagging {
        /// Records behind.
        lag: u64,
        /// The configured bound.
        bound: u64,
    },
    /// The view has not been confirmed current for too long.
    #[error("the view was last known current {age_ms} ms ago (bound {bound_ms} ms)")]
    Stale {
        /// Milliseconds.
        age_ms: u64,
        /// The configured bound.
        bound_ms: u64,
    },
}

impl ApplierStatus {
    /// A not-ready, running status at `version`, before any lag check.
    pub fn new(version: ViewVersion) -> Arc<Self> {
        Arc::new(Self {
            ready: AtomicBool::new(false),
            version: watch::Sender::new(version),
            running: AtomicBool::new(true),
            read: Mutex::new(Vec::new()),
            lag_events: AtomicI64::new(-1),
            current_at_ms: AtomicI64::new(-1),
        })
    }

    /// Marks the applier ended; from then on the replica is not ready.
    pub fn mark_stopped(&self) {
        self.running.store(false, Ordering::SeqCst);
    }

    /// Whether the applier still runs.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Records the offsets the applier reads next, once what came before is applied.
    pub fn set_read(&self, next: &[i64]) {
        let mut r = self.read.lock().expect("read positions lock");
        r.clear();
        r.extend_from_slice(next);
    }

    /// The offsets the applier reads next (empty before it starts).
    pub fn read_positions(&self) -> Vec<i64> {
        self.read.lock().expect("read positions lock").clone()
    }

    /// Records a lag check: `lag_events` behind, and the wall-clock ms (if any) at which
    /// the view is now known to have held everything then on the log.
    pub fn record_check(&self, lag_events: u64, current_at_ms: Option<i64>) {
        self.lag_events
            .store(lag_events.min(i64::MAX as u64) as i64, Ordering::SeqCst);
        if let Some(t) = current_at_ms {
            self.current_at_ms.fetch_max(t, Ordering::SeqCst);
        }
    }

    /// How current the view is at wall-clock `now_ms`.
    pub fn freshness(&self, now_ms: i64) -> Freshness {
        let lag = self.lag_events.load(Ordering::SeqCst);
        let at = self.current_at_ms.load(Ordering::SeqCst);
        Freshness {
            lag_events: u64::try_from(lag).ok(),
            age_ms: (at >= 0).then(|| (now_ms - at).max(0) as u64),
        }
    }

    /// Whether the replica may report ready at `now_ms`: caught up at start-up, applier
    /// running, and the view within `bounds` of the log (an unmeasured lag or age counts
    /// as within them: the start-up catch-up covers the time before the first check).
    pub fn readiness(&self, bounds: ReadyBounds, now_ms: i64) -> Result<Freshness, NotReady> {
        if !self.is_running() {
            return Err(NotReady::ApplierStopped);
        }
        if !self.ready.load(Ordering::SeqCst) {
            return Err(NotReady::CatchingUp);
        }
        let f = self.freshness(now_ms);
        if let Some(lag) = f.lag_events
            && lag > bounds.max_lag_events
        {
            return Err(NotReady::Lagging {
                lag,
                bound: bounds.max_lag_events,
            });
        }
        if bounds.max_age_ms > 0
            && let Some(age_ms) = f.age_ms
            && age_ms > bounds.max_age_ms
        {
            return Err(NotReady::Stale {
                age_ms,
                bound_ms: bounds.max_age_ms,
            });
        }
        Ok(f)
    }
}

/// The high watermarks of one lag check, and when it started.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Check {
    started_ms: i64,
    high: Vec<i64>,
}

/// The lag checks not yet reached by the applier, oldest first. A check is reached when
/// every read position is at its high watermark or beyond: the view then holds everything
/// that was on the log when the check started.
#[derive(Debug, Default)]
struct Pending(VecDeque<Check>);

/// Most checks kept waiting; the oldest go first (that only makes the age larger).
const MAX_PENDING_CHECKS: usize = 64;

impl Pending {
    /// Adds `check`; returns the lag against it and the start of the latest check now
    /// reached by `read`, if any.
    fn observe(&mut self, check: Check, read: &[i64]) -> (u64, Option<i64>) {
        let lag = check
            .high
            .iter()
            .zip(read)
            .map(|(h, r)| (h - r).max(0) as u64)
            .sum::<u64>();
        self.0.push_back(check);
        if self.0.len() > MAX_PENDING_CHECKS {
            self.0.pop_front();
        }
        let reached =
            |c: &Check| c.high.len() == read.len() && c.high.iter().zip(read).all(|(h, r)| r >= h);
        let mut current = None;
        while let Some(c) = self.0.front() {
            if !reached(c) {
                break;
            }
            current = Some(c.started_ms);
            self.0.pop_front();
        }
        (lag, current)
    }
}

/// Measures, every `interval`, how far the applier's read positions are behind the high
/// watermarks of `catalog` and every `events` partition, into `status` and the lag gauges,
/// until `shutdown` turns true (blocking; run on its own thread). A failed watermark query
/// records nothing, so the view's age keeps growing while the broker cannot be asked.
pub fn run_lag_monitor(
    cfg: &KafkaConfig,
    status: Arc<ApplierStatus>,
    metrics: Arc<Metrics>,
    interval: Duration,
    shutdown: watch::Receiver<bool>,
) -> Result<(), LogError> {
    let topics = Topics::new(&cfg.topic_prefix);
    let consumer: BaseConsumer = client_config(cfg)
        .set("group.id", format!("{}-view-lag", cfg.group_id))
        .set("enable.auto.commit", "false")
        .create()?;
    let logs: Vec<(String, i32)> = std::iter::once((topics.catalog.clone(), 0))
        .chain((0..cfg.partitions).map(|p| (topics.events.clone(), p)))
        .collect();
    let mut pending = Pending::default();
    while !*shutdown.borrow() {
        let started_ms = now_ms();
        let high: Result<Vec<i64>, _> = logs
            .iter()
            .map(|(t, p)| {
                consumer
                    .fetch_watermarks(t, *p, Duration::from_secs(2))
                    .map(|(_, h)| h)
            })
            .collect();
        if *shutdown.borrow() {
            break;
        }
        let read = status.read_positions();
        match high {
            Ok(high) if read.len() == high.len() => {
                for ((topic, p), (h, r)) in logs.iter().zip(high.iter().zip(&read)) {
                    metrics
                        .lag
                        .get_or_create(&PartitionLabels {
                            topic: topic.clone(),
                            partition: p.to_string(),
                        })
                        .set(h - r);
                }
                let (lag, current) = pending.observe(Check { started_ms, high }, &read);
                status.record_check(lag, current);
            }
            // The applier has not started reading yet.
            Ok(_) => {}
            Err(e) => warn!(error = %e, "view lag check failed"),
        }
        // Sleeps in short steps, so that shutdown does not wait for a whole interval.
        let wake = std::time::Instant::now() + interval;
        while !*shutdown.borrow() && std::time::Instant::now() < wake {
            std::thread::sleep(interval.min(Duration::from_millis(50)));
        }
    }
    Ok(())
}

/// Tails the logs into `view` until `shutdown` turns true (blocking; run on its own thread).
pub fn run_applier(
    cfg: &KafkaConfig,
    keys: &KeySet,
    view: Arc<View>,
    catalog: CatalogHandle,
    status: Arc<ApplierStatus>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), LogError> {
    let topics = Topics::new(&cfg.topic_prefix);
    let consumer: BaseConsumer = client_config(cfg)
        .set("group.id", format!("{}-view", cfg.group_id))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", cfg.view_fetch_wait_ms.to_string())
        .set("auto.offset.reset", "earliest")
        .create()?;
    let n = view.partitions();
    let mut tpl = TopicPartitionList::new();
    let mut targets: Vec<(String, i32, i64)> = Vec::new();
    let from = |log: LogId, p: i32| {
        view.cached_position(log, p)
            .map_or(0, |pos| pos.next_offset)
    };
    // The shared catalog is rebuilt from the log; the view's catalog table is not enough
    // for deciding because deciding needs the full catalog state (command index).
    tpl.add_partition_offset(&topics.catalog, 0, Offset::Offset(0))?;
    let (_, hwm) = consumer.fetch_watermarks(&topics.catalog, 0, Duration::from_secs(30))?;
    targets.push((topics.catalog.clone(), 0, hwm));
    for p in 0..n {
        tpl.add_partition_offset(&topics.events, p, Offset::Offset(from(LogId::Events, p)))?;
        let (_, hwm) = consumer.fetch_watermarks(&topics.events, p, Duration::from_secs(30))?;
        targets.push((topics.events.clone(), p, hwm));
    }
    consumer.assign(&tpl)?;
    let mut next: Vec<i64> = std::iter::once(0)
        .chain((0..n).map(|p| from(LogId::Events, p)))
        .collect();
    status.set_read(&next);
    info!(?targets, "view applier started");
    let mut ready = false;
    loop {
        if *shutdown.borrow() {
            break;
        }
        if !ready && targets.iter().enumerate().all(|(i, t)| next[i] >= t.2) {
            ready = true;
            status.ready.store(true, Ordering::SeqCst);
            info!(version = %view.version().token(), "view caught up; ready");
        }
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let mut batch = match msg {
            Ok(m) => vec![Record::from_message(&m)],
            Err(e) => {
                warn!(error = %e, "view applier consumer error");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        // Whatever else has arrived goes into the same WriteBatch.
        while batch.len() < MAX_BATCH {
            match consumer.poll(Duration::ZERO) {
                Some(Ok(m)) => batch.push(Record::from_message(&m)),
                Some(Err(e)) => {
                    warn!(error = %e, "view applier consumer error");
                    break;
                }
                None => break,
            }
        }
        for msg in &batch {
            let idx = if msg.topic == topics.catalog {
                0
            } else {
                msg.partition as usize + 1
            };
            next[idx] = msg.offset + 1;
        }
        apply_records(&view, &catalog, keys, &metrics, &topics.catalog, batch)?;
        status.set_read(&next);
        status.version.send_replace(view.version());
    }
    Ok(())
}

/// Most records applied in one WriteBatch.
const MAX_BATCH: usize = 1000;

/// A record of `events` or `catalog`, decoded.
struct Decoded {
    /// From the `catalog` log.
    catalog: bool,
    /// Its offset.
    offset: i64,
    /// Its bytes.
    encoded: Vec<u8>,
    /// Its event; `None` when the registry did not sign the record (skipped).
    event: Option<RegistryEvent>,
}

/// Decodes `records` and checks them in one batch ([`trusted_events`]); a record the
/// registry did not sign stays in place as `None`, counted in
/// `mpr_untrusted_records_total` and logged.
fn decode_batch(
    keys: &KeySet,
    catalog_topic: &str,
    metrics: &Metrics,
    records: Vec<Record>,
) -> Vec<Decoded> {
    let checked = trusted_events(keys, &records);
    records
        .into_iter()
        .zip(checked)
        .map(|(r, c)| {
            let event = c
                .map_err(|u| {
                    metrics
                        .untrusted_records
                        .get_or_create(&TopicLabels { topic: u.topic })
                        .inc();
                })
                .ok();
            Decoded {
                catalog: r.topic == catalog_topic,
                offset: r.offset,
                encoded: r.payload.unwrap_or_default(),
                event,
            }
        })
        .collect()
}

/// Applies `events` and `catalog` records, in their order, to the view in one WriteBatch
/// (and catalog records to the shared catalog state). Records the registry did not sign
/// are skipped.
fn apply_records(
    view: &View,
    catalog: &CatalogHandle,
    keys: &KeySet,
    metrics: &Metrics,
    catalog_topic: &str,
    records: Vec<Record>,
) -> Result<(), LogError> {
    let decoded = decode_batch(keys, catalog_topic, metrics, records);
    apply_decoded(view, catalog, metrics, &decoded)
}

/// [`apply_records`] of records already decoded and checked.
fn apply_decoded(
    view: &View,
    catalog: &CatalogHandle,
    metrics: &Metrics,
    decoded: &[Decoded],
) -> Result<(), LogError> {
    for d in decoded.iter().filter(|d| d.catalog) {
        match &d.event {
            Some(e) => {
                apply_catalog_event(catalog, e, d.offset)?;
            }
            None => skip_untrusted(catalog, d.offset),
        }
    }
    let trusted: Vec<(&RegistryEvent, &Decoded)> = decoded
        .iter()
        .filter_map(|d| d.event.as_ref().map(|e| (e, d)))
        .collect();
    let refs: Vec<_> = trusted
        .iter()
        .map(|(e, d)| (*e, d.encoded.as_slice(), d.offset))
        .collect();
    let now = now_ms();
    for (a, (e, _)) in view.apply_batch(&refs)?.into_iter().zip(&trusted) {
        match a {
            Applied::Applied => {
                metrics.view_applied_events.inc();
                let visible = (now - e.observed_at_utc.millis()).max(0) as f64 / 1000.0;
                metrics.view_visible_seconds.observe(visible);
                if let Some(o) = e.autopilot.as_ref().and_then(|d| d.observation.as_ref()) {
                    metrics
                        .signals_applied
                        .inc_by(o.counted + o.ignored + o.refused + o.repeated);
                }
            }
            Applied::Forked => {
                metrics.forks_skipped.inc();
            }
            Applied::AlreadyApplied => {}
        }
    }
    Ok(())
}

/// Rebuilds `view` (which should be empty) from `events` and `catalog` up to their current
/// high watermarks. Calls `progress(applied)` now and then. Returns events applied.
///
/// Two threads: one reads and decodes a batch while the caller's applies the one before.
pub fn rebuild_from_events(
    cfg: &KafkaConfig,
    keys: &KeySet,
    view: &View,
    mut progress: impl FnMut(u64),
) -> Result<u64, LogError> {
    let topics = Topics::new(&cfg.topic_prefix);
    let catalog = super::catalog::new_catalog();
    let metrics = Metrics::new();
    // One consumer for every log, as the live applier reads them: the view is the same
    // whatever the interleaving of partitions.
    let logs: Vec<(&str, i32, i64)> = std::iter::once((topics.catalog.as_str(), 0, 0))
        .chain((0..view.partitions()).map(|p| (topics.events.as_str(), p, 0)))
        .collect();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Decoded>>(2);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let tx = tx;
            let mut buf = Vec::with_capacity(MAX_BATCH);
            read_all_to_end(cfg, &logs, |r| {
                buf.push(r);
                if buf.len() == MAX_BATCH {
                    let records = std::mem::replace(&mut buf, Vec::with_capacity(MAX_BATCH));
                    // A closed channel means the applying side failed; it reports why.
                    tx.send(decode_batch(keys, &topics.catalog, &metrics, records))
                        .map_err(|_| LogError::Topic("rebuild stopped".into()))?;
                }
                Ok(())
            })?;
            if !buf.is_empty() {
                let _ = tx.send(decode_batch(keys, &topics.catalog, &metrics, buf));
            }
            Ok::<(), LogError>(())
        });
        let mut n = 0u64;
        let applied = rx.iter().try_for_each(|batch| {
            apply_decoded(view, &catalog, &metrics, &batch)?;
            n += batch.len() as u64;
            progress(n);
            Ok::<(), LogError>(())
        });
        drop(rx);
        let read = reader.join().expect("rebuild reader thread");
        applied.and(read).map(|()| n)
    })
}

/// The view write that a `state` record (`key`, `value`) stands for: the key's first byte
/// names the table (`Write::changelog_key`). `None` for an unknown table.
pub fn state_write(key: &[u8], value: Vec<u8>) -> Option<Write> {
    let table = Table::from_id(*key.first()?)?;
    Some(Write {
        table,
        key: key[1..].to_vec(),
        value,
    })
}

/// Bootstraps `view` (which should be empty) from the compacted `state` changelog up to
/// its current high watermark. Records are written in log order, last value wins.
/// Returns records read. Afterwards, tail `events` from the recorded positions as usual.
pub fn bootstrap_from_state(
    cfg: &KafkaConfig,
    mac: &StateMac,
    view: &View,
    mut progress: impl FnMut(u64),
) -> Result<u64, LogError> {
    let topics = Topics::new(&cfg.topic_prefix);
    let mut n = 0u64;
    let mut buf: Vec<Write> = Vec::with_capacity(4096);
    read_to_end(cfg, &topics.state, 0, 0, |r| {
        let key = r.key.unwrap_or_default();
        // A record the registry did not sign stops the bootstrap: a view built from a
        // changelog with forged records must not serve them (rebuild from `events`).
        let Some(value) = verify_state_record(mac, &key, r.payload.as_deref().unwrap_or_default())
        else {
            return Err(LogError::Corrupt {
                topic: topics.state.clone(),
                partition: r.partition,
                offset: r.offset,
                detail: "record does not carry the registry's MAC; rebuild from events instead"
                    .into(),
            });
        };
        let Some(w) = state_write(&key, value) else {
            return Err(LogError::Corrupt {
                topic: topics.state.clone(),
                partition: r.partition,
                offset: r.offset,
                detail: "state key without a known table id".into(),
            });
        };
        buf.push(w);
        n += 1;
        if buf.len() == 4096 {
            view.write(&buf)?;
            buf.clear();
            progress(n);
        }
        Ok(())
    })?;
    view.write(&buf)?;
    view.refresh()?;
    progress(n);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(started_ms: i64, high: &[i64]) -> Check {
        Check {
            started_ms,
            high: high.to_vec(),
        }
    }

    /// The view is current as of the latest check whose watermarks the applier reached,
    /// even when it never stands at lag 0 (a steady stream of writes).
    #[test]
    fn current_as_of_the_latest_check_reached() {
        let mut p = Pending::default();
        assert_eq!(p.observe(check(100, &[5, 10]), &[5, 8]), (2, None));
        assert_eq!(p.observe(check(200, &[5, 12]), &[5, 10]), (2, Some(100)));
        assert_eq!(p.observe(check(300, &[6, 12]), &[6, 12]), (0, Some(300)));
        assert!(p.0.is_empty());
    }

    /// Readiness: stopped and catching up come first; then the lag and age bounds, checked
    /// again at every call, so a view that falls behind turns not ready.
    #[test]
    fn readiness_bounds_lag_and_age() {
        let s = ApplierStatus::new(ViewVersion(vec![0, 0]));
        let b = ReadyBounds {
            max_lag_events: 10,
            max_age_ms: 1000,
        };
        assert_eq!(s.readiness(b, 0), Err(NotReady::CatchingUp));
        s.ready.store(true, Ordering::SeqCst);
        assert!(
            s.readiness(b, 0).is_ok(),
            "unmeasured counts as within bounds"
        );
        s.record_check(11, Some(5000));
        assert_eq!(
            s.readiness(b, 5000),
            Err(NotReady::Lagging { lag: 11, bound: 10 })
        );
        s.record_check(0, None);
        assert!(s.readiness(b, 5500).is_ok());
        assert_eq!(
            s.readiness(b, 6001),
            Err(NotReady::Stale {
                age_ms: 1001,
                bound_ms: 1000
            })
        );
        s.mark_stopped();
        assert_eq!(s.readiness(b, 5500), Err(NotReady::ApplierStopped));
    }
}
