//! RegistryEvent: the append-only audit record. One per distinct command, carrying its
//! sequence number, the explicit effects it had, and a hash chaining it to its predecessor.
//! Applying an event never re-decides: it replays the recorded effects.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::bundle::{GateReceipt, ModelBundle, canonical_json, sha256_hex};
use super::catalog::CatalogEntry;
use super::command::CommandType;
use super::error::{ErrorCode, Rejection};
use super::ids::{Actor, BundleId, BundleVersion, Environment, Slot, TenantId, Timestamp};
use super::trust::{KeyRecord, KeySet, Signature};

/// Namespace for deterministic event ids: `event_id = UUIDv5(EVENT_NS, command_id)`.
pub const EVENT_NS: Uuid = Uuid::from_u128(0x6d70_7200_7265_6769_7374_7279_6576_6e74);

/// The hash every chain starts from.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Bundle lifecycle states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LifecycleState {
    /// Accepted into the registry.
    Registered,
    /// Put forward for approval.
    Candidate,
    /// Approved; may be promoted.
    Approved,
    /// Bound to at least one scope slot.
    Active,
    /// Withdrawn for good.
    Retired,
    /// Refused at approval.
    Rejected,
}

impl LifecycleState {
    /// Stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleState::Registered => "REGISTERED",
            LifecycleState::Candidate => "CANDIDATE",
            LifecycleState::Approved => "APPROVED",
            LifecycleState::Active => "ACTIVE",
            LifecycleState::Retired => "RETIRED",
            LifecycleState::Rejected => "REJECTED",
        }
    }
}

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RegistryEventType {
    /// A new bundle version was registered.
    BundleRegistered,
    /// REGISTERED -> CANDIDATE.
    BundleNominated,
    /// CANDIDATE -> APPROVED.
    BundleApproved,
    /// CANDIDATE -> REJECTED.
    BundleRejected,
    /// A bundle was bound to a scope slot.
    BundlePromoted,
    /// A scope slot went back to its previous bundle.
    BundleRolledBack,
    /// APPROVED -> RETIRED.
    BundleRetired,
    /// An environment's catalog entry was replaced.
    CatalogUpdated,
    /// A principal's or gate's public key was registered.
    KeyRegistered,
    /// A key was revoked (for good).
    KeyRevoked,
    /// The command asked for what already holds (duplicate publish, repeated transition).
    CommandNoop,
    /// The command was refused; nothing changed.
    CommandRejected,
    /// A scope's rollback policy was set or cleared.
    RollbackPolicySet,
    /// A batch of runtime signals was counted (and any rule that fired was suppressed
    /// or only recorded, in dry run).
    SignalsObserved,
    /// A version was bound as a scope's CANARY.
    CanaryStarted,
    /// A canary's share changed.
    CanaryShareChanged,
    /// The canary became the PRIMARY.
    CanaryCompleted,
    /// The canary was removed (by a deployer or by the autopilot).
    CanaryAborted,
}

impl RegistryEventType {
    /// Stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryEventType::BundleRegistered => "BUNDLE_REGISTERED",
            RegistryEventType::BundleNominated => "BUNDLE_NOMINATED",
            RegistryEventType::BundleApproved => "BUNDLE_APPROVED",
            RegistryEventType::BundleRejected => "BUNDLE_REJECTED",
            RegistryEventType::BundlePromoted => "BUNDLE_PROMOTED",
            RegistryEventType::BundleRolledBack => "BUNDLE_ROLLED_BACK",
            RegistryEventType::BundleRetired => "BUNDLE_RETIRED",
            RegistryEventType::CatalogUpdated => "CATALOG_UPDATED",
            RegistryEventType::KeyRegistered => "KEY_REGISTERED",
            RegistryEventType::KeyRevoked => "KEY_REVOKED",
            RegistryEventType::CommandNoop => "COMMAND_NOOP",
            RegistryEventType::CommandRejected => "COMMAND_REJECTED",
            RegistryEventType::RollbackPolicySet => "ROLLBACK_POLICY_SET",
            RegistryEventType::SignalsObserved => "SIGNALS_OBSERVED",
            RegistryEventType::CanaryStarted => "CANARY_STARTED",
            RegistryEventType::CanaryShareChanged => "CANARY_SHARE_CHANGED",
            RegistryEventType::CanaryCompleted => "CANARY_COMPLETED",
            RegistryEventType::CanaryAborted => "CANARY_ABORTED",
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// It changed the registry.
    Accepted,
    /// Publish of an id@version already registered with the same digest.
    Duplicate,
    /// A transition that already holds.
    Noop,
    /// Refused; see the error.
    Rejected,
}

/// Which log an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogId {
    /// A partition of the `events` topic (bundle families).
    Events,
    /// The single-partition `catalog` log.
    Catalog,
}

/// Where the command that caused an event sat on the `commands` topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSource {
    /// Partition of `commands`.
    pub partition: i32,
    /// Offset within it.
    pub offset: i64,
}

/// The scope slot an event touched.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ScopeRef {
    /// Environment.
    pub environment: Environment,
    /// Tenant or `*`.
    pub tenant_id: TenantId,
    /// Slot.
    pub slot: Slot,
}

/// A lifecycle change of one bundle version, recorded explicitly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    /// The version that changed.
    pub bundle_version: BundleVersion,
    /// Before.
    pub from: LifecycleState,
    /// After.
    pub to: LifecycleState,
}

/// The change to one scope slot's binding and its activation stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingChange {
    /// Entries removed from the top of the activation stack first (rollback).
    pub pop: u32,
    /// Whether `bundle_version` is then pushed (promote).
    pub push: bool,
    /// The version bound after the change.
    pub bundle_version: BundleVersion,
    /// Its digest.
    pub bundle_digest: String,
    /// The version bound before, if any.
    pub previous_version: Option<BundleVersion>,
    /// The slot is left empty (a canary removed); `bundle_version` is the version removed.
    #[serde(default)]
    pub cleared: bool,
}

/// A typed error as events, results and HTTP carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Stable code.
    pub code: ErrorCode,
    /// Human message.
    pub message: String,
    /// Whether a retry may help.
    pub retryable: bool,
}

impl From<Rejection> for ErrorInfo {
    fn from(r: Rejection) -> Self {
        Self {
            code: r.code,
            message: r.message,
            retryable: r.retryable,
        }
    }
}

/// The audit record. Field order is the canonical order; the hash covers every field but
/// `hash` and `signature`, in RFC 8785 canonical JSON; the registry's `signature` covers
/// the hash (MPR2 §8.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryEvent {
    /// UUIDv5 of the command_id: deterministic.
    pub event_id: Uuid,
    /// Which log.
    pub log: LogId,
    /// Partition of that log.
    pub partition: i32,
    /// Gapless per (log, partition), from 1.
    pub seq: u64,
    /// What happened.
    pub event_type: RegistryEventType,
    /// How the command ended.
    pub outcome: Outcome,
    /// The command.
    pub command_id: Uuid,
    /// Its type, when it could be decoded.
    pub command_type: Option<CommandType>,
    /// Who asked, when known.
    pub actor: Option<Actor>,
    /// The family, when known.
    pub bundle_id: Option<BundleId>,
    /// The version, when the command names one.
    pub bundle_version: Option<BundleVersion>,
    /// Its digest, when the bundle is known.
    pub bundle_digest: Option<String>,
    /// Scope slot touched (promote, rollback).
    pub scope: Option<ScopeRef>,
    /// Lifecycle state of `bundle_version` before.
    pub from_state: Option<LifecycleState>,
    /// Lifecycle state of `bundle_version` after.
    pub to_state: Option<LifecycleState>,
    /// The command's log timestamp: deterministic for a given log.
    pub observed_at_utc: Timestamp,
    /// The command's reason.
    pub reason: Option<String>,
    /// Position of the command on `commands`.
    pub source: CommandSource,
    /// The registered bundle (BUNDLE_REGISTERED only).
    pub bundle: Option<ModelBundle>,
    /// Its receipt (BUNDLE_REGISTERED only).
    pub gate_receipt: Option<GateReceipt>,
    /// Every lifecycle change this event makes.
    pub state_changes: Vec<StateChange>,
    /// The binding change (promote, rollback).
    pub binding: Option<BindingChange>,
    /// Catalog version a promotion was checked against.
    pub catalog_version: Option<u64>,
    /// The new catalog entry (CATALOG_UPDATED).
    pub catalog_entry: Option<CatalogEntry>,
    /// Compatibility gaps accepted under the warn posture.
    pub warnings: Vec<String>,
    /// Why the command was refused (COMMAND_REJECTED).
    pub error: Option<ErrorInfo>,
    /// Id of the key whose signature the command carried (verified unless the event is an
    /// UNAUTHENTICATED rejection); `None` for an unsigned command.
    pub signed_by: Option<String>,
    /// `api-gateway` when the HTTP API signed on behalf of `actor`.
    pub via: Option<String>,
    /// The key registered or revoked (KEY_REGISTERED, KEY_REVOKED).
    pub key: Option<KeyRecord>,
    /// Autopilot and canary detail: the policy set, the signals counted and the windows
    /// as they now stand, the automated action and its evidence, the canary's share.
    /// Carried as a JSON string (`AutopilotDetail` in the JSON Schema).
    #[serde(with = "super::autopilot::detail_json")]
    pub autopilot: Option<super::autopilot::AutopilotDetail>,
    /// Hash of the previous event in this log partition.
    pub prev_hash: String,
    /// SHA-256 over this event's canonical JSON without `hash` and `signature`.
    pub hash: String,
    /// The registry's DSSE signature over `hash` ([`super::trust::EVENT_TYPE`]).
    pub signature: Option<Signature>,
}

impl RegistryEvent {
    /// The deterministic event id of a command.
    pub fn id_for(command_id: Uuid) -> Uuid {
        Uuid::new_v5(&EVENT_NS, command_id.as_bytes())
    }

    /// Computes the chain hash over everything but `hash` and `signature`. The fields added
    /// with the autopilot (`autopilot`, `binding.cleared`) are left out of the hashed form
    /// while at their defaults, so an event written before them hashes as it did then, and
    /// a log written by an earlier version still verifies (MPR2 §8.5).
    pub fn compute_hash(&self) -> String {
        let mut v = serde_json::to_value(self).expect("events serialize");
        if let Some(obj) = v.as_object_mut() {
            obj.remove("hash");
            obj.remove("signature");
            if obj.get("autopilot").is_some_and(serde_json::Value::is_null) {
                obj.remove("autopilot");
            }
            if let Some(b) = obj.get_mut("binding").and_then(|b| b.as_object_mut())
                && b.get("cleared") == Some(&serde_json::Value::Bool(false))
            {
                b.remove("cleared");
            }
        }
        sha256_hex(&canonical_json(&v))
    }

    /// Whether this event's hash matches its content and links to `prev_hash`.
    pub fn verify_link(&self, prev_hash: &str) -> bool {
        self.prev_hash == prev_hash && self.hash == self.compute_hash()
    }

    /// Signs the event's hash with the registry key.
    pub fn sign(&mut self, registry: &super::trust::Signer) {
        self.signature = Some(registry.sign(super::trust::EVENT_TYPE, self.hash.as_bytes()));
    }

    /// Checks what an applier must before trusting the event: its hash matches its
    /// content, and one of the registry `keys` signed that hash.
    pub fn authenticate(&self, keys: &KeySet) -> Result<(), Forgery> {
        if self.hash != self.compute_hash() {
            return Err(Forgery::HashMismatch);
        }
        match &self.signature {
            None => Err(Forgery::Unsigned),
            Some(s) if !keys.verifies(s, super::trust::EVENT_TYPE, self.hash.as_bytes()) => {
                Err(Forgery::BadSignature(s.keyid.clone()))
            }
            Some(_) => Ok(()),
        }
    }
}

/// Why an event is not the registry's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Forgery {
    /// Its hash does not match its content.
    #[error("hash does not match the event content")]
    HashMismatch,
    /// It carries no signature.
    #[error("event is unsigned")]
    Unsigned,
    /// Its signature is not by a registry key, or does not verify.
    #[error("signature by key {0} does not verify with any registry key")]
    BadSignature(String),
}

/// The first broken link of a chain, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    /// Seq of the event that does not verify.
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
}

/// Checks only the structure of `events` (one log partition, in log order): that they
/// chain from the genesis hash. By the appliers' rule, events that repeat an applied seq or
/// do not link to the head (a losing writer's fork) are skipped, not breaks; a link whose
/// hash does not match its content, or a missing seq, is the first broken link. Returns the
/// head seq. It checks no signature and reports no skipped record: tests use it on chains
/// they built; the audit is [`audit_log`].
pub fn verify_chain<'a>(
    events: impl IntoIterator<Item = &'a RegistryEvent>,
) -> Result<u64, BrokenLink> {
    let mut head_seq = 0;
    let mut head_hash = GENESIS_HASH.to_owned();
    for e in events {
        if e.seq <= head_seq || e.prev_hash != head_hash {
            if e.seq == head_seq + 1 || e.seq <= head_seq {
                continue;
            }
            return Err(BrokenLink {
                seq: e.seq,
                reason: format!(
                    "expected seq {} after {head_seq}, found {}",
                    head_seq + 1,
                    e.seq
                ),
            });
        }
        if e.seq != head_seq + 1 {
            return Err(BrokenLink {
                seq: e.seq,
                reason: format!("expected seq {}, found {}", head_seq + 1, e.seq),
            });
        }
        if e.hash != e.compute_hash() {
            return Err(BrokenLink {
                seq: e.seq,
                reason: "hash does not match the event content".into(),
            });
        }
        head_seq = e.seq;
        head_hash = e.hash.clone();
    }
    Ok(head_seq)
}

/// What a command's submitter gets back; derivable from its event alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The command.
    pub command_id: Uuid,
    /// Its type, when decodable.
    pub command_type: Option<CommandType>,
    /// ACCEPTED, DUPLICATE, NOOP or REJECTED.
    pub outcome: Outcome,
    /// The event that recorded it.
    pub event_id: Uuid,
    /// Its type.
    pub event_type: RegistryEventType,
    /// Log of the event.
    pub log: LogId,
    /// Partition of the event.
    pub partition: i32,
    /// Seq of the event.
    pub seq: u64,
    /// Family, when known.
    pub bundle_id: Option<BundleId>,
    /// Version, when named.
    pub bundle_version: Option<BundleVersion>,
    /// Digest, when known.
    pub bundle_digest: Option<String>,
    /// Lifecycle state after the command.
    pub lifecycle_state: Option<LifecycleState>,
    /// Scope touched.
    pub scope: Option<ScopeRef>,
    /// Catalog version checked (promote) or written (catalog set).
    pub catalog_version: Option<u64>,
    /// Warnings accepted under the warn posture.
    pub warnings: Vec<String>,
    /// The refusal, when REJECTED.
    pub error: Option<ErrorInfo>,
}

impl CommandResult {
    /// The result an event records.
    pub fn from_event(e: &RegistryEvent) -> Self {
        Self {
            command_id: e.command_id,
            command_type: e.command_type,
            outcome: e.outcome,
            event_id: e.event_id,
            event_type: e.event_type,
            log: e.log,
            partition: e.partition,
            seq: e.seq,
            bundle_id: e.bundle_id.clone(),
            bundle_version: e.bundle_version.clone(),
            bundle_digest: e.bundle_digest.clone(),
            lifecycle_state: e.to_state,
            scope: e.scope.clone(),
            catalog_version: e.catalog_version,
            warnings: e.warnings.clone(),
            error: e.error.clone(),
        }
    }
}

/// What an audit found wrong with one record of a log partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FindingKind {
    /// Not the registry's: undecodable, its hash does not match its content, or no
    /// registry key signed it. Appliers skip it. The audit fails.
    Forged,
    /// Signed by the registry but not on the chain: a seq already applied with other
    /// content, or the next seq not linking to the head (a writer that lost a race).
    /// Appliers skip it; reported, but the audit does not fail for it.
    Fork,
    /// A seq is missing before it. The audit fails.
    Gap,
}

/// One record an audit reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Its offset in the log partition.
    pub offset: i64,
    /// Its seq, when it decoded.
    pub seq: Option<u64>,
    /// What is wrong.
    pub kind: FindingKind,
    /// In words.
    pub reason: String,
}

/// An audit of one log partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// Records read.
    pub records: u64,
    /// Seq of the chain's head.
    pub head_seq: u64,
    /// Hash of the chain's head.
    pub head_hash: String,
    /// Every record that is not on the chain, in log order.
    pub findings: Vec<Finding>,
}

impl Audit {
    /// Whether nothing forged and no gap was found (forks are the registry's own).
    pub fn ok(&self) -> bool {
        self.findings.iter().all(|f| f.kind == FindingKind::Fork)
    }
}

/// Audits one log partition: every record, in log order, as `(offset, decoded event or
/// why it did not decode)`. Applies the appliers' rule (the first signed event to chain
/// onto the head wins) and reports every record that is not on the resulting chain.
pub fn audit_log(
    records: impl IntoIterator<Item = (i64, Result<RegistryEvent, String>)>,
    keys: &KeySet,
) -> Audit {
    let mut a = Audit {
        records: 0,
        head_seq: 0,
        head_hash: GENESIS_HASH.to_owned(),
        findings: Vec::new(),
    };
    let mut applied: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
    for (offset, decoded) in records {
        a.records += 1;
        let mut report = |seq, kind, reason: String| {
            a.findings.push(Finding {
                offset,
                seq,
                kind,
                reason,
            })
        };
        let e = match decoded {
            Ok(e) => e,
            Err(why) => {
                report(None, FindingKind::Forged, format!("undecodable: {why}"));
                continue;
            }
        };
        if let Err(f) = e.authenticate(keys) {
            report(Some(e.seq), FindingKind::Forged, f.to_string());
            continue;
        }
        if e.seq <= a.head_seq {
            if applied.get(&e.seq) != Some(&e.hash) {
                report(
                    Some(e.seq),
                    FindingKind::Fork,
                    format!("seq {} is already on the chain with other content", e.seq),
                );
            }
            continue;
        }
        if e.prev_hash != a.head_hash {
            report(
                Some(e.seq),
                FindingKind::Fork,
                format!(
                    "seq {} does not link to the head (seq {}): a writer that lost a race",
                    e.seq, a.head_seq
                ),
            );
            continue;
        }
        if e.seq != a.head_seq + 1 {
            report(
                Some(e.seq),
                FindingKind::Gap,
                format!("expected seq {} after {}", a.head_seq + 1, a.head_seq),
            );
            continue;
        }
        a.head_seq = e.seq;
        a.head_hash = e.hash.clone();
        applied.insert(e.seq, e.hash);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Decision, PartitionState};
    use crate::testkit;

    /// A chain of `n` signed publishes of one partition.
    fn chain(n: usize) -> Vec<RegistryEvent> {
        let mut state = PartitionState::new(0);
        (0..n)
            .map(|i| {
                let input =
                    testkit::input(testkit::publish("mf", "fam", &format!("1.0.{i}")), i as i64);
                let Decision::Append(mut e) =
                    state.decide(&Default::default(), &Default::default(), &input)
                else {
                    panic!("a publish appends")
                };
                e.sign(&testkit::registry_signer());
                state.apply(&e).unwrap();
                e
            })
            .collect()
    }

    /// A registry-signed event at seq 2 that does not link to seq 1.
    fn a_fork(good: &[RegistryEvent]) -> RegistryEvent {
        let mut fork = good[1].clone();
        fork.prev_hash = GENESIS_HASH.to_owned();
        fork.hash = fork.compute_hash();
        fork.sign(&testkit::registry_signer());
        fork
    }

    fn kinds(a: &Audit) -> Vec<(i64, FindingKind)> {
        a.findings
            .iter()
            .map(|f| (f.offset, f.kind.clone()))
            .collect()
    }

    /// Every record off the signed chain is reported, in log order: a correctly chained and
    /// hashed forgery, a registry-signed fork at the next seq, a repeat with other content,
    /// garbage, and a gap; a re-delivered copy of a chained event is not a finding.
    #[test]
    fn the_audit_reports_every_record_off_the_signed_chain() {
        let keys = testkit::registry_keys();
        let good = chain(4);
        // A forgery of seq 3 that links to seq 2 and carries a recomputed hash.
        let mut forged = good[0].clone();
        forged.seq = 3;
        forged.prev_hash = good[1].hash.clone();
        forged.hash = forged.compute_hash();
        // A registry-signed fork at seq 3 that does not link to the head.
        let mut fork = good[2].clone();
        fork.prev_hash = good[0].hash.clone();
        fork.hash = fork.compute_hash();
        fork.sign(&testkit::registry_signer());
        // A registry-signed event that repeats seq 1 with other content.
        let mut repeat = good[1].clone();
        repeat.seq = 1;
        repeat.hash = repeat.compute_hash();
        repeat.sign(&testkit::registry_signer());
        // A signed event beyond a gap.
        let mut gap = good[3].clone();
        gap.seq = 9;
        gap.prev_hash = good[3].hash.clone();
        gap.hash = gap.compute_hash();
        gap.sign(&testkit::registry_signer());
        let log: Vec<(i64, Result<RegistryEvent, String>)> = vec![
            (0, Ok(good[0].clone())),
            (1, Ok(good[1].clone())),
            (2, Ok(forged)),
            (3, Ok(fork)),
            (4, Ok(good[2].clone())),
            (5, Ok(repeat)),
            (6, Ok(good[2].clone())),
            (7, Err("garbage".into())),
            (8, Ok(good[3].clone())),
            (9, Ok(gap)),
        ];
        let a = audit_log(log, &keys);
        assert_eq!(
            kinds(&a),
            vec![
                (2, FindingKind::Forged),
                (3, FindingKind::Fork),
                (5, FindingKind::Fork),
                (7, FindingKind::Forged),
                (9, FindingKind::Gap),
            ]
        );
        assert_eq!((a.records, a.head_seq), (10, 4));
        assert_eq!(a.head_hash, good[3].hash);
        assert!(!a.ok());
        // Forks alone do not fail an audit.
        let with_fork = audit_log(
            [
                (0, Ok(good[0].clone())),
                (1, Ok(good[1].clone())),
                (2, Ok(a_fork(&good))),
            ],
            &keys,
        );
        assert_eq!(kinds(&with_fork), vec![(2, FindingKind::Fork)]);
        assert!(with_fork.ok());
        let clean = audit_log(
            good.iter()
                .cloned()
                .enumerate()
                .map(|(i, e)| (i as i64, Ok(e))),
            &keys,
        );
        assert!(clean.ok() && clean.findings.is_empty());
    }
}
