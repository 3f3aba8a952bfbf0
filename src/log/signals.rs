//! The signal intake: reads `signals` and forwards each batch, grouped by scope, as one
//! OBSERVE command on `commands` (same key, so the same partition as the family's other
//! commands), signed by the registry key as `mpr-autopilot`. The commands topic then fixes
//! the order of signals and commands once for every replica and every replay: the
//! processor decides OBSERVE like any command, and a takeover resumes from the same log.
//!
//! A signal keeps its bytes and its signature inside OBSERVE, so the processor
//! authenticates it exactly like a command. Undecodable or oversized signals go to the DLQ
//! here and never reach a partition. A burst of signals costs one OBSERVE per scope per
//! batch (at most [`MAX_PER_OBSERVE`] signals each; a batch lingers [`LINGER`] so that it
//! gathers many), not one command per signal, and the intake forwards at most
//! [`MAX_PER_SECOND`] signals a second: a flood beyond that waits in `signals` rather than
//! ahead of commands. That bounds what a noisy monitor adds to the commands' partitions;
//! what a flood still costs on a shared broker is measured in BENCHMARKS.md (session 9).
//! Offsets are committed only after every OBSERVE and DLQ record of the batch is
//! acknowledged; a signal forwarded twice (after a crash before the commit) is counted
//! once, because each scope keeps the highest `signals` offset it has counted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;

use super::driver::{Produce, dead_letter};
use super::producer::Producer;
use super::reader::Record;
use super::{LogError, Topics, client_config, producer_config};
use crate::codec;
use crate::config::KafkaConfig;
use crate::domain::autopilot::AUTOPILOT_ACTOR;
use crate::domain::command::{ForwardedSignal, Observe, ScopeTarget};
use crate::domain::trust::{SIGNATURE_HEADER, Signer};
use crate::domain::{Command, CommandEnvelope, Timestamp};
use crate::metrics::Metrics;

/// Signals one OBSERVE carries at most.
pub const MAX_PER_OBSERVE: usize = 500;
/// Bytes of forwarded signals one OBSERVE carries at most: well inside the command size
/// limit ([`MAX_COMMAND_BYTES`](crate::domain::bundle::limits::MAX_COMMAND_BYTES)), so the
/// processor never refuses an OBSERVE as oversized.
pub const MAX_OBSERVE_BYTES: usize = 224 * 1024;
/// Records read into one batch at most.
pub const MAX_BATCH: usize = 2_000;
/// How long a batch waits for more records after its first.
pub const LINGER: Duration = Duration::from_millis(250);
/// Signals forwarded per second at most. Each signal costs the processor a decode and a
/// signature check on the partitions commands share, so a flood beyond this waits in
/// `signals` (its consumer lag grows) instead of queueing ahead of commands.
pub const MAX_PER_SECOND: u64 = 2_000;
/// Namespace of OBSERVE command ids (UUIDv5 of the batch's coordinates).
const OBSERVE_NS: Uuid = Uuid::from_u128(0x6d70_7200_7369_676e_616c_735f_6f62_7376);

/// What one batch of `signals` records becomes.
#[derive(Debug, Default)]
pub struct Forward {
    /// OBSERVE commands: key, JSON bytes, signature header.
    pub observes: Vec<Produce>,
    /// Dead letters.
    pub dead: Vec<Produce>,
    /// Next offset to commit, per partition.
    pub commit: BTreeMap<i32, i64>,
}

/// Groups `records` (in the order read) into OBSERVE commands: one per scope and per
/// [`MAX_PER_OBSERVE`] signals or [`MAX_OBSERVE_BYTES`], in the order their first signal
/// was read; undecodable or wrongly keyed ones into dead letters.
/// Pure: the time of `submitted_at` comes in, and the command ids derive from the records.
pub fn forward(
    topics: &Topics,
    records: &[Record],
    registry: &Signer,
    submitted_at: Timestamp,
) -> Forward {
    let mut out = Forward::default();
    type Scope = (String, String, String);
    // Each scope's signals, in chunks that fit one OBSERVE; `order` lists (scope, chunk)
    // in the order their first signal was read.
    let mut groups: BTreeMap<Scope, Vec<(Vec<ForwardedSignal>, usize)>> = BTreeMap::new();
    let mut order: Vec<(Scope, usize)> = Vec::new();
    for r in records {
        out.commit
            .entry(r.partition)
            .and_modify(|o| *o = (*o).max(r.offset + 1))
            .or_insert(r.offset + 1);
        let payload = r.payload.as_deref().unwrap_or_default();
        let ct = r.header("content-type");
        let sig = r.header(SIGNATURE_HEADER);
        let signal = match codec::decode_signal(payload, ct, sig) {
            Ok((s, _)) => s,
            Err(e) => {
                out.dead.push(signal_dead_letter(topics, r, &e));
                continue;
            }
        };
        if r.key.as_deref() != Some(signal.bundle_id.as_str().as_bytes()) {
            let e = codec::DecodeError {
                code: crate::domain::ErrorCode::InvalidPayload,
                message: "a signal's record key must be its bundle_id".into(),
                command_id: None,
            };
            out.dead.push(signal_dead_letter(topics, r, &e));
            continue;
        }
        let scope = (
            signal.bundle_id.as_str().to_owned(),
            signal.environment.as_str().to_owned(),
            signal.tenant_id.as_str().to_owned(),
        );
        let f = ForwardedSignal {
            partition: r.partition,
            offset: r.offset,
            content_type: ct.unwrap_or(codec::CONTENT_TYPE_AVRO).to_owned(),
            payload: base64::engine::general_purpose::STANDARD.encode(payload),
            signature: sig.map(str::to_owned),
        };
        // What the signal adds to its OBSERVE's JSON: its base64 bytes, its signature and
        // the field names around them.
        let cost = f.payload.len() + f.signature.as_ref().map_or(0, String::len) + 160;
        let chunks = groups.entry(scope.clone()).or_default();
        let full = chunks.last().is_none_or(|(list, bytes)| {
            list.len() >= MAX_PER_OBSERVE || bytes + cost > MAX_OBSERVE_BYTES
        });
        if full {
            order.push((scope.clone(), chunks.len()));
            chunks.push((Vec::new(), 0));
        }
        let (list, bytes) = chunks.last_mut().expect("a chunk was just ensured");
        list.push(f);
        *bytes += cost;
    }
    for (scope, i) in order {
        let chunk = std::mem::take(&mut groups.get_mut(&scope).expect("grouped above")[i].0);
        let (bundle_id, environment, tenant) = scope;
        let (partition, first) = (chunk[0].partition, chunk[0].offset);
        let id = Uuid::new_v5(
            &OBSERVE_NS,
            format!("{partition}/{first}/{bundle_id}/{environment}/{tenant}").as_bytes(),
        );
        let env = CommandEnvelope {
            command_id: id,
            actor: AUTOPILOT_ACTOR.parse().expect("a valid actor"),
            submitted_at_utc: submitted_at,
            reason: None,
            command: Command::Observe(Observe {
                scope: ScopeTarget {
                    bundle_id: bundle_id.parse().expect("decoded above"),
                    environment: environment.parse().expect("decoded above"),
                    tenant_id: tenant.parse().expect("decoded above"),
                },
                signals: chunk,
            }),
        };
        let value = serde_json::to_value(&env).expect("commands serialize");
        let signature = codec::sign_json_command(&value, registry);
        // Keyed like every command of the family, with the registry's own partitioner:
        // the OBSERVE lands in the family's `commands` partition whatever partitioner
        // the signal's producer used.
        out.observes.push(Produce {
            topic: topics.commands.clone(),
            partition: None,
            key: bundle_id.into_bytes(),
            payload: serde_json::to_vec(&value).expect("JSON serializes"),
            headers: vec![
                ("content-type", codec::CONTENT_TYPE_JSON.to_owned()),
                (SIGNATURE_HEADER, signature),
            ],
        });
    }
    out
}

/// A dead letter for a `signals` record, naming `signals` as its source topic.
fn signal_dead_letter(topics: &Topics, r: &Record, e: &codec::DecodeError) -> Produce {
    let mut d = dead_letter(topics, r, e, 64 * 1024);
    for h in &mut d.headers {
        if h.0 == "mpr-source-topic" {
            h.1 = topics.signals.clone();
        }
    }
    d
}

/// Runs the intake until `shutdown` turns true.
pub async fn run(
    cfg: KafkaConfig,
    registry: Signer,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LogError> {
    let topics = Topics::new(&cfg.topic_prefix);
    let consumer: StreamConsumer = client_config(&cfg)
        .set("group.id", format!("{}-signals", cfg.group_id))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", cfg.processor_fetch_wait_ms.to_string())
        .create()?;
    consumer.subscribe(&[&topics.signals])?;
    let producer = Producer::new(&producer_config(&cfg))?;
    info!(topic = %topics.signals, "signal intake started");
    loop {
        let first = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
            m = consumer.recv() => m,
        };
        // A consumer error (a broker restarting, a rebalance) is transient: librdkafka
        // reconnects by itself, so it is logged and the intake reads on.
        let first = match first {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "signals consumer error");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut batch = vec![Record::from_message(&first)];
        let started = tokio::time::Instant::now();
        let until = started + LINGER;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(until, consumer.recv()).await {
                Ok(Ok(m)) => batch.push(Record::from_message(&m)),
                Ok(Err(e)) => {
                    warn!(error = %e, "signals consumer error");
                    break;
                }
                Err(_) => break,
            }
        }
        let fwd = forward(
            &topics,
            &batch,
            &registry,
            Timestamp::from_millis(super::now_ms()),
        );
        metrics.signals_read(batch.len() as u64, fwd.dead.len() as u64);
        // One chain per family key, in order (a scope's OBSERVEs must land in the order
        // of their signals), the chains and the dead letters concurrently: a batch costs
        // about one produce round trip, not one per scope.
        let mut chains: BTreeMap<&[u8], Vec<&Produce>> = BTreeMap::new();
        for p in &fwd.observes {
            chains.entry(p.key.as_slice()).or_default().push(p);
        }
        let sends = chains
            .into_values()
            .chain(fwd.dead.iter().map(|d| vec![d]))
            .map(|chain| {
                let (producer, mut shutdown) = (&producer, shutdown.clone());
                async move {
                    for p in chain {
                        send(producer, p, &mut shutdown).await?;
                    }
                    Ok::<(), LogError>(())
                }
            });
        futures::future::try_join_all(sends).await?;
        // The pace: a batch of n signals takes at least n / MAX_PER_SECOND.
        let floor = Duration::from_secs_f64(batch.len() as f64 / MAX_PER_SECOND as f64);
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
            () = tokio::time::sleep_until(started + floor) => {}
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &fwd.commit {
            tpl.add_partition_offset(&topics.signals, *p, Offset::Offset(*o))?;
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            warn!(error = %e, "committing signals offsets failed; a restart re-forwards, and repeats are not counted twice");
        }
    }
}

/// Produces `p` until it is acknowledged (retrying with backoff) or shutdown.
async fn send(
    producer: &Producer,
    p: &Produce,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), LogError> {
    let mut delay = Duration::from_millis(100);
    loop {
        match producer
            .send(super::producer::record(p), Duration::from_secs(30))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => {
                warn!(error = %e, topic = %p.topic, "forwarding signals failed; retrying");
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => return Ok(()),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    fn record(offset: i64, key: &str, bundle: &str, padding: usize) -> Record {
        let v = serde_json::json!({
            "signal_id": Uuid::from_u128(offset as u128 + 1),
            "actor": "obs",
            "source": "x".repeat(padding.max(1)),
            "bundle_digest": "d".repeat(padding.max(1)),
            "environment": "prod",
            "bundle_id": bundle,
            "bundle_version": "1.0.0",
            "kind": "METRIC",
            "name": "error_rate",
            "value": 0.5,
            "window_start_utc": "2026-11-20T10:00:00.000Z",
            "window_end_utc": "2026-11-20T10:01:00.000Z",
            "observed_at_utc": "2026-11-20T10:01:00.000Z",
        });
        Record {
            topic: "t.signals".into(),
            partition: 2,
            offset,
            key: Some(key.as_bytes().to_vec()),
            payload: Some(serde_json::to_vec(&v).unwrap()),
            timestamp_ms: Some(0),
            headers: vec![("content-type".into(), b"application/json".to_vec())],
        }
    }

    fn observes(f: &Forward) -> Vec<Observe> {
        f.observes
            .iter()
            .map(|p| {
                assert!(p.payload.len() <= crate::domain::bundle::limits::MAX_COMMAND_BYTES);
                assert_eq!(p.partition, None, "keyed, never an explicit partition");
                match crate::codec::decode_command(&p.payload, Some(codec::CONTENT_TYPE_JSON)) {
                    Ok(envelope) => match envelope.command {
                        Command::Observe(o) => o,
                        other => panic!("not an OBSERVE: {other:?}"),
                    },
                    Err(e) => panic!("undecodable OBSERVE: {e}"),
                }
            })
            .collect()
    }

    /// A burst of one scope splits into OBSERVEs within both bounds, every signal once and
    /// in order; another scope's signals get their own OBSERVE, in the order read.
    #[test]
    fn a_burst_splits_within_the_bounds_and_keeps_every_signal_once() {
        let topics = Topics::new("t.");
        let mut records: Vec<Record> = (0..1_203).map(|i| record(i, "fraud", "fraud", 1)).collect();
        records.insert(700, record(5_000, "pricing", "pricing", 1));
        let f = forward(
            &topics,
            &records,
            &testkit::registry_signer(),
            Timestamp::from_millis(0),
        );
        let o = observes(&f);
        assert!(
            o.len() >= 4,
            "1,203 signals of one scope take several OBSERVEs"
        );
        assert!(
            o.iter()
                .all(|o| !o.signals.is_empty() && o.signals.len() <= MAX_PER_OBSERVE)
        );
        // pricing's first signal was read after fraud's first chunks began, before the last.
        let pricing = o
            .iter()
            .position(|o| o.scope.bundle_id.as_str() == "pricing")
            .unwrap();
        assert!(
            pricing > 0 && pricing < o.len() - 1,
            "{pricing} of {}",
            o.len()
        );
        let offsets: Vec<i64> = o
            .iter()
            .filter(|o| o.scope.bundle_id.as_str() == "fraud")
            .flat_map(|o| o.signals.iter().map(|s| s.offset))
            .collect();
        assert_eq!(offsets, (0..1_203).collect::<Vec<_>>());
        assert_eq!(f.commit[&2], 5_001);
        assert!(f.dead.is_empty());
    }

    /// Bulky signals split by bytes, so no OBSERVE exceeds the command size limit.
    #[test]
    fn bulky_signals_split_by_bytes() {
        let topics = Topics::new("t.");
        let records: Vec<Record> = (0..60)
            .map(|i| record(i, "fraud", "fraud", 2_000))
            .collect();
        let f = forward(
            &topics,
            &records,
            &testkit::registry_signer(),
            Timestamp::from_millis(0),
        );
        assert!(f.dead.is_empty());
        let o = observes(&f);
        assert!(o.len() > 1, "60 signals of 4 kB must not fit one OBSERVE");
        assert_eq!(o.iter().map(|o| o.signals.len()).sum::<usize>(), 60);
    }

    /// A signal whose record key is not its bundle_id, and an undecodable one, are dead
    /// letters that name `signals` as their source.
    #[test]
    fn wrong_keys_and_garbage_are_dead_letters_from_signals() {
        let topics = Topics::new("t.");
        let mut garbage = record(1, "fraud", "fraud", 1);
        garbage.payload = Some(b"{not json".to_vec());
        let records = vec![
            record(0, "pricing", "fraud", 1),
            garbage,
            record(2, "fraud", "fraud", 1),
        ];
        let f = forward(
            &topics,
            &records,
            &testkit::registry_signer(),
            Timestamp::from_millis(0),
        );
        assert_eq!(f.dead.len(), 2);
        for d in &f.dead {
            let source = d
                .headers
                .iter()
                .find(|h| h.0 == "mpr-source-topic")
                .map(|h| h.1.as_str());
            assert_eq!(source, Some("t.signals"));
        }
        assert_eq!(observes(&f)[0].signals.len(), 1);
    }
}
