//! Shared harness: a real broker per test (free port, its own store: tansu on SQLite by
//! default, or what `BROKER` selects, started by `scripts/broker.sh`), the registry
//! in-process (port 0) or as a child process (for kill -9), Kafka helpers.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mpr::config::{Config, Principal};
use mpr::domain::bundle::sha256_hex;
use mpr::domain::{CommandEnvelope, RegistryEvent};
use mpr::log::Topics;
use mpr::log::reader::{Record, read_to_end};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use tempfile::TempDir;

/// Tokens of the test principals: actor -> (token, roles).
pub const PRINCIPALS: &[(&str, &str, &[&str])] = &[
    ("mf", "tok-publisher", &["publisher"]),
    ("alice", "tok-approver", &["approver"]),
    ("bob", "tok-deployer", &["deployer"]),
    ("dana", "tok-stage-deployer", &["deployer@stage"]),
    ("carol", "tok-pub-approver", &["publisher", "approver"]),
    ("admin", "tok-admin", &["admin"]),
    ("df", "tok-reader", &["reader"]),
];

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The embedded broker `BROKER` selects (tansu 0.6.0 on SQLite by default), started and
/// stopped by `scripts/broker.sh` as every other script does, so the mapping from `BROKER`
/// to a binary and its storage lives in `scripts/broker_env.sh` alone. Its data lives in a
/// temp dir, on a free port.
pub struct Broker {
    pub port: u16,
    running: bool,
    dir: TempDir,
}

impl Broker {
    pub fn start() -> Self {
        let mut b = Self {
            port: free_port(),
            running: false,
            dir: tempfile::tempdir().unwrap(),
        };
        b.spawn();
        b
    }

    fn script(&self, action: &str) -> std::process::Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/broker.sh");
        Command::new(script)
            .arg(action)
            .arg(self.dir.path())
            .arg(self.port.to_string())
            // A test does not build a broker (minutes): scripts/setup.sh does.
            .env("BROKER_NO_INSTALL", "1")
            .output()
            .expect("scripts/broker.sh runs")
    }

    fn spawn(&mut self) {
        let out = self.script("start");
        assert!(
            out.status.success(),
            "scripts/broker.sh start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = true;
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// kill -9 of the broker process; its storage (and a PostgreSQL server under it) stays.
    pub fn kill(&mut self) {
        if !std::mem::take(&mut self.running) {
            return;
        }
        let pidfile = self.dir.path().join("broker.pid");
        let Ok(pid) = std::fs::read_to_string(&pidfile) else {
            return;
        };
        let pid = pid.trim().to_owned();
        if std::env::var("PROBE_TERM").is_ok() {
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            std::thread::sleep(Duration::from_secs(2));
        }
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        // Gone once its process is gone or a zombie (`broker.sh` left it to be reaped by
        // whoever adopted it).
        wait_for("the broker to exit", Duration::from_secs(10), || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            (stat.is_empty() || state.starts_with('Z')).then_some(())
        });
        let _ = std::fs::remove_file(pidfile);
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        // Stops what outlives the broker process (a PostgreSQL server), if anything.
        let _ = self.script("stop");
    }
}

/// The content digest of the (stopped) view at `path`, of a test config's 3 partitions.
pub fn view_digest(path: &Path) -> String {
    mpr::view::View::open(path, 3)
        .unwrap()
        .content_digest()
        .unwrap()
}

/// The digest of a fresh view rebuilt from `cfg`'s `events` log.
pub fn rebuilt_digest(cfg: &Config) -> String {
    let d = tempfile::tempdir().unwrap();
    let v = mpr::view::View::open(d.path(), 3).unwrap();
    mpr::log::applier::rebuild_from_events(&cfg.kafka, &mpr::testkit::registry_keys(), &v, |_| {})
        .unwrap();
    v.content_digest().unwrap()
}

/// The digest of a fresh view bootstrapped from `cfg`'s `state` changelog.
pub fn bootstrapped_digest(cfg: &Config) -> String {
    let d = tempfile::tempdir().unwrap();
    let v = mpr::view::View::open(d.path(), 3).unwrap();
    mpr::log::applier::bootstrap_from_state(
        &cfg.kafka,
        &mpr::domain::trust::StateMac::of(&mpr::testkit::registry_signer()),
        &v,
        |_| {},
    )
    .unwrap();
    v.content_digest().unwrap()
}

/// A registry config for `broker`, with its view under `dir`.
pub fn config(brokers: &str, dir: &Path, prefix: &str) -> Config {
    let mut c = Config::default();
    c.kafka.brokers = brokers.to_owned();
    c.kafka.topic_prefix = prefix.to_owned();
    c.kafka.partitions = 3;
    c.kafka.group_id = format!("{prefix}processor");
    c.view.path = dir.join("view");
    c.processor.state_path = dir.join("processor");
    c.http.listen = "127.0.0.1:0".into();
    c.http.command_timeout_ms = 10_000;
    c.http.read_barrier_timeout_ms = 1_000;
    c.auth.principals = PRINCIPALS
        .iter()
        .map(|(actor, token, roles)| Principal {
            actor: actor.parse().unwrap(),
            roles: roles.iter().map(|r| r.parse().unwrap()).collect(),
            token_sha256: Some(sha256_hex(token.as_bytes())),
        })
        .collect();
    // The registry and gateway keys of tests (fixed seeds), as files under `dir`.
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for (name, signer) in [
        ("registry.pem", mpr::testkit::registry_signer()),
        ("gateway.pem", mpr::testkit::gateway_signer()),
    ] {
        std::fs::write(keys.join(name), signer.to_pem()).unwrap();
    }
    c.trust.registry_key_file = Some(keys.join("registry.pem"));
    c.trust.gateway_key_file = Some(keys.join("gateway.pem"));
    c
}

/// The registry running in this process on its own runtime thread.
pub struct InProcess {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Logs of in-process registries go to the test's output (filter with MPR_LOG).
pub fn init_logs() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("MPR_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

impl InProcess {
    pub fn start(cfg: Config) -> Self {
        init_logs();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                mpr::app::run(cfg, l, async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            });
        });
        let r = Self {
            url,
            stop: Some(tx),
            thread: Some(thread),
        };
        r.wait_ready();
        register_test_gate(&r.url);
        r
    }

    pub fn wait_ready(&self) {
        let url = format!("{}/readyz", self.url);
        wait_for("readiness", Duration::from_secs(60), || {
            ureq::get(&url).call().ok()
        });
    }

    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `mpr` binary as a child process (so it can be killed with SIGKILL).
pub struct ChildRegistry {
    child: Child,
    pub url: String,
}

impl ChildRegistry {
    pub fn start(cfg: &Config, dir: &Path) -> Self {
        let port = free_port();
        let mut cfg = cfg.clone();
        cfg.http.listen = format!("127.0.0.1:{port}");
        let file = dir.join("mpr.toml");
        std::fs::write(&file, toml_of(&cfg)).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("mpr.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mpr"))
            .args(["--config"])
            .arg(&file)
            .arg("serve")
            .env(
                "MPR_LOG",
                std::env::var("TEST_CHILD_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let r = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let url = format!("{}/readyz", r.url);
        wait_for("child readiness", Duration::from_secs(60), || {
            ureq::get(&url).call().ok()
        });
        register_test_gate(&r.url);
        r
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for ChildRegistry {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn toml_of(cfg: &Config) -> String {
    let v = serde_json::to_value(cfg).unwrap();
    fn emit(prefix: &str, v: &Value, out: &mut String) {
        let obj = v.as_object().unwrap();
        let mut tables = Vec::new();
        for (k, val) in obj {
            match val {
                Value::Object(_) => tables.push((k, val)),
                Value::Array(a) if a.first().is_some_and(Value::is_object) => tables.push((k, val)),
                Value::Null => {}
                other => out.push_str(&format!("{k} = {other}\n")),
            }
        }
        for (k, val) in tables {
            let name = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match val {
                Value::Array(items) => {
                    for item in items {
                        out.push_str(&format!("\n[[{name}]]\n"));
                        emit(&name, item, out);
                    }
                }
                _ => {
                    out.push_str(&format!("\n[{name}]\n"));
                    emit(&name, val, out);
                }
            }
        }
    }
    let mut out = String::new();
    emit("", &v, &mut out);
    out
}

/// Registers the test gate's key ([`mpr::testkit::gate_signer`]) as the admin, so that
/// the receipts of [`mpr::testkit::publish_signed`] verify; a no-op when it already is.
pub fn register_test_gate(url: &str) {
    let env = mpr::testkit::register_test_gate("admin");
    let body = serde_json::json!({
        "command_id": env.command_id,
        "command_type": "REGISTER_KEY",
        "payload": match &env.command {
            mpr::domain::Command::RegisterKey(k) => serde_json::to_value(k).unwrap(),
            _ => unreachable!(),
        },
    });
    let _ = ureq::post(&format!("{url}/v1/commands"))
        .set("Authorization", "Bearer tok-admin")
        .send_json(body);
    let r = wait_result(url, env.command_id);
    assert!(
        r["outcome"] == "ACCEPTED" || r["outcome"] == "NOOP",
        "registering the test gate: {r}"
    );
}

/// A producer for test commands.
pub fn producer(brokers: &str) -> FutureProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "2")
        .set("enable.idempotence", "true")
        .create()
        .unwrap()
}

/// Produces raw bytes to the commands topic.
pub async fn produce_raw(
    p: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
    content_type: Option<&str>,
) {
    let mut rec = FutureRecord::to(topic).key(key).payload(payload);
    if let Some(ct) = content_type {
        rec = rec.headers(OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some(ct),
        }));
    }
    p.send(rec, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

/// Produces a command, Avro-encoded, keyed by its partition key, signed by the test
/// gateway key (as the HTTP API signs for its token's actor).
pub async fn produce(p: &FutureProducer, topics: &Topics, env: &CommandEnvelope) {
    produce_signed(p, topics, env, &mpr::testkit::gateway_signer()).await;
}

/// Produces a command, Avro-encoded, keyed by its partition key, signed by `signer`.
pub async fn produce_signed(
    p: &FutureProducer,
    topics: &Topics,
    env: &CommandEnvelope,
    signer: &mpr::domain::trust::Signer,
) {
    let (bytes, sig) = mpr::codec::sign_avro_command(env, signer);
    let rec = FutureRecord::to(&topics.commands)
        .key(env.command.partition_key())
        .payload(&bytes)
        .headers(OwnedHeaders::new().insert(Header {
            key: mpr::domain::trust::SIGNATURE_HEADER,
            value: Some(&sig),
        }));
    p.send(rec, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

/// Every record of a topic (all `partitions`).
pub fn read_all(cfg: &Config, topic: &str, partitions: i32) -> Vec<Record> {
    let mut out = Vec::new();
    for p in 0..partitions {
        read_to_end(&cfg.kafka, topic, p, 0, |r| {
            out.push(r);
            Ok(())
        })
        .unwrap();
    }
    out
}

/// Every event of the events topic, per partition in log order.
pub fn read_events(cfg: &Config) -> Vec<Vec<RegistryEvent>> {
    let t = Topics::new(&cfg.kafka.topic_prefix);
    (0..cfg.kafka.partitions)
        .map(|p| {
            let mut evs = Vec::new();
            read_to_end(&cfg.kafka, &t.events, p, 0, |r| {
                evs.push(mpr::codec::decode_event(r.payload.as_deref().unwrap()).unwrap());
                Ok(())
            })
            .unwrap();
            evs
        })
        .collect()
}

/// HTTP GET with a token; returns (status, JSON body).
pub fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = ureq::get(url);
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    match req.call() {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(s, r)) => (s, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

/// A Prometheus sample's value from `/metrics`, if present.
pub fn metric(url: &str, name: &str) -> Option<f64> {
    let text = ureq::get(&format!("{url}/metrics"))
        .call()
        .ok()?
        .into_string()
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A fresh runtime for async helpers in sync tests.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits until the registry at `url` has a result for `command_id`.
pub fn wait_result(url: &str, command_id: uuid::Uuid) -> Value {
    let u = format!("{url}/v1/commands/{command_id}");
    let ready = format!("{url}/readyz");
    let what = format!("the result of {command_id}");
    let started = std::time::Instant::now();
    wait_for(&what, Duration::from_secs(120), || {
        if started.elapsed() > Duration::from_secs(115) {
            eprintln!(
                "still waiting for {command_id}; readyz: {:?}",
                get(&ready, None)
            );
            if let Ok(r) = ureq::get(&format!("{url}/metrics")).call() {
                let text = r.into_string().unwrap_or_default();
                for l in text.lines().filter(|l| {
                    !l.starts_with('#')
                        && (l.contains("fork")
                            || l.contains("applied")
                            || l.contains("lag")
                            || l.contains("resync"))
                }) {
                    eprintln!("  {l}");
                }
            }
        }
        let (s, v) = get(&u, Some("tok-reader"));
        (s == 200).then_some(v)
    })
}

/// HTTP POST or PUT of `body` with a token; returns (status, JSON body).
pub fn send(method: &str, url: &str, token: &str, body: &Value) -> (u16, Value) {
    let req = ureq::request(method, url).set("Authorization", &format!("Bearer {token}"));
    match req.send_json(body.clone()) {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(s, r)) => (s, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

/// Sends and requires an accepted command.
pub fn accepted(method: &str, url: &str, token: &str, body: &Value) -> Value {
    let (s, v) = send(method, url, token, body);
    assert!(
        (200..300).contains(&s) && v["outcome"] != "REJECTED",
        "{method} {url}: {s} {v}"
    );
    v
}
