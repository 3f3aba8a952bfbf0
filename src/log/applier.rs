//! The view applier: tails every `events` partition and the `catalog` log into the RocksDB
//! view (and the shared catalog), from the positions the view recorded. Readiness: it
//! captures the high watermarks at start-up and reports ready only once every partition
//! has been read up to them, so a restarted replica never serves a stale view as current.
//! Also bootstraps a view from the compacted `state` changelog.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::{info, warn};

use super::catalog::{CatalogHandle, apply_catalog_event};
use super::reader::{Record, read_all_to_end, read_to_end};
use super::{LogError, Topics, client_config, now_ms};
use crate::codec;
use crate::config::KafkaConfig;
use crate::domain::RegistryEvent;
use crate::domain::event::LogId;
use crate::domain::state::Applied;
use crate::metrics::{Metrics, PartitionLabels};
use crate::view::{Table, View, ViewVersion, Write};

/// What the applier publishes to the API.
#[derive(Debug)]
pub struct ApplierStatus {
    /// True once caught up to the start-up high watermarks.
    pub ready: AtomicBool,
    /// The view version after each applied event.
    pub version: watch::Sender<ViewVersion>,
}

impl ApplierStatus {
    /// A not-ready status at `version`.
    pub fn new(version: ViewVersion) -> Arc<Self> {
        Arc::new(Self {
            ready: AtomicBool::new(false),
            version: watch::Sender::new(version),
        })
    }
}

/// Tails the logs into `view` until `shutdown` turns true (blocking; run on its own thread).
pub fn run_applier(
    cfg: &KafkaConfig,
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
    info!(?targets, "view applier started");
    let mut ready = false;
    let mut last_lag_report = std::time::Instant::now();
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
        apply_records(&view, &catalog, &metrics, &topics.catalog, batch)?;
        status.version.send_replace(view.version());
        if last_lag_report.elapsed() > Duration::from_secs(5) {
            last_lag_report = std::time::Instant::now();
            for (i, (topic, p, _)) in targets.iter().enumerate() {
                if let Ok((_, high)) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(1))
                {
                    metrics
                        .lag
                        .get_or_create(&PartitionLabels {
                            topic: topic.clone(),
                            partition: p.to_string(),
                        })
                        .set(high - next[i]);
                }
            }
        }
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
    /// Its event.
    event: RegistryEvent,
}

fn decode(catalog_topic: &str, r: Record) -> Result<Decoded, LogError> {
    let encoded = r.payload.unwrap_or_default();
    let event = codec::decode_event(&encoded).map_err(|e| LogError::Corrupt {
        topic: r.topic.clone(),
        partition: r.partition,
        offset: r.offset,
        detail: e.to_string(),
    })?;
    Ok(Decoded {
        catalog: r.topic == catalog_topic,
        offset: r.offset,
        encoded,
        event,
    })
}

/// Applies `events` and `catalog` records, in their order, to the view in one WriteBatch
/// (and catalog records to the shared catalog state).
fn apply_records(
    view: &View,
    catalog: &CatalogHandle,
    metrics: &Metrics,
    catalog_topic: &str,
    records: Vec<Record>,
) -> Result<(), LogError> {
    let decoded = records
        .into_iter()
        .map(|r| decode(catalog_topic, r))
        .collect::<Result<Vec<_>, _>>()?;
    apply_decoded(view, catalog, metrics, &decoded)
}

/// [`apply_records`] of records already decoded.
fn apply_decoded(
    view: &View,
    catalog: &CatalogHandle,
    metrics: &Metrics,
    decoded: &[Decoded],
) -> Result<(), LogError> {
    for d in decoded.iter().filter(|d| d.catalog) {
        apply_catalog_event(catalog, &d.event, d.offset)?;
    }
    let refs: Vec<_> = decoded
        .iter()
        .map(|d| (&d.event, d.encoded.as_slice(), d.offset))
        .collect();
    let now = now_ms();
    for (a, d) in view.apply_batch(&refs)?.into_iter().zip(decoded) {
        match a {
            Applied::Applied => {
                metrics.view_applied_events.inc();
                let visible = (now - d.event.observed_at_utc.millis()).max(0) as f64 / 1000.0;
                metrics.view_visible_seconds.observe(visible);
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
                buf.push(decode(&topics.catalog, r)?);
                if buf.len() == MAX_BATCH {
                    // A closed channel means the applying side failed; it reports why.
                    tx.send(std::mem::replace(&mut buf, Vec::with_capacity(MAX_BATCH)))
                        .map_err(|_| LogError::Topic("rebuild stopped".into()))?;
                }
                Ok(())
            })?;
            if !buf.is_empty() {
                let _ = tx.send(buf);
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
    view: &View,
    mut progress: impl FnMut(u64),
) -> Result<u64, LogError> {
    let topics = Topics::new(&cfg.topic_prefix);
    let mut n = 0u64;
    let mut buf: Vec<Write> = Vec::with_capacity(4096);
    read_to_end(cfg, &topics.state, 0, 0, |r| {
        let key = r.key.unwrap_or_default();
        let Some(w) = state_write(&key, r.payload.unwrap_or_default()) else {
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
