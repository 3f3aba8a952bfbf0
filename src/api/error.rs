//! HTTP errors: every failure leaves as `{code, message, retryable, details}` with a status
//! fixed per code. Internal errors are logged and never leak their detail.

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
        | ErrorCode::NothingToRollBack => StatusCode::CONFLICT,
        ErrorCode::UnknownBundle | ErrorCode::NoActiveBundle => StatusCode::NOT_FOUND,
        ErrorCode::GateNotPass | ErrorCode::GateReceiptMismatch => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::SeparationOfDuties | ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An API failure.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError(pub ErrorResponse);

impl ApiError {
    /// From a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(ErrorResponse {
            code,
            message: message.into(),
            retryable: code.retryable(),
            details: None,
        })
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
        Self(e.into())
    }
}

impl From<crate::view::ViewError> for ApiError {
    fn from(e: crate::view::ViewError) -> Self {
        Self::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (status_of(self.0.code), Json(self.0)).into_response()
    }
}
