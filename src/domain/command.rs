//! Commands: the envelope every change request travels in, and the typed command bodies
//! (publish, nominate, approve, reject, promote, rollback, retire, catalog set).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::autopilot::RollbackPolicy;
use super::bundle::{GateReceipt, ModelBundle, check_str};
use super::catalog::CatalogEntry;
use super::error::Rejection;
use super::ids::{Actor, BundleId, BundleVersion, Environment, Slot, TenantId, Timestamp};
use super::trust::KeyOwnerKind;

/// The key under which platform-catalog commands travel on the `commands` topic.
/// It is not a valid `bundle_id`, so it can never collide with a family.
pub const CATALOG_KEY: &str = "__platform_catalog__";

/// Every command, as it travels on the `commands` topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandEnvelope {
    /// Client-chosen UUID; a repeat returns the first result.
    pub command_id: Uuid,
    /// Who asks. The HTTP API sets it from the authenticated identity.
    pub actor: Actor,
    /// When the client submitted it (audit only; never used to order or break ties).
    pub submitted_at_utc: Timestamp,
    /// Why, in words (recorded in the event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The command itself.
    #[serde(flatten)]
    pub command: Command,
}

/// The command bodies, tagged by `command_type` with the body under `payload`.
// PUBLISH carries a whole bundle; commands are decoded one at a time, so boxing it would
// only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "command_type",
    content = "payload",
    rename_all = "SCREAMING_SNAKE_CASE"
)]
pub enum Command {
    /// Register a new immutable bundle version (publisher).
    Publish(PublishBundle),
    /// REGISTERED -> CANDIDATE (approver).
    Nominate(BundleTarget),
    /// CANDIDATE -> APPROVED (approver; not the submitter).
    Approve(BundleTarget),
    /// CANDIDATE -> REJECTED (approver).
    Reject(BundleTarget),
    /// Bind an APPROVED bundle to a scope slot (deployer).
    Promote(Promote),
    /// Re-activate the previous bundle of a scope slot (deployer).
    Rollback(Rollback),
    /// APPROVED -> RETIRED when bound nowhere (admin).
    Retire(BundleTarget),
    /// Replace the platform catalog entry of one environment (admin).
    SetCatalog(CatalogEntry),
    /// Register a principal's or a gate's public key (admin).
    RegisterKey(RegisterKey),
    /// Revoke a registered key for good (admin).
    RevokeKey(RevokeKey),
    /// Set or clear a scope's rollback policy (deployer).
    SetRollbackPolicy(SetRollbackPolicy),
    /// A batch of runtime signals for one scope, forwarded from `signals` by the
    /// registry's own signal intake (actor `mpr-autopilot`, registry-signed only).
    Observe(Observe),
    /// Change a canary's share (deployer).
    CanarySetShare(CanaryShare),
    /// Make the canary the PRIMARY (deployer).
    CanaryComplete(ScopeTarget),
    /// Remove the canary (deployer).
    CanaryAbort(ScopeTarget),
}

/// Names one scope of a family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeTarget {
    /// Family.
    pub bundle_id: BundleId,
    /// Environment of the scope.
    pub environment: Environment,
    /// Tenant of the scope, `*` by default.
    #[serde(default = "TenantId::any")]
    pub tenant_id: TenantId,
}

/// Body of SET_ROLLBACK_POLICY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRollbackPolicy {
    /// The scope.
    #[serde(flatten)]
    pub scope: ScopeTarget,
    /// The policy; `null` clears it.
    pub policy: Option<RollbackPolicy>,
}

/// Body of CANARY_SET_SHARE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryShare {
    /// The scope.
    #[serde(flatten)]
    pub scope: ScopeTarget,
    /// Share of routing keys answered the canary, in basis points (1-9,999).
    pub share_bp: u32,
}

/// One signal as OBSERVE forwards it: its coordinates on `signals`, its bytes as sent
/// (base64) and their signature, so the processor authenticates it like a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardedSignal {
    /// Partition on `signals`.
    pub partition: i32,
    /// Offset on `signals`.
    pub offset: i64,
    /// `application/json` or Avro.
    pub content_type: String,
    /// The record value as sent, base64.
    pub payload: String,
    /// The `mpr-signature` header as sent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Body of OBSERVE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observe {
    /// The scope every signal names.
    #[serde(flatten)]
    pub scope: ScopeTarget,
    /// The signals, in `signals` offset order.
    pub signals: Vec<ForwardedSignal>,
}

/// Body of REGISTER_KEY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterKey {
    /// PRINCIPAL or GATE.
    pub owner_kind: KeyOwnerKind,
    /// The actor (PRINCIPAL) or the gate name (GATE).
    pub owner: String,
    /// The Ed25519 public key, 64 hex characters.
    pub public_key: String,
}

/// Body of REVOKE_KEY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeKey {
    /// The key's id.
    pub key_id: String,
}

/// Body of PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBundle {
    /// The bundle.
    pub bundle: ModelBundle,
    /// Its PASS receipt.
    pub gate_receipt: GateReceipt,
}

/// Names one registered bundle version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleTarget {
    /// Family.
    pub bundle_id: BundleId,
    /// Version.
    pub bundle_version: BundleVersion,
}

/// Body of PROMOTE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promote {
    /// Family.
    pub bundle_id: BundleId,
    /// Version to activate.
    pub bundle_version: BundleVersion,
    /// Target environment.
    pub environment: Environment,
    /// Target tenant, `*` by default.
    #[serde(default = "TenantId::any")]
    pub tenant_id: TenantId,
    /// Bind the degrade slot instead of the primary one.
    #[serde(default)]
    pub degrade: bool,
    /// Bind as the scope's CANARY with this share of routing keys, in basis points
    /// (1-9,999), next to the PRIMARY.
    #[serde(default)]
    pub canary_share_bp: Option<u32>,
}

/// Body of ROLLBACK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// Family.
    pub bundle_id: BundleId,
    /// Environment of the scope.
    pub environment: Environment,
    /// Tenant of the scope, `*` by default.
    #[serde(default = "TenantId::any")]
    pub tenant_id: TenantId,
    /// Roll back the degrade slot instead of the primary one.
    #[serde(default)]
    pub degrade: bool,
}

/// The stable command type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandType {
    /// PUBLISH
    Publish,
    /// NOMINATE
    Nominate,
    /// APPROVE
    Approve,
    /// REJECT
    Reject,
    /// PROMOTE
    Promote,
    /// ROLLBACK
    Rollback,
    /// RETIRE
    Retire,
    /// SET_CATALOG
    SetCatalog,
    /// REGISTER_KEY
    RegisterKey,
    /// REVOKE_KEY
    RevokeKey,
    /// SET_ROLLBACK_POLICY
    SetRollbackPolicy,
    /// OBSERVE
    Observe,
    /// CANARY_SET_SHARE
    CanarySetShare,
    /// CANARY_COMPLETE
    CanaryComplete,
    /// CANARY_ABORT
    CanaryAbort,
}

impl CommandType {
    /// Stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandType::Publish => "PUBLISH",
            CommandType::Nominate => "NOMINATE",
            CommandType::Approve => "APPROVE",
            CommandType::Reject => "REJECT",
            CommandType::Promote => "PROMOTE",
            CommandType::Rollback => "ROLLBACK",
            CommandType::Retire => "RETIRE",
            CommandType::SetCatalog => "SET_CATALOG",
            CommandType::RegisterKey => "REGISTER_KEY",
            CommandType::RevokeKey => "REVOKE_KEY",
            CommandType::SetRollbackPolicy => "SET_ROLLBACK_POLICY",
            CommandType::Observe => "OBSERVE",
            CommandType::CanarySetShare => "CANARY_SET_SHARE",
            CommandType::CanaryComplete => "CANARY_COMPLETE",
            CommandType::CanaryAbort => "CANARY_ABORT",
        }
    }
}

impl Slot {
    /// The slot a `degrade` flag selects.
    pub fn from_degrade(degrade: bool) -> Slot {
        if degrade {
            Slot::Degrade
        } else {
            Slot::Primary
        }
    }
}

impl Command {
    /// Its type.
    pub fn command_type(&self) -> CommandType {
        match self {
            Command::Publish(_) => CommandType::Publish,
            Command::Nominate(_) => CommandType::Nominate,
            Command::Approve(_) => CommandType::Approve,
            Command::Reject(_) => CommandType::Reject,
            Command::Promote(_) => CommandType::Promote,
            Command::Rollback(_) => CommandType::Rollback,
            Command::Retire(_) => CommandType::Retire,
            Command::SetCatalog(_) => CommandType::SetCatalog,
            Command::RegisterKey(_) => CommandType::RegisterKey,
            Command::RevokeKey(_) => CommandType::RevokeKey,
            Command::SetRollbackPolicy(_) => CommandType::SetRollbackPolicy,
            Command::Observe(_) => CommandType::Observe,
            Command::CanarySetShare(_) => CommandType::CanarySetShare,
            Command::CanaryComplete(_) => CommandType::CanaryComplete,
            Command::CanaryAbort(_) => CommandType::CanaryAbort,
        }
    }

    /// The bundle family this command belongs to; `None` for the platform commands that
    /// the catalog log decides (SET_CATALOG, REGISTER_KEY, REVOKE_KEY).
    pub fn bundle_id(&self) -> Option<&BundleId> {
        match self {
            Command::Publish(p) => Some(&p.bundle.bundle_id),
            Command::Nominate(t)
            | Command::Approve(t)
            | Command::Reject(t)
            | Command::Retire(t) => Some(&t.bundle_id),
            Command::Promote(p) => Some(&p.bundle_id),
            Command::Rollback(r) => Some(&r.bundle_id),
            Command::SetRollbackPolicy(p) => Some(&p.scope.bundle_id),
            Command::Observe(o) => Some(&o.scope.bundle_id),
            Command::CanarySetShare(c) => Some(&c.scope.bundle_id),
            Command::CanaryComplete(t) | Command::CanaryAbort(t) => Some(&t.bundle_id),
            Command::SetCatalog(_) | Command::RegisterKey(_) | Command::RevokeKey(_) => None,
        }
    }

    /// Whether it travels as JSON only (the Avro envelope has no body field for it).
    pub fn json_only(&self) -> bool {
        matches!(
            self,
            Command::SetRollbackPolicy(_)
                | Command::Observe(_)
                | Command::CanarySetShare(_)
                | Command::CanaryComplete(_)
                | Command::CanaryAbort(_)
        )
    }

    /// The Kafka key: the bundle_id, or [`CATALOG_KEY`].
    pub fn partition_key(&self) -> &str {
        self.bundle_id().map_or(CATALOG_KEY, BundleId::as_str)
    }
}

impl CommandEnvelope {
    /// Checks free-text bounds that serde cannot.
    pub fn validate(&self) -> Result<(), Rejection> {
        if let Some(r) = &self.reason {
            check_str("reason", r)?;
        }
        Ok(())
    }

    /// Whether the catalog log decides it (platform commands), not a family partition.
    pub fn is_platform(&self) -> bool {
        self.command.bundle_id().is_none()
    }
}
