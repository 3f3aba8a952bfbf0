//! Read-only queries over the view, cursor-paginated: bundles, one bundle, a family's
//! versions, a scope's bindings and activation history, the event log, a command's result,
//! and the platform catalog. Each answers within the caller's read scope
//! ([`crate::domain::auth::ReadAccess`]): what lies outside it is answered exactly as if
//! it did not exist (an empty page or list, or the absent result's answer). Bundle
//! manifests are registry-wide, not tenant data: any authenticated caller reads them.

use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{Path, Query};
use crate::domain::auth::ReadAccess;
use crate::domain::event::ScopeRef;
use crate::domain::{
    BundleId, BundleVersion, Environment, ErrorCode, RegistryEventType, Slot, TenantId,
};
use crate::view::{HistoryEntry, Page};

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
    /// Only events that record an automated decision (a rule that fired).
    #[serde(default)]
    automated: Option<bool>,
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
    let (cursor, limit) = (p.cursor.clone(), p.limit());
    let page = s
        .read(move |v| Ok(v.bundles(family.as_ref(), cursor.as_deref(), limit)?))
        .await?;
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
    let (cursor, limit) = (p.cursor.clone(), p.limit());
    let page = s
        .read(move |v| Ok(v.bundles(Some(&id), cursor.as_deref(), limit)?))
        .await?;
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
    let rec = s
        .read(move |view| {
            view.bundle(&id, &v)?.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::UnknownBundle,
                    format!("{id}@{v} is not registered"),
                )
            })
        })
        .await?;
    Ok(Json(json!(rec)))
}

async fn get_scope(
    State(s): State<AppState>,
    h: HeaderMap,
    Path((env, tenant, bundle_id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let p = s.principal(&h)?;
    let env = parse::<Environment>(&env)?;
    let tenant = parse::<TenantId>(&tenant)?;
    let id = parse::<BundleId>(&bundle_id)?;
    let visible = s.access(&p).may_read_scope(&env, &tenant);
    let (id2, env2) = (id.clone(), env.clone());
    let (rows, version) = s
        .read(move |v| {
            v.consistent(|r, version| Ok((r.slots(&id2, Some(env2.as_str()))?, version)))?
        })
        .await?;
    let slots: Vec<Value> = rows
        .into_iter()
        .filter(|(sc, _)| visible && sc.tenant_id == tenant)
        .map(|(sc, rec)| {
            json!({
                "slot": sc.slot,
                "bundle_version": rec.bound(),
                "changed_seq": rec.changed_seq,
                "changed_event_id": rec.changed_event_id,
                "changed_at_utc": rec.changed_at_utc,
                "activation_stack": rec.stack,
                "canary": rec.canary,
                "autopilot": rec.autopilot,
            })
        })
        .collect();
    Ok(Json(json!({
        "scope": {"environment": env, "tenant_id": tenant, "bundle_id": id},
        "bindings": slots,
        "view_version": version.token(),
    })))
}

async fn get_scope_history(
    State(s): State<AppState>,
    h: HeaderMap,
    Path((env, tenant, bundle_id)): Path<(String, String, String)>,
    Query(p): Query<PageParams>,
) -> Result<Json<Value>, ApiError> {
    let caller = s.principal(&h)?;
    let scope = ScopeRef {
        environment: parse(&env)?,
        tenant_id: parse(&tenant)?,
        slot: p.slot.unwrap_or(Slot::Primary),
    };
    let id = parse::<BundleId>(&bundle_id)?;
    if !s
        .access(&caller)
        .may_read_scope(&scope.environment, &scope.tenant_id)
    {
        // The page of a scope with no history.
        return Ok(Json(json!(Page::<HistoryEntry> {
            items: Vec::new(),
            next_cursor: None,
            at_end: None,
        })));
    }
    let (cursor, limit) = (p.cursor.clone(), p.limit());
    let page = s
        .read(move |v| Ok(v.history(&id, &scope, cursor.as_deref(), limit)?))
        .await?;
    Ok(Json(json!(page)))
}

async fn list_events(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Query<PageParams>,
) -> Result<Json<Value>, ApiError> {
    let caller = s.principal(&h)?;
    let enforce = s.grants.enforce;
    let family = p.bundle_id.as_deref().map(parse::<BundleId>).transpose()?;
    let env = p
        .environment
        .as_deref()
        .map(parse::<Environment>)
        .transpose()?;
    let tenant = p.tenant_id.as_deref().map(parse::<TenantId>).transpose()?;
    let (cursor, limit, event_type) = (p.cursor.clone(), p.limit(), p.event_type);
    let automated = p.automated.unwrap_or(false);
    let page = s
        .read(move |v| {
            let access = ReadAccess::new(&caller.roles, enforce);
            let keep = |e: &crate::domain::RegistryEvent| {
                access.may_read_event(&caller.actor, e)
                    && event_type.is_none_or(|t| e.event_type == t)
                    && (!automated || e.autopilot.as_ref().is_some_and(|d| d.trigger.is_some()))
                    && env
                        .as_ref()
                        .is_none_or(|en| e.scope.as_ref().is_some_and(|sc| &sc.environment == en))
                    && tenant
                        .as_ref()
                        .is_none_or(|t| e.scope.as_ref().is_some_and(|sc| &sc.tenant_id == t))
            };
            Ok(v.events(
                family.as_ref(),
                cursor.as_deref(),
                limit,
                MAX_EVENTS_SCANNED,
                keep,
            )?)
        })
        .await?;
    Ok(Json(json!(page)))
}

/// Most events one `/v1/events` request reads, matching or not: a filter that matches
/// little answers a short page with `next_cursor` where the scan stopped, instead of
/// reading the whole log.
const MAX_EVENTS_SCANNED: usize = 10_000;

/// Query string of `/v1/commands/{command_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultParams {
    /// Wait up to this long (at most `http.command_timeout_ms`) for the result.
    #[serde(default)]
    wait_ms: Option<u64>,
}

async fn get_command_result(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(command_id): Path<String>,
    Query(p): Query<ResultParams>,
) -> Result<Json<Value>, ApiError> {
    let caller = s.principal(&h)?;
    let id = uuid::Uuid::parse_str(&command_id).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidPayload,
            format!("command_id is not a UUID: {e}"),
        )
    })?;
    let wait = p.wait_ms.map(|w| w.min(s.http.command_timeout_ms));
    let r = s
        .wait_result_for(id, Duration::from_millis(wait.unwrap_or(0)), Some(&caller))
        .await?;
    match (r, wait) {
        (Some(r), _) => Ok(Json(json!(r))),
        // The caller asked for a bounded wait and it expired (MPR1-ERR-02 TIMEOUT).
        (None, Some(waited)) => Err(ApiError::new(
            ErrorCode::Timeout,
            format!("no result for {id} within {waited} ms; it may still be in flight"),
        )
        .with_details(json!({"command_id": id, "waited_ms": waited}))),
        (None, None) => Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("no result for {id} yet; it may still be in flight"),
        )
        .with_details(json!({"command_id": id}))),
    }
}

async fn get_catalog(State(s): State<AppState>, h: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = s.principal(&h)?;
    let (version, mut entries) = s.read(|v| Ok(v.catalog()?)).await?;
    let access = s.access(&caller);
    entries.retain(|e| access.may_read_environment(&e.environment));
    Ok(Json(
        json!({"catalog_version": version, "entries": entries}),
    ))
}
