//! The HTTP API (axum). Reads come from the view, never from Kafka, within the caller's read
//! scope; writes are commands on the log. One router function per resource: resolve,
//! queries, commands, operations; the `/v1` routes run under a request timeout and a
//! concurrency limit (tower layers).

pub mod audit;
pub mod auth;
pub(crate) mod commands;
pub mod error;
mod extract;
pub mod openapi;
mod ops;
pub(crate) mod queries;
pub mod resolve;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use tower::limit::GlobalConcurrencyLimitLayer;
use utoipa_axum::router::OpenApiRouter;

use crate::config::{HttpConfig, Principal};
use crate::domain::auth::ReadAccess;
use crate::domain::event::CommandResult;
use crate::domain::{CommandEnvelope, ErrorCode, Grants};
use crate::log::applier::ApplierStatus;
use crate::metrics::Metrics;
use crate::view::{View, ViewVersion};
pub use commands::{CommandSink, FnSink, KafkaSink};
use error::ApiError;

/// Everything a handler needs, behind one `Arc`: axum clones the state for every request,
/// and one reference count is cheaper than one per part.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl From<AppParts> for AppState {
    fn from(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct AppParts {
    /// The view.
    pub view: Arc<View>,
    /// Readiness and version notifications.
    pub status: Arc<ApplierStatus>,
    /// Where commands go.
    pub sink: Arc<dyn CommandSink>,
    /// Token checks.
    pub auth: Arc<auth::Auth>,
    /// Role checks.
    pub grants: Arc<Grants>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// HTTP settings.
    pub http: Arc<HttpConfig>,
    /// Rendered resolve answers for the current view version.
    pub resolve_cache: Arc<resolve::ResolveCache>,
    /// Whether commands must be signed (reported by `/readyz`).
    pub trust_mode: crate::config::TrustMode,
    /// Signs the checkpoints of `/v1/audit/checkpoints`.
    pub checkpoints: Arc<audit::CheckpointSigner>,
    /// The console's sessions and the registry keys its audit page verifies with.
    pub console: Arc<crate::console::Console>,
}

impl std::fmt::Debug for AppParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppParts")
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppState")
    }
}

impl AppParts {
    /// The caller, or 401.
    fn principal(&self, headers: &HeaderMap) -> Result<Arc<Principal>, ApiError> {
        self.auth.authenticate(headers)
    }

    /// What `p` may read (read scopes: the rule is [`ReadAccess`]'s).
    fn access<'a>(&self, p: &'a Principal) -> ReadAccess<'a> {
        ReadAccess::new(&p.roles, self.grants.enforce)
    }

    /// Runs a view read on the blocking pool, off the async workers: RocksDB reads can
    /// wait on the disk.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&View) -> Result<T, ApiError> + Send + 'static,
    {
        let view = self.view.clone();
        tokio::task::spawn_blocking(move || f(&view))
            .await
            .map_err(ApiError::internal)?
    }

    /// The headers that tell how current the view is (MPR3-RES-13): `MPR-View-Lag`,
    /// records of the log not yet applied, and `MPR-View-Age-Ms`, milliseconds since the
    /// view last held everything on the log. Each is absent until first measured.
    fn freshness_headers(&self, h: &mut HeaderMap) {
        let f = self.status.freshness(crate::log::now_ms());
        if let Some(lag) = f.lag_events {
            h.insert(VIEW_LAG_HEADER, HeaderValue::from(lag));
        }
        if let Some(age) = f.age_ms {
            h.insert(VIEW_AGE_HEADER, HeaderValue::from(age));
        }
    }

    /// The result already recorded for `command_id`, for a submission by `actor` that
    /// reuses it: the result when `actor` may read it (its own command's, or one inside
    /// its read scope); a command_id taken by a command it may not read is refused with
    /// 409 `IMMUTABLE_CONFLICT`, which tells nothing of that command.
    async fn existing_result(
        &self,
        command_id: uuid::Uuid,
        actor: &crate::domain::Actor,
    ) -> Result<Option<CommandResult>, ApiError> {
        let roles = self.grants.by_actor.get(actor).cloned().unwrap_or_default();
        let (actor, enforce) = (actor.clone(), self.grants.enforce);
        self.read(move |v| {
            let Some(r) = v.result(command_id)? else {
                return Ok(None);
            };
            if result_visible(v, &r, &actor, &ReadAccess::new(&roles, enforce))? {
                Ok(Some(r))
            } else {
                Err(ApiError::new(
                    ErrorCode::ImmutableConflict,
                    format!("command_id {command_id} is already taken; choose another"),
                ))
            }
        })
        .await
    }

    /// Waits up to `wait` for the view to hold the result of `command_id`.
    async fn wait_result(
        &self,
        command_id: uuid::Uuid,
        wait: Duration,
    ) -> Result<Option<CommandResult>, ApiError> {
        self.wait_result_for(command_id, wait, None).await
    }

    /// Like [`Self::wait_result`], but a result whose event `reader` may not read is
    /// treated as absent (it waits, then answers as for a result that does not exist).
    /// `None`: every result is visible (the submitter of the command).
    async fn wait_result_for(
        &self,
        command_id: uuid::Uuid,
        wait: Duration,
        reader: Option<&Principal>,
    ) -> Result<Option<CommandResult>, ApiError> {
        let mut rx = self.status.version.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        let reader = reader.cloned();
        let enforce = self.grants.enforce;
        loop {
            let who = reader.clone();
            let found = self
                .read(move |v| {
                    let Some(r) = v.result(command_id)? else {
                        return Ok(None);
                    };
                    let Some(p) = who else {
                        return Ok(Some(r));
                    };
                    let access = ReadAccess::new(&p.roles, enforce);
                    Ok(result_visible(v, &r, &p.actor, &access)?.then_some(r))
                })
                .await?;
            if let Some(r) = found {
                return Ok(Some(r));
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(ApiError::new(
                        ErrorCode::Unavailable,
                        "the view applier stopped",
                    ));
                }
                Err(_) => return Ok(None),
            }
        }
    }

    /// Waits until the view covers `min`, up to the read-barrier timeout; 503 after.
    async fn barrier(&self, min: &ViewVersion) -> Result<(), ApiError> {
        let mut rx = self.status.version.subscribe();
        let wait = Duration::from_millis(self.http.read_barrier_timeout_ms);
        let ok = tokio::time::timeout(wait, rx.wait_for(|v| v.covers(min))).await;
        match ok {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "the view has not reached {} within {} ms (it is at {})",
                    min.token(),
                    wait.as_millis(),
                    self.view.version().token()
                ),
            )),
        }
    }
}

/// Whether `actor` with `access` may read result `r`: when it may read the event the
/// command produced.
fn result_visible(
    v: &View,
    r: &CommandResult,
    actor: &crate::domain::Actor,
    access: &ReadAccess<'_>,
) -> Result<bool, ApiError> {
    if access.reads_everything() {
        return Ok(true);
    }
    Ok(v.event_at(r.log, r.partition, r.seq)?
        .is_some_and(|e| access.may_read_event(actor, &e)))
}

/// Header: records of the log the view has not applied yet, at the last lag check. A
/// `HeaderName`, not a `&str`: inserting a `&str` name validates it on every response.
pub const VIEW_LAG_HEADER: HeaderName = HeaderName::from_static("mpr-view-lag");
/// Header: milliseconds since the view last held everything on the log.
pub const VIEW_AGE_HEADER: HeaderName = HeaderName::from_static("mpr-view-age-ms");

/// Submits envelopes; the processor enforces roles again.
pub fn envelope_for(
    p: &Principal,
    mut body: serde_json::Value,
) -> Result<CommandEnvelope, ApiError> {
    let obj = body.as_object_mut().ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidPayload,
            "command body must be a JSON object",
        )
    })?;
    if let Some(a) = obj.get("actor")
        && a.as_str() != Some(p.actor.as_str())
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "actor is set from the token ({}); the body may not name another",
                p.actor
            ),
        ));
    }
    obj.insert(
        "actor".into(),
        serde_json::Value::String(p.actor.to_string()),
    );
    obj.entry("command_id")
        .or_insert_with(|| serde_json::Value::String(uuid::Uuid::new_v4().to_string()));
    obj.entry("submitted_at_utc").or_insert_with(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        serde_json::Value::String(crate::domain::Timestamp::from_millis(now).to_string())
    });
    serde_json::from_value(body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidPayload,
            format!("command does not match the contract: {e}"),
        )
    })
}

/// The whole router. The `/v1` routes and the console (`/ui`) run under tower's limits: at most
/// `http.max_concurrent_requests` at once (one more is shed at once with 503
/// `UNAVAILABLE`, retryable: nothing queues), each cut after `http.request_timeout_ms` with
/// 504 `TIMEOUT`, both as the API's JSON error. The operations routes are not limited, so
/// health checks answer under load.
pub fn router(state: AppState) -> Router {
    let (timeout_ms, max) = (
        state.http.request_timeout_ms,
        state.http.max_concurrent_requests,
    );
    let limits = tower::ServiceBuilder::new()
        .layer(HandleErrorLayer::new(
            move |err: tower::BoxError| async move { limit_error(&err, timeout_ms, max) },
        ))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(max))
        .timeout(Duration::from_millis(timeout_ms));
    let (limited, operations) = routes();
    Router::new()
        .merge(limited.split_for_parts().0)
        .merge(crate::console::router())
        // Applies to the routes merged so far.
        .layer(limits)
        .merge(operations.split_for_parts().0)
        // After every route: it applies to the routes the router holds when it is called.
        .method_not_allowed_fallback(extract::wrong_method)
        .fallback(extract::no_route)
        .with_state(state)
}

/// The API's routes with their OpenAPI operations: those under the `/v1` limits, and the
/// operations routes. The one list both [`router`] and [`api_doc`] take them from.
fn routes() -> (OpenApiRouter<AppState>, OpenApiRouter<AppState>) {
    let limited = OpenApiRouter::new()
        .merge(resolve::router())
        .merge(queries::router())
        .merge(commands::router())
        .merge(audit::router());
    (limited, ops::router())
}

/// The OpenAPI operations of every API route, as utoipa derived them from the handlers
/// ([`openapi::document`] completes the document).
pub fn api_doc() -> utoipa::openapi::OpenApi {
    let (limited, operations) = routes();
    let mut doc = limited.split_for_parts().1;
    doc.merge(operations.split_for_parts().1);
    doc
}

/// The answer to a request the limits stopped.
fn limit_error(err: &tower::BoxError, timeout_ms: u64, max: usize) -> ApiError {
    if err.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(
            ErrorCode::Timeout,
            format!("the request took longer than http.request_timeout_ms ({timeout_ms} ms)"),
        )
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "the registry is serving http.max_concurrent_requests ({max}) requests; retry shortly"
            ),
        )
    } else {
        ApiError::internal(err)
    }
}
