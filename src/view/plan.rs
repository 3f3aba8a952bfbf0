//! The view's storage layout and the pure planner that turns one event into the exact
//! key/value writes it causes. The RocksDB view and the `state` changelog both use it, so
//! a view built from `events` and one bootstrapped from `state` hold the same bytes.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::event::{CommandResult, LogId, Outcome, RegistryEventType, ScopeRef};
use crate::domain::state::{BundleRecord, SlotRecord};
use crate::domain::{BundleId, BundleVersion, RegistryEvent, StateRead, Timestamp};

/// The view's tables, one RocksDB column family each. The byte is the table's id in the
/// `state` changelog key; a retired id is never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Table {
    /// `bundle_id \0 version` -> BundleRecord JSON.
    Bundles = 1,
    /// `bundle_id \0 env \0 tenant \0 slot` -> SlotRecord JSON.
    Slots = 2,
    /// `bundle_id \0 env \0 tenant \0 slot \0 partition(4) seq(8)` -> HistoryEntry JSON.
    History = 3,
    /// `env` -> CatalogEntry JSON; `\0version` -> catalog version.
    Catalog = 4,
    /// `log(1) partition(4) seq(8)` -> RegistryEvent, Avro single-object encoding (the
    /// bytes of its log record).
    Events = 5,
    /// `bundle_id \0 log(1) partition(4) seq(8)` -> empty.
    EventsByBundle = 6,
    /// `command_id(16)` -> CommandResult JSON.
    Results = 7,
    /// `log(1) partition(4)` -> AppliedPosition JSON.
    Offsets = 8,
}

impl Table {
    /// Every table, in id order.
    pub const ALL: [Table; 8] = [
        Table::Bundles,
        Table::Slots,
        Table::History,
        Table::Catalog,
        Table::Events,
        Table::EventsByBundle,
        Table::Results,
        Table::Offsets,
    ];

    /// Column family name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Bundles => "bundles",
            Table::Slots => "slots",
            Table::History => "history",
            Table::Catalog => "catalog",
            Table::Events => "events",
            Table::EventsByBundle => "events_by_bundle",
            Table::Results => "results",
            Table::Offsets => "offsets",
        }
    }

    /// From the changelog id byte.
    pub fn from_id(id: u8) -> Option<Table> {
        Table::ALL.into_iter().find(|t| *t as u8 == id)
    }
}

/// One key/value write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// Table.
    pub table: Table,
    /// Key.
    pub key: Vec<u8>,
    /// Value.
    pub value: Vec<u8>,
}

impl Write {
    /// The `state` topic key: table id then the table key.
    pub fn changelog_key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.key.len() + 1);
        k.push(self.table as u8);
        k.extend_from_slice(&self.key);
        k
    }
}

/// One planned change. Bundle and slot records stay typed, so that a caller applying
/// many events at once can keep them as the batch changes them and serialize each key's
/// last value once ([`Change::into_write`] gives the bytes [`plan`] writes).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A finished write.
    Write(Write),
    /// A bundle record at `key` of [`Table::Bundles`].
    Bundle(Vec<u8>, Box<BundleRecord>),
    /// A slot record at `key` of [`Table::Slots`].
    Slot(Vec<u8>, Box<SlotRecord>),
}

impl Change {
    /// The write this change stands for.
    pub fn into_write(self) -> Write {
        match self {
            Change::Write(w) => w,
            Change::Bundle(key, rec) => Write {
                table: Table::Bundles,
                key,
                value: json(&rec),
            },
            Change::Slot(key, rec) => Write {
                table: Table::Slots,
                key,
                value: json(&rec),
            },
        }
    }
}

/// How far one log partition has been applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedPosition {
    /// Last applied seq.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
    /// Kafka offset to read next.
    pub next_offset: i64,
    /// Observed time of the last applied event.
    pub observed_at_utc: Timestamp,
}

/// One change of a scope slot, for history and time travel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The event.
    pub event_id: Uuid,
    /// Its partition.
    pub partition: i32,
    /// Its seq.
    pub seq: u64,
    /// PROMOTED or ROLLED_BACK.
    pub event_type: RegistryEventType,
    /// Bound after the change.
    pub bundle_version: BundleVersion,
    /// Its digest.
    pub bundle_digest: String,
    /// Bound before.
    pub previous_version: Option<BundleVersion>,
    /// Who.
    pub actor: Option<crate::domain::Actor>,
    /// Why.
    pub reason: Option<String>,
    /// When.
    pub observed_at_utc: Timestamp,
}

/// Key of a bundle record.
pub fn bundle_key(id: &BundleId, v: &BundleVersion) -> Vec<u8> {
    format!("{id}\0{v}").into_bytes()
}

/// Key of a slot record.
pub fn slot_key(id: &BundleId, s: &ScopeRef) -> Vec<u8> {
    format!(
        "{id}\0{}\0{}\0{}",
        s.environment,
        s.tenant_id,
        s.slot.as_str()
    )
    .into_bytes()
}

/// Prefix of a slot's history entries.
pub fn history_prefix(id: &BundleId, s: &ScopeRef) -> Vec<u8> {
    let mut k = slot_key(id, s);
    k.push(0);
    k
}

/// Big-endian `log partition seq` suffix, ordering events within a log.
pub fn position_key(log: LogId, partition: i32, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    k.push(log_byte(log));
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Key of an applied position.
pub fn offset_key(log: LogId, partition: i32) -> Vec<u8> {
    let mut k = vec![log_byte(log)];
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

fn log_byte(log: LogId) -> u8 {
    match log {
        LogId::Events => 0,
        LogId::Catalog => 1,
    }
}

/// The catalog version key.
pub const CATALOG_VERSION_KEY: &[u8] = b"\0version";

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("view records serialize")
}

/// Plans every write that applying `e` causes (but its position, see [`position_write`]),
/// reading current records from `snap`. `encoded` is the event's log record, its Avro
/// single-object encoding ([`crate::codec::encode_event`]); the events table keeps those
/// bytes. Pure: the same event and snapshot give the same bytes.
pub fn plan<S: StateRead>(
    e: &RegistryEvent,
    encoded: &[u8],
    snap: &S,
) -> Result<Vec<Write>, S::Error> {
    Ok(plan_changes(e, encoded, snap)?
        .into_iter()
        .map(Change::into_write)
        .collect())
}

/// [`plan`], with bundle and slot records left typed.
pub fn plan_changes<S: StateRead>(
    e: &RegistryEvent,
    encoded: &[u8],
    snap: &S,
) -> Result<Vec<Change>, S::Error> {
    let mut w = Vec::with_capacity(8);
    let pos = position_key(e.log, e.partition, e.seq);
    w.push(Change::Write(Write {
        table: Table::Events,
        key: pos.clone(),
        value: encoded.to_vec(),
    }));
    if let Some(id) = &e.bundle_id {
        let mut k = id.as_str().as_bytes().to_vec();
        k.push(0);
        k.extend_from_slice(&pos);
        w.push(Change::Write(Write {
            table: Table::EventsByBundle,
            key: k,
            value: Vec::new(),
        }));
    }
    w.push(Change::Write(Write {
        table: Table::Results,
        key: e.command_id.as_bytes().to_vec(),
        value: json(&CommandResult::from_event(e)),
    }));
    if e.outcome == Outcome::Accepted {
        if let Some(id) = &e.bundle_id {
            plan_family(e, id, snap, &mut w)?;
        }
        if e.event_type == RegistryEventType::CatalogUpdated
            && let Some(entry) = &e.catalog_entry
        {
            w.push(Change::Write(Write {
                table: Table::Catalog,
                key: entry.environment.as_str().as_bytes().to_vec(),
                value: json(entry),
            }));
            w.push(Change::Write(Write {
                table: Table::Catalog,
                key: CATALOG_VERSION_KEY.to_vec(),
                value: json(&e.seq),
            }));
        }
    }
    Ok(w)
}

/// The applied-position write that goes with `e`, read at Kafka `offset`.
pub fn position_write(e: &RegistryEvent, offset: i64) -> Write {
    applied_position_write(
        e.log,
        e.partition,
        &AppliedPosition {
            seq: e.seq,
            hash: e.hash.clone(),
            next_offset: offset + 1,
            observed_at_utc: e.observed_at_utc,
        },
    )
}

/// The write of log partition `log`/`partition`'s applied position.
pub fn applied_position_write(log: LogId, partition: i32, pos: &AppliedPosition) -> Write {
    Write {
        table: Table::Offsets,
        key: offset_key(log, partition),
        value: json(pos),
    }
}

fn plan_family<S: StateRead>(
    e: &RegistryEvent,
    id: &BundleId,
    snap: &S,
    w: &mut Vec<Change>,
) -> Result<(), S::Error> {
    let mut touched: Vec<&BundleVersion> =
        e.state_changes.iter().map(|s| &s.bundle_version).collect();
    if let Some(b) = &e.binding {
        touched.push(&b.bundle_version);
        touched.extend(b.previous_version.as_ref());
    }
    touched.sort();
    touched.dedup();
    if e.event_type == RegistryEventType::BundleRegistered
        && let Some(rec) = BundleRecord::from_event(e)
    {
        let key = bundle_key(id, &rec.bundle.bundle_version);
        touched.retain(|v| **v != rec.bundle.bundle_version);
        w.push(Change::Bundle(key, Box::new(rec)));
    }
    for v in touched {
        if let Some(mut rec) = snap.bundle(id, v)? {
            rec.apply(e);
            w.push(Change::Bundle(bundle_key(id, v), Box::new(rec)));
        }
    }
    for (k, rec) in crate::domain::state::slot_changes(e, |k| snap.slot(id, k))? {
        w.push(Change::Slot(slot_key(id, &k), Box::new(rec)));
    }
    if let (Some(b), Some(scope)) = (&e.binding, &e.scope) {
        let mut hk = history_prefix(id, scope);
        hk.extend_from_slice(&e.partition.to_be_bytes());
        hk.extend_from_slice(&e.seq.to_be_bytes());
        let entry = HistoryEntry {
            event_id: e.event_id,
            partition: e.partition,
            seq: e.seq,
            event_type: e.event_type,
            bundle_version: b.bundle_version.clone(),
            bundle_digest: b.bundle_digest.clone(),
            previous_version: b.previous_version.clone(),
            actor: e.actor.clone(),
            reason: e.reason.clone(),
            observed_at_utc: e.observed_at_utc,
        };
        w.push(Change::Write(Write {
            table: Table::History,
            key: hk,
            value: json(&entry),
        }));
    }
    Ok(())
}
