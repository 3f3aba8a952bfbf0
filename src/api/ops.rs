//! Operations routes: liveness, readiness, Prometheus metrics, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use crate::domain::ErrorCode;

/// `/healthz`, `/readyz`, `/metrics`, `/openapi.json`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_health))
        .routes(routes!(get_ready))
        .routes(routes!(get_metrics))
        .routes(routes!(get_openapi))
}

#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "get_health",
    summary = "Liveness",
    responses(
        (status = 200, description = "Success", body = crate::api::openapi::doc::Health),
    ),
)]
async fn get_health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// 200 while the view is kept up to date (MPR3-OPS-11): caught up at start-up, applier
/// running, and within `http.ready_max_lag_events` / `http.ready_max_age_ms` of the log;
/// 503 `UNAVAILABLE` naming the reason otherwise, and again whenever the view falls behind.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "get_ready",
    summary = "Readiness: 200 while the view is kept up to date with the log",
    description = "200 while this replica's view is kept up to date: caught up with the log's high watermarks at start-up, its applier running, and within http.ready_max_lag_events records (and http.ready_max_age_ms, if set) of the log; 503 UNAVAILABLE naming the reason otherwise, including whenever the view falls behind later. The body and the MPR-Trust-Mode header give the trust mode; the body and the MPR-Trust-Roots header give the fingerprint of this replica's trust roots (MPR2-ROOT-05), which must be the same on every replica.",
    responses(
        (status = 200, description = "Success", body = crate::api::openapi::doc::Readiness, headers(("MPR-View-Lag" = String, description = "Records of the events and catalog logs not yet applied to this replica's view, at the last lag check (absent before the first)"), ("MPR-View-Age-Ms" = String, description = "Milliseconds since this replica's view last held every record then on the log (absent before it is first known)"), ("MPR-Trust-Mode" = String, description = "signed (every command and receipt must be signed) or unsigned-dev (unsigned ones accepted; local experiments only)"), ("MPR-Trust-Roots" = String, description = "sha256: and the hex SHA-256 of this replica's trust roots (the mode, the registry and gateway key ids; MPR2-ROOT-05)"))),
    ),
)]
async fn get_ready(State(s): State<AppState>) -> Response {
    let roots = s.grants.trust.fingerprint();
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
            "trust_roots": roots,
        }))
        .into_response(),
        Err(why) => ApiError::new(ErrorCode::Unavailable, why.to_string()).into_response(),
    };
    s.freshness_headers(resp.headers_mut());
    resp.headers_mut().insert(
        "mpr-trust-mode",
        axum::http::HeaderValue::from_static(s.trust_mode.as_str()),
    );
    if let Ok(v) = axum::http::HeaderValue::from_str(&roots) {
        resp.headers_mut().insert("mpr-trust-roots", v);
    }
    resp
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "get_metrics",
    summary = "Prometheus metrics (text format)",
    responses(
        (status = 200, description = "Prometheus metrics, OpenMetrics text", content_type = "application/openmetrics-text", body = String),
    ),
)]
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

#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "get_openapi",
    summary = "This document",
    responses(
        (status = 200, description = "This document", content_type = "application/json", body = Object),
    ),
)]
async fn get_openapi() -> Json<serde_json::Value> {
    Json(super::openapi::document())
}
