//! Derived outputs of an event: the `state` changelog records, the command result, and the
//! CloudEvents 1.0 for Observability (`lifecycle`) and Governance (`bundle_promoted`).
//! All are pure functions of the event (and the planned view writes), keyed so that
//! re-deriving them after a crash is idempotent.

use serde_json::json;

use super::Topics;
use crate::domain::event::{CommandResult, LogId};
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
        RegistryEventType::CommandNoop => "mpr.command.noop",
        RegistryEventType::CommandRejected => "mpr.command.rejected",
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
    json!({
        "specversion": "1.0",
        "id": e.event_id,
        "source": format!("/mpr/{log}/{}", e.partition),
        "type": cloud_event_type(e.event_type),
        "subject": subject,
        "time": e.observed_at_utc,
        "datacontenttype": "application/json",
        "data": e,
    })
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

/// Every derived record of `e`, delivered at `offset`, whose planned view writes are
/// `writes`. State records come first and the applied position last, in that order on
/// the single `state` partition, so any prefix of `state` is a consistent cut.
pub fn derived(
    topics: &Topics,
    e: &RegistryEvent,
    writes: &[Write],
    offset: i64,
) -> Vec<OutRecord> {
    let mut out = Vec::with_capacity(writes.len() + 4);
    for w in writes
        .iter()
        .cloned()
        .chain(std::iter::once(position_write(e, offset)))
    {
        out.push(OutRecord {
            topic: topics.state.clone(),
            key: w.changelog_key(),
            payload: w.value,
            content_type: None,
        });
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
        RegistryEventType::BundlePromoted | RegistryEventType::BundleRolledBack
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
