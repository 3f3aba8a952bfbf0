//! Faults: kill -9 mid-stream, broker restart, two processors in one group, poison input,
//! and librdkafka's mock cluster for request errors and a broker going down.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mpr::domain::bundle::FeatureGroupRef;
use mpr::domain::catalog::{CatalogEntry, Posture};
use mpr::domain::{Command, CommandEnvelope};
use mpr::log::Topics;
use mpr::testkit;
use mpr::view::View;
use serde_json::Value;

use crate::harness::*;

pub fn catalog_cmd(env: &str) -> CommandEnvelope {
    testkit::envelope(
        "admin",
        Command::SetCatalog(CatalogEntry {
            environment: env.parse().unwrap(),
            feature_groups: vec![FeatureGroupRef {
                name: "features".into(),
                version: "1".into(),
            }],
            schema_versions: vec!["decision-input/v1".into()],
            posture: Posture::FailClosed,
            required_gates: Vec::new(),
        }),
    )
}

/// publish, nominate, approve, promote of `family@version` to prod/*.
pub fn lifecycle(family: &str, version: &str) -> Vec<CommandEnvelope> {
    vec![
        testkit::publish_signed("mf", family, version),
        testkit::envelope("alice", Command::Nominate(testkit::target(family, version))),
        testkit::envelope("alice", Command::Approve(testkit::target(family, version))),
        testkit::promote("bob", family, version, "prod", "*", false),
    ]
}

fn view_sum(url: &str) -> u64 {
    let (s, v) = get(&format!("{url}/readyz"), None);
    if s != 200 {
        return 0;
    }
    v["view_version"]
        .as_str()
        .unwrap_or("v1.0")
        .trim_start_matches("v1.")
        .split('.')
        .map(|x| x.parse::<u64>().unwrap_or(0))
        .sum()
}

fn resolve_version(url: &str, family: &str) -> Option<String> {
    let (s, v) = get(
        &format!("{url}/v1/resolve?environment=prod&bundle_id={family}"),
        Some("tok-reader"),
    );
    (s == 200).then(|| {
        v["active_bundle_ref"]["bundle_version"]
            .as_str()
            .unwrap()
            .to_owned()
    })
}

/// Every command_id has exactly one event on the logs (events + catalog).
fn assert_one_event_per_command(cfg: &mpr::config::Config, ids: &BTreeSet<uuid::Uuid>) {
    let t = Topics::new(&cfg.kafka.topic_prefix);
    let mut count: BTreeMap<uuid::Uuid, usize> = BTreeMap::new();
    for part in read_events(cfg) {
        mpr::domain::event::verify_chain(&part).unwrap();
        for e in part {
            *count.entry(e.command_id).or_default() += 1;
        }
    }
    for r in read_all(cfg, &t.catalog, 1) {
        let e = mpr::codec::decode_event(r.payload.as_deref().unwrap()).unwrap();
        *count.entry(e.command_id).or_default() += 1;
    }
    for id in ids {
        assert_eq!(
            count.get(id),
            Some(&1),
            "command {id} has {:?} events",
            count.get(id)
        );
    }
}

#[test]
fn kill_9_mid_stream_loses_and_repeats_nothing() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&broker.addr(), dir.path(), "crash.");
    // An immediate restart of the same instance: static membership hands its partitions
    // back without waiting for the dead member's session to expire.
    cfg.kafka.group_instance_id = Some("crash-a".into());
    let topics = Topics::new("crash.");
    let mut child = ChildRegistry::start(&cfg, dir.path());
    let p = producer(&broker.addr());
    let cat = catalog_cmd("prod");
    rt().block_on(produce(&p, &topics, &cat));
    wait_result(&child.url, cat.command_id);
    let mut cmds = Vec::new();
    for f in 0..250 {
        cmds.extend(lifecycle(&format!("fam-{f:03}"), "1.0.0"));
    }
    // Produce per family in order, families interleaved across partitions.
    rt().block_on(async {
        let futs = (0..250).map(|f| {
            let p = &p;
            let topics = &topics;
            let chunk = &cmds[f * 4..f * 4 + 4];
            async move {
                for c in chunk {
                    produce(p, topics, c).await;
                }
            }
        });
        futures::future::join_all(futs).await;
    });
    wait_for(
        "some progress before the kill",
        Duration::from_secs(120),
        || (view_sum(&child.url) >= 300).then_some(()),
    );
    child.kill9();
    // Restarts at once, before the dead member's session expires, under the same
    // group.instance.id.
    let before = view_sum_offline(&cfg);
    assert!(
        before < 1001,
        "the kill came after everything was done ({before}); the test proves nothing"
    );
    let mut child = ChildRegistry::start(&cfg, dir.path());
    for c in &cmds {
        let r = wait_result(&child.url, c.command_id);
        assert_eq!(r["outcome"], "ACCEPTED", "{r}");
    }
    eprintln!(
        "group rejoins after the restart: {:?}",
        metric(&child.url, "mpr_group_rejoins_total")
    );
    let mut ids: BTreeSet<_> = cmds.iter().map(|c| c.command_id).collect();
    ids.insert(cat.command_id);
    assert_one_event_per_command(&cfg, &ids);
    for f in 0..250 {
        assert_eq!(
            resolve_version(&child.url, &format!("fam-{f:03}")).as_deref(),
            Some("1.0.0")
        );
    }
    // Results the dead instance had not delivered are re-derived once the new one owns the
    // partitions (after its group settles); they may repeat, but never with another value.
    let results = wait_for(
        "every result on the results topic",
        Duration::from_secs(90),
        || {
            let mut results: BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>> = BTreeMap::new();
            // Only this test's commands (each registry start also registers the test gate).
            let wanted: BTreeSet<Vec<u8>> =
                ids.iter().map(|i| i.to_string().into_bytes()).collect();
            for r in read_all(&cfg, &topics.results, 3)
                .into_iter()
                .filter(|r| r.key.as_ref().is_some_and(|k| wanted.contains(k)))
            {
                results
                    .entry(r.key.unwrap())
                    .or_default()
                    .insert(r.payload.unwrap());
            }
            (results.len() >= ids.len()).then_some(results)
        },
    );
    assert_eq!(results.len(), ids.len());
    for (k, v) in &results {
        assert!(
            v.len() == 1,
            "command {} has two different results: {:?}",
            String::from_utf8_lossy(k),
            v.iter()
                .map(|r| String::from_utf8_lossy(r))
                .collect::<Vec<_>>()
        );
    }
    child.terminate();
    let live = view_digest(&cfg.view.path);
    assert_eq!(
        live,
        rebuilt_digest(&cfg),
        "view differs from a fresh rebuild"
    );
    // The compacted changelog, re-derived across the kills, holds the same view: the last
    // `state` record of every key is its latest.
    assert_eq!(
        live,
        bootstrapped_digest(&cfg),
        "view differs from a bootstrap from state"
    );
}

fn view_sum_offline(cfg: &mpr::config::Config) -> u64 {
    View::open(&cfg.view.path, 3)
        .unwrap()
        .version()
        .0
        .iter()
        .sum()
}

#[test]
fn broker_restart_mid_stream_loses_nothing() {
    let mut broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&broker.addr(), dir.path(), "restart.");
    let topics = Topics::new("restart.");
    let reg = InProcess::start(cfg.clone());
    let cat = catalog_cmd("prod");
    let mut cmds = Vec::new();
    for f in 0..40 {
        cmds.extend(lifecycle(&format!("fam-{f:02}"), "1.0.0"));
    }
    {
        let p = producer(&broker.addr());
        rt().block_on(produce(&p, &topics, &cat));
        // Promotions are checked against the catalog: it must be in place first.
        wait_result(&reg.url, cat.command_id);
        rt().block_on(async {
            for c in &cmds[..80] {
                produce(&p, &topics, c).await;
            }
        });
    }
    wait_result(&reg.url, cmds[40].command_id);
    broker.restart();
    let p = producer(&broker.addr());
    rt().block_on(async {
        for c in &cmds[80..] {
            produce(&p, &topics, c).await;
        }
    });
    for c in &cmds {
        let r = wait_result(&reg.url, c.command_id);
        assert_eq!(r["outcome"], "ACCEPTED", "{r}");
    }
    let mut ids: BTreeSet<_> = cmds.iter().map(|c| c.command_id).collect();
    ids.insert(cat.command_id);
    assert_one_event_per_command(&cfg, &ids);
}

#[test]
fn two_instances_share_partitions_and_take_over() {
    let broker = Broker::start();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg_a = config(&broker.addr(), da.path(), "pair.");
    let cfg_b = config(&broker.addr(), db.path(), "pair.");
    let topics = Topics::new("pair.");
    let mut a = InProcess::start(cfg_a.clone());
    let b = InProcess::start(cfg_b.clone());
    let p = producer(&broker.addr());
    let cat = catalog_cmd("prod");
    let mut cmds = Vec::new();
    for f in 0..30 {
        cmds.extend(lifecycle(&format!("fam-{f:02}"), "1.0.0"));
    }
    rt().block_on(produce(&p, &topics, &cat));
    wait_result(&a.url, cat.command_id);
    rt().block_on(async {
        for c in &cmds {
            produce(&p, &topics, c).await;
        }
    });
    for c in &cmds {
        wait_result(&a.url, c.command_id);
        wait_result(&b.url, c.command_id);
    }
    let answers = |url: &str| -> Vec<Value> {
        (0..30)
            .map(|f| {
                let (_, mut v) = get(
                    &format!("{url}/v1/resolve?environment=prod&bundle_id=fam-{f:02}"),
                    Some("tok-reader"),
                );
                v.as_object_mut().unwrap().remove("view_version");
                v
            })
            .collect()
    };
    let before = answers(&a.url);
    assert_eq!(before, answers(&b.url), "two replicas answer differently");
    a.stop();
    // B takes over every partition: v2 of every family still gets promoted.
    let mut more = Vec::new();
    for f in 0..30 {
        more.extend(lifecycle(&format!("fam-{f:02}"), "2.0.0"));
    }
    rt().block_on(async {
        for c in &more {
            produce(&p, &topics, c).await;
        }
    });
    for c in &more {
        let r = wait_result(&b.url, c.command_id);
        assert_eq!(r["outcome"], "ACCEPTED", "{r}");
    }
    for f in 0..30 {
        assert_eq!(
            resolve_version(&b.url, &format!("fam-{f:02}")).as_deref(),
            Some("2.0.0")
        );
    }
    let mut ids: BTreeSet<_> = cmds.iter().chain(&more).map(|c| c.command_id).collect();
    ids.insert(cat.command_id);
    assert_one_event_per_command(&cfg_b, &ids);
}

/// Poison of every kind, including records far over the producer's default 1 MB limit
/// (a 3 MiB JSON and a 3 MiB Avro command): each is dead-lettered (truncated, with its
/// coordinates and digest), rejected where its command_id is readable, and the good
/// commands of its own and of other partitions all land.
#[test]
fn poison_goes_to_dlq_and_good_commands_land() {
    use sha2::Digest;
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&broker.addr(), dir.path(), "poison.");
    let topics = Topics::new("poison.");
    let reg = InProcess::start(cfg.clone());
    let p: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("message.max.bytes", (8 << 20).to_string())
        .create()
        .unwrap();
    let cat = catalog_cmd("prod");
    let good = lifecycle("fraud", "1.0.0");
    let others: Vec<_> = ["churn", "ranker", "pricing", "search"]
        .iter()
        .map(|f| mpr::testkit::publish_signed("mf", f, "1.0.0"))
        .collect();
    let bad_type_id = uuid::Uuid::new_v4();
    let oversized_id = uuid::Uuid::new_v4();
    let big =
        serde_json::json!({"command_id": oversized_id, "pad": "x".repeat(3 << 20)}).to_string();
    let big_avro_cmd = mpr::testkit::publish_signed("mf", "fraud", "9.9.9");
    let mut big_avro = mpr::codec::avro::encode_command(&big_avro_cmd);
    big_avro.resize(3 << 20, 0xAB);
    rt().block_on(produce(&p, &topics, &cat));
    wait_result(&reg.url, cat.command_id);
    rt().block_on(async {
        produce(&p, &topics, &good[0]).await;
        produce_raw(&p, &topics.commands, "fraud", b"\x00\x01 definitely not a command", None).await;
        produce(&p, &topics, &good[1]).await;
        // Avro framing with a fingerprint nobody knows.
        produce_raw(&p, &topics.commands, "fraud", &[0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0], None).await;
        let unknown = serde_json::json!({"command_id": bad_type_id, "actor": "alice", "submitted_at_utc": "2026-11-20T09:00:00.000Z", "command_type": "SELF_DESTRUCT", "payload": {}});
        produce_raw(&p, &topics.commands, "fraud", unknown.to_string().as_bytes(), Some("application/json")).await;
        produce(&p, &topics, &good[2]).await;
        produce_raw(&p, &topics.commands, "fraud", big.as_bytes(), Some("application/json")).await;
        produce_raw(&p, &topics.commands, "fraud", &big_avro, None).await;
        produce(&p, &topics, &good[3]).await;
        for o in &others {
            produce(&p, &topics, o).await;
        }
    });
    for c in good.iter().chain(&others) {
        let r = wait_result(&reg.url, c.command_id);
        assert_eq!(r["outcome"], "ACCEPTED", "{r}");
    }
    let r = wait_result(&reg.url, bad_type_id);
    assert_eq!(
        (r["outcome"].as_str(), r["error"]["code"].as_str()),
        (Some("REJECTED"), Some("INVALID_PAYLOAD"))
    );
    for id in [oversized_id, big_avro_cmd.command_id] {
        let r = wait_result(&reg.url, id);
        assert_eq!(r["error"]["code"], "INVALID_PAYLOAD", "{r}");
    }
    let dlq = wait_for("5 DLQ records", Duration::from_secs(30), || {
        let d = read_all(&cfg, &topics.dlq, 3);
        (d.len() >= 5).then_some(d)
    });
    assert_eq!(dlq.len(), 5);
    let codes: BTreeSet<_> = dlq
        .iter()
        .map(|r| r.header("mpr-error-code").unwrap().to_owned())
        .collect();
    assert!(
        codes.contains("UNSUPPORTED_SCHEMA_VERSION") && codes.contains("INVALID_PAYLOAD"),
        "{codes:?}"
    );
    assert!(dlq.iter().all(|r| r.header("mpr-source-offset").is_some()));
    let oversized = dlq
        .iter()
        .find(|r| r.header("mpr-command-id") == Some(&oversized_id.to_string()))
        .expect("the oversized JSON command is dead-lettered");
    assert_eq!(oversized.header("mpr-truncated"), Some("true"));
    assert_eq!(
        oversized.header("mpr-source-bytes"),
        Some(big.len().to_string().as_str())
    );
    let digest = hex::encode(sha2::Sha256::digest(big.as_bytes()));
    assert_eq!(oversized.header("mpr-source-sha256"), Some(digest.as_str()));
    assert!(oversized.payload.as_ref().unwrap().len() <= 64 * 1024);
    assert_eq!(resolve_version(&reg.url, "fraud").as_deref(), Some("1.0.0"));
}

#[test]
fn mock_cluster_request_errors_and_broker_down() {
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let mock = MockCluster::new(3).unwrap();
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&brokers, dir.path(), "mock.");
    let topics = Topics::new("mock.");
    for (t, n) in [
        (&topics.commands, 3),
        (&topics.events, 3),
        (&topics.catalog, 1),
        (&topics.state, 1),
        (&topics.results, 3),
        (&topics.lifecycle, 3),
        (&topics.bundle_promoted, 3),
        (&topics.dlq, 3),
        (&topics.signals, 3),
    ] {
        mock.create_topic(t, n, 1).unwrap();
    }
    let reg = InProcess::start(cfg.clone());
    let p = producer(&brokers);
    let cat = catalog_cmd("prod");
    rt().block_on(produce(&p, &topics, &cat));
    wait_result(&reg.url, cat.command_id);
    // Transient produce errors: the idempotent producer retries; nothing is lost or doubled.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 6],
    );
    let first = lifecycle("fraud", "1.0.0");
    rt().block_on(async {
        for c in &first {
            produce(&p, &topics, c).await;
        }
    });
    for c in &first {
        assert_eq!(wait_result(&reg.url, c.command_id)["outcome"], "ACCEPTED");
    }
    // A broker goes down and comes back.
    mock.broker_down(1).unwrap();
    let second = lifecycle("pricing", "1.0.0");
    let sender = std::thread::spawn({
        let brokers = brokers.clone();
        let second = second.clone();
        let topics = topics.clone();
        move || {
            let p = producer(&brokers);
            rt().block_on(async {
                for c in &second {
                    produce(&p, &topics, c).await;
                }
            });
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    mock.broker_up(1).unwrap();
    sender.join().unwrap();
    for c in &second {
        assert_eq!(wait_result(&reg.url, c.command_id)["outcome"], "ACCEPTED");
    }
    assert_eq!(
        resolve_version(&reg.url, "pricing").as_deref(),
        Some("1.0.0")
    );
}

/// The processor's state store outlives a restart: the new owner catches each partition up
/// from its kept position (no event replayed), and decides on from there. With the store
/// removed, the same restart replays every event (so the check can fail).
#[test]
fn a_restart_catches_up_from_the_kept_position() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&broker.addr(), dir.path(), "kept.");
    let topics = Topics::new("kept.");
    let p = producer(&broker.addr());
    let families = ["kf-a", "kf-b", "kf-c", "kf-d", "kf-e", "kf-f"];
    let mut reg = InProcess::start(cfg.clone());
    let first: Vec<_> = families
        .iter()
        .map(|f| testkit::publish_signed("mf", f, "1.0.0"))
        .collect();
    rt().block_on(async {
        for c in &first {
            produce(&p, &topics, c).await;
        }
    });
    for c in &first {
        wait_result(&reg.url, c.command_id);
    }
    reg.stop();
    drop(reg);
    let events_before: usize = read_events(&cfg).iter().map(Vec::len).sum();
    assert_eq!(events_before, families.len());

    let again = |version: &str| {
        let reg = InProcess::start(cfg.clone());
        let next: Vec<_> = families
            .iter()
            .map(|f| testkit::publish_signed("mf", f, version))
            .collect();
        rt().block_on(async {
            for c in &next {
                produce(&p, &topics, c).await;
            }
        });
        for c in &next {
            let r = wait_result(&reg.url, c.command_id);
            assert_eq!(r["outcome"], "ACCEPTED", "{r}");
        }
        let replayed = metric(&reg.url, "mpr_processor_catchup_events_total").unwrap();
        let catchups = metric(&reg.url, "mpr_processor_catchups_total").unwrap();
        (replayed, catchups)
    };
    let (replayed, catchups) = again("1.0.1");
    assert!(
        catchups >= 3.0,
        "every partition was caught up ({catchups})"
    );
    assert_eq!(replayed, 0.0, "a kept store replays no event");
    std::fs::remove_dir_all(&cfg.processor.state_path).unwrap();
    let (replayed, _) = again("1.0.2");
    assert!(
        replayed >= 12.0,
        "an empty store replays every event ({replayed})"
    );
    let mut all: Vec<_> = read_events(&cfg).into_iter().flatten().collect();
    all.sort_by_key(|e| (e.partition, e.seq));
    let before = all.len();
    all.dedup_by_key(|e| (e.partition, e.seq));
    assert_eq!(before, all.len(), "no seq was appended twice");
    assert_eq!(all.len(), families.len() * 3);
}
