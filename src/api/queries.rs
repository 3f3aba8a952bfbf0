//! Read-only queries over the view, cursor-paginated: bundles, one bundle, a family's
//! versions, a scope's bindings and activation history, the event log, a command's result,
//! and the platform catalog. Each answers within the caller's read scope
//! ([`crate::domain::auth::ReadAccess`]): what lies outside it is answered exactly as if
//! it did not exist (an empty page or list, or the absent result's answer). Bundle
//! manifests are registry-wide, not tenant data: any authenticated caller reads them.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::{Path, Query};
use crate::domain::auth::ReadAccess;
use crate::domain::event::ScopeRef;
use crate::domain::{
    BundleId, BundleVersion, Environment, ErrorCode, RegistryEventType, Slot, TenantId,
};
use crate::view::{BundleFilter, HistoryEntry, Page};

/// Query routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_bundles))
        .routes(routes!(list_family))
        .routes(routes!(get_bundle))
        .routes(routes!(get_scope))
        .routes(routes!(get_scope_history))
        .routes(routes!(list_events))
        .routes(routes!(get_command_result))
        .routes(routes!(get_catalog))
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
    /// Bundles: one lifecycle state.
    #[serde(default)]
    state: Option<crate::domain::LifecycleState>,
    /// Bundles: MODEL or POLICY.
    #[serde(default)]
    kind: Option<crate::domain::bundle::BundleKind>,
    /// Bundles: only those awaiting approval.
    #[serde(default)]
    awaiting_approval: Option<bool>,
    /// Bundles: text in the id, version or metadata (case-insensitive).
    #[serde(default)]
    q: Option<String>,
}

impl PageParams {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, MAX_LIMIT)
    }
}

fn parse<T: std::str::FromStr<Err = crate::domain::Rejection>>(s: &str) -> Result<T, ApiError> {
    s.parse::<T>().map_err(ApiError::from)
}

#[utoipa::path(
    get,
    path = "/v1/bundles",
    operation_id = "list_bundles",
    summary = "Bundles, filtered by family, lifecycle state, kind, environment where bound, awaiting approval and text",
    description = "Every filter narrows: bundle_id (one family), state (a LifecycleState), kind (MODEL or POLICY), environment (bound now in a PRIMARY, DEGRADE or CANARY slot of any tenant there), awaiting_approval=true (CANDIDATE, or APPROVED and sent back for a fresh approval by an automated rollback), q (case-insensitive text in the bundle_id, the version, or a metadata key or value). At most 5000 records are read per request, matching or not: a filter that matches little may answer fewer than limit items; at_end tells whether the scan reached the end, and next_cursor continues after the last record read. The console's bundles page uses exactly these filters.",
    params(
        ("bundle_id" = Option<String>, Query, description = "One family"),
        ("state" = Option<String>, Query, description = "A lifecycle state (REGISTERED, CANDIDATE, APPROVED, ACTIVE, RETIRED, REJECTED)"),
        ("kind" = Option<String>, Query, description = "MODEL or POLICY"),
        ("environment" = Option<String>, Query, description = "Environment"),
        ("awaiting_approval" = Option<bool>, Query, description = "Only bundles awaiting approval"),
        ("q" = Option<String>, Query, description = "Case-insensitive text in the bundle_id, version or metadata"),
        ("cursor" = Option<String>, Query, description = "Opaque cursor: the next_cursor of the previous page"),
        ("limit" = Option<u64>, Query, description = "Items per page (1-1000, default 100)"),
    ),
    responses(
        (status = 200, description = "Success", body = crate::api::openapi::doc::BundlePage),
    ),
    security(("bearer" = [])),
)]
async fn list_bundles(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Query<PageParams>,
) -> Result<Json<Value>, ApiError> {
    s.principal(&h)?;
    let filter = bundle_filter(&p)?;
    let (cursor, limit) = (p.cursor.clone(), p.limit());
    let page = s
        .read(move |v| {
            Ok(v.bundles_where(&filter, cursor.as_deref(), limit, MAX_BUNDLES_SCANNED)?)
        })
        .await?;
    Ok(Json(json!(page)))
}

/// The filter of a bundles listing from its query string.
fn bundle_filter(p: &PageParams) -> Result<BundleFilter, ApiError> {
    Ok(BundleFilter {
        family: p.bundle_id.as_deref().map(parse::<BundleId>).transpose()?,
        state: p.state,
        kind: p.kind,
        environment: p
            .environment
            .as_deref()
            .map(parse::<Environment>)
            .transpose()?,
        awaiting_approval: p.awaiting_approval.unwrap_or(false),
        text: p.q.clone().filter(|q| !q.trim().is_empty()),
    })
}

/// Most bundle records one filtered `/v1/bundles` request reads, matching or not (as
/// [`MAX_EVENTS_SCANNED`] for events).
pub const MAX_BUNDLES_SCANNED: usize = 5_000;

#[utoipa::path(
    get,
    path = "/v1/bundles/{bundle_id}",
    operation_id = "list_family",
    summary = "The versions of one family",
    params(
        ("bundle_id" = String, Path, description = "Family"),
        ("cursor" = Option<String>, Query, description = "Opaque cursor: the next_cursor of the previous page"),
        ("limit" = Option<u64>, Query, description = "Items per page (1-1000, default 100)"),
    ),
    responses(
        (status = 200, description = "Success", body = crate::api::openapi::doc::BundlePage),
    ),
    security(("bearer" = [])),
)]
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

#[utoipa::path(
    get,
    path = "/v1/bundles/{bundle_id}/versions/{version}",
    operation_id = "get_bundle",
    summary = "One bundle version and its lifecycle state",
    params(
        ("bundle_id" = String, Path, description = "Family"),
        ("version" = String, Path, description = "Bundle version"),
    ),
    responses(
        (status = 200, description = "Success", body = crate::domain::state::BundleRecord),
    ),
    security(("bearer" = [])),
)]
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

#[utoipa::path(
    get,
    path = "/v1/scopes/{environment}/{tenant_id}/{bundle_id}",
    operation_id = "get_scope",
    summary = "A scope's bindings (primary and degrade)",
    description = "Outside the caller's read scope bindings is empty, the same as for a scope with no binding.",
    params(
        ("environment" = String, Path, description = "Environment"),
        ("tenant_id" = String, Path, description = "Tenant, or * (the global scope)"),
        ("bundle_id" = String, Path, description = "Family"),
    ),
    responses(
        (status = 200, description = "Success", body = crate::api::openapi::doc::ScopeBindings),
    ),
    security(("bearer" = [])),
)]
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

#[utoipa::path(
    get,
    path = "/v1/scopes/{environment}/{tenant_id}/{bundle_id}/history",
    operation_id = "get_scope_history",
    summary = "A scope slot's activation history",
    description = "Outside the caller's read scope an empty page, the same as for a scope with no history.",
    params(
        ("environment" = String, Path, description = "Environment"),
        ("tenant_id" = String, Path, description = "Tenant, or * (the global scope)"),
        ("bundle_id" = String, Path, description = "Family"),
        ("slot" = Option<String>, Query, description = "PRIMARY (default), DEGRADE or CANARY"),
        ("cursor" = Option<String>, Query, description = "Opaque cursor: the next_cursor of the previous page"),
        ("limit" = Option<u64>, Query, description = "Items per page (1-1000, default 100)"),
    ),
    responses(
        (status = 200, description = "Success", body = crate::api::openapi::doc::HistoryPage),
    ),
    security(("bearer" = [])),
)]
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

#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "list_events",
    summary = "The event log, filtered by bundle, scope and type",
    description = "At most 10000 events are read per request, matching or not: a filter that matches little may answer fewer than limit items; at_end tells whether the scan reached the end of the log, and next_cursor (always present after the first event) continues after the last event read. Only events inside the caller's read scope are listed: a limited grant sees the events of its scopes and the catalog events of its environments, and the events of commands the caller issued; events tied to no environment (bundle registrations and lifecycle changes) need an unlimited grant or auditor.",
    params(
        ("bundle_id" = Option<String>, Query, description = "One family"),
        ("event_type" = Option<String>, Query, description = "A RegistryEventType"),
        ("environment" = Option<String>, Query, description = "Environment"),
        ("tenant_id" = Option<String>, Query, description = "Tenant, or * (the global scope)"),
        ("automated" = Option<bool>, Query, description = "Only events that record an automated decision"),
        ("cursor" = Option<String>, Query, description = "Opaque cursor: the next_cursor of the previous page"),
        ("limit" = Option<u64>, Query, description = "Items per page (1-1000, default 100)"),
    ),
    responses(
        (status = 200, description = "Success", body = crate::api::openapi::doc::EventPage),
    ),
    security(("bearer" = [])),
)]
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

#[utoipa::path(
    get,
    path = "/v1/commands/{command_id}",
    operation_id = "get_command_result",
    summary = "A command's result",
    description = "Without wait_ms, no result yet answers 503 UNAVAILABLE (retryable). With wait_ms, waits up to that many ms (at most http.command_timeout_ms) for the result, then answers 504 TIMEOUT (retryable). A result whose event lies outside the caller's read scope, of a command the caller did not issue, is answered as a result that does not exist.",
    params(
        ("command_id" = String, Path, description = "The command_id"),
        ("wait_ms" = Option<u64>, Query, description = "Wait up to this long for the result (at most the command timeout)"),
    ),
    responses(
        (status = 200, description = "Success", body = crate::domain::CommandResult),
    ),
    security(("bearer" = [])),
)]
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

#[utoipa::path(
    get,
    path = "/v1/catalog",
    operation_id = "get_catalog",
    summary = "The platform catalog",
    description = "Only the entries of environments the caller's grants cover.",
    responses(
        (status = 200, description = "Success", body = crate::api::openapi::doc::CatalogListing),
    ),
    security(("bearer" = [])),
)]
async fn get_catalog(State(s): State<AppState>, h: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = s.principal(&h)?;
    let (version, mut entries) = s.read(|v| Ok(v.catalog()?)).await?;
    let access = s.access(&caller);
    entries.retain(|e| access.may_read_environment(&e.environment));
    Ok(Json(
        json!({"catalog_version": version, "entries": entries}),
    ))
}
