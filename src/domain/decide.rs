//! `decide`: turns one command into exactly one event (a change, a no-op or a rejection)
//! against the current state of its partition, read through [`StateRead`]. The state may
//! live in memory ([`PartitionState`](super::PartitionState)) or in a store; `decide`
//! only ever asks for single records by key, so both give the same decision byte for
//! byte. Pure: no I/O of its own, time arrives in the input.

use uuid::Uuid;

use super::auth::Grants;
use super::bundle::check_str;
use super::catalog::Catalog;
use std::collections::BTreeMap;

use super::auth::Role;
use super::autopilot::{
    AUTOPILOT_ACTOR, AutoAction, AutopilotDetail, Bound, Checked, Signal, Trigger, TriggerOutcome,
};
use super::command::{
    BundleTarget, CanaryShare, Command, ForwardedSignal, Observe, Promote, PublishBundle, Rollback,
    ScopeTarget, SetRollbackPolicy,
};
use super::error::{ErrorCode, Rejection};
use super::event::{
    BindingChange, CommandResult, CommandSource, ErrorInfo, LifecycleState, LogId, Outcome,
    RegistryEvent, RegistryEventType, ScopeRef, StateChange,
};
use super::ids::{BundleId, BundleVersion, Slot, Timestamp};
use super::state::{
    BundleRecord, CatalogState, Chain, CommandInput, Decision, PartitionState, SlotRecord,
    UndecodableInput, infallible,
};
use super::trust::{self, KeyOwnerKind, KeyRecord, parse_public_key};

/// Point reads of a partition's current records: what `decide` and the view planner ask.
pub trait StateRead {
    /// Failure of the underlying store (`Infallible` in memory).
    type Error;
    /// One bundle version's record.
    fn bundle(&self, id: &BundleId, v: &BundleVersion)
    -> Result<Option<BundleRecord>, Self::Error>;
    /// One scope slot's record.
    fn slot(&self, id: &BundleId, scope: &ScopeRef) -> Result<Option<SlotRecord>, Self::Error>;
    /// The first result of a command_id already decided here.
    fn result(&self, command_id: &Uuid) -> Result<Option<CommandResult>, Self::Error>;
}

/// Why deciding stopped: the command is rejected, or the store failed.
enum Stop<E> {
    Reject(Rejection),
    Store(E),
}

impl<E> From<Rejection> for Stop<E> {
    fn from(r: Rejection) -> Self {
        Stop::Reject(r)
    }
}

/// Decides `input` against the records in `read`, whose log head is `chain`, the catalog
/// and the grants. Deterministic: the same arguments always give the same decision.
pub fn decide<R: StateRead>(
    read: &R,
    chain: &Chain,
    catalog: &Catalog,
    grants: &Grants,
    input: &CommandInput,
) -> Result<Decision, R::Error> {
    if let Some(first) = read.result(&input.envelope.command_id)? {
        return Ok(Decision::Repeat(first));
    }
    let mut e = draft_for(input);
    let event = match authenticate(catalog, grants, input, &mut e) {
        Err(r) => reject(e, r),
        Ok(()) => match (Decider { read }).decide(catalog, grants, input, e.clone()) {
            Ok(ev) => ev,
            Err(Stop::Reject(r)) => reject(e, r),
            Err(Stop::Store(s)) => return Err(s),
        },
    };
    Ok(Decision::Append(chain.seal(event)))
}

/// Decides `input` exactly as [`decide`] would, minus the two steps that belong to a
/// record on the log: the signature check (the caller has authenticated the actor some
/// other way, as the API does with its token) and sealing into the chain. The dry run of
/// a command (MPR2 §5.9): the event it would append, with its outcome, error and binding
/// changes, and nothing written. It never answers an earlier result of the command_id:
/// the caller gives a dry run a fresh one.
pub fn dry_run<R: StateRead>(
    read: &R,
    catalog: &Catalog,
    grants: &Grants,
    input: &CommandInput,
) -> Result<RegistryEvent, R::Error> {
    let e = draft_for(input);
    match (Decider { read }).decide(catalog, grants, input, e.clone()) {
        Ok(ev) => Ok(ev),
        Err(Stop::Reject(r)) => Ok(reject(e, r)),
        Err(Stop::Store(s)) => Err(s),
    }
}

/// Authenticates `input` before anything else is decided (MPR2 §8.2); records in `e` the
/// presented key id and, when the API gateway signed, `via`.
fn authenticate(
    catalog: &Catalog,
    grants: &Grants,
    input: &CommandInput,
    e: &mut RegistryEvent,
) -> Result<(), Rejection> {
    e.signed_by = input.credential.key_id().map(str::to_owned);
    let who = trust::authenticate(
        &grants.trust,
        &catalog.trust,
        &input.envelope.actor,
        &input.credential,
    )?;
    e.via = who.via;
    Ok(())
}

/// Decides a decoded command where it belongs: the platform commands (SET_CATALOG,
/// REGISTER_KEY, REVOKE_KEY) by the catalog log (`catalog`),
/// every other command by its family's partition (`read`, whose head is `chain`), against
/// the catalog. The one home of that routing: the processor, tests and benchmarks call it.
pub fn route<R: StateRead>(
    read: &R,
    chain: &Chain,
    catalog: &super::state::CatalogState,
    grants: &Grants,
    input: &CommandInput,
) -> Result<Decision, R::Error> {
    if input.envelope.is_platform() {
        Ok(catalog.decide(grants, input))
    } else {
        decide(read, chain, &catalog.catalog, grants, input)
    }
}

/// Records an undecodable command whose command_id was recovered, as a rejection.
pub fn decide_undecodable<R: StateRead>(
    read: &R,
    chain: &Chain,
    input: &UndecodableInput,
) -> Result<Decision, R::Error> {
    if let Some(first) = read.result(&input.command_id)? {
        return Ok(Decision::Repeat(first));
    }
    let mut e = draft(input.command_id, input.source, input.observed_at);
    e.bundle_id = input.bundle_id.clone();
    Ok(Decision::Append(chain.seal(reject(e, input.error.clone()))))
}

struct Decider<'a, R> {
    read: &'a R,
}

impl<R: StateRead> Decider<'_, R> {
    fn bundle(
        &self,
        id: &BundleId,
        v: &BundleVersion,
    ) -> Result<Option<BundleRecord>, Stop<R::Error>> {
        self.read.bundle(id, v).map_err(Stop::Store)
    }

    fn slot(&self, id: &BundleId, scope: &ScopeRef) -> Result<Option<SlotRecord>, Stop<R::Error>> {
        self.read.slot(id, scope).map_err(Stop::Store)
    }

    fn decide(
        &self,
        catalog: &Catalog,
        grants: &Grants,
        input: &CommandInput,
        mut e: RegistryEvent,
    ) -> Result<RegistryEvent, Stop<R::Error>> {
        let env = &input.envelope;
        env.validate()?;
        if let Command::Observe(o) = &env.command {
            return self.observe(catalog, grants, input, o, e);
        }
        grants.authorize(&env.actor, &env.command)?;
        match &env.command {
            Command::Publish(p) => self.publish(catalog, grants, p, e),
            Command::Nominate(t) => {
                let rec = self.existing(t)?;
                self.step(
                    t,
                    &rec,
                    e,
                    "nominate",
                    LifecycleState::Registered,
                    LifecycleState::Candidate,
                    RegistryEventType::BundleNominated,
                )
            }
            Command::Approve(t) => {
                let rec = self.existing(t)?;
                if rec.submitted_by == env.actor {
                    return Err(Rejection::new(
                        ErrorCode::SeparationOfDuties,
                        format!(
                            "{} submitted {}@{} and cannot approve it",
                            env.actor, t.bundle_id, t.bundle_version
                        ),
                    )
                    .into());
                }
                if rec.needs_reapproval
                    && matches!(rec.state, LifecycleState::Approved | LifecycleState::Active)
                {
                    // A fresh approval after an automated rollback (MPR2 §9.4).
                    let mut e = e;
                    e.bundle_digest = Some(rec.bundle_digest.clone());
                    let mut e = accept(e, RegistryEventType::BundleApproved, rec.state, rec.state);
                    e.state_changes.push(StateChange {
                        bundle_version: t.bundle_version.clone(),
                        from: rec.state,
                        to: rec.state,
                    });
                    return Ok(e);
                }
                self.step(
                    t,
                    &rec,
                    e,
                    "approve",
                    LifecycleState::Candidate,
                    LifecycleState::Approved,
                    RegistryEventType::BundleApproved,
                )
            }
            Command::Reject(t) => {
                let rec = self.existing(t)?;
                self.step(
                    t,
                    &rec,
                    e,
                    "reject",
                    LifecycleState::Candidate,
                    LifecycleState::Rejected,
                    RegistryEventType::BundleRejected,
                )
            }
            Command::Retire(t) => {
                let rec = self.existing(t)?;
                if rec.state == LifecycleState::Active {
                    return Err(Rejection::new(
                        ErrorCode::IllegalTransition,
                        format!(
                            "cannot retire {}@{}: it is ACTIVE in {} scope slot(s); promote another bundle or roll back first",
                            t.bundle_id, t.bundle_version, rec.active_bindings
                        ),
                    )
                    .into());
                }
                self.step(
                    t,
                    &rec,
                    e,
                    "retire",
                    LifecycleState::Approved,
                    LifecycleState::Retired,
                    RegistryEventType::BundleRetired,
                )
            }
            Command::Promote(p) => self.promote(catalog, p, e),
            Command::Rollback(r) => self.rollback(r, e),
            Command::SetRollbackPolicy(p) => {
                if let Some(policy) = &p.policy {
                    policy.validate()?;
                }
                e.event_type = RegistryEventType::RollbackPolicySet;
                e.outcome = Outcome::Accepted;
                e.autopilot = Some(AutopilotDetail {
                    policy: p.policy.clone(),
                    ..AutopilotDetail::default()
                });
                Ok(e)
            }
            Command::CanarySetShare(c) => {
                check_share(c.share_bp)?;
                let slot = self.canary_of(&c.scope)?;
                e.bundle_version = slot.bound().cloned();
                if slot
                    .canary
                    .as_ref()
                    .is_some_and(|x| x.share_bp == c.share_bp)
                {
                    e.event_type = RegistryEventType::CommandNoop;
                    e.outcome = Outcome::Noop;
                    return Ok(e);
                }
                e.event_type = RegistryEventType::CanaryShareChanged;
                e.outcome = Outcome::Accepted;
                e.autopilot = Some(AutopilotDetail {
                    canary_share_bp: Some(c.share_bp),
                    ..AutopilotDetail::default()
                });
                Ok(e)
            }
            Command::CanaryComplete(t) => self.canary_complete(t, e),
            Command::CanaryAbort(t) => {
                let slot = self.canary_of(t)?;
                self.canary_abort(&t.bundle_id, &slot, e)
            }
            Command::Observe(_) => unreachable!("OBSERVE is decided before authorization"),
            Command::SetCatalog(_) | Command::RegisterKey(_) | Command::RevokeKey(_) => {
                Err(Rejection::new(
                    ErrorCode::InvalidPayload,
                    format!(
                        "{} must be keyed {:?}; it reached a bundle partition",
                        env.command.command_type().as_str(),
                        super::command::CATALOG_KEY
                    ),
                )
                .into())
            }
        }
    }

    fn existing(&self, t: &BundleTarget) -> Result<BundleRecord, Stop<R::Error>> {
        self.bundle(&t.bundle_id, &t.bundle_version)?
            .ok_or_else(|| {
                Stop::Reject(Rejection::new(
                    ErrorCode::UnknownBundle,
                    format!("{}@{} is not registered", t.bundle_id, t.bundle_version),
                ))
            })
    }

    fn publish(
        &self,
        catalog: &Catalog,
        grants: &Grants,
        p: &PublishBundle,
        mut e: RegistryEvent,
    ) -> Result<RegistryEvent, Stop<R::Error>> {
        p.bundle.validate()?;
        let digest = p.bundle.digest();
        e.bundle_digest = Some(digest.clone());
        if let Some(rec) = self.bundle(&p.bundle.bundle_id, &p.bundle.bundle_version)? {
            if rec.bundle_digest != digest {
                return Err(Rejection::new(
                    ErrorCode::ImmutableConflict,
                    format!(
                        "{}@{} is registered with digest {}; this bundle has digest {}. Bundles are immutable: publish a new version",
                        p.bundle.bundle_id, p.bundle.bundle_version, rec.bundle_digest, digest
                    ),
                )
                .into());
            }
            return Ok(noop(e, Outcome::Duplicate, rec.state));
        }
        p.gate_receipt.check_for(&p.bundle, &digest)?;
        trust::verify_receipt(&grants.trust, &catalog.trust, &p.gate_receipt)?;
        e.bundle = Some(p.bundle.clone());
        e.gate_receipt = Some(p.gate_receipt.clone());
        e.event_type = RegistryEventType::BundleRegistered;
        e.outcome = Outcome::Accepted;
        e.to_state = Some(LifecycleState::Registered);
        Ok(e)
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        t: &BundleTarget,
        rec: &BundleRecord,
        mut e: RegistryEvent,
        verb: &str,
        from: LifecycleState,
        to: LifecycleState,
        event_type: RegistryEventType,
    ) -> Result<RegistryEvent, Stop<R::Error>> {
        e.bundle_digest = Some(rec.bundle_digest.clone());
        if rec.state == to {
            return Ok(noop(e, Outcome::Noop, to));
        }
        if rec.state != from {
            return Err(illegal(verb, &t.bundle_id, &t.bundle_version, rec.state).into());
        }
        Ok(accept(e, event_type, from, to))
    }

    fn promote(
        &self,
        catalog: &Catalog,
        p: &Promote,
        mut e: RegistryEvent,
    ) -> Result<RegistryEvent, Stop<R::Error>> {
        let t = BundleTarget {
            bundle_id: p.bundle_id.clone(),
            bundle_version: p.bundle_version.clone(),
        };
        let rec = self.existing(&t)?;
        e.bundle_digest = Some(rec.bundle_digest.clone());
        if !matches!(rec.state, LifecycleState::Approved | LifecycleState::Active) {
            return Err(illegal("promote", &p.bundle_id, &p.bundle_version, rec.state).into());
        }
        // Defence in depth: the receipt was checked at intake and is immutable since.
        rec.gate_receipt
            .check_for(&rec.bundle, &rec.bundle_digest)?;
        let slot_key = e.scope.clone().expect("promote drafts carry a scope");
        let slot = self.slot(&p.bundle_id, &slot_key)?;
        let current = slot.as_ref().and_then(SlotRecord::bound);
        if current == Some(&p.bundle_version) {
            return Ok(noop(e, Outcome::Noop, rec.state));
        }
        let primary_key = ScopeRef {
            slot: Slot::Primary,
            ..slot_key.clone()
        };
        let primary = if slot_key.slot == Slot::Primary {
            slot.clone()
        } else {
            self.slot(&p.bundle_id, &primary_key)?
        };
        if let Some(blocked) = primary
            .as_ref()
            .and_then(|s| s.autopilot.as_ref())
            .and_then(|a| a.blocked.get(&p.bundle_version))
            && rec.reapproved_seq <= *blocked
        {
            return Err(Rejection::new(
                ErrorCode::ReapprovalRequired,
                format!(
                    "the autopilot took {}@{} out of {}/{} (seq {blocked}); approve it again before promoting it there",
                    p.bundle_id, p.bundle_version, p.environment, p.tenant_id
                ),
            )
            .into());
        }
        if let Some(share) = p.canary_share_bp {
            check_share(share)?;
            if p.degrade {
                return Err(Rejection::new(
                    ErrorCode::InvalidPayload,
                    "a canary is bound next to the PRIMARY; degrade and canary_share_bp exclude each other",
                )
                .into());
            }
            if let Some(c) = current {
                return Err(Rejection::new(
                    ErrorCode::NoCanary,
                    format!(
                        "{}/{}/{} already has canary {c}; complete or abort it first",
                        p.environment, p.tenant_id, p.bundle_id
                    ),
                )
                .into());
            }
            match primary.as_ref().and_then(SlotRecord::bound) {
                None => {
                    return Err(Rejection::new(
                        ErrorCode::NoActiveBundle,
                        format!(
                            "{}/{}/{} has no PRIMARY for a canary to run next to",
                            p.environment, p.tenant_id, p.bundle_id
                        ),
                    )
                    .into());
                }
                Some(v) if v == &p.bundle_version => {
                    return Ok(noop(e, Outcome::Noop, rec.state));
                }
                Some(_) => {}
            }
        }
        e.catalog_version = Some(catalog.version);
        required_gates(catalog, p, &rec)?;
        e.warnings = catalog
            .check(&p.environment, &rec.bundle.compatibility)
            .into_result(&p.environment)?;
        let mut e = accept(
            e,
            if p.canary_share_bp.is_some() {
                RegistryEventType::CanaryStarted
            } else {
                RegistryEventType::BundlePromoted
            },
            rec.state,
            LifecycleState::Active,
        );
        if let Some(share) = p.canary_share_bp {
            e.autopilot = Some(AutopilotDetail {
                canary_share_bp: Some(share),
                ..AutopilotDetail::default()
            });
        }
        if let Some(prev) = current {
            self.release(&mut e, &p.bundle_id, prev)?;
        }
        e.binding = Some(BindingChange {
            pop: 0,
            push: true,
            bundle_version: p.bundle_version.clone(),
            bundle_digest: rec.bundle_digest.clone(),
            previous_version: current.cloned(),
            cleared: false,
        });
        Ok(e)
    }

    /// Records that `prev` loses one binding; when it was its last, it returns to APPROVED.
    fn release(
        &self,
        e: &mut RegistryEvent,
        id: &BundleId,
        prev: &BundleVersion,
    ) -> Result<(), Stop<R::Error>> {
        if let Some(prev_rec) = self.bundle(id, prev)?
            && prev_rec.active_bindings == 1
        {
            e.state_changes.push(StateChange {
                bundle_version: prev.clone(),
                from: LifecycleState::Active,
                to: LifecycleState::Approved,
            });
        }
        Ok(())
    }

    fn rollback(&self, r: &Rollback, e: RegistryEvent) -> Result<RegistryEvent, Stop<R::Error>> {
        let slot_key = e.scope.clone().expect("rollback drafts carry a scope");
        let slot = self.slot(&r.bundle_id, &slot_key)?.unwrap_or_default();
        self.rollback_slot(&r.bundle_id, &slot_key, &slot, e)
    }

    /// Where a rollback of `slot` lands: the entries it pops and the version it restores.
    /// Walks down the stack below the current binding, skipping versions since retired or
    /// rejected (and repeats of the current one).
    fn restorable(
        &self,
        id: &BundleId,
        slot: &SlotRecord,
    ) -> Result<Option<Restorable>, Stop<R::Error>> {
        let Some(current) = slot.bound() else {
            return Ok(None);
        };
        for (pop, v) in (1u32..).zip(slot.stack.iter().rev().skip(1)) {
            if v != current
                && let Some(b) = self.bundle(id, v)?
                && matches!(b.state, LifecycleState::Approved | LifecycleState::Active)
            {
                return Ok(Some((pop, v.clone(), b)));
            }
        }
        Ok(None)
    }

    fn rollback_slot(
        &self,
        id: &BundleId,
        slot_key: &ScopeRef,
        slot: &SlotRecord,
        mut e: RegistryEvent,
    ) -> Result<RegistryEvent, Stop<R::Error>> {
        let nothing = || {
            Stop::Reject(Rejection::new(
                ErrorCode::NothingToRollBack,
                format!(
                    "scope {}/{}/{} slot {} has no earlier usable activation",
                    slot_key.environment,
                    slot_key.tenant_id,
                    id,
                    slot_key.slot.as_str()
                ),
            ))
        };
        let current = slot.bound().ok_or_else(nothing)?;
        let (pop, target, rec) = self.restorable(id, slot)?.ok_or_else(nothing)?;
        let target = &target;
        e.bundle_version = Some(target.clone());
        e.bundle_digest = Some(rec.bundle_digest.clone());
        let mut e = accept(
            e,
            RegistryEventType::BundleRolledBack,
            rec.state,
            LifecycleState::Active,
        );
        self.release(&mut e, id, current)?;
        e.binding = Some(BindingChange {
            pop,
            push: false,
            bundle_version: target.clone(),
            bundle_digest: rec.bundle_digest.clone(),
            previous_version: Some(current.clone()),
            cleared: false,
        });
        Ok(e)
    }

    /// The CANARY slot of a scope; NO_CANARY when none is bound.
    fn canary_of(&self, t: &ScopeTarget) -> Result<SlotRecord, Stop<R::Error>> {
        let key = ScopeRef {
            environment: t.environment.clone(),
            tenant_id: t.tenant_id.clone(),
            slot: Slot::Canary,
        };
        match self.slot(&t.bundle_id, &key)? {
            Some(s) if s.bound().is_some() => Ok(s),
            _ => Err(Rejection::new(
                ErrorCode::NoCanary,
                format!(
                    "{}/{}/{} has no canary",
                    t.environment, t.tenant_id, t.bundle_id
                ),
            )
            .into()),
        }
    }

    fn canary_complete(
        &self,
        t: &ScopeTarget,
        mut e: RegistryEvent,
    ) -> Result<RegistryEvent, Stop<R::Error>> {
        let canary = self.canary_of(t)?;
        let v = canary.bound().expect("canary_of checks").clone();
        let rec = self
            .bundle(&t.bundle_id, &v)?
            .expect("a bound version is registered");
        let primary_key = ScopeRef {
            environment: t.environment.clone(),
            tenant_id: t.tenant_id.clone(),
            slot: Slot::Primary,
        };
        let primary = self.slot(&t.bundle_id, &primary_key)?.unwrap_or_default();
        let current = primary.bound().cloned();
        e.scope = Some(primary_key);
        e.bundle_version = Some(v.clone());
        e.bundle_digest = Some(rec.bundle_digest.clone());
        let mut e = accept(
            e,
            RegistryEventType::CanaryCompleted,
            rec.state,
            LifecycleState::Active,
        );
        if let Some(prev) = &current {
            self.release(&mut e, &t.bundle_id, prev)?;
        }
        e.binding = Some(BindingChange {
            pop: 0,
            push: true,
            bundle_version: v,
            bundle_digest: rec.bundle_digest,
            previous_version: current,
            cleared: false,
        });
        Ok(e)
    }

    /// Removes the canary bound in `slot` (by a deployer, or by the autopilot).
    fn canary_abort(
        &self,
        id: &BundleId,
        slot: &SlotRecord,
        mut e: RegistryEvent,
    ) -> Result<RegistryEvent, Stop<R::Error>> {
        let v = slot.bound().expect("a bound canary").clone();
        let rec = self.bundle(id, &v)?.expect("a bound version is registered");
        if let Some(s) = &mut e.scope {
            s.slot = Slot::Canary;
        }
        e.bundle_version = Some(v.clone());
        e.bundle_digest = Some(rec.bundle_digest.clone());
        let to = if rec.active_bindings <= 1 {
            LifecycleState::Approved
        } else {
            LifecycleState::Active
        };
        let mut e = accept(e, RegistryEventType::CanaryAborted, rec.state, to);
        e.binding = Some(BindingChange {
            pop: slot.stack.len() as u32,
            push: false,
            bundle_version: v.clone(),
            bundle_digest: rec.bundle_digest,
            previous_version: Some(v),
            cleared: true,
        });
        Ok(e)
    }

    /// OBSERVE: authenticates each forwarded signal, folds the batch into the scope's
    /// windows, evaluates its policy and, when a rule fires and the guard rails allow,
    /// rolls the PRIMARY back or aborts the CANARY as `mpr-autopilot` (MPR2 §9).
    fn observe(
        &self,
        catalog: &Catalog,
        grants: &Grants,
        input: &CommandInput,
        o: &Observe,
        mut e: RegistryEvent,
    ) -> Result<RegistryEvent, Stop<R::Error>> {
        if input.envelope.actor.as_str() != AUTOPILOT_ACTOR {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                format!(
                    "OBSERVE is sent by the registry's signal intake ({AUTOPILOT_ACTOR}) only; send signals to the signals topic"
                ),
            )
            .into());
        }
        let id = &o.scope.bundle_id;
        let key = |slot| ScopeRef {
            environment: o.scope.environment.clone(),
            tenant_id: o.scope.tenant_id.clone(),
            slot,
        };
        let primary = self.slot(id, &key(Slot::Primary))?.unwrap_or_default();
        let canary = self.slot(id, &key(Slot::Canary))?.unwrap_or_default();
        let previous = self.restorable(id, &primary)?.map(|(_, v, _)| v);
        let bound = Bound {
            primary: primary.bound(),
            previous: previous.as_ref(),
            canary: canary.bound(),
        };
        let mut digests: BTreeMap<BundleVersion, Option<String>> = BTreeMap::new();
        let mut batch = Vec::with_capacity(o.signals.len());
        for f in &o.signals {
            let checked = match check_signal(catalog, grants, o, f) {
                Ok(s) => {
                    let digest = match digests.get(&s.bundle_version) {
                        Some(d) => d.clone(),
                        None => {
                            let d = self.bundle(id, &s.bundle_version)?.map(|b| b.bundle_digest);
                            digests.insert(s.bundle_version.clone(), d.clone());
                            d
                        }
                    };
                    match digest {
                        Some(d) if d != s.bundle_digest => Err((
                            s.signal_id,
                            Rejection::new(
                                ErrorCode::InvalidPayload,
                                format!(
                                    "the signal names {}@{} with digest {}, registered as {d}",
                                    id, s.bundle_version, s.bundle_digest
                                ),
                            ),
                        )),
                        _ => Ok(s),
                    }
                }
                Err(x) => Err(x),
            };
            batch.push(Checked {
                partition: f.partition,
                offset: f.offset,
                signal: checked,
            });
        }
        let auto = primary.autopilot.clone().unwrap_or_default();
        let (obs, fired) = auto.observe(bound, &batch);
        e.scope = Some(key(Slot::Primary));
        e.event_type = RegistryEventType::SignalsObserved;
        e.outcome = Outcome::Accepted;
        let mut detail = AutopilotDetail {
            observation: Some(obs.clone()),
            ..AutopilotDetail::default()
        };
        if let Some(f) = fired {
            let after = auto.with(&obs);
            let mut trigger = Trigger {
                policy_seq: auto.policy_seq,
                rule_id: f.rule_id.clone(),
                action: f.action,
                bundle_version: f.bundle_version.clone(),
                outcome: after.guard(&f, e.observed_at_utc.millis()),
                signal_ids: f.signal_ids.clone(),
                evidence: f.evidence.clone(),
            };
            if trigger.outcome == TriggerOutcome::Acted {
                let acted = match f.action {
                    AutoAction::Rollback => {
                        self.rollback_slot(id, &key(Slot::Primary), &primary, e.clone())
                    }
                    AutoAction::CanaryAbort => self.canary_abort(id, &canary, e.clone()),
                };
                match acted {
                    Ok(ev) => e = ev,
                    Err(Stop::Reject(_)) => trigger.outcome = TriggerOutcome::NothingToRollBack,
                    Err(Stop::Store(s)) => return Err(Stop::Store(s)),
                }
            }
            detail.trigger = Some(trigger);
        }
        e.autopilot = Some(detail);
        Ok(e)
    }
}

/// A canary share in basis points must be 1-9,999.
fn check_share(share_bp: u32) -> Result<(), Rejection> {
    if (1..=9_999).contains(&share_bp) {
        Ok(())
    } else {
        Err(Rejection::new(
            ErrorCode::InvalidPayload,
            format!("share_bp must be 1-9999 (basis points of routing keys); got {share_bp}"),
        ))
    }
}

/// Decodes and authenticates one forwarded signal: its bytes, its scope (it must name the
/// OBSERVE's), its signature (like a command's) and its actor's `observer` role.
fn check_signal(
    catalog: &Catalog,
    grants: &Grants,
    o: &Observe,
    f: &ForwardedSignal,
) -> Result<Signal, (Uuid, Rejection)> {
    use base64::Engine;
    let nil = |r: Rejection| (Uuid::nil(), r);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&f.payload)
        .map_err(|e| {
            nil(Rejection::new(
                ErrorCode::InvalidPayload,
                format!("payload is not base64: {e}"),
            ))
        })?;
    let (s, credential) = crate::codec::decode_signal(
        &bytes,
        Some(f.content_type.as_str()),
        f.signature.as_deref(),
    )
    .map_err(|d| nil(d.rejection()))?;
    let fail = |r: Rejection| (s.signal_id, r);
    if s.bundle_id != o.scope.bundle_id
        || s.environment != o.scope.environment
        || s.tenant_id != o.scope.tenant_id
    {
        return Err(fail(Rejection::new(
            ErrorCode::InvalidPayload,
            "the signal's scope is not the OBSERVE's",
        )));
    }
    trust::authenticate(&grants.trust, &catalog.trust, &s.actor, &credential).map_err(fail)?;
    if !grants.allows(&s.actor, Role::Observer, Some(&s.environment)) {
        return Err(fail(Rejection::new(
            ErrorCode::Forbidden,
            format!(
                "actor {} lacks role observer in environment {}",
                s.actor, s.environment
            ),
        )));
    }
    Ok(s)
}

/// GATE_MISSING unless the bundle's receipt is a verified PASS of every gate the target
/// environment requires. A receipt registered unsigned (`unsigned-dev`) passes none.
fn required_gates(catalog: &Catalog, p: &Promote, rec: &BundleRecord) -> Result<(), Rejection> {
    let Some(entry) = catalog.entries.get(&p.environment) else {
        return Ok(());
    };
    let r = &rec.gate_receipt;
    let passed: Vec<&str> = if r.signature.is_some() {
        vec![r.gate_name.as_str()]
    } else {
        Vec::new()
    };
    let missing: Vec<&str> = entry
        .required_gates
        .iter()
        .map(String::as_str)
        .filter(|g| !passed.contains(g))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let has = if passed.is_empty() {
        "no verified gate receipt".to_owned()
    } else {
        format!("a verified receipt of gate {} only", passed.join(", "))
    };
    Err(Rejection::new(
        ErrorCode::GateMissing,
        format!(
            "environment {} requires gate {} before promotion; {}@{} has {has}",
            p.environment,
            missing.join(", "),
            p.bundle_id,
            p.bundle_version
        ),
    ))
}

pub(super) fn draft(
    input_id: Uuid,
    source: CommandSource,
    observed_at: Timestamp,
) -> RegistryEvent {
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
        signed_by: None,
        via: None,
        key: None,
        autopilot: None,
        prev_hash: String::new(),
        hash: String::new(),
        signature: None,
    }
}

/// An event skeleton for `input`, filled with what the envelope says.
pub(super) fn draft_for(input: &CommandInput) -> RegistryEvent {
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
                slot: if p.canary_share_bp.is_some() && !p.degrade {
                    Slot::Canary
                } else {
                    Slot::from_degrade(p.degrade)
                },
            });
        }
        Command::SetRollbackPolicy(SetRollbackPolicy { scope: t, .. })
        | Command::Observe(Observe { scope: t, .. })
        | Command::CanaryComplete(t) => {
            e.scope = Some(ScopeRef {
                environment: t.environment.clone(),
                tenant_id: t.tenant_id.clone(),
                slot: Slot::Primary,
            });
        }
        Command::CanarySetShare(CanaryShare { scope: t, .. }) | Command::CanaryAbort(t) => {
            e.scope = Some(ScopeRef {
                environment: t.environment.clone(),
                tenant_id: t.tenant_id.clone(),
                slot: Slot::Canary,
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
        Command::RegisterKey(_) | Command::RevokeKey(_) => {}
    }
    e
}

/// Where a rollback lands: the stack entries it pops, the version it restores, and that
/// version's record.
type Restorable = (u32, BundleVersion, BundleRecord);

pub(super) fn reject(mut e: RegistryEvent, r: Rejection) -> RegistryEvent {
    e.event_type = RegistryEventType::CommandRejected;
    e.outcome = Outcome::Rejected;
    e.state_changes.clear();
    e.binding = None;
    e.catalog_entry = None;
    e.key = None;
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

// The in-memory states decide here, so that `state` (records and replay) does not depend
// on `decide` (the rules).

impl PartitionState {
    /// Decides `input` against this state, the catalog and the grants (see [`decide`]).
    pub fn decide(&self, catalog: &Catalog, grants: &Grants, input: &CommandInput) -> Decision {
        infallible(self::decide(self, &self.chain, catalog, grants, input))
    }

    /// Records an undecodable command whose command_id was recovered, as a rejection.
    pub fn decide_undecodable(&self, input: &UndecodableInput) -> Decision {
        infallible(self::decide_undecodable(self, &self.chain, input))
    }
}

impl CatalogState {
    /// Decides a catalog command.
    pub fn decide(&self, grants: &Grants, input: &CommandInput) -> Decision {
        if let Some(first) = self.commands.get(&input.envelope.command_id) {
            return Decision::Repeat(first.clone());
        }
        let mut e = draft_for(input);
        let decided = (|| {
            authenticate(&self.catalog, grants, input, &mut e)?;
            input.envelope.validate()?;
            grants.authorize(&input.envelope.actor, &input.envelope.command)?;
            let entry = match &input.envelope.command {
                Command::SetCatalog(entry) => entry,
                Command::RegisterKey(k) => return self.register_key(k, e.clone()),
                Command::RevokeKey(k) => return self.revoke_key(&k.key_id, e.clone()),
                _ => {
                    return Err(Rejection::new(
                        ErrorCode::InvalidPayload,
                        "only platform commands (SET_CATALOG, REGISTER_KEY, REVOKE_KEY) travel under the catalog key",
                    ));
                }
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

    /// REGISTER_KEY: a new key is KEY_REGISTERED; the same key for the same owner again is
    /// a no-op; a key held by another owner, or revoked, cannot be registered.
    fn register_key(
        &self,
        k: &super::command::RegisterKey,
        mut e: RegistryEvent,
    ) -> Result<RegistryEvent, Rejection> {
        check_str("register_key.owner", &k.owner)?;
        if k.owner_kind == KeyOwnerKind::Principal {
            k.owner.parse::<super::ids::Actor>()?;
        }
        let public = parse_public_key(&k.public_key)?;
        let id = trust::key_id(&public);
        if let Some(held) = self.catalog.trust.get(&id) {
            if let Some(seq) = held.revoked_seq {
                return Err(Rejection::new(
                    ErrorCode::IllegalTransition,
                    format!("key {id} was revoked at catalog seq {seq}; revocation is final"),
                ));
            }
            if (held.owner_kind, held.owner.as_str()) != (k.owner_kind, k.owner.as_str()) {
                return Err(Rejection::new(
                    ErrorCode::IllegalTransition,
                    format!(
                        "key {id} is registered to {} {}",
                        held.owner_kind.as_str().to_lowercase(),
                        held.owner
                    ),
                ));
            }
            e.event_type = RegistryEventType::CommandNoop;
            e.outcome = Outcome::Noop;
            return Ok(e);
        }
        e.event_type = RegistryEventType::KeyRegistered;
        e.outcome = Outcome::Accepted;
        e.key = Some(KeyRecord {
            key_id: id,
            owner_kind: k.owner_kind,
            owner: k.owner.clone(),
            public_key: hex::encode(public.as_bytes()),
            registered_seq: self.chain.last_seq + 1,
            revoked_seq: None,
        });
        Ok(e)
    }

    /// REVOKE_KEY: a live key is KEY_REVOKED from the next catalog seq on; revoking it
    /// again is a no-op.
    fn revoke_key(&self, key_id: &str, mut e: RegistryEvent) -> Result<RegistryEvent, Rejection> {
        let Some(held) = self.catalog.trust.get(key_id) else {
            return Err(Rejection::new(
                ErrorCode::UnknownKey,
                format!("key {key_id} is not registered"),
            ));
        };
        if held.revoked_seq.is_some() {
            e.event_type = RegistryEventType::CommandNoop;
            e.outcome = Outcome::Noop;
            return Ok(e);
        }
        e.event_type = RegistryEventType::KeyRevoked;
        e.outcome = Outcome::Accepted;
        e.key = Some(KeyRecord {
            revoked_seq: Some(self.chain.last_seq + 1),
            ..held.clone()
        });
        Ok(e)
    }
}

/// The in-memory state answers `decide`'s reads directly.
impl StateRead for PartitionState {
    type Error = std::convert::Infallible;
    fn bundle(
        &self,
        id: &BundleId,
        v: &BundleVersion,
    ) -> Result<Option<BundleRecord>, Self::Error> {
        Ok(PartitionState::bundle(self, id, v).cloned())
    }
    fn slot(&self, id: &BundleId, scope: &ScopeRef) -> Result<Option<SlotRecord>, Self::Error> {
        Ok(self
            .families
            .get(id)
            .and_then(|f| f.slots.get(scope))
            .cloned())
    }
    fn result(&self, command_id: &Uuid) -> Result<Option<CommandResult>, Self::Error> {
        Ok(self.commands.get(command_id).cloned())
    }
}
