//! The domain's rejection type and the registry-wide error codes. Every code is stable on
//! the wire and says whether a retry can help.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Stable error codes shared by the domain, the pipeline and the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// Malformed input: schema, field format or size limit.
    InvalidPayload,
    /// An envelope or Avro fingerprint this registry does not know.
    UnsupportedSchemaVersion,
    /// The same `bundle_id@bundle_version` was registered with another digest.
    ImmutableConflict,
    /// The bundle named by the command does not exist.
    UnknownBundle,
    /// The gate receipt verdict is not PASS.
    GateNotPass,
    /// The gate receipt names another bundle, version or digest.
    GateReceiptMismatch,
    /// The gate receipt is unsigned, or not signed by a live key of the gate it names.
    GateReceiptUnverified,
    /// Promotion refused: the environment requires a gate the bundle has not passed.
    GateMissing,
    /// The key named by a key command is not registered.
    UnknownKey,
    /// The lifecycle does not allow this transition from the current state.
    IllegalTransition,
    /// Promotion refused: the platform catalog lacks what the bundle requires.
    Incompatible,
    /// Rollback asked for but the scope has no earlier usable activation.
    NothingToRollBack,
    /// The approver submitted the bundle.
    SeparationOfDuties,
    /// No or an invalid credential.
    Unauthenticated,
    /// The actor lacks the role (or the role's environment) for this command.
    Forbidden,
    /// Resolve found nothing ACTIVE for the scope.
    NoActiveBundle,
    /// The service or its broker is not available now.
    Unavailable,
    /// The result did not arrive in time.
    Timeout,
    /// An unexpected internal failure.
    Internal,
    /// An automated rollback took this version out of the scope: it needs a fresh
    /// approval before it may be promoted there again.
    ReapprovalRequired,
    /// The scope has no canary (share, complete, abort), or already has one.
    NoCanary,
}

impl ErrorCode {
    /// All codes, in declaration order.
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::InvalidPayload,
        ErrorCode::UnsupportedSchemaVersion,
        ErrorCode::ImmutableConflict,
        ErrorCode::UnknownBundle,
        ErrorCode::GateNotPass,
        ErrorCode::GateReceiptMismatch,
        ErrorCode::GateReceiptUnverified,
        ErrorCode::GateMissing,
        ErrorCode::UnknownKey,
        ErrorCode::IllegalTransition,
        ErrorCode::Incompatible,
        ErrorCode::NothingToRollBack,
        ErrorCode::SeparationOfDuties,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NoActiveBundle,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
        ErrorCode::Internal,
        ErrorCode::ReapprovalRequired,
        ErrorCode::NoCanary,
    ];

    /// The stable wire name, e.g. `GATE_NOT_PASS`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidPayload => "INVALID_PAYLOAD",
            ErrorCode::UnsupportedSchemaVersion => "UNSUPPORTED_SCHEMA_VERSION",
            ErrorCode::ImmutableConflict => "IMMUTABLE_CONFLICT",
            ErrorCode::UnknownBundle => "UNKNOWN_BUNDLE",
            ErrorCode::GateNotPass => "GATE_NOT_PASS",
            ErrorCode::GateReceiptMismatch => "GATE_RECEIPT_MISMATCH",
            ErrorCode::GateReceiptUnverified => "GATE_RECEIPT_UNVERIFIED",
            ErrorCode::GateMissing => "GATE_MISSING",
            ErrorCode::UnknownKey => "UNKNOWN_KEY",
            ErrorCode::IllegalTransition => "ILLEGAL_TRANSITION",
            ErrorCode::Incompatible => "INCOMPATIBLE",
            ErrorCode::NothingToRollBack => "NOTHING_TO_ROLL_BACK",
            ErrorCode::SeparationOfDuties => "SEPARATION_OF_DUTIES",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NoActiveBundle => "NO_ACTIVE_BUNDLE",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::ReapprovalRequired => "REAPPROVAL_REQUIRED",
            ErrorCode::NoCanary => "NO_CANARY",
        }
    }

    /// Whether the same request may succeed if retried unchanged.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Unavailable | ErrorCode::Timeout | ErrorCode::Internal
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused command or input: a stable code plus a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    /// Stable machine code.
    pub code: ErrorCode,
    /// Human explanation naming the offending field or value.
    pub message: String,
    /// Whether retrying unchanged can help (derived from `code`).
    pub retryable: bool,
}

impl Rejection {
    /// A rejection with `retryable` taken from the code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retryable: code.retryable(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_wire_names() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert!(ErrorCode::Timeout.retryable());
        assert!(!ErrorCode::Forbidden.retryable());
    }
}
