//! Operations routes: liveness, readiness, Prometheus metrics, the OpenAPI document.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use crate::domain::ErrorCode;

/// `/healthz`, `/readyz`, `/metrics`, `/openapi.json`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(get_health))
        .route("/readyz", get(get_ready))
        .route("/metrics", get(get_metrics))
        .route("/openapi.json", get(get_openapi))
}

async fn get_health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn get_ready(State(s): State<AppState>) -> Response {
    if s.status.ready.load(Ordering::SeqCst) {
        Json(json!({"status": "ready", "view_version": s.view.version().token()})).into_response()
    } else {
        ApiError::new(
            ErrorCode::Unavailable,
            "the view is still catching up with the log",
        )
        .into_response()
    }
}

async fn get_metrics(State(s): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn get_openapi() -> Json<serde_json::Value> {
    Json(super::openapi::document())
}
