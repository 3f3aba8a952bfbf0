//! `mpr_bench`: the benchmark driver behind `scripts/bench.sh` (never part of the tests).
//! It feeds a running registry through Kafka and measures what the registry makes visible.
//!
//! - `commands`: a mixed stream (publish, nominate, approve, promote) as fast as the
//!   producer goes; reports commands/s from the first produce until the view holds every
//!   event.
//! - `latency`: an open-loop stream at a fixed rate; reports produce-to-visible latency
//!   percentiles for a sample of commands.
//! - `seed-resolve`: the realistic resolve view (families x environments x tenants, with
//!   `*` and tenant-specific bindings).

use std::time::{Duration, Instant};

// The same allocator as the `mpr` binary, so that the in-process figures (`apply`) measure
// what the registry runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use mpr::domain::bundle::FeatureGroupRef;
use mpr::domain::catalog::{CatalogEntry, Posture};
use mpr::domain::trust::{SIGNATURE_HEADER, Signer};
use mpr::domain::{Command, CommandEnvelope};
use mpr::testkit;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// A registry config file whose `[kafka.client]` and `[kafka.client_secrets]` settings
    /// (TLS, SASL) the benchmark's producer takes too; `--brokers` still names the brokers.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Topic prefix of the registry under test.
    #[arg(long, default_value = "mpr.")]
    prefix: String,
    /// Registry URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Reader token.
    #[arg(long, default_value = "dev-reader-token")]
    token: String,
    /// The API gateway's private key (PKCS#8 PEM): commands are signed with it, as the HTTP
    /// API signs them. Without it they go unsigned (only an `unsigned-dev` registry takes
    /// them).
    #[arg(long)]
    gateway_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Throughput of a mixed stream.
    Commands {
        /// Commands to send (4 per family).
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        /// Family name prefix (use a fresh one per run).
        #[arg(long, default_value = "thr")]
        family_prefix: String,
        /// Only publishes, 100 versions per family: one bundle per command (for the
        /// footprint and rebuild figures at 1,000,000 bundles).
        #[arg(long)]
        publish_only: bool,
    },
    /// Produce-to-visible latency at a fixed rate.
    Latency {
        /// Commands per second.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Seconds.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Track one command in this many.
        #[arg(long, default_value_t = 10)]
        sample_every: usize,
        /// Family name prefix.
        #[arg(long, default_value = "lat")]
        family_prefix: String,
        /// Before timing, send this many publishes (spread over the partitions) and wait
        /// until the view shows them all: the processor then owns its partitions and the
        /// figure is the steady state, not the start-up (group join and catch-up).
        #[arg(long, default_value_t = 30)]
        warmup: usize,
    },
    /// Sequential promotes through the HTTP API, flipping one scope between two versions;
    /// each request waits for its result (the peer of MLflow's alias update).
    Promote {
        /// Promotes.
        #[arg(long, default_value_t = 300)]
        n: usize,
        /// Deployer token.
        #[arg(long, default_value = "dev-deployer-token")]
        deployer_token: String,
    },
    /// In-process, no broker: decide + apply N commands' events into a fresh RocksDB view,
    /// to separate the registry's own cost from the broker's.
    Apply {
        /// Commands (4 per family).
        #[arg(long, default_value_t = 1_000_000)]
        count: usize,
        /// View directory (must not exist).
        #[arg(long)]
        dir: std::path::PathBuf,
        /// Seed the realistic resolve view of this many families instead (for serving).
        #[arg(long)]
        resolve_families: Option<usize>,
        /// Keep the view's and state store's tables uncompressed (the product uses LZ4):
        /// to measure what compression saves.
        #[arg(long)]
        uncompressed: bool,
    },
    /// In-process, no broker, no view: the processor's in-memory partition state after N
    /// publishes (100 versions per family), as resident memory per bundle.
    StateMemory {
        /// Publishes (one bundle each).
        #[arg(long, default_value_t = 1_000_000)]
        count: usize,
    },
    /// In-process, no broker: what checking one event costs every reader (the view applier,
    /// a catch-up, a rebuild), per event: decode only, decode + hash, decode + hash +
    /// registry signature; and what signing costs the processor.
    Verify {
        /// Events (the lifecycle mix of `commands`: publish, nominate, approve, promote).
        #[arg(long, default_value_t = 20_000)]
        count: usize,
    },
    /// Runtime signals (MPR2 §9). `families` scopes in prod, each with 1.1.0 ACTIVE over
    /// 1.0.0 and a THRESHOLD policy on `error_rate`. First a burst of `burst` harmless
    /// signals as fast as the producer goes: signals/s from the first produce until the
    /// view has applied every one (`mpr_signals_applied`). Then `rate` harmless signals/s
    /// for `seconds`, and once a second one triggering signal for the next family: the time
    /// from its produce to resolve answering the rolled-back 1.0.0.
    Signals {
        /// Scopes (one trigger each at most).
        #[arg(long, default_value_t = 40)]
        families: usize,
        /// Signals in the burst.
        #[arg(long, default_value_t = 100_000)]
        burst: usize,
        /// Background signals per second during the trigger phase.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Seconds of the trigger phase.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Family name prefix (use a fresh one per run).
        #[arg(long, default_value = "sig")]
        family_prefix: String,
    },
    /// A noisy monitor: `rate` signals/s for `seconds`, about `families` families no scope
    /// binds (each is recorded and ignored, through the whole intake and processor path).
    /// Run next to `latency` to see what a signal burst costs commands.
    Flood {
        /// Signals per second.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// Seconds.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Families the signals name.
        #[arg(long, default_value_t = 50)]
        families: usize,
    },
    /// In-process view, real HTTP: the console's bundles page over `versions` registered
    /// bundle versions (100 per family), served by the registry's own router on a loopback
    /// socket, signed in as a reader. Sequential GETs (`requests` each) of the first page,
    /// a state filter, a text search that matches one family, and a bundle version page:
    /// p50 and p99 per page.
    Console {
        /// Bundle versions in the view.
        #[arg(long, default_value_t = 10_000)]
        versions: usize,
        /// Requests per page.
        #[arg(long, default_value_t = 500)]
        requests: usize,
    },
    /// The machine's HTTP ceiling for resolve: a trivial axum handler answering a fixed
    /// 900-byte JSON body on `GET /v1/resolve` (any query, any headers, nothing checked),
    /// served until killed. `scripts/bench.sh` loads it exactly as it loads the registry's
    /// `/v1/resolve` (same random URLs, same bearer header), in the same run, and records
    /// the ratio.
    Trivial {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:18090")]
        listen: String,
    },
    /// Seeds the realistic resolve view.
    SeedResolve {
        /// Families.
        #[arg(long, default_value_t = 1000)]
        families: usize,
        /// Tenants.
        #[arg(long, default_value_t = 50)]
        tenants: usize,
        /// Share of (family, environment, tenant) with a tenant-specific binding.
        #[arg(long, default_value_t = 0.1)]
        tenant_share: f64,
    },
}

const ENVS: [&str; 3] = ["prod", "stage", "dev"];

fn producer(brokers: &str, config: Option<&std::path::Path>) -> FutureProducer {
    let mut c = ClientConfig::new();
    if let Some(file) = config {
        let cfg = mpr::config::Config::load(Some(file)).expect("the config loads");
        c = mpr::log::client_config(&cfg.kafka);
    }
    c.set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("acks", "all")
        .create()
        .expect("producer")
}

static SIGNER: std::sync::OnceLock<Option<Signer>> = std::sync::OnceLock::new();

async fn send(
    p: &FutureProducer,
    topic: &str,
    env: &CommandEnvelope,
) -> rdkafka::producer::DeliveryFuture {
    let (bytes, signature) = match SIGNER.get().and_then(Option::as_ref) {
        Some(s) => {
            let (b, sig) = mpr::codec::sign_avro_command(env, s);
            (b, Some(sig))
        }
        None => (mpr::codec::avro::encode_command(env), None),
    };
    loop {
        let mut rec = FutureRecord::to(topic)
            .key(env.command.partition_key())
            .payload(&bytes);
        if let Some(sig) = &signature {
            rec = rec.headers(OwnedHeaders::new().insert(Header {
                key: SIGNATURE_HEADER,
                value: Some(sig),
            }));
        }
        match p.send_result(rec) {
            Ok(f) => return f,
            Err((e, _)) => {
                if !matches!(
                    e,
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull
                    )
                ) {
                    panic!("produce failed: {e}");
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
}

/// Queues every command of `cmds`, then waits until the broker has acknowledged each.
/// Sends `cmds` and waits until the view has applied `base` plus one event per command;
/// panics after `timeout_s` seconds, naming `what`. Returns the new applied count.
async fn send_and_apply(
    p: &FutureProducer,
    topic: &str,
    url: &str,
    base: u64,
    cmds: &[CommandEnvelope],
    timeout_s: u64,
    what: &'static str,
) -> u64 {
    send_all(p, topic, cmds).await;
    let (url, target) = (url.to_owned(), base + cmds.len() as u64);
    tokio::task::spawn_blocking(move || {
        assert!(
            wait_applied(&url, target, Duration::from_secs(timeout_s)),
            "the {what} commands were not applied within {timeout_s} s"
        )
    })
    .await
    .unwrap();
    target
}

async fn send_all(p: &FutureProducer, topic: &str, cmds: &[CommandEnvelope]) {
    let mut futs = Vec::with_capacity(cmds.len());
    for c in cmds {
        futs.push(send(p, topic, c).await);
    }
    for f in futs {
        f.await.expect("delivery").expect("delivered");
    }
}

/// The platform commands every run starts with: the test gate's key (so that the signed
/// receipts of the publishes verify), then a catalog entry per environment.
fn catalogs() -> Vec<CommandEnvelope> {
    std::iter::once(testkit::register_test_gate("platform-admin"))
        .chain(ENVS.iter().map(|e| {
            testkit::envelope(
                "platform-admin",
                Command::SetCatalog(CatalogEntry {
                    environment: e.parse().unwrap(),
                    feature_groups: vec![FeatureGroupRef {
                        name: "features".into(),
                        version: "1".into(),
                    }],
                    schema_versions: vec!["decision-input/v1".into()],
                    posture: Posture::FailClosed,
                    required_gates: Vec::new(),
                }),
            )
        }))
        .collect()
}

fn lifecycle(family: &str, env: &str) -> [CommandEnvelope; 4] {
    [
        testkit::publish_signed("model-factory", family, "1.0.0"),
        testkit::envelope("alice", Command::Nominate(testkit::target(family, "1.0.0"))),
        testkit::envelope("alice", Command::Approve(testkit::target(family, "1.0.0"))),
        testkit::promote("bob", family, "1.0.0", env, "*", false),
    ]
}

/// The realistic resolve view as commands: every family published, approved and bound to
/// `*` in each environment, plus tenant-specific bindings for a share of tenants.
fn resolve_mix(families: usize, tenants: usize, tenant_share: f64) -> Vec<CommandEnvelope> {
    let mut cmds = catalogs();
    let mut rng: u64 = 0x2545_F491_4F6C_DD1D;
    for f in 0..families {
        let fam = format!("fam-{f:04}");
        cmds.push(testkit::publish_signed("model-factory", &fam, "1.0.0"));
        cmds.push(testkit::envelope(
            "alice",
            Command::Nominate(testkit::target(&fam, "1.0.0")),
        ));
        cmds.push(testkit::envelope(
            "alice",
            Command::Approve(testkit::target(&fam, "1.0.0")),
        ));
        for env in ENVS {
            cmds.push(testkit::promote("bob", &fam, "1.0.0", env, "*", false));
            for t in 0..tenants {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                if (rng % 10_000) as f64 / 10_000.0 < tenant_share {
                    cmds.push(testkit::promote(
                        "bob",
                        &fam,
                        "1.0.0",
                        env,
                        &format!("tenant-{t:02}"),
                        false,
                    ));
                }
            }
        }
    }
    cmds
}

fn applied_events(url: &str) -> u64 {
    let Ok(r) = ureq::get(&format!("{url}/readyz")).call() else {
        return 0;
    };
    let v: serde_json::Value = r.into_json().unwrap_or_default();
    v["view_version"]
        .as_str()
        .unwrap_or("v1.0")
        .trim_start_matches("v1.")
        .split('.')
        .filter_map(|x| x.parse::<u64>().ok())
        .sum()
}

fn wait_applied(url: &str, target: u64, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if applied_events(url) >= target {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn result_visible(agent: &ureq::Agent, url: &str, token: &str, id: uuid::Uuid) -> bool {
    agent
        .get(&format!("{url}/v1/commands/{id}"))
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .is_ok()
}

/// Resident memory of this process.
fn rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Produces a JSON command (the autopilot commands travel as JSON only), signed like
/// [`send`] signs Avro ones.
async fn send_json(p: &FutureProducer, topic: &str, env: &CommandEnvelope) {
    let value = serde_json::to_value(env).expect("commands serialize");
    let bytes = serde_json::to_vec(&value).expect("JSON");
    let mut headers = OwnedHeaders::new().insert(Header {
        key: "content-type",
        value: Some(mpr::codec::CONTENT_TYPE_JSON),
    });
    let sig = SIGNER
        .get()
        .and_then(Option::as_ref)
        .map(|s| mpr::codec::sign_json_command(&value, s));
    if let Some(sig) = &sig {
        headers = headers.insert(Header {
            key: SIGNATURE_HEADER,
            value: Some(sig),
        });
    }
    let rec = FutureRecord::to(topic)
        .key(env.command.partition_key())
        .payload(&bytes)
        .headers(headers);
    p.send(rec, Duration::from_secs(30))
        .await
        .expect("delivered");
}

/// A signal record: its key (the bundle_id), its JSON, and the gateway's signature for
/// the observer `observability` (config/local.toml), as `POST /v1/signals` signs it.
fn signal_record(
    family: &str,
    version: &str,
    digest: &str,
    value: f64,
    window: i64,
) -> (String, Vec<u8>, Option<String>) {
    let start = 1_800_000_000_000 + window * 60_000;
    let ts = |ms: i64| mpr::domain::Timestamp::from_millis(ms).to_string();
    let v = json!({
        "signal_id": uuid::Uuid::new_v4(),
        "actor": "observability",
        "source": "mpr-bench",
        "environment": "prod",
        "bundle_id": family,
        "bundle_version": version,
        "bundle_digest": digest,
        "kind": "METRIC",
        "name": "error_rate",
        "value": value,
        "window_start_utc": ts(start),
        "window_end_utc": ts(start + 60_000),
        "observed_at_utc": ts(start + 60_000),
    });
    let sig = SIGNER
        .get()
        .and_then(Option::as_ref)
        .map(|s| mpr::codec::sign_json_signal(&v, s));
    (
        family.to_owned(),
        serde_json::to_vec(&v).expect("JSON"),
        sig,
    )
}

fn send_signal(
    p: &FutureProducer,
    topic: &str,
    (key, bytes, sig): &(String, Vec<u8>, Option<String>),
) -> Option<rdkafka::producer::DeliveryFuture> {
    let mut headers = OwnedHeaders::new().insert(Header {
        key: "content-type",
        value: Some(mpr::codec::CONTENT_TYPE_JSON),
    });
    if let Some(sig) = sig {
        headers = headers.insert(Header {
            key: SIGNATURE_HEADER,
            value: Some(sig),
        });
    }
    let rec = FutureRecord::to(topic)
        .key(key)
        .payload(bytes)
        .headers(headers);
    p.send_result(rec).ok()
}

/// A counter of the registry's `/metrics`, or 0.
fn metric(url: &str, name: &str) -> f64 {
    let Ok(r) = ureq::get(&format!("{url}/metrics")).call() else {
        return 0.0;
    };
    r.into_string()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The version resolve answers for `family` in prod.
fn resolved(agent: &ureq::Agent, url: &str, token: &str, family: &str) -> Option<String> {
    let v: serde_json::Value = agent
        .get(&format!(
            "{url}/v1/resolve?environment=prod&bundle_id={family}"
        ))
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .ok()?
        .into_json()
        .ok()?;
    v["active_bundle_ref"]["bundle_version"]
        .as_str()
        .map(str::to_owned)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = Args::parse();
    let signer = a.gateway_key.as_ref().map(|path| {
        let pem = std::fs::read_to_string(path).expect("gateway key file");
        Signer::from_pem(&pem).expect("gateway key is PKCS#8 PEM")
    });
    SIGNER.set(signer).expect("set once");

    // The trivial handler first: nothing else runs in its process (no Kafka producer and
    // its polling thread), so that it stays the machine's bare HTTP ceiling.
    if let Cmd::Trivial { listen } = &a.cmd {
        let body: &'static str =
            Box::leak(format!("{{\"pad\":\"{}\"}}", "x".repeat(890)).into_boxed_str());
        let app = axum::Router::new().route(
            "/v1/resolve",
            axum::routing::get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
        axum::serve(listener, app).await.expect("serve");
        return;
    }

    let topic = format!("{}commands", a.prefix);
    let p = producer(&a.brokers, a.config.as_deref());
    let base = applied_events(&a.url);
    match a.cmd {
        Cmd::Trivial { .. } => unreachable!("served above"),
        Cmd::Console { versions, requests } => console_bench(versions, requests).await,
        Cmd::Commands {
            count,
            family_prefix,
            publish_only,
        } => {
            // Warm-up, not measured: the platform commands and a publish in each of 30
            // families (every partition, with a near certainty), applied before the clock
            // starts, so that the figure does not include the processor's group join (under
            // a second on tansu 0.6, about 23 s on nisshi 0.7.0-pre.2).
            let mut warm = catalogs();
            warm.extend((0..30).map(|i| {
                testkit::publish_signed(
                    "model-factory",
                    &format!("{family_prefix}-warm-{i}"),
                    "1.0.0",
                )
            }));
            let base = send_and_apply(&p, &topic, &a.url, base, &warm, 300, "warm-up").await;
            let mut cmds = Vec::new();
            if publish_only {
                cmds.extend((0..count).map(|i| {
                    let family = format!("{family_prefix}-{:06}", i / 100);
                    testkit::publish_signed("model-factory", &family, &format!("1.0.{}", i % 100))
                }));
            } else {
                for f in 0..count.div_ceil(4) {
                    cmds.extend(lifecycle(&format!("{family_prefix}-{f:06}"), ENVS[f % 3]));
                }
            }
            // Generate first so the measurement covers the registry, not the generator.
            let total = cmds.len() as u64;
            let started = Instant::now();
            send_all(&p, &topic, &cmds).await;
            let produced = started.elapsed().as_secs_f64();
            let url = a.url.clone();
            let done = tokio::task::spawn_blocking(move || {
                wait_applied(&url, base + total, Duration::from_secs(1800))
            })
            .await
            .unwrap();
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{}",
                json!({"bench": "commands", "commands": total, "produce_seconds": produced, "visible_seconds": secs,
                       "commands_per_second": total as f64 / secs, "complete": done})
            );
        }
        Cmd::Latency {
            rate,
            seconds,
            sample_every,
            family_prefix,
            warmup,
        } => {
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(5))
                .build();
            let warm: Vec<_> = (0..warmup)
                .map(|i| {
                    testkit::publish_signed(
                        "model-factory",
                        &format!("{family_prefix}-warm-{i}"),
                        "1.0.0",
                    )
                })
                .collect();
            for c in &warm {
                send_all(&p, &topic, std::slice::from_ref(c)).await;
            }
            let warm_started = Instant::now();
            for c in &warm {
                while !result_visible(&agent, &a.url, &a.token, c.command_id) {
                    assert!(
                        warm_started.elapsed() < Duration::from_secs(120),
                        "warm-up commands did not become visible"
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let warm_s = warm_started.elapsed().as_secs_f64();
            let n = (rate * seconds) as usize;
            let mut cmds = Vec::with_capacity(n);
            for f in 0..n.div_ceil(4) {
                cmds.extend(lifecycle(&format!("{family_prefix}-{f:06}"), ENVS[f % 3]));
            }
            cmds.truncate(n);
            let (tx, rx) = std::sync::mpsc::channel::<(uuid::Uuid, Instant)>();
            let (url, token) = (a.url.clone(), a.token.clone());
            let poller = std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(5))
                    .build();
                let mut pending: Vec<(uuid::Uuid, Instant)> = Vec::new();
                let mut lat = Vec::new();
                let mut closed = false;
                loop {
                    loop {
                        match rx.try_recv() {
                            Ok(x) => pending.push(x),
                            Err(std::sync::mpsc::TryRecvError::Empty) => break,
                            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                                closed = true;
                                break;
                            }
                        }
                    }
                    pending.retain(|(id, t)| {
                        if result_visible(&agent, &url, &token, *id) {
                            lat.push(t.elapsed().as_secs_f64() * 1000.0);
                            false
                        } else {
                            t.elapsed() < Duration::from_secs(30)
                        }
                    });
                    if closed && pending.is_empty() {
                        return lat;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
            let started = Instant::now();
            let interval = Duration::from_secs_f64(1.0 / rate as f64);
            let mut futs = Vec::new();
            for (i, c) in cmds.iter().enumerate() {
                // Open loop: each command has a scheduled send time; latency counts from it.
                let due = started + interval * i as u32;
                let now = Instant::now();
                if due > now {
                    tokio::time::sleep(due - now).await;
                }
                futs.push(send(&p, &topic, c).await);
                if i % sample_every == 0 {
                    let _ = tx.send((c.command_id, due));
                }
            }
            drop(tx);
            for f in futs {
                f.await.expect("delivery").expect("delivered");
            }
            let offered = cmds.len() as f64 / started.elapsed().as_secs_f64();
            let mut lat = poller.join().unwrap();
            lat.sort_by(f64::total_cmp);
            println!(
                "{}",
                json!({"bench": "latency", "rate": rate, "achieved_send_rate": offered, "sampled": lat.len(),
                       "warmup": warmup, "warmup_visible_s": warm_s,
                       "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99), "max_ms": lat.last()})
            );
        }
        Cmd::Signals {
            families,
            burst,
            rate,
            seconds,
            family_prefix,
        } => {
            use mpr::domain::autopilot::{Check, Fixed, RollbackPolicy, Rule};
            use mpr::domain::command::{ScopeTarget, SetRollbackPolicy};
            let fams: Vec<String> = (0..families)
                .map(|f| format!("{family_prefix}-{f:04}"))
                .collect();
            // The gate's key and the catalogs first, visible before any publish is decided:
            // they are on the catalog log, which no family partition waits for.
            let platform = catalogs();
            send_all(&p, &topic, &platform).await;
            let url = a.url.clone();
            let n_platform = platform.len() as u64;
            tokio::task::spawn_blocking(move || {
                wait_applied(&url, base + n_platform, Duration::from_secs(120))
            })
            .await
            .unwrap();
            let mut setup = Vec::new();
            for fam in &fams {
                for v in ["1.0.0", "1.1.0"] {
                    setup.push(testkit::publish_signed("model-factory", fam, v));
                    setup.push(testkit::envelope(
                        "alice",
                        Command::Nominate(testkit::target(fam, v)),
                    ));
                    setup.push(testkit::envelope(
                        "alice",
                        Command::Approve(testkit::target(fam, v)),
                    ));
                    setup.push(testkit::promote("bob", fam, v, "prod", "*", false));
                }
            }
            send_all(&p, &topic, &setup).await;
            for fam in &fams {
                let policy = testkit::envelope(
                    "bob",
                    Command::SetRollbackPolicy(SetRollbackPolicy {
                        scope: ScopeTarget {
                            bundle_id: fam.parse().unwrap(),
                            environment: "prod".parse().unwrap(),
                            tenant_id: mpr::domain::TenantId::any(),
                        },
                        policy: Some(RollbackPolicy {
                            rules: vec![Rule {
                                rule_id: "error-rate".into(),
                                check: Check::Threshold {
                                    metric: "error_rate".into(),
                                    above: Fixed(500_000),
                                    windows: 1,
                                },
                            }],
                            cooldown_ms: 0,
                            max_actions: 0,
                            period_ms: 0,
                            dry_run: false,
                        }),
                    }),
                );
                send_json(&p, &topic, &policy).await;
            }
            let url = a.url.clone();
            let total = n_platform + (setup.len() + fams.len()) as u64;
            let ok = tokio::task::spawn_blocking(move || {
                wait_applied(&url, base + total, Duration::from_secs(600))
            })
            .await
            .unwrap();
            assert!(ok, "the set-up did not become visible");
            // A family whose set-up failed would count as a missed trigger.
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(5))
                .build();
            for fam in &fams {
                assert_eq!(
                    resolved(&agent, &a.url, &a.token, fam).as_deref(),
                    Some("1.1.0"),
                    "the set-up of {fam} failed"
                );
            }
            let digests: Vec<String> = fams
                .iter()
                .map(|f| testkit::bundle(f, "1.1.0").digest())
                .collect();
            let sig_topic = format!("{}signals", a.prefix);

            // The burst: harmless values, 32 windows round robin, every family.
            let applied0 = metric(&a.url, "mpr_signals_applied_total");
            let records: Vec<_> = (0..burst)
                .map(|i| {
                    let f = i % families;
                    signal_record(
                        &fams[f],
                        "1.1.0",
                        &digests[f],
                        0.01,
                        (i / families % 32) as i64,
                    )
                })
                .collect();
            let started = Instant::now();
            let mut futs = Vec::with_capacity(burst);
            for r in &records {
                loop {
                    if let Some(f) = send_signal(&p, &sig_topic, r) {
                        futs.push(f);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            for f in futs {
                f.await.expect("delivery").expect("delivered");
            }
            let produced = started.elapsed().as_secs_f64();
            let url = a.url.clone();
            let complete = tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                while t.elapsed() < Duration::from_secs(600) {
                    if metric(&url, "mpr_signals_applied_total") >= applied0 + burst as f64 {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                false
            })
            .await
            .unwrap();
            let burst_s = started.elapsed().as_secs_f64();

            // The trigger phase: `rate` harmless signals/s, one trigger a second.
            let (url, token) = (a.url.clone(), a.token.clone());
            let (tx, rx) = std::sync::mpsc::channel::<(String, Instant)>();
            let poller = std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(5))
                    .build();
                let (mut lat, mut missed) = (Vec::new(), 0);
                let mut pending: Vec<(String, Instant)> = Vec::new();
                let mut closed = false;
                loop {
                    loop {
                        match rx.try_recv() {
                            Ok(x) => pending.push(x),
                            Err(std::sync::mpsc::TryRecvError::Empty) => break,
                            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                                closed = true;
                                break;
                            }
                        }
                    }
                    // Every pending trigger is checked each round, so one slow trigger
                    // does not delay the measurement of the next.
                    pending.retain(|(fam, t)| {
                        if resolved(&agent, &url, &token, fam).as_deref() == Some("1.0.0") {
                            lat.push(t.elapsed().as_secs_f64() * 1000.0);
                            false
                        } else if t.elapsed() > Duration::from_secs(60) {
                            missed += 1;
                            false
                        } else {
                            true
                        }
                    });
                    if closed && pending.is_empty() {
                        return (lat, missed);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
            let n = (rate * seconds) as usize;
            let interval = Duration::from_secs_f64(1.0 / rate as f64);
            let every = rate.max(1) as usize;
            let mut triggers = 0usize;
            let started = Instant::now();
            for i in 0..n {
                let due = started + interval * i as u32;
                let now = Instant::now();
                if due > now {
                    tokio::time::sleep(due - now).await;
                }
                let f = i % families;
                if i % every == every / 2 && triggers < families {
                    let r = signal_record(&fams[triggers], "1.1.0", &digests[triggers], 0.9, 40);
                    while send_signal(&p, &sig_topic, &r).is_none() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    let _ = tx.send((fams[triggers].clone(), due));
                    triggers += 1;
                    continue;
                }
                let r = signal_record(
                    &fams[f],
                    "1.1.0",
                    &digests[f],
                    0.01,
                    33 + (i / families % 5) as i64,
                );
                while send_signal(&p, &sig_topic, &r).is_none() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            let offered = n as f64 / started.elapsed().as_secs_f64();
            drop(tx);
            let (mut lat, missed) = poller.join().unwrap();
            lat.sort_by(f64::total_cmp);
            println!(
                "{}",
                json!({"bench": "signals", "families": families, "burst": burst,
                       "burst_produce_s": produced, "burst_visible_s": burst_s, "burst_complete": complete,
                       "signals_per_second": burst as f64 / burst_s,
                       "rate": rate, "achieved_rate": offered, "triggers": lat.len(), "missed": missed,
                       "trigger_to_resolve_p50_ms": pct(&lat, 0.5), "trigger_to_resolve_p99_ms": pct(&lat, 0.99),
                       "trigger_to_resolve_max_ms": lat.last()})
            );
        }
        Cmd::Flood {
            rate,
            seconds,
            families,
        } => {
            let sig_topic = format!("{}signals", a.prefix);
            let n = (rate * seconds) as usize;
            let interval = Duration::from_secs_f64(1.0 / rate as f64);
            let started = Instant::now();
            let mut sent = 0usize;
            for i in 0..n {
                // Sleep in steps of 100 signals: the schedule, not each send, is paced.
                if i % 100 == 0 {
                    let due = started + interval * i as u32;
                    let now = Instant::now();
                    if due > now {
                        tokio::time::sleep(due - now).await;
                    }
                }
                let fam = format!("flood-{:04}", i % families);
                let r = signal_record(&fam, "1.0.0", "unbound", 0.01, (i / families % 32) as i64);
                while send_signal(&p, &sig_topic, &r).is_none() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                sent += 1;
            }
            let _ = p.flush(Duration::from_secs(30));
            println!(
                "{}",
                json!({"bench": "flood", "rate": rate, "sent": sent,
                       "achieved_rate": sent as f64 / started.elapsed().as_secs_f64()})
            );
        }
        Cmd::Promote { n, deployer_token } => {
            // The gate's key and the catalogs first, applied before the publishes: they
            // are decided in another partition than the family's, in no fixed order with
            // it, and a publish decided before its gate's key is known is refused.
            let base = send_and_apply(&p, &topic, &a.url, base, &catalogs(), 120, "platform").await;
            let mut setup = Vec::new();
            for v in ["1.0.0", "2.0.0"] {
                setup.push(testkit::publish_signed("model-factory", "flip", v));
                setup.push(testkit::envelope(
                    "alice",
                    Command::Nominate(testkit::target("flip", v)),
                ));
                setup.push(testkit::envelope(
                    "alice",
                    Command::Approve(testkit::target("flip", v)),
                ));
            }
            // One at a time: each must be delivered before the next is sent.
            for c in &setup {
                send_all(&p, &topic, std::slice::from_ref(c)).await;
            }
            let url = a.url.clone();
            let total = setup.len() as u64;
            tokio::task::spawn_blocking(move || {
                wait_applied(&url, base + total, Duration::from_secs(120))
            })
            .await
            .unwrap();
            let url = a.url.clone();
            let lat = tokio::task::spawn_blocking(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(30))
                    .build();
                let mut lat = Vec::with_capacity(n);
                for i in 0..n {
                    let v = if i % 2 == 0 { "1.0.0" } else { "2.0.0" };
                    let body =
                        json!({"bundle_id": "flip", "bundle_version": v, "environment": "prod"});
                    let t = Instant::now();
                    let r = agent
                        .post(&format!("{url}/v1/promotions"))
                        .set("Authorization", &format!("Bearer {deployer_token}"))
                        .send_json(body)
                        .expect("promote");
                    if r.status() == 202 {
                        // The result was not visible within the API's wait: poll until it is.
                        let v: serde_json::Value = r.into_json().expect("202 body");
                        let poll =
                            format!("{url}/v1/commands/{}", v["command_id"].as_str().unwrap());
                        while agent
                            .get(&poll)
                            .set("Authorization", "Bearer dev-reader-token")
                            .call()
                            .is_err()
                        {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                    }
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                lat
            })
            .await
            .unwrap();
            let total_s: f64 = lat.iter().sum::<f64>() / 1000.0;
            let mut sorted = lat.clone();
            sorted.sort_by(f64::total_cmp);
            println!(
                "{}",
                json!({"bench": "promote", "n": n, "p50_ms": pct(&sorted, 0.5), "p99_ms": pct(&sorted, 0.99),
                       "throughput_per_s": n as f64 / total_s})
            );
        }
        Cmd::Apply {
            count,
            dir,
            resolve_families,
            uncompressed,
        } => {
            mpr::view::store_uncompressed(uncompressed);
            // What the processor does per command (decide against its RocksDB state store,
            // apply the event there, encode it) and what the applier does per event (decode,
            // apply to the view in batches of 1,000), without a broker.
            use mpr::domain::event::LogId;
            use mpr::domain::{CatalogState, Decision, Grants, decide};
            let grants = Grants {
                enforce: false,
                ..Grants::default()
            };
            let mut cat = CatalogState::new();
            let view = mpr::view::View::open(&dir, 1).expect("view");
            let mut store_dir = dir.clone().into_os_string();
            store_dir.push(".state-store");
            let store_dir = std::path::PathBuf::from(store_dir);
            use mpr::view::store::{Outbox, Position, StateStore, StoreIdentity};
            let store = StateStore::open_empty(&store_dir, 32, &StoreIdentity::scratch())
                .expect("state store");
            let part = store.partition(0);
            let mut pos = Position::new(0);
            let cmds = match resolve_families {
                Some(f) => resolve_mix(f, 50, 0.1),
                None => {
                    let mut c = catalogs();
                    for f in 0..count.div_ceil(4) {
                        c.extend(lifecycle(&format!("app-{f:07}"), ENVS[f % 3]));
                    }
                    c
                }
            };
            let t0 = Instant::now();
            let mut encoded = Vec::with_capacity(cmds.len());
            for (i, c) in cmds.into_iter().enumerate() {
                let input = testkit::input(c, i as i64);
                let d = decide::route(&part, &pos.chain, &cat, &grants, &input).expect("decide");
                if let Decision::Append(e) = d {
                    let bytes = mpr::codec::encode_event(&e);
                    if e.log == LogId::Catalog {
                        cat.apply(&e).unwrap();
                    } else {
                        let at = pos.events_next;
                        part.apply(&mut pos, &e, &bytes, at, Outbox::None)
                            .expect("store apply");
                    }
                    encoded.push(bytes);
                }
            }
            let decide_s = t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            for (n, chunk) in encoded.chunks(1000).enumerate() {
                let events: Vec<_> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        let e = mpr::codec::decode_event(b).expect("decode");
                        (e, (n * 1000 + i) as i64)
                    })
                    .collect();
                let refs: Vec<_> = events
                    .iter()
                    .zip(chunk)
                    .map(|((e, o), b)| (e, b.as_slice(), *o))
                    .collect();
                view.apply_batch(&refs).expect("apply");
            }
            view.flush().expect("flush");
            let apply_s = t1.elapsed().as_secs_f64();
            drop(store);
            let store_bytes = dir_bytes(&store_dir);
            let _ = std::fs::remove_dir_all(&store_dir);
            println!(
                "{}",
                json!({"bench": "apply", "events": encoded.len(), "decide_per_s": encoded.len() as f64 / decide_s,
                       "view_apply_per_s": encoded.len() as f64 / apply_s, "rss_kib": rss_kib(),
                       "compression": if uncompressed { "none" } else { "lz4" },
                       "view_bytes": dir_bytes(&dir), "state_store_bytes": store_bytes})
            );
        }
        Cmd::Verify { count } => {
            use mpr::domain::{CatalogState, Decision, Grants, PartitionState, decide};
            let grants = Grants {
                enforce: false,
                ..Grants::default()
            };
            let registry = testkit::registry_signer();
            let keys = testkit::registry_keys();
            let mut cat = CatalogState::new();
            let mut part = PartitionState::new(0);
            let mut events = Vec::with_capacity(count);
            let mut cmds = catalogs();
            for f in 0..count.div_ceil(4) {
                cmds.extend(lifecycle(&format!("ver-{f:06}"), ENVS[f % 3]));
            }
            for (i, env) in cmds.into_iter().enumerate() {
                let input = testkit::input(env, i as i64);
                if let Decision::Append(e) = mpr::domain::state::infallible(decide::route(
                    &part,
                    &part.chain,
                    &cat,
                    &grants,
                    &input,
                )) {
                    if e.log == mpr::domain::event::LogId::Catalog {
                        cat.apply(&e).unwrap();
                    } else {
                        part.apply(&e).unwrap();
                        events.push(e);
                    }
                }
            }
            events.truncate(count);
            let n = events.len() as f64;
            let t = Instant::now();
            for e in &mut events {
                e.sign(&registry);
            }
            let sign_s = t.elapsed().as_secs_f64();
            let encoded: Vec<Vec<u8>> = events.iter().map(mpr::codec::encode_event).collect();
            let time = |f: &dyn Fn(&[u8])| {
                let t = Instant::now();
                for b in &encoded {
                    f(b);
                }
                t.elapsed().as_secs_f64()
            };
            let decode_s = time(&|b| {
                mpr::codec::decode_event(b).unwrap();
            });
            let hash_s = time(&|b| {
                let e = mpr::codec::decode_event(b).unwrap();
                assert_eq!(e.hash, e.compute_hash());
            });
            let verify_s = time(&|b| {
                mpr::log::verify::check_event(&keys, b).unwrap();
            });
            // As the view applier and a rebuild check them: fetched batches of 500 records,
            // each batch's signatures in one Ed25519 batch verification.
            let records: Vec<mpr::log::reader::Record> = encoded
                .iter()
                .enumerate()
                .map(|(i, b)| mpr::log::reader::Record {
                    topic: "mpr.events".into(),
                    partition: 0,
                    offset: i as i64,
                    key: None,
                    payload: Some(b.clone()),
                    timestamp_ms: None,
                    headers: Vec::new(),
                })
                .collect();
            let t = Instant::now();
            for chunk in records.chunks(500) {
                let checked = mpr::log::verify::trusted_events(&keys, chunk);
                assert!(checked.iter().all(Result::is_ok));
            }
            let batch_s = t.elapsed().as_secs_f64();
            let us = |s: f64| (s / n * 1e6 * 100.0).round() / 100.0;
            println!(
                "{}",
                json!({"bench": "verify", "events": events.len(),
                       "decode_us": us(decode_s), "decode_hash_us": us(hash_s),
                       "decode_hash_signature_us": us(verify_s),
                       "decode_hash_batch_signature_us": us(batch_s), "sign_us": us(sign_s),
                       "decode_per_s": (n / decode_s).round(), "verified_per_s": (n / verify_s).round(),
                       "batch_verified_per_s": (n / batch_s).round()})
            );
        }
        Cmd::StateMemory { count } => {
            use mpr::domain::{CatalogState, Decision, Grants, PartitionState};
            let grants = Grants {
                enforce: false,
                ..Grants::default()
            };
            let cat = CatalogState::new();
            let mut part = PartitionState::new(0);
            let rss0 = rss_kib();
            for i in 0..count {
                let family = format!("mem-{:06}", i / 100);
                let envelope =
                    testkit::publish("model-factory", &family, &format!("1.0.{}", i % 100));
                let input = testkit::input(envelope, i as i64);
                if let Decision::Append(e) = part.decide(&cat.catalog, &grants, &input) {
                    part.apply(&e).expect("apply");
                }
            }
            let rss1 = rss_kib();
            println!(
                "{}",
                json!({"bench": "state-memory", "bundles": count, "commands_remembered": part.commands.len(),
                       "rss_before_kib": rss0, "rss_after_kib": rss1,
                       "bytes_per_bundle": (rss1 - rss0) as f64 * 1024.0 / count as f64})
            );
        }
        Cmd::SeedResolve {
            families,
            tenants,
            tenant_share,
        } => {
            let cmds = resolve_mix(families, tenants, tenant_share);
            let total = cmds.len() as u64;
            let started = Instant::now();
            for chunk in cmds.chunks(5000) {
                send_all(&p, &topic, chunk).await;
            }
            let url = a.url.clone();
            let done = tokio::task::spawn_blocking(move || {
                wait_applied(&url, base + total, Duration::from_secs(1800))
            })
            .await
            .unwrap();
            println!(
                "{}",
                json!({"bench": "seed-resolve", "commands": total, "seconds": started.elapsed().as_secs_f64(), "complete": done})
            );
        }
    }
}

/// The `console` benchmark (see [`Cmd::Console`]).
async fn console_bench(versions: usize, requests: usize) {
    use mpr::domain::event::LogId;
    use mpr::domain::{CatalogState, Decision, PartitionState, decide, state::infallible};
    use std::sync::Arc;
    let dir = tempfile_dir("mpr-console-bench");
    let view = Arc::new(mpr::view::View::open(&dir, 1).expect("view"));
    let grants = mpr::domain::Grants {
        enforce: false,
        ..mpr::domain::Grants::default()
    };
    let (mut part, mut cat) = (PartitionState::new(0), CatalogState::new());
    let mut cmds = catalogs();
    for i in 0..versions {
        let (fam, v) = (format!("fam-{:04}", i / 100), format!("1.{}.0", i % 100));
        cmds.push(testkit::publish_signed("model-factory", &fam, &v));
    }
    let mut events = Vec::new();
    for (i, c) in cmds.into_iter().enumerate() {
        let input = testkit::input(c, i as i64);
        if let Decision::Append(e) =
            infallible(decide::route(&part, &part.chain, &cat, &grants, &input))
        {
            if e.log == LogId::Catalog {
                cat.apply(&e).expect("catalog chain");
            } else {
                part.apply(&e).expect("partition chain");
            }
            events.push(e);
        }
    }
    let mut offsets = [0i64; 2];
    for e in &events {
        let o = &mut offsets[usize::from(e.log == LogId::Catalog)];
        view.apply(e, *o).expect("apply");
        *o += 1;
    }
    let mut cfg = mpr::config::Config::default();
    cfg.auth.principals = vec![mpr::config::Principal {
        actor: "reader".parse().unwrap(),
        roles: vec!["reader".parse().unwrap()],
        token_sha256: Some(mpr::domain::bundle::sha256_hex(b"bench-reader")),
    }];
    let status = mpr::log::applier::ApplierStatus::new(view.version());
    status
        .ready
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let state = mpr::api::AppState::from(mpr::api::AppParts {
        view: view.clone(),
        status,
        sink: Arc::new(mpr::api::FnSink(Arc::new(|_: &CommandEnvelope| Ok(())))),
        auth: Arc::new(mpr::api::auth::Auth::new(&cfg.auth.principals)),
        grants: Arc::new(cfg.grants_with_roots(Default::default())),
        metrics: Arc::new(mpr::metrics::Metrics::new()),
        http: Arc::new(cfg.http.clone()),
        resolve_cache: Arc::new(mpr::api::resolve::ResolveCache::new(1)),
        trust_mode: mpr::config::TrustMode::Signed,
        checkpoints: Arc::new(mpr::api::audit::CheckpointSigner {
            registry: testkit::registry_signer(),
            events_topic: "mpr.events".into(),
            catalog_topic: "mpr.catalog".into(),
        }),
        console: Arc::new(mpr::console::Console::new(testkit::registry_keys())),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        axum::serve(listener, mpr::api::router(state))
            .await
            .expect("serve");
    });
    let out = tokio::task::spawn_blocking(move || {
        let agent = ureq::AgentBuilder::new().redirects(0).build();
        let login = agent.get(&format!("{base}/ui/login")).call().expect("login page");
        let login_cookie = login.header("set-cookie").expect("login cookie");
        let login_cookie = login_cookie.split(';').next().unwrap().to_owned();
        let page = login.into_string().expect("body");
        let at = page.find("name=\"csrf\" value=\"").expect("csrf") + 19;
        let csrf = page[at..].split('"').next().unwrap().to_owned();
        let signed_in = agent
            .post(&format!("{base}/ui/login"))
            .set("cookie", &login_cookie)
            .send_form(&[("token", "bench-reader"), ("csrf", &csrf)])
            .expect("sign in");
        let session = signed_in
            .all("set-cookie")
            .into_iter()
            .find(|c| c.starts_with("mpr_console="))
            .expect("session cookie")
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let mut rows = Vec::new();
        for (name, path) in [
            ("bundles_first_page", "/ui/bundles".to_owned()),
            ("bundles_state_filter", "/ui/bundles?state=REGISTERED".to_owned()),
            ("bundles_text_search", "/ui/bundles?q=fam-0042".to_owned()),
            ("bundle_version", "/ui/bundles/fam-0042/versions/1.7.0".to_owned()),
        ] {
            let mut lat = Vec::with_capacity(requests);
            let mut bytes = 0;
            for _ in 0..requests {
                let t = Instant::now();
                let r = agent
                    .get(&format!("{base}{path}"))
                    .set("cookie", &session)
                    .call()
                    .expect("page");
                assert_eq!(r.status(), 200, "{path}");
                bytes = r.into_string().expect("body").len();
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat.sort_by(f64::total_cmp);
            rows.push(json!({"bench": "console", "page": name, "path": path, "versions": versions,
                "requests": requests, "bytes": bytes, "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99)}));
        }
        rows
    })
    .await
    .expect("client");
    for r in out {
        println!("{r}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory under the system temp dir.
fn tempfile_dir(prefix: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
