//! The autopilot end to end, against a real broker: a canary at 10 %, error-rate signals
//! for it (one window through `POST /v1/signals`, one produced to `signals` by a stock
//! client with the observer's own Ed25519 key) cross the CANARY_WORSE rule, the processor
//! aborts the canary as `mpr-autopilot`, resolve answers the PRIMARY for every routing
//! key, and the audit names the signals. A malformed signal goes to the DLQ on the way and
//! blocks nothing.

use std::time::Duration;

use mpr::config::Principal;
use mpr::domain::bundle::sha256_hex;
use mpr::domain::trust::Signer;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::{Value, json};

use crate::harness::*;

fn signal(version: &str, digest: &str, value: f64, window: u32) -> Value {
    json!({
        "signal_id": uuid::Uuid::new_v4(),
        "actor": "olga",
        "source": "prometheus",
        "environment": "prod",
        "bundle_id": "fraud",
        "bundle_version": version,
        "bundle_digest": digest,
        "kind": "METRIC",
        "name": "error_rate",
        "value": value,
        "window_start_utc": format!("2026-11-20T10:{window:02}:00.000Z"),
        "window_end_utc": format!("2026-11-20T10:{:02}:00.000Z", window + 1),
        "observed_at_utc": format!("2026-11-20T10:{:02}:05.000Z", window + 1),
    })
}

#[test]
fn error_rate_signals_abort_a_canary_and_resolve_answers_the_primary() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&broker.addr(), dir.path(), "auto.");
    cfg.auth.principals.push(Principal {
        actor: "olga".parse().unwrap(),
        roles: vec!["observer@prod".parse().unwrap()],
        token_sha256: Some(sha256_hex(b"tok-observer")),
    });
    let topics = mpr::log::Topics::new(&cfg.kafka.topic_prefix);
    let reg = InProcess::start(cfg.clone());
    let url = &reg.url;

    // olga's own key, registered by the admin, for signals she produces to Kafka herself.
    let olga = Signer::from_seed([0x0a; 32]);
    accepted(
        "POST",
        &format!("{url}/v1/commands"),
        "tok-admin",
        &json!({"command_type": "REGISTER_KEY", "payload": {"owner_kind": "PRINCIPAL", "owner": "olga", "public_key": olga.public_hex()}}),
    );
    accepted(
        "PUT",
        &format!("{url}/v1/catalog/prod"),
        "tok-admin",
        &json!({"feature_groups": [{"name": "features", "version": "1"}], "schema_versions": ["decision-input/v1"], "posture": "fail_closed"}),
    );
    let mut digests = Vec::new();
    for v in ["1.0.0", "2.0.0"] {
        let bundle = mpr::testkit::bundle("fraud", v);
        let receipt = mpr::testkit::signed_receipt(&bundle, &mpr::testkit::gate_signer());
        let r = accepted(
            "POST",
            &format!("{url}/v1/bundles"),
            "tok-publisher",
            &json!({"command_id": uuid::Uuid::new_v4(), "submitted_at_utc": "2026-11-20T09:00:00.000Z", "bundle": bundle, "gate_receipt": receipt}),
        );
        digests.push(r["bundle_digest"].as_str().unwrap().to_owned());
        for step in ["nominate", "approve"] {
            accepted(
                "POST",
                &format!("{url}/v1/bundles/fraud/versions/{v}/{step}"),
                "tok-approver",
                &json!({}),
            );
        }
    }
    accepted(
        "POST",
        &format!("{url}/v1/promotions"),
        "tok-deployer",
        &json!({"bundle_id": "fraud", "bundle_version": "1.0.0", "environment": "prod"}),
    );
    // 1. A canary at 10 %.
    let started = accepted(
        "POST",
        &format!("{url}/v1/promotions"),
        "tok-deployer",
        &json!({"bundle_id": "fraud", "bundle_version": "2.0.0", "environment": "prod", "canary_share_bp": 1000}),
    );
    assert_eq!(started["event_type"], "CANARY_STARTED", "{started}");
    accepted(
        "PUT",
        &format!("{url}/v1/policies/fraud/prod"),
        "tok-deployer",
        &json!({"reason": "abort a canary whose errors run 50 % above the primary's", "policy": {"rules": [{"rule_id": "canary-errors", "kind": "CANARY_WORSE", "metric": "error_rate", "factor": 1.5, "windows": 2}]}}),
    );
    let resolve = |key: &str| {
        let (s, v) = get(
            &format!("{url}/v1/resolve?environment=prod&bundle_id=fraud&routing_key={key}"),
            Some("tok-reader"),
        );
        assert_eq!(s, 200, "{v}");
        v
    };
    let keys: Vec<String> = (0..400).map(|i| format!("user-{i}")).collect();
    let served: Vec<&String> = keys
        .iter()
        .filter(|k| resolve(k)["canary"]["served"] == true)
        .collect();
    let share = served.len() as f64 / keys.len() as f64;
    assert!((0.05..0.15).contains(&share), "canary share {share}");
    let canary_key = served[0].clone();
    assert_eq!(
        resolve(&canary_key)["active_bundle_ref"]["bundle_version"],
        "2.0.0"
    );
    let (_, plain) = get(
        &format!("{url}/v1/resolve?environment=prod&bundle_id=fraud"),
        Some("tok-reader"),
    );
    assert_eq!(plain["active_bundle_ref"]["bundle_version"], "1.0.0");
    assert_eq!(plain["canary"]["bundle_version"], "2.0.0", "{plain}");
    assert_eq!(plain["canary"]["served"], false);

    // A malformed signal first: it is dead-lettered and blocks nothing.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let p = producer(&broker.addr());
    rt.block_on(produce_raw(
        &p,
        &topics.signals,
        "fraud",
        b"{not json",
        Some("application/json"),
    ));

    // 2. Window 1 through the API (the gateway signs for olga's token).
    let mut ids = Vec::new();
    for (v, d, x) in [("1.0.0", &digests[0], 0.02), ("2.0.0", &digests[1], 0.09)] {
        let s = signal(v, d, x, 1);
        ids.push(s["signal_id"].as_str().unwrap().to_owned());
        let (code, body) = send("POST", &format!("{url}/v1/signals"), "tok-observer", &s);
        assert_eq!(code, 202, "{body}");
    }
    // A reader may not send signals.
    let (code, _) = send(
        "POST",
        &format!("{url}/v1/signals"),
        "tok-reader",
        &signal("2.0.0", &digests[1], 0.5, 1),
    );
    assert_eq!(code, 403);
    // Window 2 by a stock client, signed with olga's own key.
    for (v, d, x) in [("1.0.0", &digests[0], 0.02), ("2.0.0", &digests[1], 0.12)] {
        let s = signal(v, d, x, 2);
        ids.push(s["signal_id"].as_str().unwrap().to_owned());
        let sig = mpr::codec::sign_json_signal(&s, &olga);
        let bytes = serde_json::to_vec(&s).unwrap();
        let rec = FutureRecord::to(&topics.signals)
            .key("fraud")
            .payload(&bytes)
            .headers(
                OwnedHeaders::new()
                    .insert(Header {
                        key: "content-type",
                        value: Some("application/json"),
                    })
                    .insert(Header {
                        key: mpr::domain::trust::SIGNATURE_HEADER,
                        value: Some(&sig),
                    }),
            );
        rt.block_on(p.send(rec, Duration::from_secs(30))).unwrap();
    }

    // 3. The processor aborts the canary; 4. every routing key gets the primary.
    wait_for("the canary abort", Duration::from_secs(90), || {
        (resolve(&canary_key)["active_bundle_ref"]["bundle_version"] == "1.0.0").then_some(())
    });
    for k in &keys[..50] {
        let r = resolve(k);
        assert_eq!(
            r["active_bundle_ref"]["bundle_version"], "1.0.0",
            "{k}: {r}"
        );
        assert!(r.get("canary").is_none(), "{k}: {r}");
    }

    // 5. The audit names the rule and the signals.
    let (_, page) = get(
        &format!("{url}/v1/events?bundle_id=fraud&automated=true"),
        Some("tok-admin"),
    );
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    let e = &items[0];
    assert_eq!(e["event_type"], "CANARY_ABORTED");
    assert_eq!(e["actor"], "mpr-autopilot");
    let detail: Value = serde_json::from_str(e["autopilot"].as_str().unwrap()).unwrap();
    let t = &detail["trigger"];
    assert_eq!(t["rule_id"], "canary-errors");
    assert_eq!(t["outcome"], "ACTED");
    let named: Vec<&str> = t["signal_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(
        named.contains(&ids[1].as_str()) && named.contains(&ids[3].as_str()),
        "{t}"
    );
    // Governance's topic carries the trigger as a CloudEvents extension.
    let promoted = read_all(&cfg, &topics.bundle_promoted, cfg.kafka.partitions);
    let abort = promoted
        .iter()
        .map(|r| serde_json::from_slice::<Value>(r.payload.as_deref().unwrap()).unwrap())
        .find(|ce| ce["type"] == "mpr.canary.aborted")
        .expect("a canary.aborted CloudEvent on bundle_promoted");
    assert_eq!(abort["mprautomated"], true);
    // An extension attribute is a simple value: the trigger is its JSON text.
    let trigger: Value = serde_json::from_str(abort["mprtrigger"].as_str().unwrap()).unwrap();
    assert_eq!(trigger["rule_id"], "canary-errors");
    // So does Observability's lifecycle topic.
    let lifecycle = read_all(&cfg, &topics.lifecycle, cfg.kafka.partitions);
    let abort = lifecycle
        .iter()
        .map(|r| serde_json::from_slice::<Value>(r.payload.as_deref().unwrap()).unwrap())
        .find(|ce| ce["type"] == "mpr.canary.aborted")
        .expect("a canary.aborted CloudEvent on lifecycle");
    assert_eq!(abort["mprautomated"], true);
    let trigger: Value = serde_json::from_str(abort["mprtrigger"].as_str().unwrap()).unwrap();
    assert_eq!(trigger["rule_id"], "canary-errors");
    // The malformed signal is in the DLQ, named by its source topic.
    let dlq = read_all(&cfg, &topics.dlq, cfg.kafka.partitions);
    assert!(
        dlq.iter()
            .any(|r| r.header("mpr-source-topic") == Some(topics.signals.as_str())),
        "no dead-lettered signal"
    );
    drop(reg);
}
