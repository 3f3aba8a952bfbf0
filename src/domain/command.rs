//! Commands: the envelope every change request travels in, and the typed command bodies
//! (publish, nominate, approve, reject, promote, rollback, retire, catalog set).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
            Command::SetCatalog(_) | Command::RegisterKey(_) | Command::RevokeKey(_) => None,
        }
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
