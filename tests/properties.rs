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
        prefixes_of_state_then_events(&ops, chunk, |len| cuts.iter().map(|i| i.index(len + 1)).collect())?;
    }
}

/// The state-prefix property for one input: `cuts` picks cut points given the number of
/// state records (0 and all of them are always tried).
fn prefixes_of_state_then_events(
    ops: &[Op],
    chunk: usize,
    cuts: impl FnOnce(usize) -> Vec<usize>,
) -> Result<(), TestCaseError> {
    let w = run(ops);
    let topics = Topics::new("p.");
    let offsets = |evs: &[RegistryEvent]| (0..evs.len() as i64).collect::<Vec<_>>();
    let encoded: Vec<Vec<u8>> = w
        .cat_events
        .iter()
        .chain(&w.events)
        .map(codec::encode_event)
        .collect();
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
        let batch = evs
            .iter()
            .zip(ws)
            .map(|((e, _, off), w)| (*e, w.as_slice(), *off));
        let mac = mpr::domain::trust::StateMac::of(&mpr::testkit::registry_signer());
        for r in derived_batch(&topics, &mac, batch) {
            if r.topic == topics.state {
                // Every state record carries the registry's MAC; a bootstrap keeps
                // the value it covers.
                let value = mpr::log::derive::verify_state_record(&mac, &r.key, &r.payload)
                    .expect("state records carry the registry's MAC");
                state.push(state_write(&r.key, value).unwrap());
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let reference = View::open(&dir.path().join("events"), 1).unwrap();
    reference.apply_batch(&all).unwrap();
    let digest = reference.content_digest().unwrap();
    // Each cut gets a fresh view: a cut drawn twice once reopened the view the first
    // draw had completed and wrote the older prefix over it (session 8's CI failure).
    let mut at: Vec<usize> = cuts(state.len());
    at.extend([0, state.len()]);
    at.sort_unstable();
    at.dedup();
    for cut in at {
        let v = View::open(&dir.path().join(format!("cut-{cut}")), 1).unwrap();
        v.write(&state[..cut]).unwrap();
        v.refresh().unwrap();
        v.apply_batch(&all).unwrap();
        prop_assert_eq!(
            &v.content_digest().unwrap(),
            &digest,
            "cut after {} of {} state records",
            cut,
            state.len()
        );
    }
    Ok(())
}

/// The input the property once failed on (CI, session 8): two catalog changes around a
/// publish, in batches of two, the same cut drawn twice; then every cut.
#[test]
fn state_prefix_regression_catalog_publish_catalog() {
    let ops = [
        Op::Catalog {
            e: 0,
            warn: false,
            full: false,
        },
        Op::Publish {
            f: 0,
            v: 0,
            actor: 0,
            fail: false,
            tweak: false,
        },
        Op::Catalog {
            e: 1,
            warn: false,
            full: false,
        },
    ];
    prefixes_of_state_then_events(&ops, 2, |_| vec![5, 5]).unwrap();
    prefixes_of_state_then_events(&ops, 2, |len| (0..=len).chain(0..=len).collect()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Autopilot and canaries (MPR2 §9): replay and takeover determinism, canary share
// ---------------------------------------------------------------------------------------------

mod autopilot {
    use super::*;
    use mpr::domain::autopilot::{AUTOPILOT_ACTOR, Check, Fixed, RollbackPolicy, Rule};
    use mpr::domain::command::{
        CanaryShare, ForwardedSignal, Observe, ScopeTarget, SetRollbackPolicy,
    };
    use mpr::domain::{BundleId, CommandInput, Environment, TenantId, Timestamp};

    const FAM: &str = "fraud";
    const ENV: &str = "prod";
    /// One minute of log time per command, so cooldowns and caps of minutes matter.
    const STEP_MS: i64 = 60_000;

    /// One step of a random autopilot history.
    #[derive(Debug, Clone)]
    pub(super) enum AOp {
        Promote {
            v: usize,
            canary: Option<u32>,
        },
        Approve {
            v: usize,
        },
        Rollback,
        Policy {
            rule: u8,
            dry_run: bool,
            cooldown_min: u8,
            cap: u8,
        },
        Signals {
            items: Vec<(usize, u8, bool, u32)>,
        },
        Share {
            bp: u32,
        },
        Complete,
        Abort,
    }

    pub(super) fn aop() -> impl Strategy<Value = AOp> {
        prop_oneof![
            3 => (0..3usize, prop::option::weighted(0.5, 1..10_000u32))
                .prop_map(|(v, canary)| AOp::Promote { v, canary }),
            1 => (0..3usize).prop_map(|v| AOp::Approve { v }),
            1 => Just(AOp::Rollback),
            2 => (0..5u8, prop::bool::weighted(0.2), 0..4u8, 0..3u8)
                .prop_map(|(rule, dry_run, cooldown_min, cap)| AOp::Policy { rule, dry_run, cooldown_min, cap }),
            6 => prop::collection::vec((0..3usize, 0..6u8, prop::bool::weighted(0.1), 0..1_000u32), 1..12)
                .prop_map(|items| AOp::Signals { items }),
            1 => (1..10_000u32).prop_map(|bp| AOp::Share { bp }),
            1 => Just(AOp::Complete),
            1 => Just(AOp::Abort),
        ]
    }

    fn scope() -> ScopeTarget {
        ScopeTarget {
            bundle_id: FAM.parse().unwrap(),
            environment: ENV.parse().unwrap(),
            tenant_id: TenantId::any(),
        }
    }

    pub(super) fn grants() -> Grants {
        let g = |s: &str| s.parse::<RoleGrant>().unwrap();
        Grants::enforced([
            ("pub1".parse::<Actor>().unwrap(), vec![g("publisher")]),
            ("appr".parse().unwrap(), vec![g("approver"), g("publisher")]),
            ("dep".parse().unwrap(), vec![g("deployer@prod,stage")]),
            ("admin".parse().unwrap(), vec![g("admin")]),
            ("obs".parse().unwrap(), vec![g("observer@prod")]),
        ])
    }

    fn policy(rule: u8, dry_run: bool, cooldown_min: u8, cap: u8) -> Option<RollbackPolicy> {
        let check = match rule {
            0 => Check::Threshold {
                metric: "error_rate".into(),
                above: Fixed(500_000),
                windows: 2,
            },
            1 => Check::Baseline {
                metric: "error_rate".into(),
                factor: Fixed(1_500_000),
            },
            2 => Check::Incident { max_severity: 2 },
            3 => Check::CanaryWorse {
                metric: "error_rate".into(),
                factor: Fixed(1_200_000),
                windows: 1,
            },
            _ => return None,
        };
        Some(RollbackPolicy {
            rules: vec![Rule {
                rule_id: format!("r{rule}"),
                check,
            }],
            cooldown_ms: u64::from(cooldown_min) * 60_000,
            max_actions: u32::from(cap),
            period_ms: if cap > 0 { 3_600_000 } else { 0 },
            dry_run,
        })
    }

    /// The command log of `ops` after a fixed setup (catalog, three approved versions, the
    /// first promoted). Signals travel inside OBSERVE as the intake forwards them.
    pub(super) fn inputs(ops: &[AOp]) -> Vec<CommandInput> {
        let mut envs = vec![
            to_envelope(
                &Op::Catalog {
                    e: 0,
                    warn: true,
                    full: true,
                },
                &[],
            )
            .unwrap(),
        ];
        for v in VERSIONS {
            envs.push(testkit::envelope(
                "pub1",
                Command::Publish(PublishBundle {
                    bundle: testkit::bundle(FAM, v),
                    gate_receipt: testkit::pass_receipt(&testkit::bundle(FAM, v)),
                }),
            ));
            envs.push(testkit::envelope(
                "appr",
                Command::Nominate(testkit::target(FAM, v)),
            ));
            envs.push(testkit::envelope(
                "admin",
                Command::Approve(testkit::target(FAM, v)),
            ));
        }
        envs.push(testkit::promote("dep", FAM, VERSIONS[0], ENV, "*", false));
        let mut signal_offset = 0i64;
        for op in ops {
            let e = match op {
                AOp::Promote { v, canary } => {
                    let mut e = testkit::promote("dep", FAM, VERSIONS[*v], ENV, "*", false);
                    if let Command::Promote(p) = &mut e.command {
                        p.canary_share_bp = *canary;
                    }
                    e
                }
                AOp::Approve { v } => testkit::envelope(
                    "admin",
                    Command::Approve(testkit::target(FAM, VERSIONS[*v])),
                ),
                AOp::Rollback => testkit::rollback("dep", FAM, ENV, "*", false),
                AOp::Policy {
                    rule,
                    dry_run,
                    cooldown_min,
                    cap,
                } => testkit::envelope(
                    "dep",
                    Command::SetRollbackPolicy(SetRollbackPolicy {
                        scope: scope(),
                        policy: policy(*rule, *dry_run, *cooldown_min, *cap),
                    }),
                ),
                AOp::Signals { items } => {
                    let signals = items
                        .iter()
                        .map(|&(v, window, incident, value)| {
                            signal_offset += 1;
                            forwarded(signal_offset, v, window, incident, value)
                        })
                        .collect();
                    testkit::envelope(
                        AUTOPILOT_ACTOR,
                        Command::Observe(Observe {
                            scope: scope(),
                            signals,
                        }),
                    )
                }
                AOp::Share { bp } => testkit::envelope(
                    "dep",
                    Command::CanarySetShare(CanaryShare {
                        scope: scope(),
                        share_bp: *bp,
                    }),
                ),
                AOp::Complete => testkit::envelope("dep", Command::CanaryComplete(scope())),
                AOp::Abort => testkit::envelope("dep", Command::CanaryAbort(scope())),
            };
            envs.push(e);
        }
        envs.into_iter()
            .enumerate()
            .map(|(i, envelope)| {
                let mut input = testkit::input(envelope, i as i64);
                input.observed_at = Timestamp::from_millis(1_800_000_000_000 + i as i64 * STEP_MS);
                input
            })
            .collect()
    }

    /// One signal as the intake forwards it (unsigned: the dev trust mode of these tests;
    /// signed signals are covered by the vectors and the contract scenario).
    fn forwarded(offset: i64, v: usize, window: u8, incident: bool, value: u32) -> ForwardedSignal {
        let start = 1_800_000_000_000 + i64::from(window) * 60_000;
        let ts = |ms: i64| serde_json::to_value(Timestamp::from_millis(ms)).unwrap();
        let s = serde_json::json!({
            "signal_id": uuid::Uuid::from_u128(offset as u128).to_string(),
            "actor": "obs",
            "source": "prometheus",
            "environment": ENV,
            "tenant_id": "*",
            "bundle_id": FAM,
            "bundle_version": VERSIONS[v],
            "bundle_digest": testkit::bundle(FAM, VERSIONS[v]).digest(),
            "kind": if incident { "INCIDENT" } else { "METRIC" },
            "name": if incident { "pager" } else { "error_rate" },
            "value": if incident { f64::from(1 + value % 4) } else { f64::from(value) / 1000.0 },
            "window_start_utc": ts(start),
            "window_end_utc": ts(start + 60_000),
            "observed_at_utc": ts(start + 60_000),
        });
        testkit::forwarded_signal(&s, offset, None)
    }

    /// A processor: decides `inputs` in order from `part`, as the partition's owner does.
    pub(super) struct Proc {
        pub part: PartitionState,
        pub cat: CatalogState,
        pub events: Vec<RegistryEvent>,
    }

    impl Proc {
        pub fn new() -> Self {
            Self {
                part: PartitionState::new(0),
                cat: CatalogState::new(),
                events: Vec::new(),
            }
        }

        /// A processor that took over: its state rebuilt from the events alone.
        pub fn from_events(cat_events: &[RegistryEvent], events: &[RegistryEvent]) -> Self {
            let mut p = Self::new();
            for e in cat_events {
                p.cat.apply(e).unwrap();
            }
            for e in events {
                p.part.apply(e).unwrap();
            }
            p
        }

        pub fn run(
            &mut self,
            g: &Grants,
            inputs: &[CommandInput],
            cat_events: &mut Vec<RegistryEvent>,
        ) {
            for input in inputs {
                let d = decide::route(&self.part, &self.part.chain, &self.cat, g, input).unwrap();
                if let Decision::Append(e) = d {
                    if e.log == LogId::Catalog {
                        self.cat.apply(&e).unwrap();
                        cat_events.push(e);
                    } else {
                        self.part.apply(&e).unwrap();
                        self.events.push(e);
                    }
                }
            }
        }
    }

    impl Proc {
        /// As [`Proc::run`], and every partition command is also decided against the
        /// RocksDB state store that a restarted processor keeps (policies, kept windows,
        /// signal offsets, canary activations in its column families), which must decide
        /// exactly as memory does.
        pub fn run_stored(
            &mut self,
            g: &Grants,
            inputs: &[CommandInput],
            cat_events: &mut Vec<RegistryEvent>,
            st: &mut super::Stored,
        ) {
            for input in inputs {
                let d = decide::route(&self.part, &self.part.chain, &self.cat, g, input).unwrap();
                if !matches!(input.envelope.command, Command::SetCatalog(_)) {
                    let from_store =
                        decide::route(&st.store.partition(0), &st.pos.chain, &self.cat, g, input)
                            .unwrap();
                    assert_eq!(from_store, d, "the state store decided otherwise");
                    if let Decision::Append(e) = &from_store {
                        let at = st.pos.events_next;
                        st.store
                            .partition(0)
                            .apply(&mut st.pos, e, &codec::encode_event(e), at, Outbox::None)
                            .unwrap();
                    }
                }
                if let Decision::Append(e) = d {
                    if e.log == LogId::Catalog {
                        self.cat.apply(&e).unwrap();
                        cat_events.push(e);
                    } else {
                        self.part.apply(&e).unwrap();
                        self.events.push(e);
                    }
                }
            }
        }
    }

    pub(super) fn bytes(events: &[RegistryEvent]) -> Vec<Vec<u8>> {
        events.iter().map(codec::encode_event).collect()
    }

    /// The resolve answer of the scope for a routing key, as the domain gives it.
    pub(super) fn scope_answer(p: &PartitionState) -> String {
        let fam = p.families.get(&FAM.parse::<BundleId>().unwrap());
        format!("{:?}", fam.map(|f| &f.slots))
    }

    /// The canary slot record of the scope.
    pub(super) fn canary_slot(p: &PartitionState) -> Option<&mpr::domain::state::SlotRecord> {
        let key = mpr::domain::event::ScopeRef {
            environment: ENV.parse().unwrap(),
            tenant_id: TenantId::any(),
            slot: mpr::domain::Slot::Canary,
        };
        p.families
            .get(&FAM.parse::<BundleId>().unwrap())?
            .slots
            .get(&key)
    }

    /// Which of `keys` resolve answers the canary of `p`'s scope.
    pub(super) fn served(p: &PartitionState, keys: &[String]) -> Vec<bool> {
        let env: Environment = ENV.parse().unwrap();
        keys.iter()
            .map(|k| {
                let q = mpr::domain::resolve::ResolveQuery {
                    environment: env.clone(),
                    bundle_id: FAM.parse().unwrap(),
                    tenant_id: None,
                    degrade: false,
                    routing_key: Some(k.clone()),
                };
                mpr::domain::resolve::pick_canary(&q, &TenantId::any(), canary_slot(p))
                    .expect("a canary runs")
                    .2
            })
            .collect()
    }

    /// Starts a canary of 2.0.0 at `share`, then sets its share to `grown`.
    pub(super) fn canary_then_grow(share: u32, grown: u32) -> (PartitionState, PartitionState) {
        let g = grants();
        let all = inputs(&[
            AOp::Promote {
                v: 1,
                canary: Some(share),
            },
            AOp::Share { bp: grown },
        ]);
        let mut cat = Vec::new();
        let mut before = Proc::new();
        before.run(&g, &all[..all.len() - 1], &mut cat);
        let mut after = Proc::from_events(&cat, &before.events);
        after.run(&g, &all[all.len() - 1..], &mut cat);
        (before.part, after.part)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Replaying the same command and signal log decides the same events, byte for byte;
    /// a processor that takes over at any point, with its state rebuilt from `events`
    /// alone (never from `signals`), decides the rest exactly as the first one would; and
    /// the state rebuilt from all events is the deciding state.
    #[test]
    fn autopilot_replay_and_takeover_decide_the_same(
        ops in prop::collection::vec(autopilot::aop(), 1..60),
        at in any::<prop::sample::Index>(),
    ) {
        let g = autopilot::grants();
        let inputs = autopilot::inputs(&ops);
        let mut cat_a = Vec::new();
        let mut a = autopilot::Proc::new();
        a.run(&g, &inputs, &mut cat_a);
        let mut cat_b = Vec::new();
        let mut b = autopilot::Proc::new();
        b.run(&g, &inputs, &mut cat_b);
        prop_assert_eq!(autopilot::bytes(&a.events), autopilot::bytes(&b.events));
        prop_assert_eq!(autopilot::bytes(&cat_a), autopilot::bytes(&cat_b));

        // Takeover after `k` commands: the new owner knows only the events so far.
        let k = at.index(inputs.len() + 1);
        let mut cat_first = Vec::new();
        let mut first = autopilot::Proc::new();
        first.run(&g, &inputs[..k], &mut cat_first);
        let mut second = autopilot::Proc::from_events(&cat_first, &first.events);
        prop_assert_eq!(&second.part, &first.part);
        let before = second.events.len();
        let mut cat_second = cat_first.clone();
        second.run(&g, &inputs[k..], &mut cat_second);
        let mut joined = first.events.clone();
        joined.extend_from_slice(&second.events[before..]);
        prop_assert_eq!(autopilot::bytes(&joined), autopilot::bytes(&a.events));
        prop_assert_eq!(autopilot::bytes(&cat_second), autopilot::bytes(&cat_a));

        // The state rebuilt from events is the deciding state, scopes and windows alike.
        let rebuilt = autopilot::Proc::from_events(&cat_a, &a.events);
        prop_assert_eq!(&rebuilt.part, &a.part);
        prop_assert_eq!(autopilot::scope_answer(&rebuilt.part), autopilot::scope_answer(&a.part));
    }

    /// A processor deciding from its kept RocksDB state store (as after a restart or a
    /// takeover with the store kept) decides every autopilot and canary command exactly as
    /// one deciding from memory, and appends the same events.
    #[test]
    fn autopilot_state_store_decides_like_memory(
        ops in prop::collection::vec(autopilot::aop(), 1..60),
    ) {
        let g = autopilot::grants();
        let inputs = autopilot::inputs(&ops);
        let mut st = Stored::new();
        let mut cat = Vec::new();
        let mut p = autopilot::Proc::new();
        p.run_stored(&g, &inputs, &mut cat, &mut st);
        prop_assert_eq!(&st.pos.chain, &p.part.chain);
        let mut cat_mem = Vec::new();
        let mut mem = autopilot::Proc::new();
        mem.run(&g, &inputs, &mut cat_mem);
        prop_assert_eq!(autopilot::bytes(&p.events), autopilot::bytes(&mem.events));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Over many random routing keys, the share of keys resolve answers the canary is
    /// within five standard deviations of the configured share; and when the share grows,
    /// every key answered the canary before still is (the slice depends on the key, the
    /// scope and the canary's activation, not on the share).
    #[test]
    fn canary_share_is_within_tolerance_and_stable_when_growing(
        share in 1..10_000u32,
        grown in 1..10_000u32,
        salt in any::<u64>(),
    ) {
        let (before, after) = autopilot::canary_then_grow(share, grown);
        prop_assert_eq!(
            autopilot::canary_slot(&before).unwrap().canary.as_ref().unwrap().activation,
            autopilot::canary_slot(&after).unwrap().canary.as_ref().unwrap().activation
        );
        let n = 40_000usize;
        let keys: Vec<String> = (0..n).map(|k| format!("acct-{salt}-{k}")).collect();
        let was = autopilot::served(&before, &keys);
        let now = autopilot::served(&after, &keys);
        for (bp, got) in [(share, &was), (grown, &now)] {
            let p = f64::from(bp) / 10_000.0;
            let frac = got.iter().filter(|s| **s).count() as f64 / n as f64;
            let sigma = (p * (1.0 - p) / n as f64).sqrt();
            prop_assert!((frac - p).abs() <= 5.0 * sigma + 1.0 / n as f64,
                "share {} bp: {} of keys answered the canary", bp, frac);
        }
        if grown >= share {
            prop_assert!(was.iter().zip(&now).all(|(w, n)| !*w || *n), "a key left the canary's slice as it grew");
        } else {
            prop_assert!(was.iter().zip(&now).all(|(w, n)| *w || !*n), "a key joined the canary's slice as it shrank");
        }
    }
}

/// The replay property is not vacuous: over the histories its strategy draws, the
/// autopilot rolls back, aborts canaries, records dry runs and suppresses by cooldown.
#[test]
fn autopilot_histories_reach_every_automated_outcome() {
    use mpr::domain::autopilot::{AutoAction, TriggerOutcome};
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let strategy = prop::collection::vec(autopilot::aop(), 1..60);
    let mut seen = BTreeMap::new();
    for _ in 0..200 {
        let ops = strategy.new_tree(&mut runner).unwrap().current();
        let mut cat = Vec::new();
        let mut p = autopilot::Proc::new();
        p.run(&autopilot::grants(), &autopilot::inputs(&ops), &mut cat);
        for e in &p.events {
            if let Some(t) = e.autopilot.as_ref().and_then(|d| d.trigger.as_ref()) {
                *seen
                    .entry((t.action == AutoAction::Rollback, format!("{:?}", t.outcome)))
                    .or_insert(0) += 1;
                if t.outcome == TriggerOutcome::Acted {
                    assert!(
                        matches!(
                            e.event_type,
                            RegistryEventType::BundleRolledBack | RegistryEventType::CanaryAborted
                        ),
                        "{e:?}"
                    );
                }
            }
        }
    }
    for want in [
        (true, "Acted"),
        (false, "Acted"),
        (true, "DryRun"),
        (true, "Cooldown"),
    ] {
        assert!(
            seen.contains_key(&(want.0, want.1.to_owned())),
            "no history reached {want:?}; seen {seen:?}"
        );
    }
}
