//! HTTP request and response bodies, separate from the domain and storage types. Their
//! JSON shapes are the `$defs` of `contracts/mpr_public_contracts_v0.schema.json`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::bundle::{Artifact, BundleKind, Compatibility, ModelBundleRef};
use crate::domain::event::ErrorInfo;
use crate::domain::resolve::MatchedRule;
use crate::domain::{
    Actor, BundleId, Environment, ErrorCode, GateReceipt, LifecycleState, ModelBundle, Slot,
    TenantId, Timestamp,
};

/// `{code, message, retryable, details}`: every HTTP error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// Stable code.
    pub code: ErrorCode,
    /// Human message.
    pub message: String,
    /// Whether retrying unchanged may help.
    pub retryable: bool,
    /// Structured context (e.g. the command_id to poll).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl From<ErrorInfo> for ErrorResponse {
    fn from(e: ErrorInfo) -> Self {
        Self {
            code: e.code,
            message: e.message,
            retryable: e.retryable,
            details: None,
        }
    }
}

/// Body of `POST /v1/bundles` (publish). `submitted_by` is set by the server from the
/// authenticated identity; a different value is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBundleRequest {
    /// Client-chosen idempotency key.
    pub command_id: Uuid,
    /// Submitter (must equal the authenticated actor when given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<Actor>,
    /// Client submission time.
    pub submitted_at_utc: Timestamp,
    /// The bundle.
    pub bundle: ModelBundle,
    /// Its PASS receipt.
    pub gate_receipt: GateReceipt,
    /// Why (recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// PublishBundleResponse status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PublishStatus {
    /// Registered now.
    Accepted,
    /// Already registered with the same digest.
    Duplicate,
    /// Refused.
    Rejected,
}

/// Answer to a publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishBundleResponse {
    /// The command.
    pub command_id: Uuid,
    /// Family.
    pub bundle_id: BundleId,
    /// Version.
    pub bundle_version: String,
    /// Digest, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_digest: Option<String>,
    /// ACCEPTED, DUPLICATE or REJECTED.
    pub status: PublishStatus,
    /// State of the bundle after the command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_state: Option<LifecycleState>,
    /// The event that recorded it.
    pub event_id: Uuid,
    /// Its seq.
    pub seq: u64,
    /// The refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// The scope an answer came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedScope {
    /// Environment.
    pub environment: Environment,
    /// Tenant that matched (`*` for the global scope).
    pub tenant_id: TenantId,
    /// Family.
    pub bundle_id: BundleId,
    /// Slot that matched.
    pub slot: Slot,
}

/// The activation that put the bundle in the slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    /// Event id.
    pub event_id: Uuid,
    /// Event partition.
    pub partition: i32,
    /// Event seq.
    pub seq: u64,
    /// When it was recorded.
    pub activated_at_utc: Timestamp,
}

/// Answer to `GET /v1/resolve`. Byte-identical for the same inputs and view_version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolveActiveResponse {
    /// The scope that matched.
    pub scope: ResolvedScope,
    /// The rule that matched.
    pub matched_rule: MatchedRule,
    /// The bundle.
    pub active_bundle_ref: ModelBundleRef,
    /// MODEL or POLICY.
    pub kind: BundleKind,
    /// Its artifacts.
    pub artifacts: Vec<Artifact>,
    /// What it needs.
    pub compatibility: Compatibility,
    /// Its lifecycle state now (ACTIVE, or APPROVED/RETIRED in a time-travel answer).
    pub lifecycle_state: LifecycleState,
    /// The activation.
    pub activation: Activation,
    /// The view state the answer came from.
    pub view_version: String,
    /// Observed time of the newest event the answer accounts for (deterministic).
    pub resolved_at_utc: Timestamp,
    /// Set when the caller asked for a past state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of_seq: Option<u64>,
    /// The matched scope's canary, when one runs: its version, share, and whether this
    /// answer is it (only with a `routing_key` inside its slice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<crate::view::CanaryAnswer>,
}
