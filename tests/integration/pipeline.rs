//! The pipeline: commands in, exactly one event per command out, derived outputs, a view
//! that equals a rebuild from `events` and a bootstrap from `state`.

use mpr::domain::event::verify_chain;
use mpr::domain::{Command, CommandEnvelope};
use mpr::log::Topics;
use mpr::testkit;
use mpr::view::View;

use crate::faults::catalog_cmd;
use crate::harness::*;

/// publish, nominate, approve, promote for one family, in order.
fn lifecycle(family: &str, version: &str, env: &str, tenant: &str) -> Vec<CommandEnvelope> {
    vec![
        testkit::publish_signed("mf", family, version),
        testkit::envelope("alice", Command::Nominate(testkit::target(family, version))),
        testkit::envelope("alice", Command::Approve(testkit::target(family, version))),
        testkit::promote("bob", family, version, env, tenant, false),
    ]
}

#[test]
fn end_to_end_commands_to_view_and_outputs() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&broker.addr(), dir.path(), "e2e.");
    let topics = Topics::new("e2e.");
    let mut reg = InProcess::start(cfg.clone());
    let p = producer(&broker.addr());
    let mut cmds = vec![catalog_cmd("prod")];
    cmds.extend(lifecycle("fraud", "1.0.0", "prod", "*"));
    cmds.extend(lifecycle("pricing", "2.0.0", "prod", "acme"));
    rt().block_on(async {
        // The catalog must be in place before promotions are decided.
        produce(&p, &topics, &cmds[0]).await;
    });
    wait_result(&reg.url, cmds[0].command_id);
    rt().block_on(async {
        for c in &cmds[1..] {
            produce(&p, &topics, c).await;
        }
    });
    let results: Vec<_> = cmds
        .iter()
        .map(|c| wait_result(&reg.url, c.command_id))
        .collect();
    for (c, r) in cmds.iter().zip(&results) {
        assert_eq!(
            r["outcome"],
            "ACCEPTED",
            "{:?}: {r}",
            c.command.command_type()
        );
    }
    // Every command was timed on its way: received by the processor, durable as an
    // event, applied in the view.
    for h in [
        "command_receive_seconds",
        "command_processing_seconds",
        "view_visible_seconds",
    ] {
        let n = metric(&reg.url, &format!("mpr_{h}_count")).unwrap_or(0.0);
        assert!(n >= cmds.len() as f64, "mpr_{h}_count = {n}");
    }
    // Resolve through HTTP.
    let (s, v) = get(
        &format!(
            "{}/v1/resolve?environment=prod&bundle_id=fraud&tenant_id=acme",
            reg.url
        ),
        Some("tok-reader"),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["active_bundle_ref"]["bundle_version"], "1.0.0");
    assert_eq!(v["matched_rule"], "GLOBAL");
    let (_, v) = get(
        &format!(
            "{}/v1/resolve?environment=prod&bundle_id=pricing&tenant_id=acme",
            reg.url
        ),
        Some("tok-reader"),
    );
    assert_eq!(v["matched_rule"], "TENANT");
    let (s, v) = get(
        &format!(
            "{}/v1/resolve?environment=prod&bundle_id=pricing&tenant_id=other",
            reg.url
        ),
        Some("tok-reader"),
    );
    assert_eq!((s, v["code"].as_str()), (404, Some("NO_ACTIVE_BUNDLE")));

    // The logs hold what they promise.
    let events = read_events(&cfg);
    let n_events: usize = events.iter().map(Vec::len).sum();
    assert_eq!(n_events, 8, "one event per family command");
    for part in &events {
        verify_chain(part).unwrap();
    }
    let cat = read_all(&cfg, &topics.catalog, 1);
    assert_eq!(cat.len(), 2, "the test gate's registration and the catalog");
    let results_topic = read_all(&cfg, &topics.results, 3);
    assert!(results_topic.len() >= 9);
    let lifecycle_topic = read_all(&cfg, &topics.lifecycle, 3);
    let types: Vec<String> = lifecycle_topic
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(r.payload.as_deref().unwrap()).unwrap()
                    ["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
        })
        .collect();
    assert_eq!(
        types.iter().filter(|t| *t == "mpr.bundle.promoted").count(),
        2,
        "{types:?}"
    );
    let promoted = read_all(&cfg, &topics.bundle_promoted, 3);
    assert_eq!(promoted.len(), 2);
    let ce: serde_json::Value =
        serde_json::from_slice(promoted[0].payload.as_deref().unwrap()).unwrap();
    assert_eq!(ce["specversion"], "1.0");
    // Governance can check a promotion it consumes: `data` is the event the registry signed.
    let promoted_event: mpr::domain::RegistryEvent =
        serde_json::from_value(ce["data"].clone()).unwrap();
    promoted_event
        .authenticate(&mpr::testkit::registry_keys())
        .unwrap();
    let state = read_all(&cfg, &topics.state, 1);
    assert!(!state.is_empty());

    // The incremental view equals a rebuild from events and a bootstrap from state.
    reg.stop();
    let live = view_digest(&cfg.view.path);
    assert_eq!(rebuilt_digest(&cfg), live, "rebuild from events differs");
    assert_eq!(
        bootstrapped_digest(&cfg),
        live,
        "bootstrap from state differs"
    );

    // A record appended to `state` that the registry did not write (here: a copy of a real
    // one under another key's MAC) stops a bootstrap instead of reaching a view.
    let real = &state[0];
    let key = real.key.clone().unwrap();
    let payload = real.payload.clone().unwrap();
    let value = &payload[..payload.len() - mpr::domain::trust::STATE_TAG_LEN];
    let mut forged = value.to_vec();
    forged.extend_from_slice(
        &mpr::domain::trust::StateMac::of(&mpr::domain::trust::Signer::from_seed([9; 32]))
            .tag(&key, value),
    );
    let p = producer(&broker.addr());
    rt().block_on(async {
        let rec = rdkafka::producer::FutureRecord::to(&topics.state)
            .key(&key)
            .payload(&forged);
        p.send(rec, std::time::Duration::from_secs(30))
            .await
            .unwrap();
    });
    let refused = tempfile::tempdir().unwrap();
    let v = View::open(refused.path(), 3).unwrap();
    let err = mpr::log::applier::bootstrap_from_state(
        &cfg.kafka,
        &mpr::domain::trust::StateMac::of(&mpr::testkit::registry_signer()),
        &v,
        |_| {},
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not carry the registry's MAC"),
        "{err}"
    );

    // Records appended to `events` that the registry did not sign: a copy of a
    // partition's last event with the next seq, chained to the head and correctly hashed,
    // signed by another key; and the same unsigned. A rebuild verifies every event, so it
    // skips both and still gives the live view.
    let (part, head) = events
        .iter()
        .enumerate()
        .filter_map(|(i, evs)| evs.last().map(|e| (i as i32, e.clone())))
        .max_by_key(|(_, e)| e.seq)
        .unwrap();
    let mut forged = head.clone();
    forged.seq = head.seq + 1;
    forged.prev_hash = head.hash.clone();
    forged.command_id = uuid::Uuid::new_v4();
    forged.event_id = mpr::domain::RegistryEvent::id_for(forged.command_id);
    forged.hash = forged.compute_hash();
    let mut unsigned = forged.clone();
    unsigned.signature = None;
    forged.sign(&mpr::domain::trust::Signer::from_seed([9; 32]));
    rt().block_on(async {
        for e in [&forged, &unsigned] {
            let bytes = mpr::codec::encode_event(e);
            let key = e
                .bundle_id
                .as_ref()
                .map(|b| b.to_string())
                .unwrap_or_default();
            let rec = rdkafka::producer::FutureRecord::to(&topics.events)
                .partition(part)
                .key(&key)
                .payload(&bytes);
            p.send(rec, std::time::Duration::from_secs(30))
                .await
                .unwrap();
        }
    });
    let part = part as usize;
    assert_eq!(read_events(&cfg)[part].len(), events[part].len() + 2);
    assert_eq!(
        rebuilt_digest(&cfg),
        live,
        "a rebuild served an event the registry did not sign"
    );
}
