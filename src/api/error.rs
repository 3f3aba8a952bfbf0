//! HTTP errors: every failure leaves as `{code, message, retryable, details}` with the status
//! of its code (MPR1-ERR-02), except a few transport-level refusals of `INVALID_PAYLOAD`
//! that keep HTTP's own status: no such route (404), wrong method (405), size limit (413).
//! Internal errors are logged and never leak their detail.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::types::ErrorResponse;
use crate::domain::event::ErrorInfo;
use crate::domain::{ErrorCode, Rejection};

/// The HTTP status of each code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidPayload | ErrorCode::UnsupportedSchemaVersion => StatusCode::BAD_REQUEST,
        ErrorCode::ImmutableConflict
        | ErrorCode::IllegalTransition
        | ErrorCode::Incompatible
        | ErrorCode::GateMissing
        | ErrorCode::NothingToRollBack
        | ErrorCode::ReapprovalRequired
        | ErrorCode::NoCanary => StatusCode::CONFLICT,
        ErrorCode::UnknownBundle | ErrorCode::UnknownKey | ErrorCode::NoActiveBundle => {
            StatusCode::NOT_FOUND
        }
        ErrorCode::GateNotPass
        | ErrorCode::GateReceiptMismatch
        | ErrorCode::GateReceiptUnverified => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::SeparationOfDuties | ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An API failure: the body, and the status when it is not the code's own.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError(pub ErrorResponse, Option<StatusCode>);

impl ApiError {
    /// From a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(
            ErrorResponse {
                code,
                message: message.into(),
                retryable: code.retryable(),
                details: None,
            },
            None,
        )
    }

    /// Answered with `status` instead of the code's own: only for the transport-level
    /// refusals of `INVALID_PAYLOAD` (404, 405, 413).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.1 = Some(status);
        self
    }

    /// The HTTP status it is answered with.
    pub fn status(&self) -> StatusCode {
        self.1.unwrap_or_else(|| status_of(self.0.code))
    }

    /// With structured details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.0.details = Some(details);
        self
    }

    /// An internal failure: logged in full, answered without detail.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            ErrorCode::Internal,
            "internal error; see the registry's logs",
        )
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        Self::new(r.code, r.message)
    }
}

impl From<ErrorInfo> for ApiError {
    fn from(e: ErrorInfo) -> Self {
        Self(e.into(), None)
    }
}

impl From<crate::view::ViewError> for ApiError {
    fn from(e: crate::view::ViewError) -> Self {
        Self::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(self.0)).into_response()
    }
}
