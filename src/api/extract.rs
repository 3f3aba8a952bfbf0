//! Extractors whose rejections are API errors: axum's `Json`, `Query` and `Path` answer a
//! bad request in plain text, these answer `{code, message, retryable, details}` like every
//! other error. Also the fallbacks for an unknown route (404) and a wrong method (405).
//! Nothing here reads the view or the log.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::error::ApiError;
use crate::domain::ErrorCode;

/// A JSON body, or `INVALID_PAYLOAD` (413 when it exceeds the body limit, else 400).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(r) => Err(json_rejection(&r)),
        }
    }
}

fn json_rejection(r: &JsonRejection) -> ApiError {
    let status = r.status();
    let message = match r {
        JsonRejection::MissingJsonContentType(_) => {
            "the body must be JSON, sent with content-type application/json".to_owned()
        }
        _ => format!("the body is not acceptable JSON: {}", r.body_text()),
    };
    let e = ApiError::new(ErrorCode::InvalidPayload, message);
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        e.with_status(StatusCode::PAYLOAD_TOO_LARGE)
    } else {
        e
    }
}

/// A query string, or 400 `INVALID_PAYLOAD` naming what did not parse.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(r) => Err(query_rejection(&r)),
        }
    }
}

fn query_rejection(r: &QueryRejection) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidPayload,
        format!("the query string is not acceptable: {}", r.body_text()),
    )
}

/// Path parameters, or 400 `INVALID_PAYLOAD`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(r) => Err(path_rejection(&r)),
        }
    }
}

fn path_rejection(r: &PathRejection) -> ApiError {
    match r {
        PathRejection::FailedToDeserializePathParams(_) => ApiError::new(
            ErrorCode::InvalidPayload,
            format!("a path parameter is not acceptable: {}", r.body_text()),
        ),
        // Path parameters missing from a matched route: the router is wrong, not the caller.
        _ => ApiError::internal(r.body_text()),
    }
}

/// An optional JSON body: an empty body is `T::default()`; anything else must parse
/// (whatever its content-type), or 400 `INVALID_PAYLOAD` (413 over the body limit).
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalJson<T>(pub T);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = Bytes::from_request(req, state).await.map_err(|r| {
            let e = ApiError::new(
                ErrorCode::InvalidPayload,
                format!("the body could not be read: {}", r.body_text()),
            );
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                e.with_status(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                e
            }
        })?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        serde_json::from_slice(&body).map(Self).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidPayload,
                format!("the body is not acceptable JSON: {e}"),
            )
        })
    }
}

/// Fallback of the router: no route has this path (404).
pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidPayload,
        format!("no route {method} {}; see /openapi.json", uri.path()),
    )
    .with_status(StatusCode::NOT_FOUND)
    .with_details(json!({"method": method.as_str(), "path": uri.path()}))
}

/// Fallback of every route: the path exists, the method does not (405; axum adds `Allow`).
pub async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidPayload,
        format!("{} does not take {method}", uri.path()),
    )
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
    .with_details(json!({"method": method.as_str(), "path": uri.path()}))
}
