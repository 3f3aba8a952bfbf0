//! The registry state machine. `decide` turns a command into exactly one event (a change,
//! a no-op or a rejection) against the current state; `apply` replays an event's recorded
//! effects. Replay never re-decides, so `apply` over the log rebuilds the state exactly.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::autopilot::{Autopilot, MAX_SERIES_VERSIONS, TriggerOutcome};
use super::bundle::{GateReceipt, ModelBundle};
use super::catalog::Catalog;
use super::command::CommandEnvelope;
use super::error::Rejection;
use super::event::{
    BindingChange, CommandResult, CommandSource, GENESIS_HASH, LifecycleState, LogId, Outcome,
    RegistryEvent, RegistryEventType, ScopeRef,
};
use super::ids::{Actor, BundleId, BundleVersion, Timestamp};

/// A registered bundle version and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRecord {
    /// The immutable bundle.
    pub bundle: ModelBundle,
    /// Its digest.
    pub bundle_digest: String,
    /// The PASS receipt it was registered with.
    pub gate_receipt: GateReceipt,
    /// Lifecycle state.
    pub state: LifecycleState,
    /// Who published it (separation of duties).
    pub submitted_by: Actor,
    /// When it was registered (the registering event's observed time).
    pub registered_at_utc: Timestamp,
    /// Seq of the registering event.
    pub registered_seq: u64,
    /// Number of scope slots that bind it now.
    pub active_bindings: u32,
    /// Seq of the last event that changed this record; applying an older one is a no-op.
    pub last_seq: u64,
    /// An automated rollback took it out of a scope: it needs a fresh approval.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub needs_reapproval: bool,
    /// Seq of its latest re-approval (after an automated rollback).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reapproved_seq: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The binding of one scope slot plus its activation stack (for rollback).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRecord {
    /// Versions activated in this slot, oldest first; the last one is bound.
    pub stack: Vec<BundleVersion>,
    /// Seq of the event that last changed it.
    pub changed_seq: u64,
    /// Event that last changed it.
    pub changed_event_id: Option<Uuid>,
    /// When it last changed.
    pub changed_at_utc: Option<Timestamp>,
    /// CANARY slot: the canary's share and activation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryInfo>,
    /// PRIMARY slot: the scope's autopilot (policy, kept windows, guard-rail counters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autopilot: Option<Autopilot>,
}

/// A canary's share and the activation its routing slices hash with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryInfo {
    /// Share of routing keys answered the canary, in basis points.
    pub share_bp: u32,
    /// The CANARY_STARTED event: slices are stable for as long as this canary lives.
    pub activation: Uuid,
}

impl SlotRecord {
    /// The bound version, if any.
    pub fn bound(&self) -> Option<&BundleVersion> {
        self.stack.last()
    }

    /// Replays a binding change; one at or below `changed_seq` is a no-op.
    pub fn apply(&mut self, change: &BindingChange, event: &RegistryEvent) {
        if event.seq <= self.changed_seq {
            return;
        }
        let keep = self.stack.len().saturating_sub(change.pop as usize);
        self.stack.truncate(keep);
        if change.push {
            self.stack.push(change.bundle_version.clone());
        }
        if change.cleared {
            self.stack.clear();
            self.canary = None;
        }
        if event.event_type == RegistryEventType::CanaryStarted {
            self.canary = Some(CanaryInfo {
                share_bp: event
                    .autopilot
                    .as_ref()
                    .and_then(|d| d.canary_share_bp)
                    .unwrap_or_default(),
                activation: event.event_id,
            });
        }
        self.changed_seq = event.seq;
        self.changed_event_id = Some(event.event_id);
        self.changed_at_utc = Some(event.observed_at_utc);
    }
}

/// Key of a slot inside a family: `(environment, tenant, slot)`.
pub type SlotKey = ScopeRef;

/// Everything known about one bundle family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Family {
    /// Versions.
    pub bundles: BTreeMap<BundleVersion, BundleRecord>,
    /// Scope slots.
    pub slots: BTreeMap<SlotKey, SlotRecord>,
}

impl BundleRecord {
    /// A new record from a BUNDLE_REGISTERED event.
    pub fn from_event(e: &RegistryEvent) -> Option<Self> {
        Some(Self {
            bundle: e.bundle.clone()?,
            bundle_digest: e.bundle_digest.clone()?,
            gate_receipt: e.gate_receipt.clone()?,
            state: LifecycleState::Registered,
            submitted_by: e.actor.clone()?,
            registered_at_utc: e.observed_at_utc,
            registered_seq: e.seq,
            active_bindings: 0,
            last_seq: e.seq,
            needs_reapproval: false,
            reapproved_seq: 0,
        })
    }

    /// Replays what `e` records about this version: its lifecycle change and binding count.
    /// Idempotent: an event at or below `last_seq` is a no-op.
    pub fn apply(&mut self, e: &RegistryEvent) {
        if e.seq <= self.last_seq {
            return;
        }
        self.last_seq = e.seq;
        let v = &self.bundle.bundle_version;
        for sc in e.state_changes.iter().filter(|sc| &sc.bundle_version == v) {
            self.state = sc.to;
        }
        if e.event_type == RegistryEventType::BundleApproved
            && e.state_changes
                .iter()
                .any(|sc| &sc.bundle_version == v && sc.from == sc.to)
        {
            self.needs_reapproval = false;
            self.reapproved_seq = e.seq;
        }
        if let Some(t) = e.autopilot.as_ref().and_then(|d| d.trigger.as_ref())
            && &t.bundle_version == v
            && t.outcome == TriggerOutcome::Acted
        {
            self.needs_reapproval = true;
        }
        if let Some(b) = &e.binding {
            // A completed canary moves from the CANARY slot to the PRIMARY: no new binding.
            if &b.bundle_version == v
                && !b.cleared
                && e.event_type != RegistryEventType::CanaryCompleted
            {
                self.active_bindings += 1;
            }
            if b.previous_version.as_ref() == Some(v) {
                self.active_bindings = self.active_bindings.saturating_sub(1);
            }
        }
    }
}

/// The hash chain position of one log partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// Which log.
    pub log: LogId,
    /// Partition.
    pub partition: i32,
    /// Seq of the last event; 0 before the first.
    pub last_seq: u64,
    /// Hash of the last event, or the genesis hash.
    pub last_hash: String,
}

impl Chain {
    /// An empty chain.
    pub fn new(log: LogId, partition: i32) -> Self {
        Self {
            log,
            partition,
            last_seq: 0,
            last_hash: GENESIS_HASH.to_owned(),
        }
    }

    /// Stamps `draft` with the next seq, the chain link and its hash.
    pub(super) fn seal(&self, mut draft: RegistryEvent) -> RegistryEvent {
        draft.log = self.log;
        draft.partition = self.partition;
        draft.seq = self.last_seq + 1;
        draft.prev_hash = self.last_hash.clone();
        draft.hash = draft.compute_hash();
        draft
    }

    /// Advances past `e` (already checked by [`chain_check`] to be the next event).
    pub fn advance(&mut self, e: &RegistryEvent) {
        self.last_seq = e.seq;
        self.last_hash = e.hash.clone();
    }
}

/// A command as the processor hands it to `decide`.
#[derive(Debug, Clone)]
pub struct CommandInput {
    /// The decoded command.
    pub envelope: CommandEnvelope,
    /// Its position on `commands`.
    pub source: CommandSource,
    /// Its log timestamp: the event's `observed_at_utc`.
    pub observed_at: Timestamp,
    /// Its detached signature and the bytes it must cover.
    pub credential: super::trust::Credential,
}

/// A command whose bytes could not be decoded, but whose command_id could.
#[derive(Debug, Clone)]
pub struct UndecodableInput {
    /// The recovered command_id.
    pub command_id: Uuid,
    /// The Kafka key, when it is a valid bundle_id.
    pub bundle_id: Option<BundleId>,
    /// Why it could not be decoded.
    pub error: Rejection,
    /// Its position on `commands`.
    pub source: CommandSource,
    /// Its log timestamp.
    pub observed_at: Timestamp,
}

/// What `decide` produced.
// An event is the common case; boxing it would add an allocation per command.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// A new event to append (a change, a no-op or a rejection).
    Append(RegistryEvent),
    /// The command_id was seen before: here is its first result; nothing is appended.
    Repeat(CommandResult),
}

/// The outcome of `apply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The event was applied.
    Applied,
    /// Its seq was already applied; skipped.
    AlreadyApplied,
    /// It does not chain onto the applied head (a losing writer's fork); skipped.
    Forked,
}

/// The log-order rule every applier shares: the first event to chain onto the head wins.
/// `Ok(None)` means apply it; `Ok(Some(_))` means skip it; `Err` is a gap.
pub fn chain_check(chain: &Chain, e: &RegistryEvent) -> Result<Option<Applied>, GapError> {
    if e.seq <= chain.last_seq {
        return Ok(Some(Applied::AlreadyApplied));
    }
    if e.seq == chain.last_seq + 1 && e.prev_hash != chain.last_hash {
        return Ok(Some(Applied::Forked));
    }
    if e.seq != chain.last_seq + 1 {
        // A fork can run ahead of the head too; it never links to it.
        if e.prev_hash != chain.last_hash {
            return Ok(Some(Applied::Forked));
        }
        return Err(GapError {
            log: e.log,
            partition: chain.partition,
            last: chain.last_seq,
            got: e.seq,
        });
    }
    Ok(None)
}

/// Why an event cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event seq {got} does not follow seq {last} in {log:?}/{partition}")]
pub struct GapError {
    /// Log.
    pub log: LogId,
    /// Partition.
    pub partition: i32,
    /// Last applied seq.
    pub last: u64,
    /// Seq offered.
    pub got: u64,
}

/// The state of one `events` partition: its families, its chain and its command index.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionState {
    /// Chain position.
    pub chain: Chain,
    /// Families in this partition.
    pub families: BTreeMap<BundleId, Family>,
    /// Every command_id decided here and its result.
    pub commands: HashMap<Uuid, CommandResult>,
    /// Highest `commands` offset recorded in an event here.
    pub last_command_offset: Option<i64>,
}

/// The catalog log's state.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogState {
    /// Chain position.
    pub chain: Chain,
    /// The catalog.
    pub catalog: Catalog,
    /// Every command_id decided here and its result.
    pub commands: HashMap<Uuid, CommandResult>,
    /// Highest `commands` offset recorded per commands partition.
    pub last_command_offset: BTreeMap<i32, i64>,
}

impl PartitionState {
    /// An empty partition.
    pub fn new(partition: i32) -> Self {
        Self {
            chain: Chain::new(LogId::Events, partition),
            families: BTreeMap::new(),
            commands: HashMap::new(),
            last_command_offset: None,
        }
    }

    /// Looks up one version.
    pub fn bundle(&self, id: &BundleId, v: &BundleVersion) -> Option<&BundleRecord> {
        self.families.get(id)?.bundles.get(v)
    }

    /// Replays `e` by the log-order rule of [`chain_check`].
    pub fn apply(&mut self, e: &RegistryEvent) -> Result<Applied, GapError> {
        if let Some(skip) = chain_check(&self.chain, e)? {
            return Ok(skip);
        }
        self.chain.advance(e);
        self.commands
            .insert(e.command_id, CommandResult::from_event(e));
        self.last_command_offset = Some(
            self.last_command_offset
                .map_or(e.source.offset, |o| o.max(e.source.offset)),
        );
        let Some(id) = &e.bundle_id else {
            return Ok(Applied::Applied);
        };
        if e.outcome != Outcome::Accepted {
            return Ok(Applied::Applied);
        }
        let family = self.families.entry(id.clone()).or_default();
        if e.event_type == RegistryEventType::BundleRegistered
            && let Some(rec) = BundleRecord::from_event(e)
        {
            family
                .bundles
                .insert(rec.bundle.bundle_version.clone(), rec);
        }
        let touched =
            e.state_changes
                .iter()
                .map(|sc| &sc.bundle_version)
                .chain(e.binding.iter().flat_map(|b| {
                    std::iter::once(&b.bundle_version).chain(b.previous_version.as_ref())
                }));
        let mut seen = Vec::new();
        for v in touched {
            if !seen.contains(&v) {
                seen.push(v);
                if let Some(rec) = family.bundles.get_mut(v) {
                    rec.apply(e);
                }
            }
        }
        let slots = &family.slots;
        let changed = slot_changes(e, |k| {
            Ok::<_, std::convert::Infallible>(slots.get(k).cloned())
        })
        .unwrap_or_else(|never| match never {});
        for (k, rec) in changed {
            family.slots.insert(k, rec);
        }
        Ok(Applied::Applied)
    }
}

impl CatalogState {
    /// An empty catalog log.
    pub fn new() -> Self {
        Self {
            chain: Chain::new(LogId::Catalog, 0),
            catalog: Catalog::default(),
            commands: HashMap::new(),
            last_command_offset: BTreeMap::new(),
        }
    }

    /// Replays a catalog event.
    pub fn apply(&mut self, e: &RegistryEvent) -> Result<Applied, GapError> {
        if let Some(skip) = chain_check(&self.chain, e)? {
            return Ok(skip);
        }
        self.chain.advance(e);
        self.commands
            .insert(e.command_id, CommandResult::from_event(e));
        let o = self
            .last_command_offset
            .entry(e.source.partition)
            .or_insert(e.source.offset);
        *o = (*o).max(e.source.offset);
        if e.event_type == RegistryEventType::CatalogUpdated
            && let Some(entry) = &e.catalog_entry
        {
            self.catalog
                .entries
                .insert(entry.environment.clone(), entry.clone());
            self.catalog.version = e.seq;
        }
        if matches!(
            e.event_type,
            RegistryEventType::KeyRegistered | RegistryEventType::KeyRevoked
        ) && let Some(key) = &e.key
        {
            self.catalog.trust.apply(key);
        }
        Ok(Applied::Applied)
    }
}

/// Unwraps a result whose error cannot exist.
pub fn infallible<T>(r: Result<T, std::convert::Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => match e {},
    }
}

impl Default for CatalogState {
    fn default() -> Self {
        Self::new()
    }
}

/// The slot records an accepted event changes, each as it stands after the event, read
/// through `get` (memory or a store): the binding of its scope slot, a canary's share,
/// the CANARY slot a completed canary leaves, and the PRIMARY slot's autopilot (policy,
/// windows, guard-rail counters). The one home of slot replay: the in-memory state, the
/// state store and the view all use it, so they hold the same records.
pub fn slot_changes<E>(
    e: &RegistryEvent,
    mut get: impl FnMut(&ScopeRef) -> Result<Option<SlotRecord>, E>,
) -> Result<Vec<(ScopeRef, SlotRecord)>, E> {
    use super::ids::Slot;
    let mut out: Vec<(ScopeRef, SlotRecord)> = Vec::new();
    let Some(scope) = &e.scope else {
        return Ok(out);
    };
    let with = |slot: Slot| ScopeRef {
        slot,
        ..scope.clone()
    };
    let mut fetch = |out: &mut Vec<(ScopeRef, SlotRecord)>, k: ScopeRef| -> Result<usize, E> {
        if let Some(i) = out.iter().position(|(x, _)| *x == k) {
            return Ok(i);
        }
        let rec = get(&k)?.unwrap_or_default();
        out.push((k, rec));
        Ok(out.len() - 1)
    };
    if let Some(b) = &e.binding {
        let i = fetch(&mut out, scope.clone())?;
        out[i].1.apply(b, e);
    }
    let detail = e.autopilot.as_ref();
    match e.event_type {
        RegistryEventType::CanaryShareChanged => {
            let i = fetch(&mut out, with(Slot::Canary))?;
            let slot = &mut out[i].1;
            if let (Some(c), Some(share)) =
                (&mut slot.canary, detail.and_then(|d| d.canary_share_bp))
            {
                c.share_bp = share;
            }
            slot.changed_seq = slot.changed_seq.max(e.seq);
        }
        RegistryEventType::CanaryCompleted => {
            let i = fetch(&mut out, with(Slot::Canary))?;
            let slot = &mut out[i].1;
            slot.stack.clear();
            slot.canary = None;
            slot.changed_seq = slot.changed_seq.max(e.seq);
            slot.changed_event_id = Some(e.event_id);
            slot.changed_at_utc = Some(e.observed_at_utc);
        }
        _ => {}
    }
    if let Some(d) = detail
        && (e.event_type == RegistryEventType::RollbackPolicySet
            || d.observation.is_some()
            || d.trigger.is_some())
    {
        let i = fetch(&mut out, with(Slot::Primary))?;
        let j = fetch(&mut out, with(Slot::Canary))?;
        let canary = out[j].1.bound().cloned();
        let primary = &mut out[i].1;
        // The series of the newest distinct versions of the PRIMARY's stack (the bound one
        // and those a rollback may restore, even past one retired since) and the canary's.
        let mut keep: Vec<BundleVersion> = Vec::with_capacity(MAX_SERIES_VERSIONS + 1);
        for v in primary.stack.iter().rev() {
            if keep.len() == MAX_SERIES_VERSIONS {
                break;
            }
            if !keep.contains(v) {
                keep.push(v.clone());
            }
        }
        keep.extend(canary);
        let a = primary.autopilot.get_or_insert_with(Autopilot::default);
        if e.event_type == RegistryEventType::RollbackPolicySet {
            a.policy = d.policy.clone();
            a.policy_seq = e.seq;
        }
        if let Some(o) = &d.observation {
            let keep: Vec<&BundleVersion> = keep.iter().collect();
            a.apply_observation(o, Some(&keep));
        }
        if let Some(t) = &d.trigger {
            a.apply_trigger(t, e.observed_at_utc.millis(), e.seq);
        }
        // The canary slot was only read to know what to keep.
        if out[j].1 == SlotRecord::default() {
            out.remove(j);
        }
    }
    Ok(out)
}
