//! Derived outputs of an event: the `state` changelog records, the command result, and the
//! CloudEvents 1.0 for Observability (`lifecycle`) and Governance (`bundle_promoted`).
//! All are pure functions of the event (and the planned view writes), keyed so that
//! re-deriving them after a crash is idempotent.

use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use super::Topics;
use crate::domain::event::{CommandResult, LogId};
use crate::domain::trust::{STATE_TAG_LEN, StateMac};
use crate::domain::{RegistryEvent, RegistryEventType};
use crate::view::plan::{Write, position_write};

/// Content type of CloudEvents in structured mode, which their Kafka binding requires as
/// the `content-type` header.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// One record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    /// Topic.
    pub topic: String,
    /// Key.
    pub key: Vec<u8>,
    /// Payload.
    pub payload: Vec<u8>,
    /// `content-type` header, where a consumer needs one. The broker stores each header
    /// as a row of its own (tansu: as costly as a record), so internal topics go without.
    pub content_type: Option<&'static str>,
}

/// The CloudEvents `type` of an event.
pub fn cloud_event_type(t: RegistryEventType) -> &'static str {
    match t {
        RegistryEventType::BundleRegistered => "mpr.bundle.registered",
        RegistryEventType::BundleNominated => "mpr.bundle.nominated",
        RegistryEventType::BundleApproved => "mpr.bundle.approved",
        RegistryEventType::BundleRejected => "mpr.bundle.rejected",
        RegistryEventType::BundlePromoted => "mpr.bundle.promoted",
        RegistryEventType::BundleRolledBack => "mpr.bundle.rolled_back",
        RegistryEventType::BundleRetired => "mpr.bundle.retired",
        RegistryEventType::CatalogUpdated => "mpr.catalog.updated",
        RegistryEventType::KeyRegistered => "mpr.key.registered",
        RegistryEventType::KeyRevoked => "mpr.key.revoked",
        RegistryEventType::CommandNoop => "mpr.command.noop",
        RegistryEventType::CommandRejected => "mpr.command.rejected",
        RegistryEventType::RollbackPolicySet => "mpr.autopilot.policy_set",
        RegistryEventType::SignalsObserved => "mpr.autopilot.signals_observed",
        RegistryEventType::CanaryStarted => "mpr.canary.started",
        RegistryEventType::CanaryShareChanged => "mpr.canary.share_changed",
        RegistryEventType::CanaryCompleted => "mpr.canary.completed",
        RegistryEventType::CanaryAborted => "mpr.canary.aborted",
    }
}

/// The CloudEvents 1.0 JSON of `e` (structured mode). `id` is the event_id.
pub fn cloud_event(topics: &Topics, e: &RegistryEvent) -> serde_json::Value {
    let log = match e.log {
        LogId::Events => &topics.events,
        LogId::Catalog => &topics.catalog,
    };
    let subject = match (&e.bundle_id, &e.bundle_version) {
        (Some(id), Some(v)) => format!("{id}@{v}"),
        (Some(id), None) => id.to_string(),
        _ => "catalog".to_owned(),
    };
    let mut ce = json!({
        "specversion": "1.0",
        "id": e.event_id,
        "source": format!("/mpr/{log}/{}", e.partition),
        "type": cloud_event_type(e.event_type),
        "subject": subject,
        "time": e.observed_at_utc,
        "datacontenttype": "application/json",
        "data": e,
    });
    // Extension attributes (CloudEvents names: lowercase letters and digits) so that
    // Governance sees, without parsing `data`, that the autopilot acted and why.
    if let Some(t) = e.autopilot.as_ref().and_then(|d| d.trigger.as_ref()) {
        ce["mprautomated"] = json!(true);
        // CloudEvents extension attributes are simple values: the trigger travels as its
        // JSON text (an AutopilotDetail.trigger).
        ce["mprtrigger"] = json!(serde_json::to_string(t).expect("triggers serialize"));
    }
    ce
}

fn key_of(e: &RegistryEvent) -> Vec<u8> {
    e.bundle_id
        .as_ref()
        .map_or(crate::domain::command::CATALOG_KEY, |b| b.as_str())
        .as_bytes()
        .to_vec()
}

/// The result record of a command.
pub fn result_record(topics: &Topics, r: &CommandResult) -> OutRecord {
    OutRecord {
        topic: topics.results.clone(),
        key: r.command_id.to_string().into_bytes(),
        payload: serde_json::to_vec(r).expect("results serialize"),
        content_type: None,
    }
}

/// Every derived record of a batch of events, in order: for each event (delivered at
/// `offset`, with planned view writes `writes`) its `state` records, result and CloudEvents;
/// then, once per log partition, the applied position of that partition's last event.
///
/// On the single `state` partition a position therefore never precedes the records of the
/// events it covers, so any prefix of `state` is a consistent cut: a bootstrap that stops
/// inside a batch resumes from the previous position and re-applies the batch's events,
/// which is a no-op for the records already there (each carries the seq that last changed
/// it). One position per batch instead of one per event spares the broker a record per
/// command; compaction keeps only the last anyway.
///
/// For the same reason each key's `state` record is written once per batch, where its last
/// write in the batch falls: an earlier write of that key within the batch is superseded
/// before a bootstrap could need it (a prefix that stops before the last write re-applies
/// the batch from the previous position, which rebuilds the key; one that stops after it
/// holds the key as of a later seq, and re-applying the earlier events leaves it alone).
/// A family's publish, nominate, approve and promote in one batch rewrite its bundle
/// record four times; `state` gets it once.
pub fn derived_batch<'a>(
    topics: &Topics,
    mac: &StateMac,
    batch: impl IntoIterator<Item = (&'a RegistryEvent, &'a [Write], i64)>,
) -> Vec<OutRecord> {
    let batch: Vec<_> = batch.into_iter().collect();
    // Where each key is written last: (event index, write index).
    let mut last_write: HashMap<Vec<u8>, (usize, usize)> = HashMap::new();
    for (i, (_, writes, _)) in batch.iter().enumerate() {
        for (j, w) in writes.iter().enumerate() {
            last_write.insert(w.changelog_key(), (i, j));
        }
    }
    let mut out = Vec::new();
    let mut last: BTreeMap<(LogId, i32), (&RegistryEvent, i64)> = BTreeMap::new();
    for (i, &(e, writes, offset)) in batch.iter().enumerate() {
        let kept: Vec<Write> = writes
            .iter()
            .enumerate()
            .filter(|(j, w)| last_write.get(&w.changelog_key()) == Some(&(i, *j)))
            .map(|(_, w)| w.clone())
            .collect();
        out.extend(derived(topics, mac, e, &kept));
        last.insert((e.log, e.partition), (e, offset));
    }
    for (e, offset) in last.into_values() {
        out.push(state_record(topics, mac, position_write(e, offset)));
    }
    out
}

/// A `state` record: the view write's key, and its value followed by its 32-byte MAC
/// ([`StateMac`]), so that a bootstrap from `state` refuses a record the registry did not
/// write.
fn state_record(topics: &Topics, mac: &StateMac, w: Write) -> OutRecord {
    let key = w.changelog_key();
    let mut payload = w.value;
    let tag = mac.tag(&key, &payload);
    payload.extend_from_slice(&tag);
    OutRecord {
        topic: topics.state.clone(),
        key,
        payload,
        content_type: None,
    }
}

/// The value of a `state` record whose MAC is the registry's, without its tag.
pub fn verify_state_record(mac: &StateMac, key: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
    let split = payload.len().checked_sub(STATE_TAG_LEN)?;
    let (value, tag) = payload.split_at(split);
    mac.verifies(key, value, tag).then(|| value.to_vec())
}

/// Whether `e` is the record of a signal intake's `OBSERVE` that decided nothing: its
/// windows changed, no rule fired. Such an event has no result (no client submitted the
/// command: the registry's own intake did, and it reads no results) and no lifecycle
/// CloudEvent (Observability holds the signals themselves): such an `OBSERVE` writes only
/// its event and its `state` records (MPR3-OPS-01c).
pub fn is_quiet_observation(e: &RegistryEvent) -> bool {
    e.event_type == RegistryEventType::SignalsObserved
        && e.autopilot.as_ref().is_none_or(|d| d.trigger.is_none())
}

/// The derived records of one event whose planned view writes are `writes`: its `state`
/// records, its result and its CloudEvents (none of either for a quiet observation,
/// [`is_quiet_observation`]). Its applied position is written per batch
/// ([`derived_batch`]).
fn derived(topics: &Topics, mac: &StateMac, e: &RegistryEvent, writes: &[Write]) -> Vec<OutRecord> {
    let mut out = Vec::with_capacity(writes.len() + 3);
    out.extend(writes.iter().cloned().map(|w| state_record(topics, mac, w)));
    if is_quiet_observation(e) {
        return out;
    }
    out.push(result_record(topics, &CommandResult::from_event(e)));
    let ce = serde_json::to_vec(&cloud_event(topics, e)).expect("cloud events serialize");
    out.push(OutRecord {
        topic: topics.lifecycle.clone(),
        key: key_of(e),
        payload: ce.clone(),
        content_type: Some(CLOUDEVENTS_JSON),
    });
    if matches!(
        e.event_type,
        RegistryEventType::BundlePromoted
            | RegistryEventType::BundleRolledBack
            | RegistryEventType::CanaryStarted
            | RegistryEventType::CanaryShareChanged
            | RegistryEventType::CanaryCompleted
            | RegistryEventType::CanaryAborted
    ) {
        out.push(OutRecord {
            topic: topics.bundle_promoted.clone(),
            key: key_of(e),
            payload: ce,
            content_type: Some(CLOUDEVENTS_JSON),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    /// A `state` record verifies only with its own key and value, under the registry's MAC key.
    #[test]
    fn state_records_carry_the_registry_mac_over_key_and_value() {
        let topics = Topics::new("mpr.");
        let mac = StateMac::of(&testkit::registry_signer());
        let w = Write {
            table: crate::view::Table::Catalog,
            key: b"prod".to_vec(),
            value: b"{\"environment\":\"prod\"}".to_vec(),
        };
        let r = state_record(&topics, &mac, w.clone());
        assert_eq!(
            verify_state_record(&mac, &r.key, &r.payload),
            Some(w.value.clone())
        );
        let mut tampered = r.payload.clone();
        tampered[0] ^= 1;
        assert_eq!(verify_state_record(&mac, &r.key, &tampered), None);
        assert_eq!(verify_state_record(&mac, b"\x04dev", &r.payload), None);
        let other = state_record(&topics, &StateMac::of(&testkit::gateway_signer()), w);
        assert_eq!(verify_state_record(&mac, &other.key, &other.payload), None);
        assert_eq!(verify_state_record(&mac, &r.key, b"short"), None);
    }

    /// A quiet observation (an OBSERVE that fired nothing) derives its `state` records and
    /// no result or CloudEvent; one that recorded a trigger (here a dry run) derives both,
    /// with the trigger on the CloudEvent.
    #[test]
    fn a_quiet_observation_has_no_result_and_no_cloud_event() {
        use crate::domain::autopilot::{AutoAction, AutopilotDetail, Trigger, TriggerOutcome};
        use crate::domain::state::infallible;
        use crate::domain::{CatalogState, Decision, Grants, PartitionState, decide};
        let topics = Topics::new("mpr.");
        let mac = StateMac::of(&testkit::registry_signer());
        let grants = Grants {
            enforce: false,
            ..Grants::default()
        };
        let (part, cat) = (PartitionState::new(0), CatalogState::new());
        let input = testkit::input(testkit::publish("mf", "fam", "1.0.0"), 0);
        let Decision::Append(mut e) =
            infallible(decide::route(&part, &part.chain, &cat, &grants, &input))
        else {
            panic!("appends");
        };
        e.event_type = RegistryEventType::SignalsObserved;
        e.autopilot = Some(AutopilotDetail::default());
        let w = Write {
            table: crate::view::Table::Slots,
            key: b"window".to_vec(),
            value: b"w".to_vec(),
        };
        let topics_of = |e: &RegistryEvent| -> Vec<String> {
            derived(&topics, &mac, e, std::slice::from_ref(&w))
                .into_iter()
                .map(|r| r.topic)
                .collect()
        };
        assert!(is_quiet_observation(&e));
        assert_eq!(topics_of(&e), vec![topics.state.clone()]);
        e.autopilot = Some(AutopilotDetail {
            trigger: Some(Trigger {
                policy_seq: 1,
                rule_id: "r".into(),
                action: AutoAction::Rollback,
                bundle_version: "1.0.0".parse().unwrap(),
                outcome: TriggerOutcome::DryRun,
                signal_ids: vec![],
                evidence: "error_rate above".into(),
            }),
            ..AutopilotDetail::default()
        });
        assert!(!is_quiet_observation(&e));
        assert_eq!(
            topics_of(&e),
            vec![
                topics.state.clone(),
                topics.results.clone(),
                topics.lifecycle.clone()
            ]
        );
        let ce = &derived(&topics, &mac, &e, &[])[1];
        let ce: serde_json::Value = serde_json::from_slice(&ce.payload).unwrap();
        assert_eq!(ce["mprautomated"], true);
    }

    /// Two events of one batch that write the same key: `state` gets the key once, with
    /// the later value, where the later write falls; other keys and every result stay.
    #[test]
    fn a_batch_writes_each_state_key_once_with_its_last_value() {
        use crate::domain::state::infallible;
        use crate::domain::{CatalogState, Decision, Grants, PartitionState, decide};
        use crate::view::Table;
        let topics = Topics::new("mpr.");
        let mac = StateMac::of(&testkit::registry_signer());
        let grants = Grants {
            enforce: false,
            ..Grants::default()
        };
        let (mut part, cat) = (PartitionState::new(0), CatalogState::new());
        let mut events = Vec::new();
        for (i, v) in ["1.0.0", "1.1.0"].iter().enumerate() {
            let input = testkit::input(testkit::publish("mf", "fam", v), i as i64);
            let Decision::Append(e) =
                infallible(decide::route(&part, &part.chain, &cat, &grants, &input))
            else {
                panic!("appends");
            };
            part.apply(&e).unwrap();
            events.push(e);
        }
        let w = |t: Table, k: &[u8], v: &[u8]| Write {
            table: t,
            key: k.to_vec(),
            value: v.to_vec(),
        };
        let first = vec![w(Table::Bundles, b"K", b"one"), w(Table::Slots, b"L", b"x")];
        let second = vec![w(Table::Bundles, b"K", b"two")];
        let out = derived_batch(
            &topics,
            &mac,
            [
                (&events[0], first.as_slice(), 0),
                (&events[1], second.as_slice(), 1),
            ],
        );
        let state: Vec<(Vec<u8>, Vec<u8>)> = out
            .iter()
            .filter(|r| r.topic == topics.state)
            .map(|r| {
                (
                    r.key.clone(),
                    verify_state_record(&mac, &r.key, &r.payload).unwrap(),
                )
            })
            .collect();
        let key = |t: Table, k: &[u8]| w(t, k, b"").changelog_key();
        assert_eq!(state[0], (key(Table::Slots, b"L"), b"x".to_vec()));
        assert_eq!(state[1], (key(Table::Bundles, b"K"), b"two".to_vec()));
        assert_eq!(state.len(), 3, "L, K once, and the batch's position");
        assert_eq!(out.iter().filter(|r| r.topic == topics.results).count(), 2);
    }
}
