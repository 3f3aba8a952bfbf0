//! The registry state machine. `decide` turns a command into exactly one event (a change,
//! a no-op or a rejection) against the current state; `apply` replays an event's recorded
//! effects. Replay never re-decides, so `apply` over the log rebuilds the state exactly.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::Grants;
use super::bundle::{GateReceipt, ModelBundle};
use super::catalog::Catalog;
use super::command::{BundleTarget, Command, CommandEnvelope, Promote, PublishBundle, Rollback};
use super::error::{ErrorCode, Rejection};
use super::event::{
    BindingChange, CommandResult, CommandSource, ErrorInfo, GENESIS_HASH, LifecycleState, LogId,
    Outcome, RegistryEvent, RegistryEventType, ScopeRef, StateChange,
};
use super::ids::{Actor, BundleId, BundleVersion, Slot, Timestamp};

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
        if let Some(b) = &e.binding {
            if &b.bundle_version == v {
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
    fn seal(&self, mut draft: RegistryEvent) -> RegistryEvent {
        draft.log = self.log;
        draft.partition = self.partition;
        draft.seq = self.last_seq + 1;
        draft.prev_hash = self.last_hash.clone();
        draft.hash = draft.compute_hash();
        draft
    }

    /// Advances past `e` (already checked to be the next event).
    fn advance(&mut self, e: &RegistryEvent) {
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

fn draft(input_id: Uuid, source: CommandSource, observed_at: Timestamp) -> RegistryEvent {
    RegistryEvent {
        event_id: RegistryEvent::id_for(input_id),
        log: LogId::Events,
        partition: 0,
        seq: 0,
        event_type: RegistryEventType::CommandRejected,
        outcome: Outcome::Rejected,
        command_id: input_id,
        command_type: None,
        actor: None,
        bundle_id: None,
        bundle_version: None,
        bundle_digest: None,
        scope: None,
        from_state: None,
        to_state: None,
        observed_at_utc: observed_at,
        reason: None,
        source,
        bundle: None,
        gate_receipt: None,
        state_changes: Vec::new(),
        binding: None,
        catalog_version: None,
        catalog_entry: None,
        warnings: Vec::new(),
        error: None,
        prev_hash: String::new(),
        hash: String::new(),
    }
}

/// An event skeleton for `input`, filled with what the envelope says.
fn draft_for(input: &CommandInput) -> RegistryEvent {
    let env = &input.envelope;
    let mut e = draft(env.command_id, input.source, input.observed_at);
    e.command_type = Some(env.command.command_type());
    e.actor = Some(env.actor.clone());
    e.reason = env.reason.clone();
    e.bundle_id = env.command.bundle_id().cloned();
    match &env.command {
        Command::Publish(p) => {
            e.bundle_version = Some(p.bundle.bundle_version.clone());
        }
        Command::Nominate(t) | Command::Approve(t) | Command::Reject(t) | Command::Retire(t) => {
            e.bundle_version = Some(t.bundle_version.clone());
        }
        Command::Promote(p) => {
            e.bundle_version = Some(p.bundle_version.clone());
            e.scope = Some(ScopeRef {
                environment: p.environment.clone(),
                tenant_id: p.tenant_id.clone(),
                slot: Slot::from_degrade(p.degrade),
            });
        }
        Command::Rollback(r) => {
            e.scope = Some(ScopeRef {
                environment: r.environment.clone(),
                tenant_id: r.tenant_id.clone(),
                slot: Slot::from_degrade(r.degrade),
            });
        }
        Command::SetCatalog(c) => {
            e.scope = None;
            e.catalog_entry = Some(c.clone());
        }
    }
    e
}

fn reject(mut e: RegistryEvent, r: Rejection) -> RegistryEvent {
    e.event_type = RegistryEventType::CommandRejected;
    e.outcome = Outcome::Rejected;
    e.state_changes.clear();
    e.binding = None;
    e.catalog_entry = None;
    e.error = Some(ErrorInfo::from(r));
    e
}

fn noop(mut e: RegistryEvent, outcome: Outcome, state: LifecycleState) -> RegistryEvent {
    e.event_type = RegistryEventType::CommandNoop;
    e.outcome = outcome;
    e.from_state = Some(state);
    e.to_state = Some(state);
    e
}

fn accept(
    mut e: RegistryEvent,
    event_type: RegistryEventType,
    from: LifecycleState,
    to: LifecycleState,
) -> RegistryEvent {
    e.event_type = event_type;
    e.outcome = Outcome::Accepted;
    e.from_state = Some(from);
    e.to_state = Some(to);
    if from != to {
        let v = e
            .bundle_version
            .clone()
            .expect("accepted bundle events name a version");
        e.state_changes.push(StateChange {
            bundle_version: v,
            from,
            to,
        });
    }
    e
}

fn illegal(what: &str, id: &BundleId, v: &BundleVersion, state: LifecycleState) -> Rejection {
    Rejection::new(
        ErrorCode::IllegalTransition,
        format!("cannot {what} {id}@{v}: it is {}", state.as_str()),
    )
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

    /// Decides `input` against this state, the catalog and the grants. Pure and
    /// deterministic: the same arguments always give the same decision, byte for byte.
    pub fn decide(&self, catalog: &Catalog, grants: &Grants, input: &CommandInput) -> Decision {
        if let Some(first) = self.commands.get(&input.envelope.command_id) {
            return Decision::Repeat(first.clone());
        }
        let e = draft_for(input);
        let event = match self.decide_inner(catalog, grants, input, e.clone()) {
            Ok(ev) => ev,
            Err(r) => reject(e, r),
        };
        Decision::Append(self.chain.seal(event))
    }

    /// Records an undecodable command whose command_id was recovered, as a rejection.
    pub fn decide_undecodable(&self, input: &UndecodableInput) -> Decision {
        if let Some(first) = self.commands.get(&input.command_id) {
            return Decision::Repeat(first.clone());
        }
        let mut e = draft(input.command_id, input.source, input.observed_at);
        e.bundle_id = input.bundle_id.clone();
        Decision::Append(self.chain.seal(reject(e, input.error.clone())))
    }

    fn decide_inner(
        &self,
        catalog: &Catalog,
        grants: &Grants,
        input: &CommandInput,
        e: RegistryEvent,
    ) -> Result<RegistryEvent, Rejection> {
        let env = &input.envelope;
        env.validate()?;
        grants.authorize(&env.actor, &env.command)?;
        match &env.command {
            Command::Publish(p) => self.decide_publish(p, e),
            Command::Nominate(t) => self.decide_step(
                t,
                e,
                "nominate",
                LifecycleState::Registered,
                LifecycleState::Candidate,
                RegistryEventType::BundleNominated,
            ),
            Command::Approve(t) => {
                let rec = self.existing(t)?;
                if rec.submitted_by == env.actor {
                    return Err(Rejection::new(
                        ErrorCode::SeparationOfDuties,
                        format!(
                            "{} submitted {}@{} and cannot approve it",
                            env.actor, t.bundle_id, t.bundle_version
                        ),
                    ));
                }
                self.decide_step(
                    t,
                    e,
                    "approve",
                    LifecycleState::Candidate,
                    LifecycleState::Approved,
                    RegistryEventType::BundleApproved,
                )
            }
            Command::Reject(t) => self.decide_step(
                t,
                e,
                "reject",
                LifecycleState::Candidate,
                LifecycleState::Rejected,
                RegistryEventType::BundleRejected,
            ),
            Command::Retire(t) => {
                let rec = self.existing(t)?;
                if rec.state == LifecycleState::Active {
                    return Err(Rejection::new(
                        ErrorCode::IllegalTransition,
                        format!(
                            "cannot retire {}@{}: it is ACTIVE in {} scope slot(s); promote another bundle or roll back first",
                            t.bundle_id, t.bundle_version, rec.active_bindings
                        ),
                    ));
                }
                self.decide_step(
                    t,
                    e,
                    "retire",
                    LifecycleState::Approved,
                    LifecycleState::Retired,
                    RegistryEventType::BundleRetired,
                )
            }
            Command::Promote(p) => self.decide_promote(catalog, p, e),
            Command::Rollback(r) => self.decide_rollback(r, e),
            Command::SetCatalog(_) => Err(Rejection::new(
                ErrorCode::InvalidPayload,
                format!(
                    "SET_CATALOG must be keyed {:?}; it reached a bundle partition",
                    super::command::CATALOG_KEY
                ),
            )),
        }
    }

    fn existing(&self, t: &BundleTarget) -> Result<&BundleRecord, Rejection> {
        self.bundle(&t.bundle_id, &t.bundle_version).ok_or_else(|| {
            Rejection::new(
                ErrorCode::UnknownBundle,
                format!("{}@{} is not registered", t.bundle_id, t.bundle_version),
            )
        })
    }

    fn decide_publish(
        &self,
        p: &PublishBundle,
        mut e: RegistryEvent,
    ) -> Result<RegistryEvent, Rejection> {
        p.bundle.validate()?;
        let digest = p.bundle.digest();
        e.bundle_digest = Some(digest.clone());
        if let Some(rec) = self.bundle(&p.bundle.bundle_id, &p.bundle.bundle_version) {
            if rec.bundle_digest != digest {
                return Err(Rejection::new(
                    ErrorCode::ImmutableConflict,
                    format!(
                        "{}@{} is registered with digest {}; this bundle has digest {}. Bundles are immutable: publish a new version",
                        p.bundle.bundle_id, p.bundle.bundle_version, rec.bundle_digest, digest
                    ),
                ));
            }
            return Ok(noop(e, Outcome::Duplicate, rec.state));
        }
        p.gate_receipt.check_for(&p.bundle, &digest)?;
        e.bundle = Some(p.bundle.clone());
        e.gate_receipt = Some(p.gate_receipt.clone());
        e.event_type = RegistryEventType::BundleRegistered;
        e.outcome = Outcome::Accepted;
        e.to_state = Some(LifecycleState::Registered);
        Ok(e)
    }

    fn decide_step(
        &self,
        t: &BundleTarget,
        mut e: RegistryEvent,
        verb: &str,
        from: LifecycleState,
        to: LifecycleState,
        event_type: RegistryEventType,
    ) -> Result<RegistryEvent, Rejection> {
        let rec = self.existing(t)?;
        e.bundle_digest = Some(rec.bundle_digest.clone());
        if rec.state == to {
            return Ok(noop(e, Outcome::Noop, to));
        }
        if rec.state != from {
            return Err(illegal(verb, &t.bundle_id, &t.bundle_version, rec.state));
        }
        Ok(accept(e, event_type, from, to))
    }

    fn decide_promote(
        &self,
        catalog: &Catalog,
        p: &Promote,
        mut e: RegistryEvent,
    ) -> Result<RegistryEvent, Rejection> {
        let t = BundleTarget {
            bundle_id: p.bundle_id.clone(),
            bundle_version: p.bundle_version.clone(),
        };
        let rec = self.existing(&t)?;
        e.bundle_digest = Some(rec.bundle_digest.clone());
        if !matches!(rec.state, LifecycleState::Approved | LifecycleState::Active) {
            return Err(illegal(
                "promote",
                &p.bundle_id,
                &p.bundle_version,
                rec.state,
            ));
        }
        // Defence in depth: the receipt was checked at intake and is immutable since.
        rec.gate_receipt
            .check_for(&rec.bundle, &rec.bundle_digest)?;
        let slot_key = e.scope.clone().expect("promote drafts carry a scope");
        let family = &self.families[&p.bundle_id];
        let current = family.slots.get(&slot_key).and_then(SlotRecord::bound);
        if current == Some(&p.bundle_version) {
            return Ok(noop(e, Outcome::Noop, rec.state));
        }
        e.catalog_version = Some(catalog.version);
        e.warnings = catalog
            .check(&p.environment, &rec.bundle.compatibility)
            .into_result(&p.environment)?;
        let mut e = accept(
            e,
            RegistryEventType::BundlePromoted,
            rec.state,
            LifecycleState::Active,
        );
        if let Some(prev) = current {
            self.release(&mut e, family, prev);
        }
        e.binding = Some(BindingChange {
            pop: 0,
            push: true,
            bundle_version: p.bundle_version.clone(),
            bundle_digest: rec.bundle_digest.clone(),
            previous_version: current.cloned(),
        });
        Ok(e)
    }

    /// Records that `prev` loses one binding; when it was its last, it returns to APPROVED.
    fn release(&self, e: &mut RegistryEvent, family: &Family, prev: &BundleVersion) {
        if let Some(prev_rec) = family.bundles.get(prev)
            && prev_rec.active_bindings == 1
        {
            e.state_changes.push(StateChange {
                bundle_version: prev.clone(),
                from: LifecycleState::Active,
                to: LifecycleState::Approved,
            });
        }
    }

    fn decide_rollback(
        &self,
        r: &Rollback,
        mut e: RegistryEvent,
    ) -> Result<RegistryEvent, Rejection> {
        let slot_key = e.scope.clone().expect("rollback drafts carry a scope");
        let nothing = || {
            Rejection::new(
                ErrorCode::NothingToRollBack,
                format!(
                    "scope {}/{}/{} slot {} has no earlier usable activation",
                    r.environment,
                    r.tenant_id,
                    r.bundle_id,
                    slot_key.slot.as_str()
                ),
            )
        };
        let family = self.families.get(&r.bundle_id).ok_or_else(nothing)?;
        let slot = family.slots.get(&slot_key).ok_or_else(nothing)?;
        let current = slot.bound().ok_or_else(nothing)?;
        // Walk down the stack below the current binding, skipping versions since retired
        // or rejected (and repeats of the current one).
        let mut pop = 1u32;
        let mut target = None;
        for v in slot.stack.iter().rev().skip(1) {
            let usable = v != current
                && family.bundles.get(v).is_some_and(|b| {
                    matches!(b.state, LifecycleState::Approved | LifecycleState::Active)
                });
            if usable {
                target = Some(v);
                break;
            }
            pop += 1;
        }
        let target = target.ok_or_else(nothing)?;
        let rec = &family.bundles[target];
        e.bundle_version = Some(target.clone());
        e.bundle_digest = Some(rec.bundle_digest.clone());
        let mut e = accept(
            e,
            RegistryEventType::BundleRolledBack,
            rec.state,
            LifecycleState::Active,
        );
        self.release(&mut e, family, current);
        e.binding = Some(BindingChange {
            pop,
            push: false,
            bundle_version: target.clone(),
            bundle_digest: rec.bundle_digest.clone(),
            previous_version: Some(current.clone()),
        });
        Ok(e)
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
        if let (Some(b), Some(scope)) = (&e.binding, &e.scope) {
            family.slots.entry(scope.clone()).or_default().apply(b, e);
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

    /// Decides a catalog command.
    pub fn decide(&self, grants: &Grants, input: &CommandInput) -> Decision {
        if let Some(first) = self.commands.get(&input.envelope.command_id) {
            return Decision::Repeat(first.clone());
        }
        let e = draft_for(input);
        let decided = (|| {
            input.envelope.validate()?;
            grants.authorize(&input.envelope.actor, &input.envelope.command)?;
            let Command::SetCatalog(entry) = &input.envelope.command else {
                return Err(Rejection::new(
                    ErrorCode::InvalidPayload,
                    "only SET_CATALOG travels under the catalog key",
                ));
            };
            entry.validate()?;
            let mut ev = e.clone();
            if self.catalog.entries.get(&entry.environment) == Some(entry) {
                ev.event_type = RegistryEventType::CommandNoop;
                ev.outcome = Outcome::Noop;
                ev.catalog_entry = None;
                ev.catalog_version = Some(self.catalog.version);
                return Ok(ev);
            }
            ev.event_type = RegistryEventType::CatalogUpdated;
            ev.outcome = Outcome::Accepted;
            ev.catalog_version = Some(self.chain.last_seq + 1);
            Ok(ev)
        })();
        let event = decided.unwrap_or_else(|r| reject(e, r));
        Decision::Append(self.chain.seal(event))
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
        Ok(Applied::Applied)
    }
}

impl Default for CatalogState {
    fn default() -> Self {
        Self::new()
    }
}
