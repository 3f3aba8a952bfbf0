//! Property tests of the domain over random command sequences: ACTIVE uniqueness and
//! evidence, replay equality, determinism of `decide`, and the hash chain.

use std::collections::BTreeMap;

use mpr::codec;
use mpr::domain::StateRead;
use mpr::domain::bundle::FeatureGroupRef;
use mpr::domain::bundle::GateVerdict;
use mpr::domain::catalog::{CatalogEntry, Posture};
use mpr::domain::command::{BundleTarget, PublishBundle};
use mpr::domain::decide;
use mpr::domain::event::LogId;
use mpr::domain::event::verify_chain;
use mpr::domain::state::Applied;
use mpr::domain::{
    Actor, CatalogState, Command, CommandEnvelope, Decision, Grants, LifecycleState,
    PartitionState, RegistryEvent, RegistryEventType, RoleGrant,
};
use mpr::log::Topics;
use mpr::log::applier::state_write;
use mpr::log::derive::derived_batch;
use mpr::testkit;
use mpr::view::View;
use mpr::view::plan::{self, Write};
use mpr::view::store::{Outbox, Position, StateStore, StoreIdentity};
use proptest::prelude::*;

const FAMILIES: [&str; 2] = ["fraud", "pricing"];
const VERSIONS: [&str; 3] = ["1.0.0", "1.1.0", "2.0.0"];
const ENVS: [&str; 2] = ["prod", "stage"];
const TENANTS: [&str; 2] = ["*", "acme"];
const ACTORS: [&str; 5] = ["pub1", "appr", "dep", "admin", "nobody"];

#[derive(Debug, Clone)]
enum Op {
    Publish {
        f: usize,
        v: usize,
        actor: usize,
        fail: bool,
        tweak: bool,
    },
    Step {
        kind: u8,
        f: usize,
        v: usize,
        actor: usize,
    },
    Promote {
        f: usize,
        v: usize,
        e: usize,
        t: usize,
        degrade: bool,
        actor: usize,
    },
    Rollback {
        f: usize,
        e: usize,
        t: usize,
        degrade: bool,
        actor: usize,
    },
    Catalog {
        e: usize,
        warn: bool,
        full: bool,
    },
    Repeat {
        back: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, 0..3usize, 0..5usize, prop::bool::weighted(0.1), prop::bool::weighted(0.1))
            .prop_map(|(f, v, actor, fail, tweak)| Op::Publish { f, v, actor, fail, tweak }),
        4 => (0..4u8, 0..2usize, 0..3usize, 0..5usize).prop_map(|(kind, f, v, actor)| Op::Step { kind, f, v, actor }),
        4 => (0..2usize, 0..3usize, 0..2usize, 0..2usize, prop::bool::weighted(0.2), 0..5usize)
            .prop_map(|(f, v, e, t, degrade, actor)| Op::Promote { f, v, e, t, degrade, actor }),
        2 => (0..2usize, 0..2usize, 0..2usize, prop::bool::weighted(0.2), 0..5usize)
            .prop_map(|(f, e, t, degrade, actor)| Op::Rollback { f, e, t, degrade, actor }),
        1 => (0..2usize, any::<bool>(), prop::bool::weighted(0.8)).prop_map(|(e, warn, full)| Op::Catalog { e, warn, full }),
        1 => (1..10usize).prop_map(|back| Op::Repeat { back }),
    ]
}

fn grants() -> Grants {
    let g = |s: &str| s.parse::<RoleGrant>().unwrap();
    Grants::enforced([
        ("pub1".parse::<Actor>().unwrap(), vec![g("publisher")]),
        ("appr".parse().unwrap(), vec![g("approver"), g("publisher")]),
        ("dep".parse().unwrap(), vec![g("deployer@prod,stage")]),
        ("admin".parse().unwrap(), vec![g("admin")]),
    ])
}

fn to_envelope(op: &Op, history: &[CommandEnvelope]) -> Option<CommandEnvelope> {
    Some(match op {
        Op::Publish {
            f,
            v,
            actor,
            fail,
            tweak,
        } => {
            let mut b = testkit::bundle(FAMILIES[*f], VERSIONS[*v]);
            if *tweak {
                b.metadata.insert("tweak".into(), "yes".into());
            }
            let mut r = testkit::pass_receipt(&b);
            if *fail {
                r.verdict = GateVerdict::Fail;
            }
            testkit::envelope(
                ACTORS[*actor],
                Command::Publish(PublishBundle {
                    bundle: b,
                    gate_receipt: r,
                }),
            )
        }
        Op::Step { kind, f, v, actor } => {
            let t = BundleTarget {
                ..testkit::target(FAMILIES[*f], VERSIONS[*v])
            };
            let c = match kind {
                0 => Command::Nominate(t),
                1 => Command::Approve(t),
                2 => Command::Reject(t),
                _ => Command::Retire(t),
            };
            testkit::envelope(ACTORS[*actor], c)
        }
        Op::Promote {
            f,
            v,
            e,
            t,
            degrade,
            actor,
        } => testkit::promote(
            ACTORS[*actor],
            FAMILIES[*f],
            VERSIONS[*v],
            ENVS[*e],
            TENANTS[*t],
            *degrade,
        ),
        Op::Rollback {
            f,
            e,
            t,
            degrade,
            actor,
        } => testkit::rollback(
            ACTORS[*actor],
            FAMILIES[*f],
            ENVS[*e],
            TENANTS[*t],
            *degrade,
        ),
        Op::Catalog { e, warn, full } => {
            let fgs = if *full {
                vec![FeatureGroupRef {
                    name: "features".into(),
                    version: "1".into(),
                }]
            } else {
                vec![]
            };
            testkit::envelope(
                "admin",
                Command::SetCatalog(CatalogEntry {
                    environment: ENVS[*e].parse().unwrap(),
                    feature_groups: fgs,
                    schema_versions: vec!["decision-input/v1".into()],
                    posture: if *warn {
                        Posture::Warn
                    } else {
                        Posture::FailClosed
                    },
                    required_gates: Vec::new(),
                }),
            )
        }
        Op::Repeat { back } => history.get(history.len().checked_sub(*back)?)?.clone(),
    })
}

struct World {
    part: PartitionState,
    cat: CatalogState,
    events: Vec<RegistryEvent>,
    cat_events: Vec<RegistryEvent>,
}

/// The processor's RocksDB state store, run in lockstep with the in-memory state.
struct Stored {
    // Dropped before its directory.
    store: StateStore,
    pos: Position,
    _dir: tempfile::TempDir,
}

impl Stored {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open_empty(&dir.path().join("state"), 8, &StoreIdentity::scratch())
            .unwrap();
        Self {
            _dir: dir,
            store,
            pos: Position::new(0),
        }
    }
}

fn run(ops: &[Op]) -> World {
    run_with(ops, None)
}

/// Runs `ops`; with `stored`, every bundle command is also decided against the state
/// store, which must decide exactly as the in-memory state does.
fn run_with(ops: &[Op], mut stored: Option<&mut Stored>) -> World {
    let grants = grants();
    let mut w = World {
        part: PartitionState::new(0),
        cat: CatalogState::new(),
        events: vec![],
        cat_events: vec![],
    };
    let mut history = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let Some(env) = to_envelope(op, &history) else {
            continue;
        };
        history.push(env.clone());
        let input = testkit::input(env, i as i64);
        let catalog_cmd = matches!(input.envelope.command, Command::SetCatalog(_));
        let decide =
            |w: &World| decide::route(&w.part, &w.part.chain, &w.cat, &grants, &input).unwrap();
        let d = decide(&w);
        assert_eq!(d, decide(&w), "decide is not deterministic");
        if let Some(st) = stored.as_deref_mut()
            && !catalog_cmd
        {
            let from_store = decide::route(
                &st.store.partition(0),
                &st.pos.chain,
                &w.cat,
                &grants,
                &input,
            )
            .unwrap();
            assert_eq!(from_store, d, "the state store decided otherwise");
            if let Decision::Append(e) = &from_store {
                let encoded = codec::encode_event(e);
                let at = st.pos.events_next;
                st.store
                    .partition(0)
                    .apply(&mut st.pos, e, &encoded, at, Outbox::None)
                    .unwrap();
            }
        }
        if let Decision::Append(e) = d {
            if catalog_cmd {
                w.cat.apply(&e).unwrap();
                w.cat_events.push(e);
            } else {
                w.part.apply(&e).unwrap();
                w.events.push(e);
            }
        }
        check_invariants(&w);
    }
    w
}

fn check_invariants(w: &World) {
    for fam in w.part.families.values() {
        let mut bindings: BTreeMap<_, u32> = BTreeMap::new();
        for slot in fam.slots.values() {
            if let Some(v) = slot.bound() {
                *bindings.entry(v.clone()).or_default() += 1;
            }
        }
        for (v, rec) in &fam.bundles {
            let n = bindings.get(v).copied().unwrap_or(0);
            assert_eq!(
                rec.active_bindings, n,
                "active_bindings of {v} disagrees with the slots"
            );
            assert_eq!(
                rec.state == LifecycleState::Active,
                n > 0,
                "{v} is {:?} with {n} bindings",
                rec.state
            );
            if n > 0 {
                assert_eq!(rec.gate_receipt.verdict, GateVerdict::Pass);
                assert_eq!(rec.gate_receipt.bundle_digest, rec.bundle_digest);
                assert_eq!(rec.bundle.digest(), rec.bundle_digest);
                let approved = w.events.iter().any(|e| {
                    e.event_type == RegistryEventType::BundleApproved
                        && e.bundle_id.as_ref() == Some(&rec.bundle.bundle_id)
                        && e.bundle_version.as_ref() == Some(v)
                });
                assert!(approved, "{v} is ACTIVE but was never approved");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn invariants_replay_and_chain(ops in prop::collection::vec(op(), 1..80)) {
        let w = run(&ops);
        let mut replay = PartitionState::new(0);
        for e in &w.events {
            replay.apply(e).unwrap();
        }
        prop_assert_eq!(&replay, &w.part);
        let mut cat = CatalogState::new();
        for e in &w.cat_events {
            cat.apply(e).unwrap();
        }
        prop_assert_eq!(&cat, &w.cat);
        prop_assert_eq!(verify_chain(&w.events).unwrap(), w.part.chain.last_seq);
        prop_assert_eq!(verify_chain(&w.cat_events).unwrap(), w.cat.chain.last_seq);
        // Exactly one event per distinct command_id.
        let mut ids: Vec<_> = w.events.iter().map(|e| e.command_id).collect();
        ids.sort();
        let before = ids.len();
        ids.dedup();
        prop_assert_eq!(before, ids.len());
    }

    #[test]
    fn state_store_decides_like_memory(ops in prop::collection::vec(op(), 1..80)) {
        let mut st = Stored::new();
        let w = run_with(&ops, Some(&mut st));
        prop_assert_eq!(&st.pos.chain, &w.part.chain);
        // Clearing the partition forgets everything, as a reload expects.
        st.store.clear(0).unwrap();
        for (v, rec) in w.part.families.values().flat_map(|f| &f.bundles) {
            prop_assert!(st.store.partition(0).bundle(&rec.bundle.bundle_id, v).unwrap().is_none());
        }
    }

    #[test]
    fn tampering_breaks_the_chain(ops in prop::collection::vec(op(), 5..40), pick in any::<prop::sample::Index>()) {
        let w = run(&ops);
        prop_assume!(!w.events.is_empty());
        let mut evs = w.events.clone();
        let i = pick.index(evs.len());
        evs[i].reason = Some("edited after the fact".into());
        let err = verify_chain(&evs).unwrap_err();
        prop_assert_eq!(err.seq, evs[i].seq);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The applier writes many events per WriteBatch; the view must hold the same bytes as
    /// after applying them one at a time, and a batch of already-applied events changes
    /// nothing.
    #[test]
    fn view_batches_equal_single_applies(ops in prop::collection::vec(op(), 1..80), chunk in 1usize..25) {
        let w = run(&ops);
        let events: Vec<&RegistryEvent> = w.cat_events.iter().chain(&w.events).collect();
        let encoded: Vec<Vec<u8>> = events.iter().map(|e| codec::encode_event(e)).collect();
        let all: Vec<(&RegistryEvent, &[u8], i64)> = events
            .iter()
            .zip(&encoded)
            .enumerate()
            .map(|(i, (e, b))| (*e, b.as_slice(), i as i64))
            .collect();
        // Each chunk is read again at later offsets, as a retried produce can duplicate
        // an event: the duplicates are skipped and move no position.
        let mut reads = Vec::new();
        for c in all.chunks(chunk) {
            let again = c.iter().map(|(e, b, o)| (*e, *b, o + 1_000_000));
            reads.push(c.iter().copied().chain(again).collect::<Vec<_>>());
        }
        let dir = tempfile::tempdir().unwrap();
        let single = View::open(&dir.path().join("single"), 1).unwrap();
        for (e, _, off) in reads.iter().flatten() {
            single.apply(e, *off).unwrap();
        }
        let batched = View::open(&dir.path().join("batched"), 1).unwrap();
        for c in &reads {
            batched.apply_batch(c).unwrap();
        }
        let digest = single.content_digest().unwrap();
        prop_assert_eq!(&batched.content_digest().unwrap(), &digest);
        prop_assert_eq!(batched.version(), single.version());
        let again = batched.apply_batch(&all).unwrap();
        prop_assert!(again.iter().all(|a| *a == Applied::AlreadyApplied));
        prop_assert_eq!(&batched.content_digest().unwrap(), &digest);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// The `state` changelog, as the processor writes it batch by batch, may be cut
    /// anywhere (a bootstrap reads it to a high watermark that can fall inside a batch):
    /// bootstrapping a view from any prefix and then tailing the events from the positions
    /// that prefix holds gives the view built from the events alone, byte for byte.
    #[test]
    fn any_prefix_of_state_then_events_gives_the_same_view(
        ops in prop::collection::vec(op(), 1..60),
        chunk in 1usize..12,
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 6),
    ) {
        let w = run(&ops);
        let topics = Topics::new("p.");
        let offsets = |evs: &[RegistryEvent]| (0..evs.len() as i64).collect::<Vec<_>>();
        let encoded: Vec<Vec<u8>> =
            w.cat_events.iter().chain(&w.events).map(codec::encode_event).collect();
        let all: Vec<(&RegistryEvent, &[u8], i64)> = w
            .cat_events
            .iter()
            .zip(offsets(&w.cat_events))
            .chain(w.events.iter().zip(offsets(&w.events)))
            .zip(&encoded)
            .map(|((e, o), b)| (e, b.as_slice(), o))
            .collect();
        // What the processor derives: each event's writes come from its state store.
        let st = Stored::new();
        let mut pos = Position::new(0);
        let planned: Vec<Vec<Write>> = all
            .iter()
            .map(|(e, b, off)| {
                if e.log == LogId::Catalog {
                    plan::plan(e, b, &st.store.partition(0)).unwrap()
                } else {
                    st.store
                        .partition(0)
                        .apply(&mut pos, e, b, *off, Outbox::None)
                        .unwrap()
                        .1
                }
            })
            .collect();
        let mut state: Vec<Write> = Vec::new();
        for (evs, ws) in all.chunks(chunk).zip(planned.chunks(chunk)) {
            let batch = evs.iter().zip(ws).map(|((e, _, off), w)| (*e, w.as_slice(), *off));
            let mac = mpr::domain::trust::StateMac::of(&mpr::testkit::registry_signer());
            for r in derived_batch(&topics, &mac, batch) {
                if r.topic == topics.state {
                    // Every state record carries the registry's MAC; a bootstrap keeps
                    // the value it covers.
                    let value = mpr::log::derive::verify_state_record(
                        &mac,
                        &r.key,
                        &r.payload,
                    )
                    .expect("state records carry the registry's MAC");
                    state.push(state_write(&r.key, value).unwrap());
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let reference = View::open(&dir.path().join("events"), 1).unwrap();
        reference.apply_batch(&all).unwrap();
        let digest = reference.content_digest().unwrap();
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(state.len() + 1)).collect();
        at.extend([0, state.len()]);
        for cut in at {
            let v = View::open(&dir.path().join(format!("cut-{cut}")), 1).unwrap();
            v.write(&state[..cut]).unwrap();
            v.refresh().unwrap();
            v.apply_batch(&all).unwrap();
            prop_assert_eq!(&v.content_digest().unwrap(), &digest, "cut after {} of {} state records", cut, state.len());
        }
    }
}
