//! The console's forms that act: lifecycle steps (nominate, approve, reject, retire), the
//! dry run that comes before every promotion, the promotion itself, and rollback. Each
//! checks the session's CSRF token, then goes through the API's own command path
//! ([`crate::api::commands::submit_as`]): the command is signed by the API gateway for the
//! signed-in actor, produced to the log, and decided by the processor, so the console can
//! do nothing the API could not. A refusal comes back in words next to its control.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::pages::{self, Refusal, scope_url, version_url};
use super::{Attempt, CsrfForm, Posted, Session, csrf_field, explain, page};
use crate::api::AppState;
use crate::api::commands::{DryRunResponse, dry_run, submit_as, typed_command};
use crate::api::error::{ApiError, status_of};
use crate::domain::event::Outcome;
use crate::domain::state::BundleRecord;
use crate::domain::{BundleId, BundleVersion, Environment, ErrorCode, Slot, TenantId};

/// The acting routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/ui/bundles/{bundle_id}/versions/{version}/{action}",
            post(act_on_version),
        )
        .route(
            "/ui/scopes/{environment}/{tenant_id}/{bundle_id}/rollback",
            post(rollback),
        )
}

/// Every field any console form posts; each action reads the ones it needs.
#[derive(Debug, Default, Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    slot: Option<String>,
}

impl CsrfForm for ActionForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

impl ActionForm {
    fn reason(&self) -> Option<String> {
        self.reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
    }

    fn degrade(&self) -> bool {
        self.slot.as_deref() == Some("DEGRADE")
    }

    /// The promotion target the form names.
    fn target(&self) -> Result<(Environment, TenantId, Slot), String> {
        let env = self
            .environment
            .as_deref()
            .unwrap_or_default()
            .trim()
            .parse::<Environment>()
            .map_err(|e| format!("environment: {e}"))?;
        let tenant = self
            .tenant_id
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or("*")
            .parse::<TenantId>()
            .map_err(|e| format!("tenant: {e}"))?;
        let slot = if self.degrade() {
            Slot::Degrade
        } else {
            Slot::Primary
        };
        Ok((env, tenant, slot))
    }
}

/// The verb a refusal names for an action.
fn verb(action: &str) -> &str {
    match action {
        "dry-run" => "promote",
        other => other,
    }
}

async fn act_on_version(
    State(s): State<AppState>,
    Path((id, ver, action)): Path<(String, String, String)>,
    Posted(who, f): Posted<ActionForm>,
) -> Response {
    let who = &who;
    let (Ok(id), Ok(ver)) = (id.parse::<BundleId>(), ver.parse::<BundleVersion>()) else {
        return refused_page(who, "that is not a bundle id and version");
    };
    let target = json!({"bundle_id": id, "bundle_version": ver});
    let (command_type, payload) = match action.as_str() {
        "nominate" => ("NOMINATE", target),
        "approve" => ("APPROVE", target),
        "reject" => ("REJECT", target),
        "retire" => ("RETIRE", target),
        "dry-run" | "promote" => {
            let (env, tenant, slot) = match f.target() {
                Ok(t) => t,
                Err(e) => {
                    return again(
                        &s,
                        who,
                        &id,
                        &ver,
                        "promote",
                        format!("{e} (INVALID_PAYLOAD)."),
                    )
                    .await;
                }
            };
            if action == "dry-run" {
                let rec = match s
                    .read({
                        let (id, ver) = (id.clone(), ver.clone());
                        move |view| Ok(view.bundle(&id, &ver)?)
                    })
                    .await
                {
                    Ok(Some(r)) => r,
                    Ok(None) => return refused_page(who, "that version is not registered"),
                    Err(e) => return refused_page(who, &e.0.message),
                };
                let reason = f.reason().unwrap_or_else(|| "dry run".to_owned());
                let d = dry_run_promotion(&s, who, &rec, &env, &tenant, slot, &reason).await;
                return dry_run_page(who, &rec, &d, &env, &tenant, slot, &reason);
            }
            (
                "PROMOTE",
                json!({"bundle_id": id, "bundle_version": ver, "environment": env,
                       "tenant_id": tenant, "degrade": slot == Slot::Degrade}),
            )
        }
        other => return refused_page(who, &format!("there is no console action {other:?}")),
    };
    let Some(reason) = f.reason() else {
        return again(
            &s,
            who,
            &id,
            &ver,
            verb(&action),
            "Give a reason: it is recorded with the event (INVALID_PAYLOAD).".to_owned(),
        )
        .await;
    };
    let body = typed_command(command_type, payload, Some(reason));
    match submit_as(&s, &who.principal, body).await {
        Ok((Some(r), _)) => match (&r.error, r.outcome) {
            (Some(e), _) => {
                let text =
                    refusal_text(&s, who, &id, &ver, verb(&action), e.code, &e.message).await;
                again_with(&s, who, &id, &ver, verb(&action), text, status_of(e.code)).await
            }
            (None, Outcome::Noop | Outcome::Duplicate) => done(&id, &ver, &f, &action, "noop"),
            (None, _) => done(&id, &ver, &f, &action, &action),
        },
        Ok((None, _)) => done(&id, &ver, &f, &action, "pending"),
        Err(e) => {
            let text =
                refusal_text(&s, who, &id, &ver, verb(&action), e.0.code, &e.0.message).await;
            again_with(&s, who, &id, &ver, verb(&action), text, e.status()).await
        }
    }
}

/// Where a successful action leads: a promotion to its scope, anything else back to the
/// version, each with a notice.
fn done(
    id: &BundleId,
    ver: &BundleVersion,
    f: &ActionForm,
    action: &str,
    notice: &str,
) -> Response {
    if action == "promote"
        && let Ok((env, tenant, _)) = f.target()
    {
        return Redirect::to(&format!("{}?done={notice}", scope_url(&env, &tenant, id)))
            .into_response();
    }
    Redirect::to(&format!("{}?done={notice}", version_url(id, ver))).into_response()
}

/// The words of a refusal of `action` on `id@ver`, told to `who`.
async fn refusal_text(
    s: &AppState,
    who: &Session,
    id: &BundleId,
    ver: &BundleVersion,
    action: &str,
    code: ErrorCode,
    message: &str,
) -> String {
    let publisher = s
        .read({
            let (id, ver) = (id.clone(), ver.clone());
            move |v| Ok(v.bundle(&id, &ver)?.map(|r| r.submitted_by))
        })
        .await
        .ok()
        .flatten();
    explain(
        who,
        Attempt {
            verb: action,
            publisher: publisher.as_ref(),
        },
        code,
        message,
    )
}

async fn again(
    s: &AppState,
    who: &Session,
    id: &BundleId,
    ver: &BundleVersion,
    action: &str,
    text: String,
) -> Response {
    again_with(s, who, id, ver, action, text, StatusCode::BAD_REQUEST).await
}

/// The version page again, with `text` next to `action`'s control.
async fn again_with(
    s: &AppState,
    who: &Session,
    id: &BundleId,
    ver: &BundleVersion,
    action: &str,
    text: String,
    status: StatusCode,
) -> Response {
    match pages::version_data(s, who, id.clone(), ver.clone()).await {
        Ok(d) => pages::version_page(s, who, &d, None, Some(Refusal { action, text }), status),
        Err(e) => refused_page(who, &e.0.message),
    }
}

fn refused_page(who: &Session, msg: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Refused",
        Some(who),
        html! { p.refusal role="alert" { (msg) } },
    )
}

/// The dry run of promoting `rec` to a scope, decided as `who` against the view.
pub(super) async fn dry_run_promotion(
    s: &AppState,
    who: &Session,
    rec: &BundleRecord,
    env: &Environment,
    tenant: &TenantId,
    slot: Slot,
    reason: &str,
) -> Result<DryRunResponse, ApiError> {
    let body = typed_command(
        "PROMOTE",
        json!({"bundle_id": rec.bundle.bundle_id, "bundle_version": rec.bundle.bundle_version,
               "environment": env, "tenant_id": tenant, "degrade": slot == Slot::Degrade}),
        Some(reason.to_owned()),
    );
    dry_run(s, &who.principal, body).await
}

/// A dry run's answer in words (`#dry-run-result`).
pub(super) fn dry_run_markup(
    who: &Session,
    d: &Result<DryRunResponse, ApiError>,
    publisher: Option<&crate::domain::Actor>,
) -> Markup {
    let attempt = Attempt {
        verb: "promote",
        publisher,
    };
    html! {
        div #dry-run-result role="status" {
            @match d {
                Ok(r) => {
                    @match (&r.error, r.outcome) {
                        (Some(e), _) => p.refusal { "The promotion would be refused: " (explain(who, attempt, e.code, &e.message)) },
                        (None, Outcome::Noop) => p.notice { "Nothing would change: this version is already bound there (NOOP)." },
                        (None, _) => {
                            p.notice {
                                "The promotion would be accepted."
                                @if let Some(b) = &r.binding {
                                    @if let Some(prev) = &b.previous_version { " It replaces " strong { (prev) } "." }
                                    @else { " Nothing is bound there now." }
                                }
                            }
                        }
                    }
                    @if !r.warnings.is_empty() {
                        ul { @for w in &r.warnings { li.bad { "Warning: " (w) } } }
                    }
                    p.muted { "Decided against view " code { (r.view_version) } "; nothing was written." }
                },
                Err(e) => p.refusal { "The dry run failed: " (explain(who, attempt, e.0.code, &e.0.message)) },
            }
        }
    }
}

/// The page between the promote form and the promotion: the dry run, and a confirm form
/// only when it would be accepted.
fn dry_run_page(
    who: &Session,
    rec: &BundleRecord,
    d: &Result<DryRunResponse, ApiError>,
    env: &Environment,
    tenant: &TenantId,
    slot: Slot,
    reason: &str,
) -> Response {
    let (id, ver) = (&rec.bundle.bundle_id, &rec.bundle.bundle_version);
    let accepted = matches!(d, Ok(r) if r.outcome == Outcome::Accepted);
    let body = html! {
        p { "Promote " strong { (id) "@" (ver) } " to " strong { (env) " / " (tenant) " · " (slot.as_str()) } "?" }
        (dry_run_markup(who, d, Some(&rec.submitted_by)))
        @if accepted {
            form #form-promote-confirm method="post" action={ (version_url(id, ver)) "/promote" } {
                (csrf_field(who))
                input type="hidden" name="environment" value=(env);
                input type="hidden" name="tenant_id" value=(tenant);
                input type="hidden" name="slot" value=(slot.as_str());
                label for="reason-confirm" { "Reason" }
                input #reason-confirm type="text" name="reason" value=(reason) required maxlength="1000";
                button #do-promote type="submit" { "Promote" }
            }
        }
        p { a href=(version_url(id, ver)) { "Back to " (id) "@" (ver) } }
    };
    let status = match d {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status(),
    };
    page(status, "Dry run of a promotion", Some(who), body)
}

async fn rollback(
    State(s): State<AppState>,
    Path((env, tenant, id)): Path<(String, String, String)>,
    Posted(who, f): Posted<ActionForm>,
) -> Response {
    let who = &who;
    let q = pages::ScopeQuery::default();
    let Some(reason) = f.reason() else {
        return pages::scope_page(
            &s,
            who,
            &env,
            &tenant,
            &id,
            &q,
            Some("Give a reason: it is recorded with the event (INVALID_PAYLOAD).".into()),
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    let body = typed_command(
        "ROLLBACK",
        json!({"bundle_id": id, "environment": env, "tenant_id": tenant, "degrade": f.degrade()}),
        Some(reason),
    );
    let attempt = Attempt {
        verb: "roll back",
        publisher: None,
    };
    let (code, message, status) = match submit_as(&s, &who.principal, body).await {
        Ok((Some(r), _)) => match r.error {
            None => {
                let url = format!("/ui/scopes/{env}/{tenant}/{id}");
                let url = match (env.parse(), tenant.parse(), id.parse()) {
                    (Ok(e), Ok(t), Ok(i)) => scope_url(&e, &t, &i),
                    _ => url,
                };
                return Redirect::to(&format!("{url}?done=rollback")).into_response();
            }
            Some(e) => (e.code, e.message, status_of(e.code)),
        },
        Ok((None, _)) => {
            return Redirect::to(&format!("/ui/scopes/{env}/{tenant}/{id}?done=pending"))
                .into_response();
        }
        Err(e) => {
            let status = e.status();
            (e.0.code, e.0.message, status)
        }
    };
    let text = explain(who, attempt, code, &message);
    pages::scope_page(&s, who, &env, &tenant, &id, &q, Some(text), status).await
}
