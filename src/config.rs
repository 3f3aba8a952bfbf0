//! Configuration in layers: built-in defaults, then a TOML file, then `MPR_` environment
//! variables (`MPR_KAFKA__BROKERS`, or the short `MPR_BROKERS`), validated at start-up with
//! errors that name the offending key. Secrets (Kafka client passwords, principals and
//! their token hashes) can come from files or the environment instead of the TOML file;
//! they are read here, once, and never printed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::domain::trust::{KeySet, Signer, TrustRoots, parse_public_key};
use crate::domain::{Actor, Grants, RoleGrant};

mod secrets;
pub use secrets::{Secret, SecretSource};

/// Kafka settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma separated.
    pub brokers: String,
    /// Prefix of every topic name.
    pub topic_prefix: String,
    /// Partitions of `commands` and `events` (and of the other keyed topics).
    pub partitions: i32,
    /// Replication factor for created topics.
    pub replication_factor: i32,
    /// Consumer group of the processors.
    pub group_id: String,
    /// Retention of `commands`, `results`, `lifecycle`, `bundle_promoted`, `dlq`, in days.
    pub retention_days: u32,
    /// librdkafka debug contexts (its `debug` setting, e.g. `cgrp,fetch`); empty is off.
    #[serde(default)]
    pub client_debug: String,
    /// Longest wait of the processor's fetch on `commands` (librdkafka `fetch.wait.max.ms`).
    /// tansu 0.6 answers a fetch only when this runs out, so it adds to every command's
    /// latency; each empty fetch also costs the broker CPU while idle.
    #[serde(default = "default_processor_fetch_wait_ms")]
    pub processor_fetch_wait_ms: u32,
    /// Longest wait of the view applier's fetch on `events` and `catalog`, likewise.
    #[serde(default = "default_view_fetch_wait_ms")]
    pub view_fetch_wait_ms: u32,
    /// Static group membership (KIP-345, librdkafka `group.instance.id`): a stable name per
    /// registry instance. A restarted instance then takes its partitions back at once
    /// instead of after the dead member's session timeout. Unset by default: tansu 0.6 never
    /// evicts a static member that does not come back, so its partitions would stay with it.
    #[serde(default)]
    pub group_instance_id: Option<String>,
    /// The processor's group session timeout (librdkafka `session.timeout.ms`). tansu 0.6
    /// wedges a group for good when it processes the leader's heartbeat later than this
    /// after the previous one, which a busy broker does (docs/burst_stall.md); 45 s (the
    /// Kafka default) outlasts such stalls. A member that dies without leaving is expired
    /// after this long.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u32,
    /// librdkafka settings for every client the registry creates (producers, consumers,
    /// the admin client), such as `security.protocol`, `sasl.mechanism`, `sasl.username`,
    /// `ssl.ca.location`. Settings the registry sets itself ([`RESERVED_CLIENT_KEYS`]) are
    /// refused.
    #[serde(default)]
    pub client: BTreeMap<String, String>,
    /// librdkafka settings whose values are secrets (`sasl.password`, `ssl.key.password`),
    /// each read at start-up from a file (`file:/run/secrets/kafka_password`) or an
    /// environment variable (`env:MPR_KAFKA_PASSWORD`).
    #[serde(default)]
    pub client_secrets: BTreeMap<String, SecretSource>,
    /// The values of `client_secrets`, read by [`KafkaConfig::resolve_secrets`]; never
    /// serialized or printed.
    #[serde(skip)]
    pub resolved_secrets: BTreeMap<String, Secret>,
}

/// librdkafka settings the registry sets itself, for its guarantees or from its own keys
/// (`kafka.brokers`, `kafka.group_id`, ...): `kafka.client` may not name them.
pub const RESERVED_CLIENT_KEYS: &[&str] = &[
    "bootstrap.servers",
    "debug",
    "group.id",
    "group.instance.id",
    "session.timeout.ms",
    "enable.auto.commit",
    "auto.offset.reset",
    "enable.partition.eof",
    "fetch.wait.max.ms",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "enable.idempotence",
    "acks",
    "max.in.flight.requests.per.connection",
    "message.timeout.ms",
    "message.max.bytes",
    "linger.ms",
];

impl KafkaConfig {
    /// Reads every `client_secrets` source into `resolved_secrets`; an error names the
    /// setting. [`Config::load`] calls it; a config built in code calls it before use.
    pub fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        self.resolved_secrets = self
            .client_secrets
            .iter()
            .map(|(k, src)| Ok((k.clone(), src.read(&format!("kafka.client_secrets.{k}"))?)))
            .collect::<Result<_, ConfigError>>()?;
        Ok(())
    }
}

fn default_session_timeout_ms() -> u32 {
    45_000
}

fn default_processor_fetch_wait_ms() -> u32 {
    20
}

fn default_view_fetch_wait_ms() -> u32 {
    10
}

/// `MPR_*` environment variables that are not config keys (lowercase, without the prefix):
/// the CLI's `MPR_CONFIG`, `MPR_URL` and `MPR_TOKEN`, the log filter `MPR_LOG`,
/// `MPR_BROKERS` (read as `kafka.brokers`), and the project scripts' own knobs `MPR_TOOLS`
/// (where the broker and tools install) and `MPR_ARTIFACTS` (where browser checks write).
/// Any other `MPR_` name is refused as an unknown key.
pub const NOT_CONFIG_KEYS: [&str; 7] = [
    "config",
    "url",
    "token",
    "log",
    "brokers",
    "tools",
    "artifacts",
];

/// View settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewConfig {
    /// RocksDB directory.
    pub path: PathBuf,
    /// How often the lag monitor compares the applier's positions with the log's high
    /// watermarks (readiness, `MPR-View-Lag`, `MPR-View-Age-Ms`, the lag gauges), in ms.
    #[serde(default = "default_lag_check_ms")]
    pub lag_check_ms: u64,
}

fn default_lag_check_ms() -> u64 {
    1000
}

/// Processor settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorConfig {
    /// RocksDB directory of the processor's state store, kept across restarts with each
    /// partition's `events` position. Not shared between processes.
    pub state_path: PathBuf,
    /// Block cache of the state store in MiB; its memtables stay under the same amount.
    pub state_cache_mib: usize,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            state_path: "var/processor".into(),
            state_cache_mib: 32,
        }
    }
}

/// HTTP settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address.
    pub listen: String,
    /// How long `POST /v1/commands` waits for a result before answering 202.
    pub command_timeout_ms: u64,
    /// Longest wait of a read barrier (`min_view_version`).
    pub read_barrier_timeout_ms: u64,
    /// Serve resolve without a token (on purpose).
    pub open_resolve: bool,
    /// Memory for resolve answers cached for the current view version, in MiB (bodies,
    /// ETags and keys); 0 turns the cache off.
    #[serde(default = "default_resolve_cache_mib")]
    pub resolve_cache_mib: u64,
    /// `/readyz` reports not ready while the view is more than this many records behind
    /// the log's high watermarks.
    #[serde(default = "default_ready_max_lag_events")]
    pub ready_max_lag_events: u64,
    /// `/readyz` reports not ready when the view was last known to hold everything on the
    /// log longer ago than this, in ms (e.g. the broker cannot be asked); 0: no bound.
    #[serde(default)]
    pub ready_max_age_ms: u64,
    /// Longest time a `/v1` request may take, in ms; then 504 `TIMEOUT`. Must exceed
    /// `command_timeout_ms` and `read_barrier_timeout_ms` (the API's own bounded waits) by
    /// at least [`REQUEST_TIMEOUT_MARGIN_MS`].
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// `/v1` requests served at once; one more answers 503 `UNAVAILABLE` (retryable) at
    /// once instead of queueing. Operations routes (`/healthz`, `/readyz`, `/metrics`) are
    /// not counted.
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
}

/// How much longer than the API's longest own wait a request may take.
pub const REQUEST_TIMEOUT_MARGIN_MS: u64 = 1000;

fn default_request_timeout_ms() -> u64 {
    30_000
}

fn default_max_concurrent_requests() -> usize {
    1024
}

fn default_resolve_cache_mib() -> u64 {
    256
}

fn default_ready_max_lag_events() -> u64 {
    1000
}

impl HttpConfig {
    /// The readiness bounds.
    pub fn ready_bounds(&self) -> crate::log::applier::ReadyBounds {
        crate::log::applier::ReadyBounds {
            max_lag_events: self.ready_max_lag_events,
            max_age_ms: self.ready_max_age_ms,
        }
    }
}

/// One principal: an actor, its grants, and the SHA-256 of its bearer token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    /// Actor name recorded in events.
    pub actor: Actor,
    /// Grants such as `publisher` or `deployer@prod`.
    pub roles: Vec<RoleGrant>,
    /// Lowercase hex SHA-256 of the bearer token.
    #[serde(default)]
    pub token_sha256: Option<String>,
}

/// Access control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Check roles (the processor checks them for commands straight from Kafka, too).
    pub enforce: bool,
    /// Known principals.
    #[serde(default)]
    pub principals: Vec<Principal>,
    /// A TOML file of more principals (`[[principals]]` tables with `actor`, `roles` and
    /// `token_sha256`), kept out of the config file: a mounted secret such as
    /// `/run/secrets/mpr_principals`. Read by `mpr serve` ([`Config::prepare_serve`]).
    #[serde(default)]
    pub principals_file: Option<PathBuf>,
}

/// The content of `auth.principals_file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalsFile {
    #[serde(default)]
    principals: Vec<Principal>,
}

/// Whether commands on the log must be signed (MPR2 §8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrustMode {
    /// Every command must carry a valid signature, every receipt a gate's (the default).
    #[default]
    Signed,
    /// Unsigned commands and receipts are accepted (a wrong signature is still refused).
    /// For local experiments only; `/readyz` and the start-up log say so.
    UnsignedDev,
}

impl TrustMode {
    /// Stable name, as in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustMode::Signed => "signed",
            TrustMode::UnsignedDev => "unsigned-dev",
        }
    }
}

/// Keys and the signing mode. The registry key and the accepted public keys must be the
/// same on every replica (MPR2 §8.3); principal and gate keys live in the catalog log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// `signed` (default) or `unsigned-dev`.
    #[serde(default)]
    pub mode: TrustMode,
    /// PKCS#8 PEM of the registry key, which signs events and checkpoints (and from which
    /// the MAC key of `state` records is derived) (`mpr keygen --out FILE`). Required by `mpr serve`.
    #[serde(default)]
    pub registry_key_file: Option<PathBuf>,
    /// PKCS#8 PEM of the API gateway key, which signs the commands the HTTP API submits
    /// for its token's actor. Required by `mpr serve`.
    #[serde(default)]
    pub gateway_key_file: Option<PathBuf>,
    /// More registry public keys (64 hex) whose signatures stay valid: earlier keys
    /// after a rotation. Verifiers without the key file (`verify-audit`) list the current
    /// one here too.
    #[serde(default)]
    pub registry_public_keys: Vec<String>,
    /// More gateway public keys (64 hex) accepted on commands: earlier gateway keys.
    #[serde(default)]
    pub gateway_public_keys: Vec<String>,
}

/// The keys a [`TrustConfig`] names, read and checked.
#[derive(Debug, Clone)]
pub struct TrustKeys {
    /// The registry's signing key, when its file is configured.
    pub registry: Option<Signer>,
    /// Registry keys whose signatures are accepted on events and checkpoints.
    pub registry_accepted: KeySet,
    /// The gateway's signing key, when its file is configured.
    pub gateway: Option<Signer>,
    /// What commands are checked against.
    pub roots: TrustRoots,
}

impl TrustConfig {
    /// Reads the key files and public keys; errors name the key.
    pub fn load(&self) -> Result<TrustKeys, ConfigError> {
        let read = |key: &str, path: &Option<PathBuf>| -> Result<Option<Signer>, ConfigError> {
            let Some(path) = path else { return Ok(None) };
            let pem = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("{key}: cannot read {}: {e}", path.display())))?;
            Signer::from_pem(&pem).map(Some).map_err(|e| {
                ConfigError(format!(
                    "{key}: {} is not a PKCS#8 Ed25519 private key: {e}",
                    path.display()
                ))
            })
        };
        let public = |key: &str, list: &[String]| {
            list.iter()
                .enumerate()
                .map(|(i, h)| {
                    parse_public_key(h)
                        .map_err(|e| ConfigError(format!("{key}[{i}]: {}", e.message)))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let registry = read("trust.registry_key_file", &self.registry_key_file)?;
        let gateway = read("trust.gateway_key_file", &self.gateway_key_file)?;
        let registry_accepted = KeySet::of(registry.iter().map(Signer::verifying_key).chain(
            public("trust.registry_public_keys", &self.registry_public_keys)?,
        ));
        let gateway_keys = KeySet::of(gateway.iter().map(Signer::verifying_key).chain(public(
            "trust.gateway_public_keys",
            &self.gateway_public_keys,
        )?));
        Ok(TrustKeys {
            registry,
            roots: TrustRoots {
                require_signatures: self.mode == TrustMode::Signed,
                gateway: gateway_keys,
                registry: registry_accepted.clone(),
            },
            registry_accepted,
            gateway,
        })
    }
}

impl TrustKeys {
    /// The keys `mpr serve` cannot run without: the registry's and the gateway's.
    pub fn for_serving(self) -> Result<ServingKeys, ConfigError> {
        let missing = |key: &str, what: &str| {
            ConfigError(format!(
                "{key}: must name the {what} (PKCS#8 PEM; create one with `mpr keygen --out FILE`)"
            ))
        };
        Ok(ServingKeys {
            registry: self
                .registry
                .ok_or_else(|| missing("trust.registry_key_file", "registry's signing key"))?,
            gateway: self
                .gateway
                .ok_or_else(|| missing("trust.gateway_key_file", "API gateway's signing key"))?,
            registry_accepted: self.registry_accepted,
            roots: self.roots,
        })
    }
}

/// The keys of a running registry.
#[derive(Debug, Clone)]
pub struct ServingKeys {
    /// Signs events and checkpoints; `state` records carry a MAC derived from it.
    pub registry: Signer,
    /// Signs the commands the HTTP API submits.
    pub gateway: Signer,
    /// Registry keys accepted on what the registry reads back.
    pub registry_accepted: KeySet,
    /// What commands are checked against.
    pub roots: TrustRoots,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// JSON lines instead of text.
    pub json: bool,
    /// `tracing` filter, e.g. `info,mpr=debug`.
    pub level: String,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kafka.
    pub kafka: KafkaConfig,
    /// View.
    pub view: ViewConfig,
    /// Processor.
    #[serde(default)]
    pub processor: ProcessorConfig,
    /// HTTP.
    pub http: HttpConfig,
    /// Auth.
    pub auth: AuthConfig,
    /// Keys and the signing mode.
    #[serde(default)]
    pub trust: TrustConfig,
    /// Logging.
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            kafka: KafkaConfig {
                brokers: "127.0.0.1:9092".into(),
                topic_prefix: "mpr.".into(),
                partitions: 3,
                replication_factor: 1,
                group_id: "mpr-processor".into(),
                retention_days: 7,
                client_debug: String::new(),
                processor_fetch_wait_ms: default_processor_fetch_wait_ms(),
                view_fetch_wait_ms: default_view_fetch_wait_ms(),
                group_instance_id: None,
                session_timeout_ms: default_session_timeout_ms(),
                client: BTreeMap::new(),
                client_secrets: BTreeMap::new(),
                resolved_secrets: BTreeMap::new(),
            },
            view: ViewConfig {
                path: "var/view".into(),
                lag_check_ms: default_lag_check_ms(),
            },
            processor: ProcessorConfig::default(),
            http: HttpConfig {
                listen: "127.0.0.1:8080".into(),
                command_timeout_ms: 5000,
                read_barrier_timeout_ms: 2000,
                open_resolve: false,
                resolve_cache_mib: default_resolve_cache_mib(),
                ready_max_lag_events: default_ready_max_lag_events(),
                ready_max_age_ms: 0,
                request_timeout_ms: default_request_timeout_ms(),
                max_concurrent_requests: default_max_concurrent_requests(),
            },
            auth: AuthConfig {
                enforce: true,
                principals: Vec::new(),
                principals_file: None,
            },
            trust: TrustConfig::default(),
            log: LogConfig {
                json: false,
                level: "info".into(),
            },
        }
    }
}

/// Refuses a `token_sha256` that is not 64 hex characters; `key` names it.
fn check_token_hash(p: &Principal, key: &str) -> Result<(), ConfigError> {
    match &p.token_sha256 {
        Some(h) if h.len() != 64 || !h.bytes().all(|c| c.is_ascii_hexdigit()) => {
            Err(ConfigError(format!("{key}: must be 64 hex characters")))
        }
        _ => Ok(()),
    }
}

/// Parses a TOML document with figment (the config's own TOML reader); the error as text.
fn toml_from_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    Figment::from(Toml::string(text))
        .extract()
        .map_err(|e| e.to_string())
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Loads defaults, then `file` (if given), then `MPR_` environment variables, and
    /// validates the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    f.display()
                )));
            }
            fig = fig.merge(Toml::file(f));
        }
        // `MPR_SECTION__KEY` sets `section.key`, except the names of [`NOT_CONFIG_KEYS`];
        // MPR_BROKERS is `kafka.brokers`.
        fig = fig
            .merge(Env::prefixed("MPR_").split("__").ignore(&NOT_CONFIG_KEYS))
            .merge(
                Env::raw()
                    .only(&["MPR_BROKERS"])
                    .map(|_| "kafka.brokers".into()),
            );
        let mut cfg: Config = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
        cfg.validate()?;
        cfg.kafka.resolve_secrets()?;
        Ok(cfg)
    }

    /// What `mpr serve` does before serving: appends the principals of
    /// `auth.principals_file`, then [`Config::check_serve`]. (Other subcommands need no
    /// principals, so they do not read the file.)
    pub fn prepare_serve(&mut self) -> Result<(), ConfigError> {
        self.load_principals_file()?;
        self.check_serve()
    }

    /// Appends the principals of `auth.principals_file`, if set; errors name the file and
    /// the entry.
    fn load_principals_file(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.auth.principals_file else {
            return Ok(());
        };
        let key = "auth.principals_file";
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{key}: cannot read {}: {e}", path.display())))?;
        let file: PrincipalsFile = toml_from_str(&text)
            .map_err(|e| ConfigError(format!("{key}: {} is not valid: {e}", path.display())))?;
        for (i, p) in file.principals.iter().enumerate() {
            check_token_hash(p, &format!("{key}: principals[{i}].token_sha256"))?;
        }
        self.auth.principals.extend(file.principals);
        Ok(())
    }

    /// What `mpr serve` needs beyond [`Config::validate`]: with roles enforced, at least
    /// one principal with a token, or every request would be refused.
    pub fn check_serve(&self) -> Result<(), ConfigError> {
        if self.auth.enforce
            && !self
                .auth
                .principals
                .iter()
                .any(|p| p.token_sha256.is_some())
        {
            return Err(ConfigError(
                "auth.principals: no principal has a token_sha256, so every request would be \
                 refused; give principals in auth.principals_file (a mounted secret, e.g. \
                 MPR_AUTH__PRINCIPALS_FILE=/run/secrets/mpr_principals) or in auth.principals"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Checks values the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if self.kafka.brokers.trim().is_empty() {
            return bad("kafka.brokers", "must name at least one broker");
        }
        if !(1..=1024).contains(&self.kafka.partitions) {
            return bad("kafka.partitions", "must be between 1 and 1024");
        }
        for (key, ms) in [
            (
                "kafka.processor_fetch_wait_ms",
                self.kafka.processor_fetch_wait_ms,
            ),
            ("kafka.view_fetch_wait_ms", self.kafka.view_fetch_wait_ms),
        ] {
            if !(1..=1000).contains(&ms) {
                return bad(key, "must be between 1 and 1000");
            }
        }
        if self.kafka.replication_factor < 1 {
            return bad("kafka.replication_factor", "must be at least 1");
        }
        if !(6_000..=300_000).contains(&self.kafka.session_timeout_ms) {
            return bad(
                "kafka.session_timeout_ms",
                "must be between 6000 and 300000 (the broker's group session bounds)",
            );
        }
        if self
            .kafka
            .group_instance_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return bad("kafka.group_instance_id", "must not be empty when set");
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            return bad("http.listen", "must be an address like 127.0.0.1:8080");
        }
        if self.processor.state_path == self.view.path {
            return bad(
                "processor.state_path",
                "must differ from view.path (the state store is emptied at start-up)",
            );
        }
        if !(10..=60_000).contains(&self.view.lag_check_ms) {
            return bad("view.lag_check_ms", "must be between 10 and 60000");
        }
        if self.http.command_timeout_ms == 0 {
            return bad("http.command_timeout_ms", "must be positive");
        }
        for (i, p) in self.auth.principals.iter().enumerate() {
            check_token_hash(p, &format!("auth.principals[{i}].token_sha256"))?;
        }
        let longest_wait = self
            .http
            .command_timeout_ms
            .max(self.http.read_barrier_timeout_ms);
        if self.http.request_timeout_ms < longest_wait + REQUEST_TIMEOUT_MARGIN_MS {
            return bad(
                "http.request_timeout_ms",
                &format!(
                    "must exceed http.command_timeout_ms and http.read_barrier_timeout_ms by \
                     at least {REQUEST_TIMEOUT_MARGIN_MS} ms (at least {} here), so the API's \
                     own bounded waits answer first",
                    longest_wait + REQUEST_TIMEOUT_MARGIN_MS
                ),
            );
        }
        if self.http.max_concurrent_requests == 0 {
            return bad("http.max_concurrent_requests", "must be at least 1");
        }
        self.validate_client_settings()
    }

    /// `kafka.client` and `kafka.client_secrets` name no reserved setting and no setting
    /// twice.
    fn validate_client_settings(&self) -> Result<(), ConfigError> {
        let keys = self.kafka.client.keys().map(|k| ("kafka.client", k)).chain(
            self.kafka
                .client_secrets
                .keys()
                .map(|k| ("kafka.client_secrets", k)),
        );
        for (table, k) in keys {
            if RESERVED_CLIENT_KEYS.contains(&k.as_str()) {
                return Err(ConfigError(format!(
                    "{table}.{k}: the registry sets this librdkafka setting itself (use its \
                     own kafka.* key where there is one)"
                )));
            }
            if table == "kafka.client_secrets" && self.kafka.client.contains_key(k) {
                return Err(ConfigError(format!(
                    "{table}.{k}: also set in kafka.client; give it in one place"
                )));
            }
        }
        Ok(())
    }

    /// The grants the processor enforces, with trust `roots`.
    pub fn grants_with_roots(&self, roots: TrustRoots) -> Grants {
        Grants {
            trust: roots,
            ..self.grants()
        }
    }

    /// The grants, with the configured mode but no gateway key: fails closed on signatures.
    pub fn grants(&self) -> Grants {
        let mut g = Grants::enforced(
            self.auth
                .principals
                .iter()
                .map(|p| (p.actor.clone(), p.roles.clone())),
        );
        g.enforce = self.auth.enforce;
        g.trust.require_signatures = self.trust.mode == TrustMode::Signed;
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default config with `change` applied is refused, and the error names `key`.
    fn refused_naming(change: impl FnOnce(&mut Config), key: &str) {
        let mut c = Config::default();
        change(&mut c);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains(key), "{key}: {err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        refused_naming(|c| c.kafka.partitions = 0, "kafka.partitions");
        refused_naming(
            |c| c.kafka.view_fetch_wait_ms = 0,
            "kafka.view_fetch_wait_ms",
        );
        refused_naming(
            |c| c.processor.state_path = c.view.path.clone(),
            "processor.state_path",
        );
        refused_naming(|c| c.http.listen = "nope".into(), "http.listen");
        refused_naming(
            |c| c.http.request_timeout_ms = c.http.command_timeout_ms,
            "http.request_timeout_ms",
        );
        refused_naming(
            |c| c.http.max_concurrent_requests = 0,
            "http.max_concurrent_requests",
        );
        refused_naming(
            |c| {
                c.kafka
                    .client
                    .insert("bootstrap.servers".into(), "elsewhere:9092".into());
            },
            "kafka.client.bootstrap.servers",
        );
        refused_naming(
            |c| {
                c.kafka.client.insert("sasl.password".into(), "x".into());
                c.kafka
                    .client_secrets
                    .insert("sasl.password".into(), SecretSource::Env("X".into()));
            },
            "kafka.client_secrets.sasl.password",
        );
    }

    #[test]
    fn the_request_timeout_outlasts_the_api_s_own_waits() {
        let mut c = Config::default();
        let d = &c.http;
        assert!(d.request_timeout_ms >= d.command_timeout_ms + REQUEST_TIMEOUT_MARGIN_MS);
        assert!(d.request_timeout_ms >= d.read_barrier_timeout_ms + REQUEST_TIMEOUT_MARGIN_MS);
        c.http.read_barrier_timeout_ms = 40_000;
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("http.request_timeout_ms") && err.contains("41000"),
            "{err}"
        );
        c.http.request_timeout_ms = 41_000;
        c.validate().unwrap();
    }

    fn repo_file(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
    }

    /// The production config holds no token and `serve` refuses it until principals come
    /// from the mounted secrets file.
    #[test]
    fn production_config_needs_a_principals_secret() {
        let text = std::fs::read_to_string(repo_file("config/production.toml")).unwrap();
        assert!(
            !text.contains("token_sha256 ="),
            "no token in the image's config"
        );
        let prod: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(&text))
            .extract()
            .unwrap();
        prod.validate().unwrap();
        let err = prod.check_serve().unwrap_err().to_string();
        assert!(err.contains("auth.principals"), "{err}");
        assert_eq!(
            prod.auth.principals_file.as_deref(),
            Some(Path::new("/run/secrets/mpr_principals"))
        );

        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("principals.toml");
        let hash = crate::domain::bundle::sha256_hex(b"a-token");
        std::fs::write(
            &secrets,
            format!(
                "[[principals]]\nactor = \"df\"\nroles = [\"reader@prod/acme\"]\ntoken_sha256 = \"{hash}\"\n"
            ),
        )
        .unwrap();
        let mut with_secret = prod.clone();
        with_secret.auth.principals_file = Some(secrets.clone());
        with_secret.prepare_serve().unwrap();
        assert_eq!(
            with_secret.auth.principals[0].roles[0].to_string(),
            "reader@prod/acme"
        );

        std::fs::write(
            &secrets,
            "[[principals]]\nactor = \"df\"\nroles = []\ntoken_sha256 = \"abc\"\n",
        )
        .unwrap();
        let mut bad = prod.clone();
        bad.auth.principals_file = Some(secrets);
        let err = bad.load_principals_file().unwrap_err().to_string();
        assert!(
            err.contains("auth.principals_file: principals[0].token_sha256"),
            "{err}"
        );
        let mut missing = prod;
        missing.auth.principals_file = Some(dir.path().join("absent"));
        let err = missing.load_principals_file().unwrap_err().to_string();
        assert!(err.contains("auth.principals_file"), "{err}");
    }

    /// The local development config (scripts/run.sh, the README walkthrough) still serves.
    #[test]
    fn local_config_serves() {
        let c = Config::load(Some(&repo_file("config/local.toml"))).unwrap();
        c.check_serve().unwrap();
    }

    /// The documented TLS + SASL example is valid config, and its password must be there.
    #[test]
    fn kafka_security_example_is_valid_and_its_secret_is_required() {
        let example = repo_file("examples/config/kafka_sasl_ssl.toml");
        let mut c: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(repo_file("config/production.toml")))
            .merge(Toml::file(&example))
            .extract()
            .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.kafka.client.get("security.protocol").map(String::as_str),
            Some("SASL_SSL")
        );
        let err = c.kafka.resolve_secrets().unwrap_err().to_string();
        assert!(
            err.contains("kafka.client_secrets.sasl.password")
                && err.contains("/run/secrets/kafka_sasl_password"),
            "{err}"
        );
    }
}
