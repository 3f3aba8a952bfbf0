//! `GET /v1/resolve`: which bundle is ACTIVE for a scope, now or as of a past seq or time,
//! within the caller's read scope, with ETag/304 and a read barrier (`min_view_version`),
//! and the cache of rendered answers for the current view version. The ETag covers the
//! answer's content, not the `view_version` (sent again in `MPR-View-Version`), so a write
//! elsewhere keeps a 304.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::types::{Activation, ResolveActiveResponse, ResolvedScope};
use crate::domain::bundle::sha256_hex;
use crate::domain::resolve::{ResolveQuery, no_active_bundle};
use crate::domain::{BundleId, Environment, ErrorCode, LifecycleState, TenantId, Timestamp};
use crate::log::applier::NotReady;
use crate::metrics::OutcomeLabels;
use crate::view::{Reader, ResolveAt, ViewVersion};

/// Rendered `resolve` answers (now, not time travel) for the current view version. An
/// entry is served only while the view's generation ([`crate::view::View::generation`])
/// is the one it was rendered at, so a hit is byte-identical to a fresh answer, and any
/// applied event retires every entry. Checking that costs one atomic load: no lock, no
/// allocation.
///
/// Laid out for a hit over many scopes, where each distinct piece of memory a hit touches
/// is a likely cache miss: the key is one inline buffer ([`ScopeKey`]), and an answer's
/// headers sit inline beside its body's pointer ([`Rendered`]).
pub struct ResolveCache {
    entries: Option<quick_cache::sync::Cache<ScopeKey, Arc<Rendered>, ByteWeighter>>,
}

/// A cache key: every field of a [`ResolveQuery`], each length-prefixed (so no two
/// queries share a key), in a buffer held inline up to 64 bytes, which a typical scope
/// fits. Comparing keys then reads the cache entry alone, not three strings elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ScopeKey(smallvec::SmallVec<[u8; 64]>);

impl ScopeKey {
    fn of(q: &ResolveQuery) -> Self {
        let mut k = smallvec::SmallVec::new();
        let mut field = |v: Option<&str>| match v {
            None => k.push(0),
            Some(v) => {
                // Every field is at most 256 bytes (ids 128, routing_key 256).
                k.push(1);
                k.extend_from_slice(&(v.len() as u32).to_le_bytes());
                k.extend_from_slice(v.as_bytes());
            }
        };
        field(Some(q.environment.as_str()));
        field(Some(q.bundle_id.as_str()));
        field(q.tenant_id.as_ref().map(TenantId::as_str));
        field(q.routing_key.as_deref());
        k.push(u8::from(q.degrade));
        Self(k)
    }
}

/// Weighs an entry by the bytes it holds, roughly: body, ETag, version and key.
#[derive(Debug, Clone)]
struct ByteWeighter;

impl quick_cache::Weighter<ScopeKey, Arc<Rendered>> for ByteWeighter {
    fn weight(&self, k: &ScopeKey, r: &Arc<Rendered>) -> u64 {
        (r.body.len() + r.version.0.len() * 8 + k.0.len() + 256) as u64
    }
}

/// One rendered answer. The ETag and the version token are held inline, beside the fields
/// a hit reads anyway, and the body is lent to the response without a copy ([`Answer`]).
struct Rendered {
    /// The view generation it was rendered at (set when it is cached).
    generation: u64,
    version: ViewVersion,
    /// The ETag, `"` + 32 hex digits + `"`.
    etag: [u8; 34],
    /// `version`'s token, for the `MPR-View-Version` header.
    version_token: smallvec::SmallVec<[u8; 48]>,
    body: Box<[u8]>,
}

impl Rendered {
    fn new(version: ViewVersion, body: Vec<u8>, digest_hex: &str) -> Result<Self, ApiError> {
        let mut etag = [b'"'; 34];
        etag[1..33].copy_from_slice(
            digest_hex
                .as_bytes()
                .get(..32)
                .ok_or_else(|| ApiError::internal("short digest"))?,
        );
        Ok(Self {
            generation: 0,
            version_token: version.token().into_bytes().into(),
            version,
            etag,
            body: body.into_boxed_slice(),
        })
    }

    fn header(bytes: &[u8]) -> HeaderValue {
        // ASCII by construction (hex digits, quotes, the token's digits and dots).
        HeaderValue::from_bytes(bytes).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// A cached answer's body, lent to a response: the response holds the answer (one
/// reference count) instead of a copy.
struct Answer(Arc<Rendered>);

impl AsRef<[u8]> for Answer {
    fn as_ref(&self) -> &[u8] {
        &self.0.body
    }
}

impl ResolveCache {
    /// A cache holding at most about `mib` MiB of answers; 0 caches nothing.
    pub fn new(mib: u64) -> Self {
        let bytes = mib << 20;
        Self {
            entries: (mib > 0).then(|| {
                // About 1.5 KB per entry for a typical bundle.
                quick_cache::sync::Cache::with_weighter(
                    (bytes / 1500) as usize,
                    bytes,
                    ByteWeighter,
                )
            }),
        }
    }

    fn get(&self, q: &ScopeKey, generation: u64) -> Option<Arc<Rendered>> {
        self.entries
            .as_ref()?
            .get(q)
            .filter(|r| r.generation == generation)
    }

    fn insert(&self, q: ScopeKey, r: Arc<Rendered>) {
        if let Some(e) = &self.entries {
            e.insert(q, r);
        }
    }
}

impl std::fmt::Debug for ResolveCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolveCache")
            .field("len", &self.entries.as_ref().map_or(0, |e| e.len()))
            .finish()
    }
}

/// `/v1/resolve`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_resolve))
}

/// Query string of `/v1/resolve` (the contract's ResolveActiveRequest).
#[derive(Debug, Default)]
pub struct ResolveParams {
    environment: String,
    bundle_id: String,
    tenant_id: Option<String>,
    degrade: Option<bool>,
    min_view_version: Option<String>,
    as_of_seq: Option<u64>,
    as_of: Option<String>,
    routing_key: Option<String>,
}

fn bad(msg: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidPayload, msg)
}

/// The fields of [`ResolveParams`], in the order the errors list them.
const FIELDS: [&str; 8] = [
    "environment",
    "bundle_id",
    "tenant_id",
    "degrade",
    "min_view_version",
    "as_of_seq",
    "as_of",
    "routing_key",
];

impl ResolveParams {
    /// Reads the query string: each field at most once, no field it does not know, the two
    /// required ones present, `degrade` a bool and `as_of_seq` a u64, percent-decoded. It
    /// reads the pairs with `form_urlencoded` directly (what axum's `Query` does underneath
    /// through serde and, here, path tracking, which `perf` put at about 0.6 µs a request).
    pub fn from_query(query: Option<&str>) -> Result<Self, ApiError> {
        let not_acceptable = |m: String| bad(format!("the query string is not acceptable: {m}"));
        let mut p = Self::default();
        let mut seen = [false; FIELDS.len()];
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let Some(i) = FIELDS.iter().position(|f| *f == k) else {
                return Err(not_acceptable(format!(
                    "unknown field `{k}`, expected one of {}",
                    FIELDS.map(|f| format!("`{f}`")).join(", ")
                )));
            };
            if std::mem::replace(&mut seen[i], true) {
                return Err(not_acceptable(format!("duplicate field `{k}`")));
            }
            let v = v.into_owned();
            match i {
                0 => p.environment = v,
                1 => p.bundle_id = v,
                2 => p.tenant_id = Some(v),
                3 => {
                    p.degrade = Some(v.parse().map_err(|_| {
                        not_acceptable(format!("degrade: {v:?} is not `true` or `false`"))
                    })?);
                }
                4 => p.min_view_version = Some(v),
                5 => {
                    p.as_of_seq = Some(v.parse().map_err(|_| {
                        not_acceptable(format!("as_of_seq: {v:?} is not a whole number"))
                    })?);
                }
                6 => p.as_of = Some(v),
                _ => p.routing_key = Some(v),
            }
        }
        for (i, f) in FIELDS.iter().enumerate().take(2) {
            if !seen[i] {
                return Err(not_acceptable(format!("missing field `{f}`")));
            }
        }
        Ok(p)
    }

    fn parse(&self) -> Result<(ResolveQuery, ResolveAt, Option<ViewVersion>), ApiError> {
        let q = ResolveQuery {
            environment: self
                .environment
                .parse::<Environment>()
                .map_err(|r| bad(r.message))?,
            bundle_id: self
                .bundle_id
                .parse::<BundleId>()
                .map_err(|r| bad(r.message))?,
            tenant_id: self
                .tenant_id
                .as_deref()
                .map(str::parse::<TenantId>)
                .transpose()
                .map_err(|r| bad(r.message))?,
            degrade: self.degrade.unwrap_or(false),
            routing_key: self.routing_key.clone(),
        };
        if q.routing_key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > 256)
        {
            return Err(bad("routing_key must be 1-256 bytes".into()));
        }
        let at = match (self.as_of_seq, &self.as_of) {
            (Some(_), Some(_)) => return Err(bad("give as_of_seq or as_of, not both".into())),
            (Some(s), None) => ResolveAt::Seq(s),
            (None, Some(t)) => ResolveAt::Time(t.parse::<Timestamp>().map_err(|r| bad(r.message))?),
            (None, None) => ResolveAt::Now,
        };
        let min = self
            .min_view_version
            .as_deref()
            .map(|m| {
                ViewVersion::parse(m).ok_or_else(|| {
                    bad(format!(
                        "min_view_version {m:?} is not a view_version token"
                    ))
                })
            })
            .transpose()?;
        Ok((q, at, min))
    }
}

#[utoipa::path(
    get,
    path = "/v1/resolve",
    operation_id = "get_resolve",
    summary = "Which bundle is ACTIVE for a scope (supports ETag/If-None-Match, min_view_version, as_of_seq, as_of)",
    description = "Every answer (also 304 and errors) carries MPR-View-Lag and MPR-View-Age-Ms so the caller can judge staleness; a replica still catching up at start-up, or whose applier stopped, answers 503 UNAVAILABLE. If-None-Match with the ETag answers 304 while the answer's content is unchanged. Needs a reader, auditor or admin grant (403 FORBIDDEN otherwise, unless http.open_resolve); for a scope outside the grant's environments and tenant the answer is 404 NO_ACTIVE_BUNDLE, the same as for a scope with no binding.",
    params(
        ("environment" = String, Query, description = "Environment"),
        ("bundle_id" = String, Query, description = "One family"),
        ("tenant_id" = Option<String>, Query, description = "Tenant, or * (the global scope)"),
        ("degrade" = Option<bool>, Query, description = "Ask for the degrade slot"),
        ("min_view_version" = Option<String>, Query, description = "Read barrier: wait until the view covers this view_version"),
        ("as_of_seq" = Option<u64>, Query, description = "Answer as of this seq of the family partition"),
        ("as_of" = Option<String>, Query, description = "Answer as of this time (RFC 3339)"),
        ("routing_key" = Option<String>, Query, description = "A request, user or account id: answers the canary for its slice"),
    ),
    responses(
        (status = 200, description = "Success", body = crate::api::types::ResolveActiveResponse, headers(("ETag" = String, description = "Digest of the answer's content (bundle, scope, activation) without view_version: unchanged by writes to other scopes"), ("MPR-View-Version" = String, description = "The view_version the answer was read at (also on a 304)"), ("MPR-View-Lag" = String, description = "Records of the events and catalog logs not yet applied to this replica's view, at the last lag check (absent before the first)"), ("MPR-View-Age-Ms" = String, description = "Milliseconds since this replica's view last held every record then on the log (absent before it is first known)"))),
        (status = 304, description = "Not modified: the If-None-Match ETag still holds"),
    ),
    security(("bearer" = [])),
)]
async fn get_resolve(
    State(s): State<AppState>,
    // The request itself, not a `HeaderMap` extractor: that one copies every header.
    req: axum::extract::Request,
) -> Response {
    let started = Instant::now();
    let r = match ResolveParams::from_query(req.uri().query()) {
        Ok(params) => resolve_inner(&s, req.headers(), &params).await,
        Err(e) => Err(e),
    };
    // The two common outcomes count on counters held apart, without a label lookup.
    match &r {
        Ok(resp) if resp.status() == StatusCode::NOT_MODIFIED => {
            s.metrics.resolve_not_modified.inc();
        }
        Ok(_) => {
            s.metrics.resolve_ok.inc();
        }
        Err(e) => {
            s.metrics
                .resolve_requests
                .get_or_create(&OutcomeLabels {
                    outcome: e.0.code.as_str().to_owned(),
                })
                .inc();
        }
    }
    s.metrics
        .resolve_seconds
        .observe(started.elapsed().as_secs_f64());
    let mut resp = r.unwrap_or_else(IntoResponse::into_response);
    s.freshness_headers(resp.headers_mut());
    resp
}

async fn resolve_inner(
    s: &AppState,
    headers: &HeaderMap,
    params: &ResolveParams,
) -> Result<Response, ApiError> {
    // `open_resolve` serves everyone on purpose: no token, so no read scope either.
    let caller = if s.http.open_resolve {
        None
    } else {
        let p = s.principal(headers)?;
        if !s.access(&p).may_resolve_somewhere() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "actor {} lacks a role that resolves (reader, auditor or admin)",
                    p.actor
                ),
            ));
        }
        Some(p)
    };
    let (q, at, min) = params.parse()?;
    if let Some(min) = &min {
        s.barrier(min).await?;
    }
    // A view behind the log by more than the readiness bounds still answers, with its
    // staleness in headers; a view still catching up, or no longer kept up, does not.
    if !s.status.is_running() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            NotReady::ApplierStopped.to_string(),
        ));
    }
    if !s.status.ready.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            NotReady::CatchingUp.to_string(),
        ));
    }
    // Outside the caller's read scope the answer is the one an absent binding gets, after
    // the same barrier and readiness checks, so the scope's existence is not revealed.
    if let Some(p) = &caller
        && !s
            .access(p)
            .may_resolve(&q.environment, q.tenant_id.as_ref())
    {
        return Err(no_active_bundle(&q).into());
    }
    let generation = s.view.generation();
    let key = (at == ResolveAt::Now).then(|| ScopeKey::of(&q));
    let cached = key
        .as_ref()
        .and_then(|k| s.resolve_cache.get(k, generation));
    let rendered = match cached {
        Some(r) => r,
        None => {
            // Records and version token from one snapshot of the view, off the async
            // workers.
            let q2 = q.clone();
            let mut r = s
                .read(move |view| view.consistent(|r, v| render(r, &q2, at, v))?)
                .await?;
            // Cache only an answer whose version is the view's and did not move while it
            // was rendered (the generation read before the snapshot is still current).
            match key {
                Some(key) if s.view.generation() == generation && s.view.version() == r.version => {
                    r.generation = generation;
                    let r = Arc::new(r);
                    s.resolve_cache.insert(key, r.clone());
                    r
                }
                _ => Arc::new(r),
            }
        }
    };
    let etag = &rendered.etag[..];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().as_bytes() == etag || t.trim() == "*")
        });
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            axum::body::Bytes::from_owner(Answer(rendered.clone())),
        )
            .into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, Rendered::header(&rendered.etag));
    h.insert(
        VIEW_VERSION_HEADER,
        Rendered::header(&rendered.version_token),
    );
    Ok(resp)
}

/// The `view_version` an answer was read at, also on a 304 (whose ETag does not cover it).
pub const VIEW_VERSION_HEADER: HeaderName = HeaderName::from_static("mpr-view-version");

/// Resolves `q` against the view and renders the answer with its ETag.
fn render(
    r: &Reader<'_>,
    q: &ResolveQuery,
    at: ResolveAt,
    version: ViewVersion,
) -> Result<Rendered, ApiError> {
    let found = r.resolve(q, at)?.map_err(ApiError::from)?;
    let as_of_seq = match at {
        ResolveAt::Seq(n) => Some(n),
        _ => None,
    };
    let body = ResolveActiveResponse {
        scope: ResolvedScope {
            environment: q.environment.clone(),
            tenant_id: found.tenant_id,
            bundle_id: q.bundle_id.clone(),
            slot: found.slot,
        },
        matched_rule: found.rule,
        active_bundle_ref: found.record.bundle.to_ref_with(&found.record.bundle_digest),
        kind: found.record.bundle.kind,
        artifacts: found.record.bundle.artifacts.clone(),
        compatibility: found.record.bundle.compatibility.clone(),
        lifecycle_state: if at == ResolveAt::Now {
            found.record.state
        } else {
            LifecycleState::Active
        },
        activation: Activation {
            event_id: found.activation.event_id,
            partition: found.activation.partition,
            seq: found.activation.seq,
            activated_at_utc: found.activation.observed_at_utc,
        },
        // Left empty for the ETag, which covers the answer's content only (the bundle and
        // the activation that bound it), so writes elsewhere in the view keep it.
        view_version: String::new(),
        resolved_at_utc: found.activation.observed_at_utc,
        as_of_seq,
        canary: found.canary.clone(),
    };
    let content = serde_json::to_vec(&body).map_err(ApiError::internal)?;
    let body = ResolveActiveResponse {
        view_version: version.token(),
        ..body
    };
    let bytes = serde_json::to_vec(&body).map_err(ApiError::internal)?;
    Rendered::new(version, bytes, &sha256_hex(&content))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(
        env: &str,
        bundle: &str,
        tenant: Option<&str>,
        routing: Option<&str>,
        degrade: bool,
    ) -> ResolveQuery {
        ResolveQuery {
            environment: env.parse().unwrap(),
            bundle_id: bundle.parse().unwrap(),
            tenant_id: tenant.map(|t| t.parse().unwrap()),
            degrade,
            routing_key: routing.map(str::to_owned),
        }
    }

    /// Two different queries never share a cache key, even where their fields' bytes run
    /// together the same way; equal queries always do.
    #[test]
    fn scope_keys_tell_every_query_apart() {
        let qs = [
            query("prod", "fam", None, None, false),
            query("prod", "fam", None, None, true),
            query("prod", "fam", Some("*"), None, false),
            query("prod", "fam", Some("a"), None, false),
            query("prod", "fama", None, None, false),
            query("prodf", "am", None, None, false),
            query("prod", "fam", None, Some("a"), false),
            query("prod", "fam", Some("a"), Some("b"), false),
            query("prod", "fam", Some("ab"), None, false),
            query("prod", "fam", None, Some("ab"), false),
        ];
        for (i, a) in qs.iter().enumerate() {
            assert_eq!(ScopeKey::of(a), ScopeKey::of(&a.clone()));
            for b in &qs[i + 1..] {
                assert_ne!(ScopeKey::of(a), ScopeKey::of(b), "{a:?} and {b:?}");
            }
        }
        // A typical scope stays inline.
        let typical = ScopeKey::of(&query(
            "prod",
            "fraud-scorer",
            Some("tenant-01"),
            None,
            false,
        ));
        assert!(!typical.0.spilled(), "{} bytes", typical.0.len());
    }

    #[test]
    fn the_query_string_is_read_strictly() {
        let p = ResolveParams::from_query(Some(
            "environment=prod&bundle_id=fam&tenant_id=t%2D1&degrade=true&as_of_seq=7&routing_key=a+b",
        ))
        .unwrap();
        assert_eq!(
            (
                p.environment.as_str(),
                p.bundle_id.as_str(),
                p.tenant_id.as_deref()
            ),
            ("prod", "fam", Some("t-1"))
        );
        assert_eq!((p.degrade, p.as_of_seq), (Some(true), Some(7)));
        assert_eq!(p.routing_key.as_deref(), Some("a b"));
        for (q, says) in [
            (None, "missing field `environment`"),
            (Some("environment=prod"), "missing field `bundle_id`"),
            (
                Some("environment=prod&bundle_id=f&tenant=x"),
                "unknown field `tenant`",
            ),
            (
                Some("environment=prod&environment=dev&bundle_id=f"),
                "duplicate field `environment`",
            ),
            (
                Some("environment=prod&bundle_id=f&degrade=yes"),
                "degrade: \"yes\"",
            ),
            (
                Some("environment=prod&bundle_id=f&as_of_seq=-1"),
                "as_of_seq: \"-1\"",
            ),
        ] {
            let e = ResolveParams::from_query(q).unwrap_err();
            assert_eq!(e.0.code, ErrorCode::InvalidPayload);
            assert!(
                e.0.message
                    .starts_with("the query string is not acceptable: "),
                "{}",
                e.0.message
            );
            assert!(e.0.message.contains(says), "{q:?}: {}", e.0.message);
        }
    }
}
