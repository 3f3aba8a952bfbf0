//! Read-only queries over the view, cursor-paginated: bundles, one bundle, a family's
//! versions, a scope's bindings and activation history, the event log, a command's result,
//! and the platform catalog.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::domain::event::ScopeRef;
use crate::domain::{
    BundleId, BundleVersion, Environment, ErrorCode, RegistryEventType, Slot, TenantId,
};

/// Query routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/bundles", get(list_bundles))
        .route("/v1/bundles/{bundle_id}", get(list_family))
        .route(
            "/v1/bundles/{bundle_id}/versions/{version}",
            get(get_bundle),
        )
        .route(
            "/v1/scopes/{environment}/{tenant_id}/{bundle_id}",
            get(get_scope),
        )
        .route(
            "/v1/scopes/{environment}/{tenant_id}/{bundle_id}/history",
            get(get_scope_history),
        )
        .route("/v1/events", get(list_events))
        .route("/v1/commands/{command_id}", get(get_command_result))
        .route("/v1/catalog", get(get_catalog))
}

const MAX_LIMIT: usize = 1000;

/// Pagination parameters.
#[derive(Debug, Deserialize)]
struct PageParams {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    bundle_id: Option<String>,
    #[serde(default)]
    event_type: Option<RegistryEventType>,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    slot: Option<Slot>,
}

impl PageParams {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, MAX_LIMIT)
    }
}

fn parse<T: std::str::FromStr<Err = crate::domain::Rejection>>(s: &str) -> Result<T, ApiError> {
    s.parse::<T>().map_err(ApiError::from)
}

async fn list_bundles(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Query<PageParams>,
) -> Result<Json<Value>, ApiError> {
    s.principal(&h)?;
    let family = p.bundle_id.as_deref().map(parse::<BundleId>).transpose()?;
    let page = s
        .view
        .bundles(family.as_ref(), p.cursor.as_deref(), p.limit())?;
    Ok(Json(json!(page)))
}

async fn list_family(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(bundle_id): Path<String>,
    Query(p): Query<PageParams>,
) -> Result<Json<Value>, ApiError> {
    s.principal(&h)?;
    let id = parse::<BundleId>(&bundle_id)?;
    let page = s.view.bundles(Some(&id), p.cursor.as_deref(), p.limit())?;
    Ok(Json(json!(page)))
}

async fn get_bundle(
    State(s): State<AppState>,
    h: HeaderMap,
    Path((bundle_id, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    s.principal(&h)?;
    let id = parse::<BundleId>(&bundle_id)?;
    let v = parse::<BundleVersion>(&version)?;
    let rec = s.view.bundle(&id, &v)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownBundle,
            format!("{id}@{v} is not registered"),
        )
    })?;
    Ok(Json(json!(rec)))
}

async fn get_scope(
    State(s): State<AppState>,
    h: HeaderMap,
    Path((env, tenant, bundle_id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    s.principal(&h)?;
    let env = parse::<Environment>(&env)?;
    let tenant = parse::<TenantId>(&tenant)?;
    let id = parse::<BundleId>(&bundle_id)?;
    let slots: Vec<Value> = s
        .view
        .slots(&id, Some(env.as_str()))?
        .into_iter()
        .filter(|(sc, _)| sc.tenant_id == tenant)
        .map(|(sc, rec)| {
            json!({
                "slot": sc.slot,
                "bundle_version": rec.bound(),
                "changed_seq": rec.changed_seq,
                "changed_event_id": rec.changed_event_id,
                "changed_at_utc": rec.changed_at_utc,
                "activation_stack": rec.stack,
            })
        })
        .collect();
    Ok(Json(json!({
        "scope": {"environment": env, "tenant_id": tenant, "bundle_id": id},
        "bindings": slots,
        "view_version": s.view.version().token(),
    })))
}

async fn get_scope_history(
    State(s): State<AppState>,
    h: HeaderMap,
    Path((env, tenant, bundle_id)): Path<(String, String, String)>,
    Query(p): Query<PageParams>,
) -> Result<Json<Value>, ApiError> {
    s.principal(&h)?;
    let scope = ScopeRef {
        environment: parse(&env)?,
        tenant_id: parse(&tenant)?,
        slot: p.slot.unwrap_or(Slot::Primary),
    };
    let id = parse::<BundleId>(&bundle_id)?;
    let page = s
        .view
        .history(&id, &scope, p.cursor.as_deref(), p.limit())?;
    Ok(Json(json!(page)))
}

async fn list_events(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Query<PageParams>,
) -> Result<Json<Value>, ApiError> {
    s.principal(&h)?;
    let family = p.bundle_id.as_deref().map(parse::<BundleId>).transpose()?;
    let env = p
        .environment
        .as_deref()
        .map(parse::<Environment>)
        .transpose()?;
    let tenant = p.tenant_id.as_deref().map(parse::<TenantId>).transpose()?;
    let page = s
        .view
        .events(family.as_ref(), p.cursor.as_deref(), p.limit(), |e| {
            p.event_type.is_none_or(|t| e.event_type == t)
                && env
                    .as_ref()
                    .is_none_or(|en| e.scope.as_ref().is_some_and(|sc| &sc.environment == en))
                && tenant
                    .as_ref()
                    .is_none_or(|t| e.scope.as_ref().is_some_and(|sc| &sc.tenant_id == t))
        })?;
    Ok(Json(json!(page)))
}

async fn get_command_result(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(command_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    s.principal(&h)?;
    let id = uuid::Uuid::parse_str(&command_id).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidPayload,
            format!("command_id is not a UUID: {e}"),
        )
    })?;
    let r = s.view.result(id)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("no result for {id} yet; it may still be in flight"),
        )
        .with_details(json!({"command_id": id}))
    })?;
    Ok(Json(json!(r)))
}

async fn get_catalog(State(s): State<AppState>, h: HeaderMap) -> Result<Json<Value>, ApiError> {
    s.principal(&h)?;
    let (version, entries) = s.view.catalog()?;
    Ok(Json(
        json!({"catalog_version": version, "entries": entries}),
    ))
}
