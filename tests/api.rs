//! Router tests without a socket (tower `oneshot`): every route and every error code the API
//! answers. Commands go to an in-process sink that decides with the pure domain and applies
//! the events to a real RocksDB view in a temp dir (the Kafka path is covered by the
//! integration tests).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use mpr::api::error::ApiError;
use mpr::api::{AppParts, AppState, FnSink};
use mpr::config::{Config, Principal};
use mpr::domain::bundle::sha256_hex;
use mpr::domain::decide;
use mpr::domain::event::LogId;
use mpr::domain::state::infallible;
use mpr::domain::{
    CatalogState, CommandEnvelope, CommandInput, Decision, PartitionState, Timestamp,
};
use mpr::log::applier::ApplierStatus;
use mpr::metrics::Metrics;
use mpr::view::View;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Sim {
    part: PartitionState,
    cat: CatalogState,
    offsets: (i64, i64),
}

struct Harness {
    router: axum::Router,
    status: Arc<ApplierStatus>,
    _dir: tempfile::TempDir,
}

const TOKENS: &[(&str, &str, &[&str])] = &[
    ("mf", "t-pub", &["publisher"]),
    ("alice", "t-appr", &["approver"]),
    ("bob", "t-dep", &["deployer@prod"]),
    ("dee", "t-dep-dev", &["deployer@dev"]),
    ("carol", "t-pubappr", &["publisher", "approver"]),
    ("admin", "t-admin", &["admin"]),
    ("df", "t-read", &["reader"]),
    ("df-dev", "t-read-dev", &["reader@dev"]),
    ("df-prod", "t-read-prod", &["reader@prod"]),
    ("df-acme", "t-read-acme", &["reader@prod/acme"]),
    ("audit", "t-audit", &["auditor"]),
];

#[path = "api/console.rs"]
mod console;
#[path = "api/limits.rs"]
mod limits;
#[path = "api/scopes.rs"]
mod scopes;

fn harness_with(apply: bool) -> Harness {
    harness_config(apply, |_| {})
}

/// A harness whose config is the test default changed by `change`.
fn harness_config(apply: bool, change: impl FnOnce(&mut Config)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let view = Arc::new(View::open(dir.path(), 1).unwrap());
    let status = ApplierStatus::new(view.version());
    status.ready.store(true, Ordering::SeqCst);
    let mut cfg = Config::default();
    cfg.http.command_timeout_ms = 300;
    cfg.http.read_barrier_timeout_ms = 100;
    cfg.auth.principals = TOKENS
        .iter()
        .map(|(a, t, r)| Principal {
            actor: a.parse().unwrap(),
            roles: r.iter().map(|g| g.parse().unwrap()).collect(),
            token_sha256: Some(sha256_hex(t.as_bytes())),
        })
        .collect();
    change(&mut cfg);
    // Commands reach the simulated processor signed by the gateway, as from the real API.
    let gateway = mpr::testkit::gateway_signer();
    let grants = cfg.grants_with_roots(mpr::domain::trust::TrustRoots {
        require_signatures: cfg.trust.mode == mpr::config::TrustMode::Signed,
        gateway: mpr::domain::trust::KeySet::of([gateway.verifying_key()]),
        registry: mpr::domain::trust::KeySet::of([mpr::testkit::registry_signer().verifying_key()]),
    });
    let sim = Arc::new(Mutex::new(Sim {
        part: PartitionState::new(0),
        cat: {
            // The test gate's key, as a REGISTER_KEY earlier in the catalog log left it.
            let mut cat = CatalogState::new();
            let gate = mpr::testkit::gate_signer();
            cat.catalog.trust.apply(&mpr::domain::trust::KeyRecord {
                key_id: gate.key_id().to_owned(),
                owner_kind: mpr::domain::trust::KeyOwnerKind::Gate,
                owner: mpr::testkit::GATE_NAME.to_owned(),
                public_key: gate.public_hex(),
                registered_seq: 0,
                revoked_seq: None,
            });
            cat
        },
        offsets: (0, 0),
    }));
    let (v2, s2, g2) = (view.clone(), status.clone(), grants.clone());
    let sink = FnSink(Arc::new(
        move |env: &CommandEnvelope| -> Result<(), ApiError> {
            if !apply {
                return Ok(());
            }
            let mut sim = sim.lock().unwrap();
            let offset = sim.offsets.0 + sim.offsets.1;
            let input = CommandInput {
                observed_at: Timestamp::from_millis(1_800_000_000_000 + offset * 1000),
                ..mpr::testkit::signed_input(env.clone(), offset, &gateway)
            };
            let d = {
                let Sim { part, cat, .. } = &*sim;
                infallible(decide::route(part, &part.chain, cat, &g2, &input))
            };
            if let Decision::Append(mut e) = d {
                // Signed by the registry, as the real processor signs every event.
                e.sign(&mpr::testkit::registry_signer());
                let off = if e.log == LogId::Catalog {
                    sim.cat.apply(&e).unwrap();
                    sim.offsets.1 += 1;
                    sim.offsets.1 - 1
                } else {
                    sim.part.apply(&e).unwrap();
                    sim.offsets.0 += 1;
                    sim.offsets.0 - 1
                };
                v2.apply(&e, off).unwrap();
                s2.version.send_replace(v2.version());
            }
            Ok(())
        },
    ));
    let state = AppState::from(AppParts {
        view,
        status: status.clone(),
        sink: Arc::new(sink),
        auth: Arc::new(mpr::api::auth::Auth::new(&cfg.auth.principals)),
        grants: Arc::new(grants),
        metrics: Arc::new(Metrics::new()),
        http: Arc::new(cfg.http.clone()),
        resolve_cache: Arc::new(mpr::api::resolve::ResolveCache::new(1)),
        trust_mode: cfg.trust.mode,
        checkpoints: Arc::new(mpr::api::audit::CheckpointSigner {
            registry: mpr::testkit::registry_signer(),
            events_topic: "mpr.events".into(),
            catalog_topic: "mpr.catalog".into(),
        }),
        console: Arc::new(mpr::console::Console::new(mpr::testkit::registry_keys())),
    });
    Harness {
        router: mpr::api::router(state),
        status,
        _dir: dir,
    }
}

impl Harness {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value, axum::http::HeaderMap) {
        self.call_h(method, uri, token, body, &[]).await
    }

    async fn call_h(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value, axum::http::HeaderMap) {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, v, headers)
    }

    async fn ok(&self, method: &str, uri: &str, token: &str, body: Value) -> Value {
        let (s, v, _) = self.call(method, uri, Some(token), Some(body)).await;
        assert!(s.is_success(), "{method} {uri}: {s} {v}");
        v
    }
}

fn publish_body(id: &str, version: &str) -> Value {
    let b = mpr::testkit::bundle(id, version);
    let r = mpr::testkit::signed_receipt(&b, &mpr::testkit::gate_signer());
    json!({"command_id": uuid::Uuid::new_v4(), "submitted_at_utc": "2026-11-20T09:00:00.000Z", "bundle": b, "gate_receipt": r})
}

fn catalog_body() -> Value {
    json!({"feature_groups": [{"name": "features", "version": "1"}], "schema_versions": ["decision-input/v1"], "posture": "fail_closed"})
}

/// Publishes, nominates, approves and promotes `id@version` into prod for `tenant`.
async fn live(h: &Harness, id: &str, version: &str, tenant: &str) {
    h.ok("POST", "/v1/bundles", "t-pub", publish_body(id, version))
        .await;
    h.ok(
        "POST",
        &format!("/v1/bundles/{id}/versions/{version}/nominate"),
        "t-appr",
        json!({}),
    )
    .await;
    h.ok(
        "POST",
        &format!("/v1/bundles/{id}/versions/{version}/approve"),
        "t-appr",
        json!({}),
    )
    .await;
    h.ok("POST", "/v1/promotions", "t-dep", json!({"bundle_id": id, "bundle_version": version, "environment": "prod", "tenant_id": tenant})).await;
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_routes() {
    let h = harness_with(true);
    let (s, v, _) = h.call("GET", "/healthz", None, None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, v, headers) = h.call("GET", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    // The signing mode is visible to every probe.
    assert_eq!(v["trust_mode"], "signed");
    assert_eq!(headers["mpr-trust-mode"], "signed");
    // So is the fingerprint of the trust roots, which replicas compare (MPR2-ROOT-05).
    let roots = mpr::domain::trust::TrustRoots {
        require_signatures: true,
        gateway: mpr::domain::trust::KeySet::of([mpr::testkit::gateway_signer().verifying_key()]),
        registry: mpr::domain::trust::KeySet::of([mpr::testkit::registry_signer().verifying_key()]),
    }
    .fingerprint();
    assert_eq!(v["trust_roots"], roots.as_str());
    assert_eq!(headers["mpr-trust-roots"], roots.as_str());
    // The dev mode says so on every probe, with a fingerprint of its own.
    let dev = harness_config(true, |c| c.trust.mode = mpr::config::TrustMode::UnsignedDev);
    let (s, dv, dh) = dev.call("GET", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (&dv["trust_mode"], &dh["mpr-trust-mode"]),
        (
            &json!("unsigned-dev"),
            &"unsigned-dev".parse::<axum::http::HeaderValue>().unwrap()
        )
    );
    assert_ne!(dv["trust_roots"], v["trust_roots"]);
    h.status.ready.store(false, Ordering::SeqCst);
    let (s, v, _) = h.call("GET", "/readyz", None, None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
    );
    let (s, v, _) = h
        .call(
            "GET",
            "/v1/resolve?environment=prod&bundle_id=x",
            Some("t-read"),
            None,
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        "a catching-up view must not answer"
    );
    h.status.ready.store(true, Ordering::SeqCst);
    let (s, v, _) = h.call("GET", "/metrics", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.as_str().unwrap().contains("mpr_resolve_requests"), "{v}");
    let (s, v, _) = h.call("GET", "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["openapi"], "3.1.0");
}

#[test]
fn checked_in_openapi_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contracts/openapi.json");
    let generated = mpr::api::openapi::document();
    let checked_in: Value = serde_json::from_str(
        &std::fs::read_to_string(path).expect("contracts/openapi.json exists"),
    )
    .unwrap();
    assert!(
        checked_in == generated,
        "contracts/openapi.json drifted; run `mpr openapi > contracts/openapi.json`"
    );
}

/// Validates `v` against the contract's `$def` `name`.
fn assert_matches_def(name: &str, v: &Value) {
    let contract: Value = serde_json::from_str(mpr::api::openapi::CONTRACT).unwrap();
    let schema = json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": contract["$defs"], "$ref": format!("#/$defs/{name}")});
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(v)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:?}\n{v}");
}

/// Every operation of the document is served by the router (it is neither the unknown-route
/// 404 nor a 405), every body the document names is a component, every command route
/// declares its request body, and every operation answers an ErrorResponse by default.
#[tokio::test]
async fn every_documented_operation_is_a_route_with_its_schemas() {
    let h = harness_with(true);
    let doc = mpr::api::openapi::document();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "dangling $ref {name}");
    }
    let mut count = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            count += 1;
            let id = op["operationId"].as_str().unwrap();
            if matches!(method.as_str(), "post" | "put") {
                // A `$ref`, or for an optional body `oneOf: [null, $ref]`.
                let schema = &op["requestBody"]["content"]["application/json"]["schema"];
                let named = schema["$ref"].is_string()
                    || schema["oneOf"]
                        .as_array()
                        .is_some_and(|o| o.iter().any(|s| s["$ref"].is_string()));
                assert!(named, "{id} has no request body schema");
            }
            assert!(
                op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"]
                    .as_str()
                    .unwrap()
                    .ends_with("/ErrorResponse"),
                "{id}"
            );
            let ok = op["responses"]
                .as_object()
                .unwrap()
                .iter()
                .find(|(k, _)| k.starts_with('2'))
                .unwrap();
            assert!(
                !ok.1["content"].is_null(),
                "{id}: its success answer has no schema"
            );
            let uri = path
                .replace("{bundle_id}", "fam")
                .replace("{version}", "1.0.0")
                .replace("{environment}", "prod")
                .replace("{tenant_id}", "acme")
                .replace("{command_id}", "00000000-0000-4000-8000-000000000000")
                .replace("{action}", "approve");
            let (s, v, _) = h
                .call(
                    &method.to_uppercase(),
                    &uri,
                    Some("t-admin"),
                    Some(json!({})),
                )
                .await;
            let fallback = v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("no route"))
                || s == StatusCode::METHOD_NOT_ALLOWED;
            assert!(
                !fallback,
                "{method} {path} ({id}) is documented but not routed: {s} {v}"
            );
        }
    }
    assert!(count >= 24, "{count} operations");
}

/// The answers the document names by contract `$def` match them: the API's own bodies
/// (pages, bindings, readiness, pending commands, dry runs) against the real routes.
#[tokio::test]
async fn every_answer_matches_its_contract_schema() {
    let h = harness_with(true);
    h.ok("PUT", "/v1/catalog/prod", "t-admin", catalog_body())
        .await;
    live(&h, "doc-fam", "1.0.0", "*").await;
    let get = |uri: &'static str, token: &'static str| {
        let h = &h;
        async move {
            let (s, v, _) = h.call("GET", uri, Some(token), None).await;
            assert!(s.is_success(), "{uri}: {s} {v}");
            v
        }
    };
    let (_, health, _) = h.call("GET", "/healthz", None, None).await;
    assert_matches_def("Health", &health);
    let (_, ready, _) = h.call("GET", "/readyz", None, None).await;
    assert_matches_def("Readiness", &ready);
    assert_matches_def(
        "BundlePage",
        &get("/v1/bundles?state=ACTIVE", "t-read").await,
    );
    assert_matches_def("BundlePage", &get("/v1/bundles/doc-fam", "t-read").await);
    assert_matches_def(
        "BundleRecord",
        &get("/v1/bundles/doc-fam/versions/1.0.0", "t-read").await,
    );
    assert_matches_def(
        "ScopeBindings",
        &get("/v1/scopes/prod/*/doc-fam", "t-read").await,
    );
    assert_matches_def(
        "HistoryPage",
        &get("/v1/scopes/prod/*/doc-fam/history", "t-read").await,
    );
    assert_matches_def(
        "EventPage",
        &get("/v1/events?bundle_id=doc-fam", "t-audit").await,
    );
    assert_matches_def("CatalogListing", &get("/v1/catalog", "t-read").await);
    assert_matches_def(
        "Checkpoints",
        &get("/v1/audit/checkpoints", "t-audit").await,
    );
    assert_matches_def(
        "ResolveActiveResponse",
        &get("/v1/resolve?environment=prod&bundle_id=doc-fam", "t-read").await,
    );
    let dry = h
        .ok("POST", "/v1/promotions/dry-run", "t-dep", json!({"bundle_id": "doc-fam", "bundle_version": "1.0.0", "environment": "prod", "tenant_id": "acme"}))
        .await;
    assert_eq!(dry["outcome"], "ACCEPTED", "{dry}");
    assert_matches_def("DryRunResponse", &dry);
    let refused = h
        .ok(
            "POST",
            "/v1/promotions/dry-run",
            "t-dep",
            json!({"bundle_id": "doc-fam", "bundle_version": "9.9.9", "environment": "prod"}),
        )
        .await;
    assert_eq!(refused["outcome"], "REJECTED");
    assert_matches_def("DryRunResponse", &refused);
    // A command whose result the view does not get in time: 202.
    let pending = harness_with(false);
    let (s, v, _) = pending
        .call(
            "POST",
            "/v1/promotions",
            Some("t-dep"),
            Some(json!({"bundle_id": "doc-fam", "bundle_version": "1.0.0", "environment": "prod"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_matches_def("PendingCommand", &v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_their_error_codes() {
    let h = harness_with(true);
    // 401 and 403 before anything is produced.
    let (s, v, _) = h
        .call(
            "POST",
            "/v1/bundles",
            None,
            Some(publish_body("fraud", "1.0.0")),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"));
    let (s, v, _) = h
        .call(
            "POST",
            "/v1/bundles",
            Some("nope"),
            Some(publish_body("fraud", "1.0.0")),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"));
    let (s, v, _) = h
        .call(
            "POST",
            "/v1/bundles",
            Some("t-appr"),
            Some(publish_body("fraud", "1.0.0")),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "FORBIDDEN"));
    // The caller cannot choose the actor.
    let mut body = publish_body("fraud", "1.0.0");
    body["submitted_by"] = json!("alice");
    let (s, v, _) = h
        .call("POST", "/v1/bundles", Some("t-pub"), Some(body))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "FORBIDDEN"));
    // 400 INVALID_PAYLOAD.
    let (s, v, _) = h
        .call(
            "POST",
            "/v1/bundles",
            Some("t-pub"),
            Some(json!({"bundle": 1})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "INVALID_PAYLOAD"));
    // 201 ACCEPTED, then DUPLICATE with the existing record.
    let body = publish_body("fraud", "1.0.0");
    let (s, v, _) = h
        .call("POST", "/v1/bundles", Some("t-pub"), Some(body.clone()))
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::CREATED, Some("ACCEPTED")),
        "{v}"
    );
    let mut again = body.clone();
    again["command_id"] = json!(uuid::Uuid::new_v4());
    let (s, v, _) = h
        .call("POST", "/v1/bundles", Some("t-pub"), Some(again))
        .await;
    assert_eq!(
        (s, v["status"].as_str(), v["lifecycle_state"].as_str()),
        (StatusCode::OK, Some("DUPLICATE"), Some("REGISTERED"))
    );
    // A repeated command_id returns the first result.
    let (s, v, _) = h
        .call("POST", "/v1/bundles", Some("t-pub"), Some(body))
        .await;
    assert_eq!(
        (s, v["status"].as_str(), v["seq"].as_u64()),
        (StatusCode::CREATED, Some("ACCEPTED"), Some(1))
    );
    // 409 IMMUTABLE_CONFLICT.
    let mut changed = publish_body("fraud", "1.0.0");
    changed["bundle"]["metadata"]["owner"] = json!("someone-else");
    let digest = serde_json::from_value::<mpr::domain::ModelBundle>(changed["bundle"].clone())
        .unwrap()
        .digest();
    changed["gate_receipt"]["bundle_digest"] = json!(digest);
    let (s, v, _) = h
        .call("POST", "/v1/bundles", Some("t-pub"), Some(changed))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "IMMUTABLE_CONFLICT"),
        "{v}"
    );
    // 422 GATE_NOT_PASS and GATE_RECEIPT_MISMATCH.
    let mut fail = publish_body("fraud", "1.1.0");
    fail["gate_receipt"]["verdict"] = json!("FAIL");
    let (s, v, _) = h
        .call("POST", "/v1/bundles", Some("t-pub"), Some(fail))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "GATE_NOT_PASS")
    );
    let mut other = publish_body("fraud", "1.2.0");
    other["gate_receipt"]["bundle_digest"] = json!("0".repeat(64));
    let (s, v, _) = h
        .call("POST", "/v1/bundles", Some("t-pub"), Some(other))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "GATE_RECEIPT_MISMATCH")
    );
    // 404 UNKNOWN_BUNDLE, 409 ILLEGAL_TRANSITION, unknown action 400.
    let (s, v, _) = h
        .call(
            "POST",
            "/v1/bundles/fraud/versions/9.9.9/nominate",
            Some("t-appr"),
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "UNKNOWN_BUNDLE"));
    let (s, v, _) = h
        .call(
            "POST",
            "/v1/bundles/fraud/versions/1.0.0/approve",
            Some("t-appr"),
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "ILLEGAL_TRANSITION"));
    let (s, v, _) = h
        .call(
            "POST",
            "/v1/bundles/fraud/versions/1.0.0/explode",
            Some("t-appr"),
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "INVALID_PAYLOAD"));
    // 403 SEPARATION_OF_DUTIES: a publisher that is also an approver cannot approve its own bundle.
    h.ok(
        "POST",
        "/v1/bundles",
        "t-pubappr",
        publish_body("pricing", "1.0.0"),
    )
    .await;
    h.ok(
        "POST",
        "/v1/bundles/pricing/versions/1.0.0/nominate",
        "t-pubappr",
        json!({}),
    )
    .await;
    let (s, v, _) = h
        .call(
            "POST",
            "/v1/bundles/pricing/versions/1.0.0/approve",
            Some("t-pubappr"),
            None,
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, "SEPARATION_OF_DUTIES")
    );
    // Approve twice: the second is a reported no-op.
    h.ok(
        "POST",
        "/v1/bundles/fraud/versions/1.0.0/nominate",
        "t-appr",
        json!({}),
    )
    .await;
    let v = h
        .ok(
            "POST",
            "/v1/bundles/fraud/versions/1.0.0/approve",
            "t-appr",
            json!({}),
        )
        .await;
    assert_eq!(v["outcome"], "ACCEPTED");
    let v = h
        .ok(
            "POST",
            "/v1/bundles/fraud/versions/1.0.0/approve",
            "t-appr",
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(v["outcome"], "NOOP");
    // 409 INCOMPATIBLE (no catalog for prod yet), listing what is missing.
    let promote = json!({"bundle_id": "fraud", "bundle_version": "1.0.0", "environment": "prod"});
    let (s, v, _) = h
        .call(
            "POST",
            "/v1/promotions",
            Some("t-dep"),
            Some(promote.clone()),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "INCOMPATIBLE"));
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("feature_group features@1"),
        "{v}"
    );
    // Catalog: admin only (403 for a deployer), then the promotion goes through.
    let (s, v, _) = h
        .call(
            "PUT",
            "/v1/catalog/prod",
            Some("t-dep"),
            Some(catalog_body()),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "FORBIDDEN"));
    h.ok("PUT", "/v1/catalog/prod", "t-admin", catalog_body())
        .await;
    let v = h.ok("POST", "/v1/promotions", "t-dep", promote).await;
    assert_eq!(
        (v["outcome"].as_str(), v["lifecycle_state"].as_str()),
        (Some("ACCEPTED"), Some("ACTIVE"))
    );
    // deployer@prod cannot promote into stage.
    let (s, v, _) = h
        .call(
            "POST",
            "/v1/promotions",
            Some("t-dep"),
            Some(json!({"bundle_id": "fraud", "bundle_version": "1.0.0", "environment": "stage"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "FORBIDDEN"));
    // 409 NOTHING_TO_ROLL_BACK.
    let (s, v, _) = h
        .call(
            "POST",
            "/v1/rollbacks",
            Some("t-dep"),
            Some(json!({"bundle_id": "fraud", "environment": "prod"})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "NOTHING_TO_ROLL_BACK")
    );
    // Generic POST /v1/commands with any command; the actor in the body must be the caller.
    let cmd = json!({"command_type": "RETIRE", "payload": {"bundle_id": "fraud", "bundle_version": "1.0.0"}, "actor": "mallory"});
    let (s, v, _) = h
        .call("POST", "/v1/commands", Some("t-admin"), Some(cmd))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "FORBIDDEN"));
    let cmd = json!({"command_type": "RETIRE", "payload": {"bundle_id": "fraud", "bundle_version": "1.0.0"}});
    let (s, v, _) = h
        .call("POST", "/v1/commands", Some("t-admin"), Some(cmd))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "ILLEGAL_TRANSITION"),
        "an ACTIVE bundle cannot be retired: {v}"
    );
    let cmd = json!({"command_type": "SELF_DESTRUCT", "payload": {}});
    let (s, v, _) = h
        .call("POST", "/v1/commands", Some("t-admin"), Some(cmd))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "INVALID_PAYLOAD"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_commands_answer_202_with_the_command_id() {
    let h = harness_with(false);
    let id = uuid::Uuid::new_v4();
    let mut body = publish_body("fraud", "1.0.0");
    body["command_id"] = json!(id);
    let (s, v, _) = h
        .call("POST", "/v1/bundles", Some("t-pub"), Some(body))
        .await;
    assert_eq!(
        (s, v["command_id"].as_str()),
        (StatusCode::ACCEPTED, Some(id.to_string().as_str()))
    );
    let (s, v, _) = h
        .call("GET", &format!("/v1/commands/{id}"), Some("t-read"), None)
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
    );
    assert_eq!(v["retryable"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_etag_barrier_and_time_travel() {
    let h = harness_with(true);
    h.ok("PUT", "/v1/catalog/prod", "t-admin", catalog_body())
        .await;
    live(&h, "fraud", "1.0.0", "*").await;
    let (s, v, _) = h
        .call(
            "GET",
            "/v1/resolve?environment=prod&bundle_id=fraud",
            None,
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"));
    let (s, v, _) = h
        .call(
            "GET",
            "/v1/resolve?environment=prod&bundle_id=fraud",
            Some("t-pub"),
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "FORBIDDEN"));
    let (s, v, _) = h
        .call(
            "GET",
            "/v1/resolve?environment=Prod&bundle_id=fraud",
            Some("t-read"),
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "INVALID_PAYLOAD"));
    let (s, v, _) = h
        .call(
            "GET",
            "/v1/resolve?environment=prod&bundle_id=nothing",
            Some("t-read"),
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "NO_ACTIVE_BUNDLE"));

    let uri = "/v1/resolve?environment=prod&bundle_id=fraud&tenant_id=acme";
    let (s, first, hdr) = h.call("GET", uri, Some("t-read"), None).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(
        (
            first["matched_rule"].as_str(),
            first["active_bundle_ref"]["bundle_version"].as_str()
        ),
        (Some("GLOBAL"), Some("1.0.0"))
    );
    let etag = hdr[header::ETAG].to_str().unwrap().to_owned();
    let (_, second, _) = h.call("GET", uri, Some("t-read"), None).await;
    assert_eq!(
        first, second,
        "same inputs and view_version give the same body"
    );
    let (s, _, _) = h
        .call_h(
            "GET",
            uri,
            Some("t-read"),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(s, StatusCode::NOT_MODIFIED);
    let v1_seq = first["activation"]["seq"].as_u64().unwrap();

    // A new version, then time travel back to the first activation.
    live(&h, "fraud", "2.0.0", "*").await;
    let (_, now, _) = h.call("GET", uri, Some("t-read"), None).await;
    assert_eq!(now["active_bundle_ref"]["bundle_version"], "2.0.0");
    let (s, _, _) = h
        .call_h(
            "GET",
            uri,
            Some("t-read"),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "a changed view is not 304");
    let (_, then, _) = h
        .call(
            "GET",
            &format!("{uri}&as_of_seq={v1_seq}"),
            Some("t-read"),
            None,
        )
        .await;
    assert_eq!(
        (
            then["active_bundle_ref"]["bundle_version"].as_str(),
            then["as_of_seq"].as_u64()
        ),
        (Some("1.0.0"), Some(v1_seq))
    );
    let at = first["activation"]["activated_at_utc"].as_str().unwrap();
    let (_, then, _) = h
        .call("GET", &format!("{uri}&as_of={at}"), Some("t-read"), None)
        .await;
    assert_eq!(then["active_bundle_ref"]["bundle_version"], "1.0.0");
    let (s, v, _) = h
        .call("GET", &format!("{uri}&as_of_seq=0"), Some("t-read"), None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "NO_ACTIVE_BUNDLE"));

    // The read barrier: the current version passes, a future one times out with 503.
    let token = now["view_version"].as_str().unwrap();
    let (s, _, _) = h
        .call(
            "GET",
            &format!("{uri}&min_view_version={token}"),
            Some("t-read"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v, _) = h
        .call(
            "GET",
            &format!("{uri}&min_view_version=v1.99.99"),
            Some("t-read"),
            None,
        )
        .await;
    assert_eq!(
        (s, code(&v), v["retryable"].as_bool()),
        (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", Some(true))
    );

    // Tenant scope and degrade slot.
    h.ok("POST", "/v1/promotions", "t-dep", json!({"bundle_id": "fraud", "bundle_version": "1.0.0", "environment": "prod", "tenant_id": "acme"})).await;
    let (_, v, _) = h.call("GET", uri, Some("t-read"), None).await;
    assert_eq!(
        (
            v["matched_rule"].as_str(),
            v["active_bundle_ref"]["bundle_version"].as_str()
        ),
        (Some("TENANT"), Some("1.0.0"))
    );
    h.ok("POST", "/v1/promotions", "t-dep", json!({"bundle_id": "fraud", "bundle_version": "2.0.0", "environment": "prod", "degrade": true})).await;
    let (_, v, _) = h
        .call("GET", &format!("{uri}&degrade=true"), Some("t-read"), None)
        .await;
    assert_eq!(
        (v["matched_rule"].as_str(), v["scope"]["slot"].as_str()),
        (Some("DEGRADE_GLOBAL"), Some("DEGRADE"))
    );
    // Rollback in the * scope goes back to 1.0.0.
    let v = h
        .ok(
            "POST",
            "/v1/rollbacks",
            "t-dep",
            json!({"bundle_id": "fraud", "environment": "prod"}),
        )
        .await;
    assert_eq!(
        (v["event_type"].as_str(), v["bundle_version"].as_str()),
        (Some("BUNDLE_ROLLED_BACK"), Some("1.0.0"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_routes() {
    let h = harness_with(true);
    h.ok("PUT", "/v1/catalog/prod", "t-admin", catalog_body())
        .await;
    live(&h, "fraud", "1.0.0", "*").await;
    live(&h, "fraud", "1.1.0", "*").await;
    live(&h, "pricing", "1.0.0", "acme").await;
    let (s, v, _) = h.call("GET", "/v1/bundles", None, None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"));
    let (_, v, _) = h
        .call("GET", "/v1/bundles?limit=2", Some("t-read"), None)
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let cursor = v["next_cursor"].as_str().unwrap().to_owned();
    let (_, v, _) = h
        .call(
            "GET",
            &format!("/v1/bundles?limit=2&cursor={cursor}"),
            Some("t-read"),
            None,
        )
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert!(v.get("next_cursor").is_none());
    let (_, v, _) = h
        .call("GET", "/v1/bundles/fraud", Some("t-read"), None)
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let (_, v, _) = h
        .call(
            "GET",
            "/v1/bundles/fraud/versions/1.0.0",
            Some("t-read"),
            None,
        )
        .await;
    assert_eq!(
        (v["state"].as_str(), v["submitted_by"].as_str()),
        (Some("APPROVED"), Some("mf"))
    );
    let (s, v, _) = h
        .call(
            "GET",
            "/v1/bundles/fraud/versions/7.0.0",
            Some("t-read"),
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "UNKNOWN_BUNDLE"));
    let (_, v, _) = h
        .call("GET", "/v1/scopes/prod/*/fraud", Some("t-read"), None)
        .await;
    assert_eq!(v["bindings"][0]["bundle_version"], "1.1.0");
    let (_, v, _) = h
        .call(
            "GET",
            "/v1/scopes/prod/*/fraud/history",
            Some("t-read"),
            None,
        )
        .await;
    let hist: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["bundle_version"].as_str().unwrap())
        .collect();
    assert_eq!(hist, ["1.0.0", "1.1.0"]);
    let (_, v, _) = h
        .call(
            "GET",
            "/v1/events?bundle_id=fraud&event_type=BUNDLE_PROMOTED",
            Some("t-read"),
            None,
        )
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let (_, v, _) = h
        .call(
            "GET",
            "/v1/events?environment=prod&tenant_id=acme",
            Some("t-read"),
            None,
        )
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let (_, v, _) = h
        .call("GET", "/v1/events?limit=3", Some("t-read"), None)
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 3);
    let (_, v, _) = h.call("GET", "/v1/catalog", Some("t-read"), None).await;
    assert_eq!(
        (
            v["catalog_version"].as_u64(),
            v["entries"][0]["environment"].as_str()
        ),
        (Some(1), Some("prod"))
    );
    let (s, v, _) = h
        .call("GET", "/v1/commands/not-a-uuid", Some("t-read"), None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "INVALID_PAYLOAD"));
}

impl Harness {
    /// A request with raw body bytes and an optional content-type.
    async fn call_raw(
        &self,
        method: &str,
        uri: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value, axum::http::HeaderMap) {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, "Bearer t-admin");
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        let resp = self
            .router
            .clone()
            .oneshot(b.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, v, headers)
    }
}

/// Asserts an ErrorResponse body: `{code, message, retryable[, details]}` as JSON.
fn assert_error_body(what: &str, v: &Value, h: &axum::http::HeaderMap, code_: &str) {
    assert_eq!(
        h.get(header::CONTENT_TYPE).and_then(|c| c.to_str().ok()),
        Some("application/json"),
        "{what}: {v}"
    );
    assert_eq!(code(v), code_, "{what}: {v}");
    assert!(v["message"].is_string(), "{what}: {v}");
    assert!(v["retryable"].is_boolean(), "{what}: {v}");
}

/// axum's own refusals (unknown route, wrong method, bad JSON, query or path, too large a
/// body) answer the ErrorResponse JSON like every other error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_a_json_error_response() {
    let h = harness_with(true);
    let json = Some("application/json");
    // (what, method, uri, content-type, body, status)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        Vec<u8>,
        StatusCode,
    );
    let cases: Vec<Case> = vec![
        (
            "unknown route",
            "GET",
            "/v1/nope",
            None,
            vec![],
            StatusCode::NOT_FOUND,
        ),
        ("root", "GET", "/", None, vec![], StatusCode::NOT_FOUND),
        (
            "wrong method",
            "DELETE",
            "/v1/resolve",
            None,
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "wrong method on a typed route",
            "GET",
            "/v1/promotions",
            None,
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "bad JSON",
            "POST",
            "/v1/commands",
            json,
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "no content-type",
            "POST",
            "/v1/commands",
            None,
            b"{}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "wrong JSON shape",
            "POST",
            "/v1/promotions",
            json,
            b"[1,2]".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad optional body",
            "POST",
            "/v1/bundles/fraud/versions/1.0.0/approve",
            json,
            b"nope".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "missing query field",
            "GET",
            "/v1/resolve?bundle_id=fraud",
            None,
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown query field",
            "GET",
            "/v1/resolve?environment=prod&bundle_id=fraud&x=1",
            None,
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            "query type",
            "GET",
            "/v1/bundles?limit=abc",
            None,
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            "path not UTF-8",
            "GET",
            "/v1/bundles/%FF",
            None,
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            "command wait type",
            "GET",
            "/v1/commands/6d707200-7265-6769-7374-727965766e74?wait_ms=x",
            None,
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            "body over the limit",
            "POST",
            "/v1/commands",
            json,
            vec![b' '; 3 << 20],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (what, method, uri, ct, body, status) in cases {
        let (s, v, hdr) = h.call_raw(method, uri, ct, body).await;
        assert_eq!(s, status, "{what}: {v}");
        assert_error_body(what, &v, &hdr, "INVALID_PAYLOAD");
        assert_eq!(v["retryable"], false, "{what}");
    }
    let (_, _, hdr) = h.call_raw("DELETE", "/v1/resolve", None, vec![]).await;
    assert!(
        hdr[header::ALLOW].to_str().unwrap().contains("GET"),
        "405 names the allowed methods"
    );
}

/// A command larger than the log's record limit once encoded is refused before it is
/// produced (413 INVALID_PAYLOAD), instead of being produced and dead-lettered unanswered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_commands_are_refused_before_they_are_produced() {
    let h = harness_with(true);
    let mut b = mpr::testkit::bundle("big", "1.0.0");
    b.provenance.dataset_manifest_refs = (0..200)
        .map(|i| format!("s3://datasets/{i}/{}", "x".repeat(1500)))
        .collect();
    let r = mpr::testkit::pass_receipt(&b);
    let body = json!({"command_id": uuid::Uuid::new_v4(), "submitted_at_utc": "2026-11-20T09:00:00.000Z", "bundle": b, "gate_receipt": r});
    let (s, v, hdr) = h
        .call("POST", "/v1/bundles", Some("t-pub"), Some(body))
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_error_body("oversized publish", &v, &hdr, "INVALID_PAYLOAD");
    assert_eq!(v["retryable"], false);
    assert_eq!(v["details"]["limit_bytes"], 256 * 1024);
    let (s, v, _) = h
        .call(
            "GET",
            "/v1/bundles/big/versions/1.0.0",
            Some("t-read"),
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "UNKNOWN_BUNDLE"));
}

/// `GET /v1/commands/{id}?wait_ms=` waits a bounded time and answers TIMEOUT (504,
/// retryable) when no result arrived; without `wait_ms` it answers UNAVAILABLE at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_wait_for_a_result_answers_timeout() {
    let h = harness_with(false);
    let id = uuid::Uuid::new_v4();
    let started = std::time::Instant::now();
    let (s, v, hdr) = h
        .call(
            "GET",
            &format!("/v1/commands/{id}?wait_ms=100"),
            Some("t-read"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{v}");
    assert_error_body("timeout", &v, &hdr, "TIMEOUT");
    assert_eq!(v["retryable"], true);
    assert!(started.elapsed() >= std::time::Duration::from_millis(100));
    // The wait is bounded by http.command_timeout_ms (300 ms here).
    let started = std::time::Instant::now();
    let (s, _, _) = h
        .call(
            "GET",
            &format!("/v1/commands/{id}?wait_ms=60000"),
            Some("t-read"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// The ETag covers the answer (bundle and activation), not the view_version: a write to
/// another family keeps it and the 304; a change of this scope changes it. The
/// view_version the answer was read at travels in `MPR-View-Version`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_etag_covers_the_answer_not_the_view_version() {
    let h = harness_with(true);
    h.ok("PUT", "/v1/catalog/prod", "t-admin", catalog_body())
        .await;
    live(&h, "fraud", "1.0.0", "*").await;
    let uri = "/v1/resolve?environment=prod&bundle_id=fraud";
    let (s, first, hdr) = h.call("GET", uri, Some("t-read"), None).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let etag = hdr[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(
        hdr["mpr-view-version"].to_str().unwrap(),
        first["view_version"].as_str().unwrap()
    );
    live(&h, "other", "1.0.0", "*").await;
    let (s, _, hdr) = h
        .call_h(
            "GET",
            uri,
            Some("t-read"),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_MODIFIED,
        "a write elsewhere keeps the 304"
    );
    assert_eq!(hdr[header::ETAG].to_str().unwrap(), etag);
    let moved = hdr["mpr-view-version"].to_str().unwrap().to_owned();
    assert_ne!(moved, first["view_version"].as_str().unwrap());
    let (_, again, hdr) = h.call("GET", uri, Some("t-read"), None).await;
    assert_eq!(hdr[header::ETAG].to_str().unwrap(), etag);
    assert_eq!(again["view_version"].as_str().unwrap(), moved);
    live(&h, "fraud", "2.0.0", "*").await;
    let (s, now, hdr) = h
        .call_h(
            "GET",
            uri,
            Some("t-read"),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "a change of this scope is not 304: {now}"
    );
    assert_ne!(hdr[header::ETAG].to_str().unwrap(), etag);
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `/readyz` turns not ready whenever the view falls behind the log beyond
/// `http.ready_max_lag_events` (not only at start-up) and when the applier stopped;
/// resolve answers carry the view's lag and age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_view_lag_and_the_applier() {
    let h = harness_with(true);
    let uri = "/v1/resolve?environment=prod&bundle_id=fraud";
    let (s, _, _) = h.call("GET", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    h.status.record_check(0, Some(wall_ms() - 40));
    let (s, v, hdr) = h.call("GET", uri, Some("t-read"), None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "NO_ACTIVE_BUNDLE"));
    assert_eq!(hdr["mpr-view-lag"], "0");
    let age: u64 = hdr["mpr-view-age-ms"].to_str().unwrap().parse().unwrap();
    assert!((40..10_000).contains(&age), "{age}");
    // A query the registry refuses is an answer too, with the same headers.
    let (s, v, hdr) = h
        .call("GET", "/v1/resolve?environment=prod", Some("t-read"), None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "INVALID_PAYLOAD"));
    assert_eq!(hdr["mpr-view-lag"], "0");

    h.status.record_check(5000, None);
    let (s, v, _) = h.call("GET", "/readyz", None, None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        "a view that fell behind is not ready"
    );
    assert!(v["message"].as_str().unwrap().contains("5000"), "{v}");
    let (_, _, hdr) = h.call("GET", uri, Some("t-read"), None).await;
    assert_eq!(
        hdr["mpr-view-lag"], "5000",
        "resolve still answers, with its lag"
    );

    h.status.record_check(3, Some(wall_ms()));
    let (s, v, _) = h.call("GET", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["lag_events"], 3);

    h.status.mark_stopped();
    let (s, v, _) = h.call("GET", "/readyz", None, None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
    );
    assert!(v["message"].as_str().unwrap().contains("stopped"), "{v}");
    let (s, v, _) = h.call("GET", uri, Some("t-read"), None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        "a frozen view does not answer resolve"
    );
}

/// `/v1/audit/checkpoints`: one signed note per log the view applies, each opening with the
/// registry key only and stating the head this view holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_checkpoints_of_the_applied_heads() {
    let h = harness_with(true);
    h.ok("PUT", "/v1/catalog/prod", "t-admin", catalog_body())
        .await;
    live(&h, "fraud", "1.0.0", "*").await;
    let (s, v, _) = h.call("GET", "/v1/audit/checkpoints", None, None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"));
    // A checkpoint covers a whole log: a scoped token may not have one.
    let (s, v, _) = h
        .call("GET", "/v1/audit/checkpoints", Some("t-read-prod"), None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "FORBIDDEN"));
    let (s, v, _) = h
        .call("GET", "/v1/audit/checkpoints", Some("t-audit"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let cps = v["checkpoints"].as_array().unwrap();
    let keys = mpr::testkit::registry_keys();
    let events = cps
        .iter()
        .find(|c| c["log"] == "events" && c["partition"] == 0)
        .unwrap();
    let cp =
        mpr::domain::checkpoint::Checkpoint::open(events["note"].as_str().unwrap(), &keys).unwrap();
    assert_eq!(cp.origin, "mpr/mpr.events/0");
    assert_eq!(cp.seq, 4, "publish, nominate, approve, promote");
    assert_eq!(cp.seq, events["seq"].as_u64().unwrap());
    let catalog = cps.iter().find(|c| c["log"] == "catalog").unwrap();
    let cat = mpr::domain::checkpoint::Checkpoint::open(catalog["note"].as_str().unwrap(), &keys)
        .unwrap();
    assert_eq!((cat.origin.as_str(), cat.seq), ("mpr/mpr.catalog/0", 1));
    let other = mpr::domain::trust::KeySet::of([mpr::testkit::gateway_signer().verifying_key()]);
    assert!(
        mpr::domain::checkpoint::Checkpoint::open(events["note"].as_str().unwrap(), &other)
            .is_err()
    );
}
