//! Read scopes against a real broker: a `reader@dev` token cannot resolve or see prod, and
//! what it cannot see answers exactly as an absent scope did, while a `reader@prod` token
//! resolves and sees it. Commands go through the HTTP API, as a client's would.

use mpr::config::Principal;
use mpr::domain::bundle::sha256_hex;
use serde_json::json;

use crate::harness::*;

#[test]
fn a_dev_reader_cannot_resolve_or_see_prod() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&broker.addr(), dir.path(), "scopes.");
    for (actor, token, grant) in [
        ("df-dev", "tok-reader-dev", "reader@dev"),
        ("df-prod", "tok-reader-prod", "reader@prod"),
    ] {
        cfg.auth.principals.push(Principal {
            actor: actor.parse().unwrap(),
            roles: vec![grant.parse().unwrap()],
            token_sha256: Some(sha256_hex(token.as_bytes())),
        });
    }
    let reg = InProcess::start(cfg);
    let url = &reg.url;
    let resolve = format!("{url}/v1/resolve?environment=prod&bundle_id=fraud&tenant_id=acme");
    let scope = format!("{url}/v1/scopes/prod/*/fraud");
    // What an absent binding answers, before anything is promoted.
    let absent = get(&resolve, Some("tok-reader"));
    assert_eq!(absent.0, 404, "{}", absent.1);
    let absent_history = get(&format!("{scope}/history"), Some("tok-reader"));

    let catalog = json!({"feature_groups": [{"name": "features", "version": "1"}], "schema_versions": ["decision-input/v1"], "posture": "fail_closed"});
    for env in ["prod", "dev"] {
        accepted(
            "PUT",
            &format!("{url}/v1/catalog/{env}"),
            "tok-admin",
            &catalog,
        );
    }
    let bundle = mpr::testkit::bundle("fraud", "1.0.0");
    let receipt = mpr::testkit::signed_receipt(&bundle, &mpr::testkit::gate_signer());
    accepted(
        "POST",
        &format!("{url}/v1/bundles"),
        "tok-publisher",
        &json!({"command_id": uuid::Uuid::new_v4(), "submitted_at_utc": "2026-11-20T09:00:00.000Z", "bundle": bundle, "gate_receipt": receipt}),
    );
    for step in ["nominate", "approve"] {
        accepted(
            "POST",
            &format!("{url}/v1/bundles/fraud/versions/1.0.0/{step}"),
            "tok-approver",
            &json!({}),
        );
    }
    let promoted = accepted(
        "POST",
        &format!("{url}/v1/promotions"),
        "tok-deployer",
        &json!({"bundle_id": "fraud", "bundle_version": "1.0.0", "environment": "prod"}),
    );
    let version = promoted["view_version"].as_str().map(str::to_owned);
    let barrier = version.map_or_else(String::new, |v| format!("&min_view_version={v}"));

    // reader@prod resolves and sees the binding.
    let (s, v) = get(&format!("{resolve}{barrier}"), Some("tok-reader-prod"));
    assert_eq!(
        (s, v["active_bundle_ref"]["bundle_version"].as_str()),
        (200, Some("1.0.0")),
        "{v}"
    );
    let (_, v) = get(&scope, Some("tok-reader-prod"));
    assert_eq!(v["bindings"][0]["bundle_version"], "1.0.0", "{v}");

    // reader@dev gets what the absent scope answered, and sees no prod event or catalog.
    assert_eq!(
        get(&format!("{resolve}{barrier}"), Some("tok-reader-dev")),
        absent
    );
    assert_eq!(get(&resolve, Some("tok-reader-dev")), absent);
    let (s, v) = get(&scope, Some("tok-reader-dev"));
    assert_eq!((s, &v["bindings"]), (200, &json!([])), "{v}");
    assert_eq!(
        get(&format!("{scope}/history"), Some("tok-reader-dev")),
        absent_history
    );
    let (_, v) = get(&format!("{url}/v1/events"), Some("tok-reader-dev"));
    let envs: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["scope"]["environment"]
                .as_str()
                .or(e["catalog_entry"]["environment"].as_str())
                .unwrap_or("none")
        })
        .collect();
    assert_eq!(envs, ["dev"], "only the dev catalog event: {v}");
    let (_, v) = get(&format!("{url}/v1/catalog"), Some("tok-reader-dev"));
    assert_eq!(v["entries"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["entries"][0]["environment"], "dev");
}
