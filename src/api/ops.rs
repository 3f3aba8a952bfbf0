//! Operations routes: liveness, readiness, Prometheus metrics, the OpenAPI document.

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

/// 200 while the view is kept up to date (MPR3-OPS-11): caught up at start-up, applier
/// running, and within `http.ready_max_lag_events` / `http.ready_max_age_ms` of the log;
/// 503 `UNAVAILABLE` naming the reason otherwise, and again whenever the view falls behind.
async fn get_ready(State(s): State<AppState>) -> Response {
    let mut resp = match s
        .status
        .readiness(s.http.ready_bounds(), crate::log::now_ms())
    {
        Ok(f) => Json(json!({
            "status": "ready",
            "view_version": s.view.version().token(),
            "lag_events": f.lag_events,
            "age_ms": f.age_ms,
            "trust_mode": s.trust_mode.as_str(),
        }))
        .into_response(),
        Err(why) => ApiError::new(ErrorCode::Unavailable, why.to_string()).into_response(),
    };
    s.freshness_headers(resp.headers_mut());
    resp.headers_mut().insert(
        "mpr-trust-mode",
        axum::http::HeaderValue::from_static(s.trust_mode.as_str()),
    );
    resp
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
