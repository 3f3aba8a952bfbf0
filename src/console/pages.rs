//! The console's read pages: bundles (filtered, paginated), one bundle version, a
//! comparison of two versions with a dry-run promotion, a scope (now and as of a past
//! moment), the audit log with its verification, the catalog, and operations. Each reads
//! the view through the same queries as the API, within the user's read scope, and
//! renders HTML; maud escapes every value it interpolates.

use std::collections::BTreeSet;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;

use super::{Session, Viewer, csrf_field, page};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::domain::auth::ReadAccess;
use crate::domain::event::ScopeRef;
use crate::domain::resolve::ResolveQuery;
use crate::domain::state::BundleRecord;
use crate::domain::{
    BundleId, BundleVersion, Environment, LifecycleState, RegistryEvent, RegistryEventType, Role,
    Slot, TenantId, Timestamp,
};
use crate::view::{BundleFilter, ResolveAt, View};

/// The read routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/bundles", get(bundles))
        .route("/ui/bundles/{bundle_id}/versions/{version}", get(version))
        .route("/ui/compare", get(compare))
        .route("/ui/scopes", get(scopes))
        .route(
            "/ui/scopes/{environment}/{tenant_id}/{bundle_id}",
            get(scope),
        )
        .route("/ui/audit", get(audit))
        .route("/ui/catalog", get(catalog))
        .route("/ui/operations", get(operations))
}

/// Rows per page of the listings.
const PAGE_ROWS: usize = 50;

/// An empty form field is an absent one.
fn given(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn parse<T: std::str::FromStr<Err = crate::domain::Rejection>>(
    what: &str,
    s: Option<&str>,
) -> Result<Option<T>, String> {
    s.map(|s| {
        s.parse::<T>()
            .map_err(|e| format!("{what} {s:?} is not valid: {e}"))
    })
    .transpose()
}

fn parse_enum<T: serde::de::DeserializeOwned>(
    what: &str,
    s: Option<&str>,
) -> Result<Option<T>, String> {
    s.map(|s| {
        serde_json::from_value::<T>(serde_json::Value::String(s.to_owned()))
            .map_err(|_| format!("{what} {s:?} is not one of the listed values"))
    })
    .transpose()
}

/// A page that could not be read: the API's error, in words.
fn failed(who: &Session, e: &ApiError) -> Response {
    page(
        if e.0.code.retryable() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::BAD_REQUEST
        },
        "Could not read",
        Some(who),
        html! { p.refusal role="alert" { (e.0.message) " (" (e.0.code.as_str()) ")." } },
    )
}

fn bad_input(who: &Session, title: &str, msg: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        title,
        Some(who),
        html! { p.refusal role="alert" #input-error { (msg) " (INVALID_PAYLOAD)." } },
    )
}

fn state_name(s: LifecycleState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn type_name<T: serde::Serialize>(t: &T) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `/ui/bundles/{id}/versions/{v}`.
pub(super) fn version_url(id: &BundleId, v: &BundleVersion) -> String {
    format!(
        "/ui/bundles/{}/versions/{}",
        urlencode(id.as_str()),
        urlencode(&v.to_string())
    )
}

/// `/ui/scopes/{env}/{tenant}/{id}`.
pub(super) fn scope_url(env: &Environment, tenant: &TenantId, id: &BundleId) -> String {
    format!(
        "/ui/scopes/{}/{}/{}",
        urlencode(env.as_str()),
        urlencode(tenant.as_str()),
        urlencode(id.as_str())
    )
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Query string of the bundles page (and of `GET /v1/bundles`).
#[derive(Debug, Default, Deserialize)]
pub(super) struct BundlesQuery {
    #[serde(default)]
    bundle_id: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    awaiting: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

impl BundlesQuery {
    fn filter(&self) -> Result<BundleFilter, String> {
        Ok(BundleFilter {
            family: parse("bundle_id", given(&self.bundle_id))?,
            state: parse_enum("state", given(&self.state))?,
            kind: parse_enum("kind", given(&self.kind))?,
            environment: parse("environment", given(&self.environment))?,
            awaiting_approval: given(&self.awaiting).is_some(),
            text: given(&self.q).map(str::to_owned),
        })
    }

    /// The query string of the same filters at `cursor`.
    fn at(&self, cursor: &str) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("bundle_id", &self.bundle_id),
            ("state", &self.state),
            ("kind", &self.kind),
            ("environment", &self.environment),
            ("awaiting", &self.awaiting),
            ("q", &self.q),
        ] {
            if let Some(v) = given(v) {
                q.append_pair(k, v);
            }
        }
        q.append_pair("cursor", cursor);
        q.finish()
    }
}

const STATES: [&str; 6] = [
    "REGISTERED",
    "CANDIDATE",
    "APPROVED",
    "ACTIVE",
    "RETIRED",
    "REJECTED",
];

async fn bundles(
    State(s): State<AppState>,
    Viewer(who): Viewer,
    Query(q): Query<BundlesQuery>,
) -> Response {
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => return bad_input(&who, "Bundles", &e),
    };
    let cursor = given(&q.cursor).map(str::to_owned);
    let result = s
        .read(move |v| {
            Ok(v.bundles_where(
                &filter,
                cursor.as_deref(),
                PAGE_ROWS,
                crate::api::queries::MAX_BUNDLES_SCANNED,
            )?)
        })
        .await;
    let list = match result {
        Ok(p) => p,
        Err(e) => return failed(&who, &e),
    };
    let sel = |cur: &Option<String>, v: &str| given(cur) == Some(v);
    let body = html! {
        form.filters #bundle-filters method="get" action="/ui/bundles" role="search" {
            label for="f-q" { "Text" }
            input #f-q type="search" name="q" value=[given(&q.q)] placeholder="id, version or metadata";
            label for="f-bundle" { "Family" }
            input #f-bundle type="text" name="bundle_id" value=[given(&q.bundle_id)];
            label for="f-state" { "State" }
            select #f-state name="state" {
                option value="" { "any" }
                @for st in STATES {
                    option value=(st) selected[sel(&q.state, st)] { (st) }
                }
            }
            label for="f-kind" { "Kind" }
            select #f-kind name="kind" {
                option value="" { "any" }
                option value="MODEL" selected[sel(&q.kind, "MODEL")] { "MODEL" }
                option value="POLICY" selected[sel(&q.kind, "POLICY")] { "POLICY" }
            }
            label for="f-env" { "Active in environment" }
            input #f-env type="text" name="environment" value=[given(&q.environment)];
            label for="f-awaiting" { "Awaiting approval" }
            input #f-awaiting type="checkbox" name="awaiting" value="1" checked[given(&q.awaiting).is_some()];
            button #apply-filters type="submit" { "Filter" }
            " " a href="/ui/bundles" { "Clear" }
        }
        p.muted {
            "The same filters as "
            code { "GET /v1/bundles?bundle_id=&state=&kind=&environment=&awaiting_approval=true&q=" }
            "."
        }
        @if list.items.is_empty() {
            p #no-bundles { "No bundle matches on this page." }
        } @else {
            table #bundles {
                caption.muted { "Bundles, by family and version" }
                thead { tr { th scope="col" { "Bundle" } th scope="col" { "Kind" } th scope="col" { "State" } th scope="col" { "Published by" } th scope="col" { "Registered" } th scope="col" { "Bindings" } th scope="col" { "Metadata" } } }
                tbody {
                    @for r in &list.items {
                        tr {
                            td { a href=(version_url(&r.bundle.bundle_id, &r.bundle.bundle_version)) { (r.bundle.bundle_id) "@" (r.bundle.bundle_version) } }
                            td { (type_name(&r.bundle.kind)) }
                            td.state { (state_name(r.state)) @if r.needs_reapproval { " (needs re-approval)" } }
                            td { (r.submitted_by) }
                            td { (r.registered_at_utc) }
                            td { (r.active_bindings) }
                            td { @for (k, val) in r.bundle.metadata.iter().take(4) { span.mono { (k) "=" (val) } " " } }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if let Some(c) = &list.next_cursor {
                a #next-page href={ "/ui/bundles?" (q.at(c)) } {
                    @if list.items.len() < PAGE_ROWS { "Continue searching" } @else { "Next page" }
                }
            }
            @if given(&q.cursor).is_some() { a href="/ui/bundles" { "First page" } }
        }
    };
    page(StatusCode::OK, "Bundles", Some(&who), body)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct NoticeQuery {
    #[serde(default)]
    pub done: Option<String>,
}

/// Everything the version page shows, read in one go.
pub(super) struct VersionData {
    pub rec: BundleRecord,
    pub timeline: Vec<RegistryEvent>,
    pub bound: Vec<(ScopeRef, bool)>,
    pub receipt_now: Result<Option<String>, String>,
    pub environments: Vec<Environment>,
}

/// Reads the version page's data for `who`, or the error the page shows.
pub(super) async fn version_data(
    s: &AppState,
    who: &Session,
    id: BundleId,
    ver: BundleVersion,
) -> Result<VersionData, ApiError> {
    let roles = who.principal.roles.clone();
    let actor = who.principal.actor.clone();
    let (enforce, roots) = (s.grants.enforce, s.grants.trust.clone());
    s.read(move |v| {
        let access = ReadAccess::new(&roles, enforce);
        let rec = v.bundle(&id, &ver)?.ok_or_else(|| {
            ApiError::new(
                crate::domain::ErrorCode::UnknownBundle,
                format!("{id}@{ver} is not registered"),
            )
        })?;
        let page = v.events(Some(&id), None, 500, 20_000, |e| {
            // Its own events, and the rollbacks that took it out of a slot.
            let about = e.bundle_version.as_ref() == Some(&ver)
                || e.binding
                    .as_ref()
                    .is_some_and(|b| b.previous_version.as_ref() == Some(&ver));
            about && access.may_read_event(&actor, e)
        })?;
        let bound = v
            .slots(&id, None)?
            .into_iter()
            .filter(|(sc, r)| {
                r.bound() == Some(&ver) && access.may_read_scope(&sc.environment, &sc.tenant_id)
            })
            .map(|(sc, r)| (sc, r.canary.is_some()))
            .collect();
        let cat = v.catalog_state()?.catalog;
        let receipt_now =
            crate::domain::trust::verify_receipt(&roots, &cat.trust, &rec.gate_receipt)
                .and_then(|k| {
                    rec.gate_receipt
                        .check_for(&rec.bundle, &rec.bundle_digest)
                        .map(|()| k)
                })
                .map_err(|r| format!("{} ({})", r.message, r.code.as_str()));
        let environments = cat
            .entries
            .keys()
            .filter(|e| access.may_read_environment(e))
            .cloned()
            .collect();
        Ok(VersionData {
            rec,
            timeline: page.items,
            bound,
            receipt_now,
            environments,
        })
    })
    .await
}

async fn version(
    State(s): State<AppState>,
    Viewer(who): Viewer,
    Path((id, ver)): Path<(String, String)>,
    Query(n): Query<NoticeQuery>,
) -> Response {
    let (id, ver) = match (id.parse::<BundleId>(), ver.parse::<BundleVersion>()) {
        (Ok(i), Ok(v)) => (i, v),
        _ => return bad_input(&who, "Bundle", "that is not a bundle id and version"),
    };
    match version_data(&s, &who, id, ver).await {
        Ok(d) => version_page(&s, &who, &d, n.done.as_deref(), None, StatusCode::OK),
        Err(e) => failed(&who, &e),
    }
}

/// A refusal to show next to one control.
pub(super) struct Refusal<'a> {
    /// The control's action (approve, promote, ...).
    pub action: &'a str,
    /// The words.
    pub text: String,
}

/// The version page, optionally with a notice or a refusal next to a control.
pub(super) fn version_page(
    s: &AppState,
    who: &Session,
    d: &VersionData,
    notice: Option<&str>,
    refusal: Option<Refusal<'_>>,
    status: StatusCode,
) -> Response {
    let r = &d.rec;
    let b = &r.bundle;
    let refused = |action: &str| -> Markup {
        html! {
            @if let Some(f) = refusal.as_ref().filter(|f| f.action == action) {
                p.refusal role="alert" id={ "refusal-" (action) } { (f.text) }
            }
        }
    };
    let approver = who.may(s, Role::Approver, None);
    let actions: Vec<(&str, &str, bool)> = vec![
        (
            "nominate",
            "Nominate",
            approver && r.state == LifecycleState::Registered,
        ),
        (
            "approve",
            "Approve",
            approver
                && (r.state == LifecycleState::Candidate
                    || (r.needs_reapproval && r.state == LifecycleState::Approved)),
        ),
        (
            "reject",
            "Reject",
            approver && r.state == LifecycleState::Candidate,
        ),
        (
            "retire",
            "Retire",
            who.may(s, Role::Admin, None)
                && !matches!(r.state, LifecycleState::Retired | LifecycleState::Rejected),
        ),
    ];
    let may_promote = who.may_somewhere(s, Role::Deployer)
        && matches!(r.state, LifecycleState::Approved | LifecycleState::Active);
    // A refusal of a control the page does not offer (a post made anyway) shows on top.
    let offered = |a: &str| {
        actions.iter().any(|(x, _, on)| *x == a && *on) || (a == "promote" && may_promote)
    };
    let body = html! {
        @if let Some(n) = notice {
            p.notice role="status" #notice { (notice_text(n)) }
        }
        @if let Some(f) = refusal.as_ref().filter(|f| !offered(f.action)) {
            p.refusal role="alert" id={ "refusal-" (f.action) } { (f.text) }
        }
        p {
            span.state #lifecycle-state { (state_name(r.state)) }
            @if r.needs_reapproval { " · needs a fresh approval after an automated rollback" }
            " · " (type_name(&b.kind)) " · published by " strong { (r.submitted_by) }
            " at " (r.registered_at_utc)
            " · " a href={ "/ui/compare?bundle_id=" (urlencode(b.bundle_id.as_str())) "&b=" (urlencode(&b.bundle_version.to_string())) } { "Compare with another version" }
        }
        section #manifest aria-labelledby="h-manifest" {
            h2 #h-manifest { "Manifest" }
            table {
                tbody {
                    tr { th scope="row" { "Digest" } td.mono { (r.bundle_digest) } }
                    tr { th scope="row" { "Config hash" } td.mono { (b.config_hash) } }
                    tr { th scope="row" { "Training run" } td { (b.provenance.training_run_id) } }
                    tr { th scope="row" { "Evaluation report" } td { (reference(&b.provenance.evaluation_report_ref)) } }
                    tr { th scope="row" { "Dataset manifests" } td { @for d in &b.provenance.dataset_manifest_refs { (reference(d)) br; } } }
                    @for (k, val) in &b.metadata {
                        tr { th scope="row" { "metadata." (k) } td { (val) } }
                    }
                }
            }
            h2 { "Artifacts" }
            table #artifacts {
                thead { tr { th scope="col" { "Name" } th scope="col" { "URI" } th scope="col" { "SHA-256" } th scope="col" { "Bytes" } } }
                tbody { @for a in &b.artifacts { tr { td { (a.name) } td.mono { (a.uri) } td.mono { (a.sha256) } td { (a.size_bytes) } } } }
            }
            h2 { "Compatibility needs" }
            p { "Feature groups: "
                @for f in &b.compatibility.feature_groups { code { (f.name) " v" (f.version) } " " }
            }
            p { "Schema versions: " @for v in &b.compatibility.schema_versions { code { (v) } " " } }
        }
        section #receipt aria-labelledby="h-receipt" {
            h2 #h-receipt { "Gate receipt" }
            p {
                "Gate " strong { (r.gate_receipt.gate_name) } ", receipt " code { (r.gate_receipt.receipt_id) }
                ", verdict " (type_name(&r.gate_receipt.verdict)) ", evaluated " (r.gate_receipt.evaluated_at_utc) "."
            }
            @match &d.receipt_now {
                Ok(Some(key)) => p.ok #receipt-status { "Signature verified now with gate key " code { (key) } ", and the receipt names this bundle's digest." },
                Ok(None) => p.bad #receipt-status { "Unsigned receipt: accepted only because this registry runs in unsigned-dev mode. Not verified." },
                Err(e) => p.bad #receipt-status { "Not verified now: " (e) " It was verified when the bundle was registered." },
            }
            @if !r.gate_receipt.evidence_refs.is_empty() {
                p { "Evidence: " @for e in &r.gate_receipt.evidence_refs { (reference(e)) " " } }
            }
        }
        section #bindings aria-labelledby="h-bindings" {
            h2 #h-bindings { "Where it is bound now" }
            @if d.bound.is_empty() {
                p { "Not bound in any scope you can read." }
            } @else {
                ul { @for (sc, _) in &d.bound {
                    li { a href=(scope_url(&sc.environment, &sc.tenant_id, &b.bundle_id)) { (sc.environment) " / " (sc.tenant_id) } " · " (sc.slot.as_str()) }
                } }
            }
        }
        section #actions aria-labelledby="h-actions" {
            h2 #h-actions { "Actions" }
            @if !actions.iter().any(|a| a.2) && !may_promote {
                p.muted #no-actions { "Your grants offer no action on this version in its state." }
            }
            @for (action, label, offered) in &actions {
                @if *offered {
                    form method="post" action={ (version_url(&b.bundle_id, &b.bundle_version)) "/" (action) } id={ "form-" (action) } {
                        (csrf_field(who))
                        label for={ "reason-" (action) } { (label) " — reason" }
                        input type="text" name="reason" id={ "reason-" (action) } required maxlength="1000";
                        button type="submit" id={ "do-" (action) } { (label) }
                        (refused(action))
                    }
                }
            }
            @if may_promote {
                form #form-promote method="post" action={ (version_url(&b.bundle_id, &b.bundle_version)) "/dry-run" } {
                    (csrf_field(who))
                    fieldset {
                        legend { "Promote (a dry run is shown first)" }
                        label for="promote-env" { "Environment" }
                        input #promote-env type="text" name="environment" required list="envs";
                        datalist #envs { @for e in &d.environments { option value=(e) {} } }
                        label for="promote-tenant" { "Tenant" }
                        input #promote-tenant type="text" name="tenant_id" value="*" required;
                        label for="promote-slot" { "Slot" }
                        select #promote-slot name="slot" { option value="PRIMARY" { "PRIMARY" } option value="DEGRADE" { "DEGRADE" } }
                        label for="reason-promote" { "Reason" }
                        input #reason-promote type="text" name="reason" required maxlength="1000";
                        button #do-dry-run type="submit" { "Dry run" }
                    }
                    (refused("promote"))
                }
            }
        }
        section #timeline aria-labelledby="h-timeline" {
            h2 #h-timeline { "Timeline" }
            (events_table(&d.timeline, "timeline-events"))
        }
    };
    page(
        status,
        &format!("{}@{}", b.bundle_id, b.bundle_version),
        Some(who),
        body,
    )
}

fn notice_text(code: &str) -> &'static str {
    match code {
        "nominate" => "Nominated: the command was accepted and recorded.",
        "approve" => "Approved: the command was accepted and recorded.",
        "reject" => "Rejected: the command was accepted and recorded.",
        "retire" => "Retired: the command was accepted and recorded.",
        "promote" => "Promoted: the command was accepted and recorded.",
        "rollback" => "Rolled back: the command was accepted and recorded.",
        "noop" => "Nothing to change: that already holds (recorded as a no-op).",
        "pending" => "Submitted: the result is not in the view yet; reload in a moment.",
        _ => "Done.",
    }
}

/// A provenance or evidence reference: a link when it is an http(s) URL, text otherwise
/// (never a `javascript:` or other scheme link).
fn reference(r: &str) -> Markup {
    html! {
        @if r.starts_with("https://") || r.starts_with("http://") {
            a href=(r) rel="noopener noreferrer" { (r) }
        } @else {
            span.mono { (r) }
        }
    }
}

/// A table of events: what, who, why, and the outcome.
fn events_table(events: &[RegistryEvent], id: &str) -> Markup {
    html! {
        @if events.is_empty() {
            p { "No events you can read." }
        } @else {
            table id=(id) {
                thead { tr {
                    th scope="col" { "Seq" } th scope="col" { "When" } th scope="col" { "Event" }
                    th scope="col" { "Bundle" } th scope="col" { "Scope" } th scope="col" { "Actor" }
                    th scope="col" { "Reason" } th scope="col" { "Outcome" }
                } }
                tbody {
                    @for e in events {
                        tr.rollback[e.event_type == RegistryEventType::BundleRolledBack] {
                            td { (type_name(&e.log)) "/" (e.partition) "/" (e.seq) }
                            td { (e.observed_at_utc) }
                            td.state { (type_name(&e.event_type)) }
                            td { @if let (Some(i), Some(v)) = (&e.bundle_id, &e.bundle_version) { a href=(version_url(i, v)) { (i) "@" (v) } } }
                            td { @if let Some(sc) = &e.scope { (sc.environment) "/" (sc.tenant_id) " " (sc.slot.as_str()) } }
                            td {
                                @if let Some(a) = &e.actor { (a) }
                                @if let Some(via) = &e.via { span.muted { " via " (via) } }
                                @if e.autopilot.as_ref().is_some_and(|d| d.trigger.is_some()) { span.muted { " (automated)" } }
                            }
                            td { @if let Some(r) = &e.reason { (r) } }
                            td {
                                (type_name(&e.outcome))
                                @if let Some(err) = &e.error { " " span.bad { (err.code.as_str()) } ": " (err.message) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct CompareQuery {
    #[serde(default)]
    bundle_id: Option<String>,
    #[serde(default)]
    a: Option<String>,
    #[serde(default)]
    b: Option<String>,
    #[serde(default)]
    environment: Option<String>,
}

/// The rows of a manifest diff: (field, a's value, b's value).
fn manifest_rows(r: &BundleRecord) -> Vec<(String, String)> {
    let b = &r.bundle;
    let mut rows = vec![
        ("kind".to_owned(), type_name(&b.kind)),
        ("state".to_owned(), state_name(r.state)),
        ("digest".to_owned(), r.bundle_digest.clone()),
        ("config_hash".to_owned(), b.config_hash.clone()),
        ("gate".to_owned(), r.gate_receipt.gate_name.clone()),
        (
            "provenance.training_run_id".to_owned(),
            b.provenance.training_run_id.clone(),
        ),
        (
            "provenance.evaluation_report_ref".to_owned(),
            b.provenance.evaluation_report_ref.clone(),
        ),
        (
            "provenance.dataset_manifest_refs".to_owned(),
            b.provenance.dataset_manifest_refs.join(", "),
        ),
    ];
    for a in &b.artifacts {
        rows.push((
            format!("artifact.{}", a.name),
            format!("{} sha256:{}", a.uri, a.sha256),
        ));
    }
    for f in &b.compatibility.feature_groups {
        rows.push((
            format!("feature_group.{}", f.name),
            format!("v{}", f.version),
        ));
    }
    rows.push((
        "schema_versions".to_owned(),
        b.compatibility.schema_versions.join(", "),
    ));
    for (k, v) in &b.metadata {
        rows.push((format!("metadata.{k}"), v.clone()));
    }
    rows
}

async fn compare(
    State(s): State<AppState>,
    Viewer(who): Viewer,
    Query(q): Query<CompareQuery>,
) -> Response {
    let parsed = (|| {
        Ok::<_, String>((
            parse::<BundleId>("bundle_id", given(&q.bundle_id))?,
            parse::<BundleVersion>("version a", given(&q.a))?,
            parse::<BundleVersion>("version b", given(&q.b))?,
            parse::<Environment>("environment", given(&q.environment))?,
        ))
    })();
    let (id, a, b, env) = match parsed {
        Ok(p) => p,
        Err(e) => return bad_input(&who, "Compare versions", &e),
    };
    let form = html! {
        form #compare-form method="get" action="/ui/compare" {
            label for="c-id" { "Family" }
            input #c-id type="text" name="bundle_id" value=[given(&q.bundle_id)] required;
            label for="c-a" { "Version A" }
            input #c-a type="text" name="a" value=[given(&q.a)] required;
            label for="c-b" { "Version B" }
            input #c-b type="text" name="b" value=[given(&q.b)] required;
            label for="c-env" { "Dry-run promotion of B to" }
            input #c-env type="text" name="environment" value=[given(&q.environment)];
            button #do-compare type="submit" { "Compare" }
        }
    };
    let (Some(id), Some(a), Some(b)) = (id, a, b) else {
        return page(StatusCode::OK, "Compare versions", Some(&who), form);
    };
    let (ia, ib, ida) = (a.clone(), b.clone(), id.clone());
    let read = s
        .read(move |v| Ok((v.bundle(&ida, &ia)?, v.bundle(&ida, &ib)?, v.catalog()?)))
        .await;
    let (ra, rb, (_, catalog)) = match read {
        Ok(x) => x,
        Err(e) => return failed(&who, &e),
    };
    let (Some(ra), Some(rb)) = (ra, rb) else {
        return bad_input(
            &who,
            "Compare versions",
            "one of the two versions is not registered",
        );
    };
    let dry = match &env {
        Some(e) => Some(
            super::actions::dry_run_promotion(
                &s,
                &who,
                &rb,
                e,
                &TenantId::any(),
                Slot::Primary,
                "compare: dry run",
            )
            .await,
        ),
        None => None,
    };
    let rows_a: std::collections::BTreeMap<_, _> = manifest_rows(&ra).into_iter().collect();
    let rows_b: std::collections::BTreeMap<_, _> = manifest_rows(&rb).into_iter().collect();
    let keys: BTreeSet<&String> = rows_a.keys().chain(rows_b.keys()).collect();
    let body = html! {
        (form)
        table #diff {
            caption.muted { "Changed rows are marked" }
            thead { tr { th scope="col" { "Field" } th scope="col" { (id) "@" (a) } th scope="col" { (id) "@" (b) } } }
            tbody {
                @for k in keys {
                    @let (va, vb) = (rows_a.get(k), rows_b.get(k));
                    tr.diff-changed[va != vb] {
                        th scope="row" { (k) @if va != vb { span.muted { " (changed)" } } }
                        td.mono { @if let Some(x) = va { (x) } @else { span.muted { "—" } } }
                        td.mono { @if let Some(x) = vb { (x) } @else { span.muted { "—" } } }
                    }
                }
            }
        }
        @if let Some(e) = &env {
            h2 { "Catalog check of " (id) "@" (b) " against " (e) }
            @match catalog.iter().find(|c| &c.environment == e) {
                None => p.bad #catalog-check { "No catalog is set for " (e) "." },
                Some(c) => {
                    @let missing: Vec<String> = rb.bundle.compatibility.feature_groups.iter()
                        .filter(|f| !c.feature_groups.contains(f))
                        .map(|f| format!("{} v{}", f.name, f.version)).collect();
                    @let missing_schemas: Vec<&String> = rb.bundle.compatibility.schema_versions.iter()
                        .filter(|v| !c.schema_versions.contains(v)).collect();
                    @if missing.is_empty() && missing_schemas.is_empty() {
                        p.ok #catalog-check { "The catalog serves every feature group and schema version it needs." }
                    } @else {
                        p.bad #catalog-check {
                            "Missing from the catalog: "
                            @for m in &missing { code { (m) } " " }
                            @for m in &missing_schemas { code { "schema " (m) } " " }
                            "(posture " (type_name(&c.posture)) ")."
                        }
                    }
                }
            }
            @if let Some(d) = &dry { (super::actions::dry_run_markup(&who, d, None)) }
        }
    };
    page(StatusCode::OK, "Compare versions", Some(&who), body)
}

#[derive(Debug, Default, Deserialize)]
struct ScopesQuery {
    #[serde(default)]
    bundle_id: Option<String>,
}

async fn scopes(
    State(s): State<AppState>,
    Viewer(who): Viewer,
    Query(q): Query<ScopesQuery>,
) -> Response {
    let id = match parse::<BundleId>("bundle_id", given(&q.bundle_id)) {
        Ok(i) => i,
        Err(e) => return bad_input(&who, "Scopes", &e),
    };
    let rows = match &id {
        Some(i) => {
            let (i, roles, enforce) = (i.clone(), who.principal.roles.clone(), s.grants.enforce);
            match s
                .read(move |v| {
                    let access = ReadAccess::new(&roles, enforce);
                    Ok(v.slots(&i, None)?
                        .into_iter()
                        .filter(|(sc, _)| access.may_read_scope(&sc.environment, &sc.tenant_id))
                        .collect::<Vec<_>>())
                })
                .await
            {
                Ok(r) => r,
                Err(e) => return failed(&who, &e),
            }
        }
        None => Vec::new(),
    };
    let body = html! {
        form #scope-search method="get" action="/ui/scopes" {
            label for="s-id" { "Family" }
            input #s-id type="text" name="bundle_id" value=[given(&q.bundle_id)] required;
            button type="submit" { "List its scopes" }
        }
        @if let Some(i) = &id {
            @if rows.is_empty() { p { "No scope of " (i) " you can read binds anything." } }
            @else {
                table #scopes {
                    thead { tr { th scope="col" { "Environment" } th scope="col" { "Tenant" } th scope="col" { "Slot" } th scope="col" { "Bound" } } }
                    tbody { @for (sc, r) in &rows { tr {
                        td { a href=(scope_url(&sc.environment, &sc.tenant_id, i)) { (sc.environment) } }
                        td { (sc.tenant_id) } td { (sc.slot.as_str()) }
                        td { @if let Some(v) = r.bound() { (v) } @else { span.muted { "nothing" } } }
                    } } }
                }
            }
        }
    };
    page(StatusCode::OK, "Scopes", Some(&who), body)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ScopeQuery {
    #[serde(default)]
    as_of: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

/// A `datetime-local` value (UTC, minutes or seconds) or an RFC 3339 time.
fn parse_time(s: &str) -> Result<Timestamp, String> {
    let full = match s.len() {
        16 => format!("{s}:00Z"),
        19 => format!("{s}Z"),
        _ => s.to_owned(),
    };
    full.parse::<Timestamp>()
        .map_err(|e| format!("as_of {s:?} is not a time: {e}"))
}

async fn scope(
    State(s): State<AppState>,
    Viewer(who): Viewer,
    Path((env, tenant, id)): Path<(String, String, String)>,
    Query(q): Query<ScopeQuery>,
) -> Response {
    scope_page(&s, &who, &env, &tenant, &id, &q, None, StatusCode::OK).await
}

/// The scope page, optionally with a refusal next to its rollback control.
#[allow(clippy::too_many_arguments)]
pub(super) async fn scope_page(
    s: &AppState,
    who: &Session,
    env: &str,
    tenant: &str,
    id: &str,
    q: &ScopeQuery,
    refusal: Option<String>,
    status: StatusCode,
) -> Response {
    let parsed = (|| {
        Ok::<_, String>((
            env.parse::<Environment>().map_err(|e| e.to_string())?,
            tenant.parse::<TenantId>().map_err(|e| e.to_string())?,
            id.parse::<BundleId>().map_err(|e| e.to_string())?,
            given(&q.as_of).map(parse_time).transpose()?,
        ))
    })();
    let (env, tenant, id, as_of) = match parsed {
        Ok(p) => p,
        Err(e) => return bad_input(who, "Scope", &e),
    };
    if !ReadAccess::new(&who.principal.roles, s.grants.enforce).may_read_scope(&env, &tenant) {
        return page(
            StatusCode::FORBIDDEN,
            "Scope",
            Some(who),
            html! { p.refusal role="alert" { "Your grants do not let you read " (env) "/" (tenant) " (FORBIDDEN)." } },
        );
    }
    let (e2, t2, i2) = (env.clone(), tenant.clone(), id.clone());
    let read = s
        .read(move |v| {
            let slots: Vec<_> = v
                .slots(&i2, Some(e2.as_str()))?
                .into_iter()
                .filter(|(sc, _)| sc.tenant_id == t2)
                .collect();
            let mut history = Vec::new();
            for slot in [Slot::Primary, Slot::Degrade, Slot::Canary] {
                let sc = ScopeRef {
                    environment: e2.clone(),
                    tenant_id: t2.clone(),
                    slot,
                };
                let page = v.history(&i2, &sc, None, 1000)?;
                history.extend(page.items.into_iter().map(|h| (slot, h)));
            }
            history.sort_by_key(|(_, h)| (h.observed_at_utc, h.seq));
            history.reverse();
            let query = |degrade| ResolveQuery {
                environment: e2.clone(),
                bundle_id: i2.clone(),
                tenant_id: (!t2.is_any()).then(|| t2.clone()),
                degrade,
                routing_key: None,
            };
            let at = as_of.map(|t| {
                (
                    resolve_line(v, &query(false), ResolveAt::Time(t)),
                    resolve_line(v, &query(true), ResolveAt::Time(t)),
                )
            });
            let now = resolve_line(v, &query(false), ResolveAt::Now);
            Ok((slots, history, at, now))
        })
        .await;
    let (slots, history, at, now) = match read {
        Ok(x) => x,
        Err(e) => return failed(who, &e),
    };
    let may_rollback = who.may(s, Role::Deployer, Some(&env));
    let url = scope_url(&env, &tenant, &id);
    let body = html! {
        @if let Some(n) = &q.done { p.notice role="status" #notice { (notice_text(n)) } }
        section #current aria-labelledby="h-current" {
            h2 #h-current { "Bound now" }
            table {
                thead { tr { th scope="col" { "Slot" } th scope="col" { "Version" } th scope="col" { "Since" } th scope="col" { "Canary share" } th scope="col" { "Rollback stack (newest last)" } } }
                tbody {
                    @for (sc, r) in &slots {
                        tr {
                            td { (sc.slot.as_str()) }
                            td { @if let Some(v) = r.bound() { a href=(version_url(&id, v)) { (v) } } @else { span.muted { "nothing" } } }
                            td { @if let Some(t) = r.changed_at_utc { (t) } }
                            td { @if let Some(c) = &r.canary { (format!("{:.2} %", f64::from(c.share_bp) / 100.0)) } }
                            td.mono { @for v in &r.stack { (v) " " } }
                        }
                    }
                    @if slots.is_empty() { tr { td colspan="5" { "Nothing is bound in this exact scope." } } }
                }
            }
            p #resolve-now { "Resolve for this tenant now: " (now) }
        }
        section aria-labelledby="h-asof" {
            h2 #h-asof { "What was active at a past moment" }
            form #as-of-form method="get" action=(url) {
                label for="as-of" { "Moment (UTC)" }
                input #as-of type="datetime-local" step="1" name="as_of" value=[given(&q.as_of)];
                button #apply-as-of type="submit" { "Show" }
            }
            @if let (Some(t), Some((p, d))) = (&as_of, &at) {
                div #as-of-result role="status" {
                    p { "At " (t) ": PRIMARY → " (p) }
                    p { "Degrade mode → " (d) }
                }
            }
        }
        @if may_rollback {
            section aria-labelledby="h-rollback" {
                h2 #h-rollback { "Roll back" }
                form #form-rollback method="post" action={ (url) "/rollback" } {
                    (csrf_field(who))
                    label for="rollback-slot" { "Slot" }
                    select #rollback-slot name="slot" { option value="PRIMARY" { "PRIMARY" } option value="DEGRADE" { "DEGRADE" } }
                    label for="reason-rollback" { "Reason" }
                    input #reason-rollback type="text" name="reason" required maxlength="1000";
                    button #do-rollback type="submit" { "Roll back to the previous version" }
                    @if let Some(r) = &refusal { p.refusal role="alert" #refusal-rollback { (r) } }
                }
            }
        }
        section #history aria-labelledby="h-history" {
            h2 #h-history { "Activation history (newest first)" }
            table #history-rows {
                thead { tr { th scope="col" { "When" } th scope="col" { "Slot" } th scope="col" { "Event" } th scope="col" { "Version" } th scope="col" { "Previous" } th scope="col" { "Actor" } th scope="col" { "Reason" } } }
                tbody {
                    @for (slot, h) in &history {
                        @let rollback = h.event_type == RegistryEventType::BundleRolledBack;
                        tr.rollback[rollback] {
                            td { (h.observed_at_utc) }
                            td { (slot.as_str()) }
                            td.state { @if rollback { "ROLLBACK" } @else { (type_name(&h.event_type)) } }
                            td { a href=(version_url(&id, &h.bundle_version)) { (h.bundle_version) } }
                            td { @if let Some(p) = &h.previous_version { (p) } }
                            td { @if let Some(a) = &h.actor { (a) } }
                            td { @if let Some(r) = &h.reason { (r) } }
                        }
                    }
                }
            }
            p { a href={ "/ui/audit?bundle_id=" (urlencode(id.as_str())) } { "Audit log of " (id) } }
        }
    };
    page(
        status,
        &format!("Scope {env} / {tenant} / {id}"),
        Some(who),
        body,
    )
}

/// One resolve answer in words.
fn resolve_line(v: &View, q: &ResolveQuery, at: ResolveAt) -> String {
    match v.resolve(q, at) {
        Ok(Ok(r)) => format!(
            "{}@{} (rule {}, slot {} of tenant {}, since {})",
            q.bundle_id,
            r.record.bundle.bundle_version,
            type_name(&r.rule),
            r.slot.as_str(),
            r.tenant_id,
            r.activation.observed_at_utc
        ),
        Ok(Err(rej)) => format!("nothing was active ({})", rej.code.as_str()),
        Err(e) => format!("could not read the view: {e}"),
    }
}

#[derive(Debug, Default, Deserialize)]
struct AuditQuery {
    #[serde(default)]
    bundle_id: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

/// How the events shown verify: each event's hash and registry signature, and each
/// event's link to the one before it in its partition when both are shown.
struct Verification {
    checked: usize,
    links: usize,
    failures: Vec<String>,
}

fn verify(keys: &crate::domain::trust::KeySet, events: &[RegistryEvent]) -> Verification {
    let mut failures = Vec::new();
    let mut links = 0;
    let mut last: std::collections::HashMap<(crate::domain::event::LogId, i32), (u64, String)> =
        std::collections::HashMap::new();
    for e in events {
        if let Err(f) = e.authenticate(keys) {
            failures.push(format!(
                "{}/{}/{}: {f}",
                type_name(&e.log),
                e.partition,
                e.seq
            ));
        }
        if let Some((seq, hash)) = last.get(&(e.log, e.partition))
            && seq + 1 == e.seq
        {
            links += 1;
            if &e.prev_hash != hash {
                failures.push(format!(
                    "{}/{}/{}: prev_hash does not match the hash of seq {seq}",
                    type_name(&e.log),
                    e.partition,
                    e.seq
                ));
            }
        }
        last.insert((e.log, e.partition), (e.seq, e.hash.clone()));
    }
    Verification {
        checked: events.len(),
        links,
        failures,
    }
}

async fn audit(
    State(s): State<AppState>,
    Viewer(who): Viewer,
    Query(q): Query<AuditQuery>,
) -> Response {
    let parsed = (|| {
        Ok::<_, String>((
            parse::<BundleId>("bundle_id", given(&q.bundle_id))?,
            parse::<crate::domain::Actor>("actor", given(&q.actor))?,
            parse_enum::<RegistryEventType>("event_type", given(&q.event_type))?,
            given(&q.from).map(parse_time).transpose()?,
            given(&q.to).map(parse_time).transpose()?,
        ))
    })();
    let (family, actor, event_type, from, to) = match parsed {
        Ok(p) => p,
        Err(e) => return bad_input(&who, "Audit log", &e),
    };
    let (roles, me, enforce) = (
        who.principal.roles.clone(),
        who.principal.actor.clone(),
        s.grants.enforce,
    );
    let cursor = given(&q.cursor).map(str::to_owned);
    let read = s
        .read(move |v| {
            let access = ReadAccess::new(&roles, enforce);
            Ok(
                v.events(family.as_ref(), cursor.as_deref(), 100, 10_000, |e| {
                    access.may_read_event(&me, e)
                        && actor.as_ref().is_none_or(|a| e.actor.as_ref() == Some(a))
                        && event_type.is_none_or(|t| e.event_type == t)
                        && from.is_none_or(|f| e.observed_at_utc >= f)
                        && to.is_none_or(|t| e.observed_at_utc <= t)
                })?,
            )
        })
        .await;
    let list = match read {
        Ok(p) => p,
        Err(e) => return failed(&who, &e),
    };
    let ver = verify(&s.console.keys, &list.items);
    let next = list
        .next_cursor
        .as_ref()
        .filter(|_| list.at_end != Some(true))
        .map(|c| {
            let mut qs = form_urlencoded::Serializer::new(String::new());
            for (k, v) in [
                ("bundle_id", &q.bundle_id),
                ("actor", &q.actor),
                ("event_type", &q.event_type),
                ("from", &q.from),
                ("to", &q.to),
            ] {
                if let Some(v) = given(v) {
                    qs.append_pair(k, v);
                }
            }
            qs.append_pair("cursor", c);
            qs.finish()
        });
    let body = html! {
        form.filters #audit-filters method="get" action="/ui/audit" role="search" {
            label for="a-id" { "Family" }
            input #a-id type="text" name="bundle_id" value=[given(&q.bundle_id)];
            label for="a-actor" { "Actor" }
            input #a-actor type="text" name="actor" value=[given(&q.actor)];
            label for="a-type" { "Event type" }
            input #a-type type="text" name="event_type" value=[given(&q.event_type)] placeholder="e.g. BUNDLE_PROMOTED";
            label for="a-from" { "From (UTC)" }
            input #a-from type="datetime-local" step="1" name="from" value=[given(&q.from)];
            label for="a-to" { "To (UTC)" }
            input #a-to type="datetime-local" step="1" name="to" value=[given(&q.to)];
            button #apply-audit type="submit" { "Filter" }
        }
        @if ver.failures.is_empty() {
            p.ok #audit-verification role="status" {
                "Verified: " (ver.checked) " events shown, each with its hash and the registry's signature, and "
                (ver.links) " chain links between consecutive events shown."
            }
        } @else {
            div.refusal #audit-verification role="alert" {
                p { "NOT verified: " (ver.failures.len()) " of the " (ver.checked) " events shown fail." }
                ul { @for f in &ver.failures { li { (f) } } }
            }
        }
        (events_table(&list.items, "events"))
        nav.pager aria-label="Pages" {
            @if let Some(n) = &next { a #next-page href={ "/ui/audit?" (n) } { "Next page" } }
        }
    };
    page(StatusCode::OK, "Audit log", Some(&who), body)
}

async fn catalog(State(s): State<AppState>, Viewer(who): Viewer) -> Response {
    let read = s.read(|v| Ok(v.catalog()?)).await;
    let (version, mut entries) = match read {
        Ok(x) => x,
        Err(e) => return failed(&who, &e),
    };
    let access = ReadAccess::new(&who.principal.roles, s.grants.enforce);
    entries.retain(|e| access.may_read_environment(&e.environment));
    let body = html! {
        p { "Catalog version " (version) "." }
        @if entries.is_empty() { p { "No catalog you can read is set." } }
        @for e in &entries {
            section id={ "catalog-" (e.environment) } {
                h2 { (e.environment) " · posture " (type_name(&e.posture)) }
                p { "Feature groups: " @for f in &e.feature_groups { code { (f.name) " v" (f.version) } " " } }
                p { "Schema versions: " @for v in &e.schema_versions { code { (v) } " " } }
                @if !e.required_gates.is_empty() {
                    p { "Required gates: " @for g in &e.required_gates { code { (g) } " " } }
                }
            }
        }
    };
    page(StatusCode::OK, "Catalog", Some(&who), body)
}

async fn operations(State(s): State<AppState>, Viewer(who): Viewer) -> Response {
    let now = crate::log::now_ms();
    let ready = s.status.readiness(s.http.ready_bounds(), now);
    let fresh = s.status.freshness(now);
    let version = s.view.version();
    let last = s
        .read(|v| {
            let mut best: Option<RegistryEvent> = None;
            for p in 0..v.partitions() {
                for log in [
                    crate::domain::event::LogId::Events,
                    crate::domain::event::LogId::Catalog,
                ] {
                    let Some(pos) = v.position(log, p)? else {
                        continue;
                    };
                    if let Some(e) = v.event_at(log, p, pos.seq)?
                        && best
                            .as_ref()
                            .is_none_or(|b| e.observed_at_utc > b.observed_at_utc)
                    {
                        best = Some(e);
                    }
                }
            }
            Ok(best)
        })
        .await;
    let body = html! {
        table {
            tbody {
                tr { th scope="row" { "Readiness" } td #readiness {
                    @match &ready {
                        Ok(_) => span.ok { "ready" },
                        Err(e) => span.bad { "not ready: " (e) },
                    }
                } }
                tr { th scope="row" { "View lag" } td #view-lag {
                    @match fresh.lag_events { Some(l) => { (l) " records not yet applied" }, None => "not measured yet" }
                    @if let Some(a) = fresh.age_ms { " · last held the whole log " (a) " ms ago" }
                } }
                tr { th scope="row" { "View version" } td.mono { (version.token()) } }
                tr { th scope="row" { "Trust mode" } td { (s.trust_mode.as_str()) } }
                tr { th scope="row" { "Last applied event" } td #last-event {
                    @match &last {
                        Ok(Some(e)) => {
                            (type_name(&e.log)) "/" (e.partition) "/" (e.seq) " · " (type_name(&e.event_type))
                            " · " (e.observed_at_utc)
                            @if let Some(a) = &e.actor { " · " (a) }
                        },
                        Ok(None) => "none yet",
                        Err(e) => { "could not read: " (e.0.message) },
                    }
                } }
            }
        }
    };
    page(StatusCode::OK, "Operations", Some(&who), body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::state::infallible;
    use crate::domain::{CatalogState, Decision, PartitionState, decide};
    use crate::testkit;

    /// Three signed events of one partition, as the processor appends them.
    fn signed_events() -> Vec<RegistryEvent> {
        let grants = crate::domain::Grants {
            enforce: false,
            ..crate::domain::Grants::default()
        };
        let (mut part, cat) = (PartitionState::new(0), CatalogState::new());
        let mut out = Vec::new();
        for (i, v) in ["1.0.0", "1.1.0", "1.2.0"].iter().enumerate() {
            let input = testkit::input(testkit::publish("mf", "fam", v), i as i64);
            let Decision::Append(mut e) =
                infallible(decide::route(&part, &part.chain, &cat, &grants, &input))
            else {
                panic!("appends");
            };
            e.sign(&testkit::registry_signer());
            part.apply(&e).unwrap();
            out.push(e);
        }
        out
    }

    #[test]
    fn the_audit_page_verifies_hashes_signatures_and_links() {
        let keys = testkit::registry_keys();
        let events = signed_events();
        let ok = verify(&keys, &events);
        assert_eq!((ok.checked, ok.links, ok.failures.len()), (3, 2, 0));
        // A changed field breaks its hash.
        let mut tampered = events.clone();
        tampered[1].reason = Some("forged".into());
        assert_eq!(verify(&keys, &tampered).failures.len(), 1);
        // A correctly hashed event that is not the registry's fails its signature.
        let mut forged = events.clone();
        forged[2].reason = Some("forged".into());
        forged[2].hash = forged[2].compute_hash();
        forged[2].sign(&testkit::gateway_signer());
        let v = verify(&keys, &forged);
        assert_eq!(v.failures.len(), 1, "{:?}", v.failures);
        // A broken link between two shown events is reported even when each is signed.
        let mut relinked = events;
        relinked[2].prev_hash = "00".repeat(32);
        relinked[2].hash = relinked[2].compute_hash();
        relinked[2].sign(&testkit::registry_signer());
        let v = verify(&keys, &relinked);
        assert!(
            v.failures.iter().any(|f| f.contains("prev_hash")),
            "{:?}",
            v.failures
        );
    }

    #[test]
    fn datetime_local_values_are_utc_times() {
        assert_eq!(
            parse_time("2026-12-02T13:45").unwrap().to_string(),
            "2026-12-02T13:45:00.000Z"
        );
        assert_eq!(
            parse_time("2026-12-02T13:45:30").unwrap().to_string(),
            "2026-12-02T13:45:30.000Z"
        );
        assert!(parse_time("yesterday").is_err());
    }
}
