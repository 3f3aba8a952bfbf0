//! Read scopes on every query route: a limited token sees nothing outside its grant, and
//! what it does not see is answered exactly as an absent entity is (compared response to
//! response with an empty registry, or with a genuinely absent filter).

use super::*;

/// The same registry as [`populated`] would hold, but empty: the absent answers.
fn empty() -> Harness {
    harness_with(true)
}

/// Catalogs for dev and prod; `fraud@1.0.0` live in prod for `*`, in prod for `acme` and
/// in dev for `*`; `pricing@1.0.0` live in prod for `globex`. Returns the command_id of
/// the prod/acme promotion.
async fn populated() -> (Harness, String) {
    let h = harness_with(true);
    for env in ["prod", "dev"] {
        h.ok(
            "PUT",
            &format!("/v1/catalog/{env}"),
            "t-admin",
            catalog_body(),
        )
        .await;
    }
    live(&h, "fraud", "1.0.0", "*").await;
    let v = h.ok("POST", "/v1/promotions", "t-dep", json!({"bundle_id": "fraud", "bundle_version": "1.0.0", "environment": "prod", "tenant_id": "acme"})).await;
    let acme_promotion = v["command_id"].as_str().unwrap().to_owned();
    h.ok(
        "POST",
        "/v1/promotions",
        "t-admin",
        json!({"bundle_id": "fraud", "bundle_version": "1.0.0", "environment": "dev"}),
    )
    .await;
    live(&h, "pricing", "1.0.0", "globex").await;
    (h, acme_promotion)
}

/// Status, body and content-type: what a caller can compare.
async fn seen(h: &Harness, uri: &str, token: &str) -> (StatusCode, Value, Option<String>) {
    let (s, v, hdr) = h.call("GET", uri, Some(token), None).await;
    let ct = hdr
        .get(header::CONTENT_TYPE)
        .map(|c| c.to_str().unwrap().to_owned());
    (s, v, ct)
}

/// The body without its `view_version`, which differs between any two views.
fn unversioned(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("view_version");
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_outside_the_grant_is_answered_as_absent() {
    let (h, _) = populated().await;
    let absent = empty();
    for uri in [
        "/v1/resolve?environment=prod&bundle_id=fraud",
        "/v1/resolve?environment=prod&bundle_id=fraud&tenant_id=acme",
        "/v1/resolve?environment=prod&bundle_id=fraud&tenant_id=acme&as_of_seq=5",
        "/v1/resolve?environment=prod&bundle_id=fraud&as_of=2030-01-01T00:00:00Z",
    ] {
        let out = seen(&h, uri, "t-read-dev").await;
        assert_eq!(out.0, StatusCode::NOT_FOUND, "{uri}: {}", out.1);
        assert_eq!(out, seen(&absent, uri, "t-read").await, "{uri}");
        assert_eq!(
            seen(&h, uri, "t-read-prod").await.0,
            StatusCode::OK,
            "{uri}"
        );
        assert_eq!(seen(&h, uri, "t-audit").await.0, StatusCode::OK, "{uri}");
    }
    let dev = "/v1/resolve?environment=dev&bundle_id=fraud";
    assert_eq!(seen(&h, dev, "t-read-dev").await.0, StatusCode::OK);
    let out = seen(&h, dev, "t-read-prod").await;
    assert_eq!(out, seen(&absent, dev, "t-read").await);

    // reader@prod/acme: its tenant (the answer may be the `*` binding it falls back to),
    // not the `*` scope itself, not another tenant, not another environment.
    let acme = "/v1/resolve?environment=prod&bundle_id=pricing&tenant_id=acme";
    let globex = "/v1/resolve?environment=prod&bundle_id=pricing&tenant_id=globex";
    assert_eq!(seen(&h, globex, "t-read").await.0, StatusCode::OK);
    assert_eq!(
        seen(&h, globex, "t-read-acme").await,
        seen(&absent, globex, "t-read").await
    );
    assert_eq!(
        seen(&h, acme, "t-read-acme").await,
        seen(&absent, acme, "t-read").await
    );
    let (s, v, _) = seen(
        &h,
        "/v1/resolve?environment=prod&bundle_id=fraud&tenant_id=acme",
        "t-read-acme",
    )
    .await;
    assert_eq!(
        (s, v["matched_rule"].as_str()),
        (StatusCode::OK, Some("TENANT"))
    );
    for uri in [
        "/v1/resolve?environment=prod&bundle_id=fraud",
        "/v1/resolve?environment=prod&bundle_id=fraud&tenant_id=*",
        "/v1/resolve?environment=dev&bundle_id=fraud&tenant_id=acme",
    ] {
        let out = seen(&h, uri, "t-read-acme").await;
        assert_eq!(out, seen(&absent, uri, "t-read").await, "{uri}");
    }

    // A token with no resolving role is refused outright, which reveals no scope.
    let (s, v, _) = seen(&h, dev, "t-dep").await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "FORBIDDEN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_bindings_and_history_outside_the_grant_are_empty() {
    let (h, _) = populated().await;
    let absent = empty();
    for (uri, token) in [
        ("/v1/scopes/prod/*/fraud", "t-read-dev"),
        ("/v1/scopes/prod/acme/fraud", "t-read-dev"),
        ("/v1/scopes/dev/*/fraud", "t-read-prod"),
        ("/v1/scopes/prod/*/fraud", "t-read-acme"),
        ("/v1/scopes/prod/globex/pricing", "t-read-acme"),
        ("/v1/scopes/prod/globex/pricing", "t-dep-dev"),
    ] {
        let (s, v, ct) = seen(&h, uri, token).await;
        assert_eq!(v["bindings"], json!([]), "{uri} {token}: {v}");
        let (s0, v0, ct0) = seen(&absent, uri, "t-read").await;
        assert_eq!((s, unversioned(v), ct), (s0, unversioned(v0), ct0), "{uri}");
        let history = format!("{uri}/history");
        let out = seen(&h, &history, token).await;
        assert_eq!(out.1["items"], json!([]), "{history} {token}");
        assert_eq!(out, seen(&absent, &history, "t-read").await, "{history}");
    }
    for (uri, token) in [
        ("/v1/scopes/prod/*/fraud", "t-read-prod"),
        ("/v1/scopes/dev/*/fraud", "t-read-dev"),
        ("/v1/scopes/prod/acme/fraud", "t-read-acme"),
        ("/v1/scopes/prod/globex/pricing", "t-audit"),
        ("/v1/scopes/prod/globex/pricing", "t-dep"),
    ] {
        let (_, v, _) = seen(&h, uri, token).await;
        assert_eq!(v["bindings"][0]["bundle_version"], "1.0.0", "{uri} {token}");
        let (_, v, _) = seen(&h, &format!("{uri}/history"), token).await;
        assert_eq!(v["items"].as_array().unwrap().len(), 1, "{uri} {token}");
    }
}

/// Whether event `e` (JSON) lies inside the grant of `token`.
fn inside(token: &str, e: &Value) -> bool {
    let env = e["scope"]["environment"]
        .as_str()
        .or(e["catalog_entry"]["environment"].as_str());
    match token {
        "t-read-dev" => env == Some("dev"),
        "t-read-prod" => env == Some("prod"),
        // Its tenant's scopes in prod, and the prod catalog (which has no scope).
        "t-read-acme" => {
            env == Some("prod") && (e["scope"]["tenant_id"] == "acme" || e["scope"].is_null())
        }
        other => panic!("no rule for {other}"),
    }
}

/// Every event a token sees lies inside its grant; the full log needs an unlimited grant
/// or the auditor; a filter on a scope outside the grant answers like an absent one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_filtered_by_the_grant() {
    let (h, _) = populated().await;
    let all = seen(&h, "/v1/events", "t-read").await.1;
    let total = all["items"].as_array().unwrap().len();
    assert_eq!(seen(&h, "/v1/events", "t-audit").await.1, all);
    for token in ["t-read-dev", "t-read-prod", "t-read-acme"] {
        let page = seen(&h, "/v1/events", token).await.1;
        let items = page["items"].as_array().unwrap();
        let expected: Vec<&Value> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| inside(token, e))
            .collect();
        assert!(!expected.is_empty() && expected.len() < total, "{token}");
        assert_eq!(items.iter().collect::<Vec<_>>(), expected, "{token}");
    }
    // Asking for a scope outside the grant answers like asking for one with no events.
    let outside = seen(&h, "/v1/events?environment=prod", "t-read-dev").await;
    let nothing = seen(&h, "/v1/events?environment=staging", "t-read").await;
    assert_eq!(outside.1["items"], json!([]));
    assert_eq!(outside, nothing);
    // A write grant limited to dev reads dev's events only.
    let page = seen(&h, "/v1/events?event_type=BUNDLE_PROMOTED", "t-dep-dev")
        .await
        .1;
    let envs: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["scope"]["environment"].as_str().unwrap())
        .collect();
    assert_eq!(envs, ["dev"], "{page}");
}

/// A command's result is visible to its issuer and to readers of its event; to anyone
/// else it answers exactly as a result that does not exist, with or without a wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_results_outside_the_grant_are_absent() {
    let (h, acme_promotion) = populated().await;
    let absent = empty();
    for token in ["t-dep", "t-read", "t-read-prod", "t-read-acme", "t-audit"] {
        let (s, v, _) = seen(&h, &format!("/v1/commands/{acme_promotion}"), token).await;
        assert_eq!(
            (s, v["command_id"].as_str()),
            (StatusCode::OK, Some(acme_promotion.as_str())),
            "{token}"
        );
    }
    for token in ["t-read-dev", "t-dep-dev"] {
        for uri in [
            format!("/v1/commands/{acme_promotion}"),
            format!("/v1/commands/{acme_promotion}?wait_ms=50"),
        ] {
            let out = seen(&h, &uri, token).await;
            assert!(
                [StatusCode::SERVICE_UNAVAILABLE, StatusCode::GATEWAY_TIMEOUT].contains(&out.0),
                "{uri} {token}: {out:?}"
            );
            assert_eq!(out, seen(&absent, &uri, "t-read").await, "{uri} {token}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_lists_only_permitted_environments() {
    let (h, _) = populated().await;
    let envs = |v: &Value| -> Vec<String> {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["environment"].as_str().unwrap().to_owned())
            .collect()
    };
    for (token, expected) in [
        ("t-read", &["dev", "prod"][..]),
        ("t-audit", &["dev", "prod"]),
        ("t-read-dev", &["dev"]),
        ("t-read-prod", &["prod"]),
        ("t-read-acme", &["prod"]),
        ("t-dep", &["prod"]),
    ] {
        let (s, v, _) = seen(&h, "/v1/catalog", token).await;
        assert_eq!(
            (s, envs(&v)),
            (
                StatusCode::OK,
                expected.iter().map(|e| e.to_string()).collect()
            ),
            "{token}"
        );
    }
}

/// Bundle manifests are registry-wide, not tenant data: a limited reader reads them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_manifests_are_readable_by_every_token() {
    let (h, _) = populated().await;
    for token in ["t-read-dev", "t-read-acme", "t-audit"] {
        let (s, v, _) = seen(&h, "/v1/bundles", token).await;
        assert_eq!(
            (s, v["items"].as_array().unwrap().len()),
            (StatusCode::OK, 2),
            "{token}"
        );
        let (s, _, _) = seen(&h, "/v1/bundles/pricing/versions/1.0.0", token).await;
        assert_eq!(s, StatusCode::OK, "{token}");
    }
}

/// `http.open_resolve` serves resolve to everyone on purpose: no token, no read scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_resolve_is_unscoped() {
    let h = harness_config(true, |c| c.http.open_resolve = true);
    h.ok("PUT", "/v1/catalog/prod", "t-admin", catalog_body())
        .await;
    live(&h, "fraud", "1.0.0", "*").await;
    let uri = "/v1/resolve?environment=prod&bundle_id=fraud";
    for token in [None, Some("t-read-dev"), Some("t-pub")] {
        let (s, v, _) = h.call("GET", uri, token, None).await;
        assert_eq!(s, StatusCode::OK, "{token:?}: {v}");
    }
    // Queries still take the token's scope.
    let (_, v, _) = h
        .call("GET", "/v1/scopes/prod/*/fraud", Some("t-read-dev"), None)
        .await;
    assert_eq!(v["bindings"], json!([]));
}

/// A submission that reuses a command_id answers the recorded result only to a caller who
/// may read it; to anyone else it is a conflict that tells nothing of the other command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_command_id_reveals_nothing_outside_the_grant() {
    let (h, acme_promotion) = populated().await;
    let body = |id: &str| json!({"command_id": id, "bundle_id": "fraud", "bundle_version": "1.0.0", "environment": "dev"});
    let (s, v, _) = h
        .call(
            "POST",
            "/v1/promotions",
            Some("t-dep-dev"),
            Some(body(&acme_promotion)),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "IMMUTABLE_CONFLICT"),
        "{v}"
    );
    assert!(v["details"].is_null(), "{v}");
    assert!(
        !v.to_string().contains("acme") && !v.to_string().contains("prod"),
        "{v}"
    );
    // The issuer gets its own result back (a retry), whatever the body says.
    let (s, v, _) = h
        .call(
            "POST",
            "/v1/promotions",
            Some("t-dep"),
            Some(json!({"command_id": acme_promotion, "bundle_id": "fraud", "bundle_version": "1.0.0", "environment": "prod", "tenant_id": "acme"})),
        )
        .await;
    assert_eq!(
        (
            s,
            v["command_id"].as_str(),
            v["scope"]["tenant_id"].as_str()
        ),
        (StatusCode::OK, Some(acme_promotion.as_str()), Some("acme")),
        "{v}"
    );
}
