//! The governance console at `/ui`: server-rendered HTML (maud) over the same view and
//! command path as the API. It owns sign-in (a token exchanged for a session kept in an
//! HttpOnly, SameSite=Strict cookie), CSRF tokens on every form, the page layout, and the
//! words that explain a refusal. The pages live in [`pages`], the forms that act in
//! [`actions`]. Nothing here writes but through [`crate::api::commands::submit_as`], so
//! every action is a signed command on the log, decided by the processor like any other.
//! No page needs JavaScript: reading and acting are plain links and form posts.

mod actions;
mod pages;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::api::AppState;
use crate::config::Principal;
use crate::domain::bundle::sha256_hex;
use crate::domain::trust::KeySet;
use crate::domain::{ErrorCode, Role};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "mpr_console";
/// Name of the cookie that carries the sign-in form's CSRF token (before a session exists).
pub const LOGIN_COOKIE: &str = "mpr_console_login";
/// How long a session lasts after sign-in.
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Most sessions one replica keeps; the one closest to expiry makes room for a new one.
const MAX_SESSIONS: usize = 10_000;

/// The console's sessions on this replica. A session lives in memory only: a restart or
/// another replica asks the user to sign in again (put replicas behind sticky routing).
#[derive(Debug)]
pub struct Console {
    sessions: Mutex<HashMap<String, Session>>,
    /// The registry keys an event must be signed by (the audit page checks them).
    keys: KeySet,
}

/// One signed-in user.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who, with the grants of the token they signed in with.
    pub principal: Principal,
    /// The token every form of this session must carry.
    pub csrf: String,
    expires: Instant,
}

impl Console {
    /// An empty session store; the audit page verifies events with `keys`.
    pub fn new(keys: KeySet) -> Self {
        Self {
            sessions: Mutex::default(),
            keys,
        }
    }

    fn start(&self, principal: Principal) -> (String, Session) {
        let id = random_token();
        let session = Session {
            principal,
            csrf: random_token(),
            expires: Instant::now() + SESSION_TTL,
        };
        let mut map = self.sessions.lock().expect("sessions lock");
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(sha256_hex(id.as_bytes()), session.clone());
        (id, session)
    }

    fn get(&self, id: &str) -> Option<Session> {
        let map = self.sessions.lock().expect("sessions lock");
        map.get(&sha256_hex(id.as_bytes()))
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    fn end(&self, id: &str) {
        self.sessions
            .lock()
            .expect("sessions lock")
            .remove(&sha256_hex(id.as_bytes()));
    }
}

/// 32 random bytes, hex.
fn random_token() -> String {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).expect("the OS random source works");
    hex::encode(b)
}

/// Equality of two secrets that does not tell, by its timing, how much of them matched:
/// it compares their SHA-256 digests.
fn same_secret(a: &str, b: &str) -> bool {
    !a.is_empty() && sha256_hex(a.as_bytes()) == sha256_hex(b.as_bytes())
}

impl Session {
    /// Whether this user holds `role` (in `env`, when the grant is limited), as the
    /// processor will check it: a control the user may not use is not offered.
    pub fn may(&self, s: &AppState, role: Role, env: Option<&crate::domain::Environment>) -> bool {
        s.grants.allows(&self.principal.actor, role, env)
    }

    /// Whether this user holds `role` in at least one environment.
    fn may_somewhere(&self, s: &AppState, role: Role) -> bool {
        !s.grants.enforce
            || self
                .principal
                .roles
                .iter()
                .any(|g| g.role == role || g.role == Role::Admin)
    }

    /// The user's grants, as shown in the header.
    fn roles(&self) -> String {
        self.principal
            .roles
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A signed-in request: the session, or a redirect to the sign-in page.
pub struct Viewer(pub Session);

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Response> {
        cookie(&parts.headers, SESSION_COOKIE)
            .and_then(|id| s.console.get(&id))
            .map(Viewer)
            .ok_or_else(|| Redirect::to("/ui/login").into_response())
    }
}

/// A form that carries the session's CSRF token in its `csrf` field.
pub(crate) trait CsrfForm {
    /// The token the form carries.
    fn csrf(&self) -> Option<&str>;
}

/// A form a signed-in user posted with the session's CSRF token: the session and the form.
/// Anything else is answered before the handler runs: without a session, the sign-in page;
/// with a missing or wrong token, the 403 page, and nothing is done.
pub(crate) struct Posted<T>(pub Session, pub T);

impl<T> axum::extract::FromRequest<AppState> for Posted<T>
where
    T: serde::de::DeserializeOwned + CsrfForm + Send,
{
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, s: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let Viewer(who) =
            <Viewer as FromRequestParts<AppState>>::from_request_parts(&mut parts, s).await?;
        let req = axum::extract::Request::from_parts(parts, body);
        let axum::Form(form) = axum::Form::<T>::from_request(req, s).await.map_err(|r| {
            page(
                r.status(),
                "Form refused",
                Some(&who),
                html! {
                    p.refusal role="alert" #form-refusal {
                        "The form could not be read (" (r.body_text()) "), so nothing was done (INVALID_PAYLOAD)."
                    }
                },
            )
        })?;
        if !same_secret(form.csrf().unwrap_or_default(), &who.csrf) {
            return Err(csrf_refused(Some(&who)));
        }
        Ok(Self(who, form))
    }
}

/// The value of cookie `name` in the request.
fn cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, scoped to `/ui`. `max_age` 0 deletes.
fn set_cookie(name: &str, value: &str, max_age: Duration) -> HeaderValue {
    let c = cookie::Cookie::build((name, value))
        .path("/ui")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64))
        .build();
    HeaderValue::from_str(&c.to_string()).expect("cookie values are ASCII")
}

/// The console's routes, under `/ui`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/bundles") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/bundles") }))
        .route("/ui/static/console.css", get(stylesheet))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .merge(pages::router())
        .merge(actions::router())
        .route("/ui/{*rest}", get(not_found))
        .layer(axum::middleware::map_response(harden))
}

/// Headers on every console answer: no caching of pages that carry tokens and tenant
/// data, no framing, no script at all (the console has none), no sniffing.
async fn harden(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

const STYLESHEET: &str = include_str!("console.css");

async fn stylesheet() -> Response {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// The page around every console body: navigation, who is signed in, sign-out.
fn layout(title: &str, who: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · MPR console" }
                link rel="stylesheet" href="/ui/static/console.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    span.brand { "MPR console" }
                    @if let Some(s) = who {
                        nav aria-label="Main" {
                            a href="/ui/bundles" { "Bundles" }
                            a href="/ui/scopes" { "Scopes" }
                            a href="/ui/audit" { "Audit log" }
                            a href="/ui/catalog" { "Catalog" }
                            a href="/ui/operations" { "Operations" }
                        }
                        span.who {
                            "Signed in as "
                            strong #whoami { (s.principal.actor) }
                            " (" (s.roles()) ")"
                        }
                        form.inline method="post" action="/ui/logout" {
                            (csrf_field(s))
                            button #logout type="submit" { "Sign out" }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The hidden CSRF field every form of a session carries.
fn csrf_field(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

/// An HTML answer with `status`.
fn page(status: StatusCode, title: &str, who: Option<&Session>, body: Markup) -> Response {
    (status, layout(title, who, body)).into_response()
}

/// The 403 page of a form post without a valid CSRF token.
fn csrf_refused(who: Option<&Session>) -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Form refused",
        who,
        html! {
            p.refusal role="alert" #csrf-refusal {
                "This form was not sent from a page of this session (its CSRF token is missing or wrong), so nothing was done. Reload the page and try again (FORBIDDEN)."
            }
        },
    )
}

async fn not_found(who: Option<Viewer>) -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        who.as_ref().map(|v| &v.0),
        html! { p { "There is no console page here. " a href="/ui/bundles" { "Back to the bundles" } } },
    )
}

impl axum::extract::OptionalFromRequestParts<AppState> for Viewer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        s: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <Viewer as FromRequestParts<AppState>>::from_request_parts(parts, s)
                .await
                .ok(),
        )
    }
}

async fn login_page() -> Response {
    login_form(StatusCode::OK, None)
}

/// The sign-in page, with a fresh login CSRF token in a cookie and in the form.
fn login_form(status: StatusCode, error: Option<&str>) -> Response {
    let token = random_token();
    let body = html! {
        p { "Sign in with your registry token. The console acts with your own grants: each action is a command on the log in your name, decided like any other." }
        @if let Some(e) = error {
            p.refusal role="alert" #login-error { (e) }
        }
        form #login-form method="post" action="/ui/login" {
            input type="hidden" name="csrf" value=(token);
            label for="token" { "Token" }
            input #token type="password" name="token" autocomplete="current-password" required;
            button #login-submit type="submit" { "Sign in" }
        }
    };
    let mut r = page(status, "Sign in", None, body);
    r.headers_mut().append(
        SET_COOKIE,
        set_cookie(LOGIN_COOKIE, &token, Duration::from_secs(3600)),
    );
    r
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: Option<String>,
}

async fn login(
    State(s): State<AppState>,
    h: HeaderMap,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    let expected = cookie(&h, LOGIN_COOKIE).unwrap_or_default();
    if !same_secret(f.csrf.as_deref().unwrap_or_default(), &expected) {
        return csrf_refused(None);
    }
    let Some(principal) = s.auth.by_token(f.token.trim()) else {
        return login_form(
            StatusCode::UNAUTHORIZED,
            Some("That token is unknown or revoked (UNAUTHENTICATED)."),
        );
    };
    tracing::info!(actor = %principal.actor, "console sign-in");
    let (id, _) = s.console.start(principal);
    let mut r = Redirect::to("/ui/bundles").into_response();
    r.headers_mut()
        .append(SET_COOKIE, set_cookie(SESSION_COOKIE, &id, SESSION_TTL));
    r.headers_mut()
        .append(SET_COOKIE, set_cookie(LOGIN_COOKIE, "", Duration::ZERO));
    r
}

#[derive(Debug, Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: Option<String>,
}

impl CsrfForm for CsrfOnly {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

async fn logout(
    State(s): State<AppState>,
    h: HeaderMap,
    Posted(_, _): Posted<CsrfOnly>,
) -> Response {
    if let Some(id) = cookie(&h, SESSION_COOKIE) {
        s.console.end(&id);
    }
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut()
        .append(SET_COOKIE, set_cookie(SESSION_COOKIE, "", Duration::ZERO));
    r
}

/// What the user tried, for the words of a refusal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt<'a> {
    /// The action's verb (approve, promote, ...).
    pub verb: &'a str,
    /// The bundle's publisher, when known.
    pub publisher: Option<&'a crate::domain::Actor>,
}

/// A refusal in words, ending with its code: what the user sees next to the control.
pub(crate) fn explain(who: &Session, a: Attempt<'_>, code: ErrorCode, message: &str) -> String {
    let message = message.trim_end_matches('.');
    let lead = match code {
        ErrorCode::SeparationOfDuties if a.publisher == Some(&who.principal.actor) => format!(
            "You published this bundle, so another approver must {} it",
            a.verb
        ),
        ErrorCode::SeparationOfDuties => {
            format!(
                "Separation of duties forbids you to {} this: {message}",
                a.verb
            )
        }
        ErrorCode::Forbidden => format!("Your grants do not allow you to {}: {message}", a.verb),
        ErrorCode::IllegalTransition => {
            format!("The bundle's lifecycle does not allow this now: {message}")
        }
        ErrorCode::Incompatible => {
            format!("The environment's catalog does not serve what this bundle needs: {message}")
        }
        ErrorCode::GateMissing => {
            format!("A gate the environment requires has not passed this bundle: {message}")
        }
        ErrorCode::ReapprovalRequired => format!(
            "An automated rollback took this version out, so it needs a fresh approval first: {message}"
        ),
        ErrorCode::NothingToRollBack => {
            format!("There is no earlier version to roll back to: {message}")
        }
        ErrorCode::Unavailable | ErrorCode::Timeout => format!(
            "The registry could not confirm the result in time; it may still be applied, so check the timeline before retrying: {message}"
        ),
        _ => message.to_owned(),
    };
    format!("{lead} ({}).", code.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(actor: &str) -> Session {
        Session {
            principal: Principal {
                actor: actor.parse().unwrap(),
                roles: vec![],
                token_sha256: None,
            },
            csrf: "x".into(),
            expires: Instant::now(),
        }
    }

    #[test]
    fn separation_of_duties_is_explained_to_the_publisher() {
        let carol = session("carol");
        let text = explain(
            &carol,
            Attempt {
                verb: "approve",
                publisher: Some(&"carol".parse().unwrap()),
            },
            ErrorCode::SeparationOfDuties,
            "carol published fraud-scorer@1.0.0",
        );
        assert_eq!(
            text,
            "You published this bundle, so another approver must approve it (SEPARATION_OF_DUTIES)."
        );
    }

    #[test]
    fn secrets_compare_equal_only_when_equal_and_present() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("", ""));
    }

    #[test]
    fn sessions_expire_and_end() {
        let c = Console::new(crate::testkit::registry_keys());
        let (id, s) = c.start(session("bob").principal);
        assert_eq!(c.get(&id).unwrap().csrf, s.csrf);
        c.end(&id);
        assert!(c.get(&id).is_none());
        assert!(c.get("not-a-session").is_none());
    }
}
