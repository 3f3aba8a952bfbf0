//! Kafka: topic names and creation, client settings, reading a partition to its high
//! watermark, the derived outputs (state changelog, results, CloudEvents), the producer, the
//! per-partition command processor and the view applier.

pub mod applier;
pub mod catalog;
pub mod catchup;
pub mod derive;
pub mod driver;
pub mod processor;
pub mod producer;
pub mod reader;
pub mod signals;
pub mod topics;
pub mod verify;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;

use crate::config::KafkaConfig;
use crate::domain::ErrorCode;

/// Pipeline failures.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The broker or client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The view failed.
    #[error("view: {0}")]
    View(#[from] crate::view::ViewError),
    /// A record on a log the registry owns did not decode.
    #[error("corrupt record on {topic}/{partition}@{offset}: {detail}")]
    Corrupt {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// What failed.
        detail: String,
    },
    /// A log does not chain (a seq is missing).
    #[error("log gap: {0}")]
    Gap(String),
    /// A topic is missing or misconfigured.
    #[error("topic {0}")]
    Topic(String),
}

impl LogError {
    /// Stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            LogError::Kafka(_) => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }
    /// Whether a retry may help.
    pub fn retryable(&self) -> bool {
        self.code().retryable()
    }
}

/// The registry's topic names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Commands in.
    pub commands: String,
    /// The audit log of bundle families.
    pub events: String,
    /// The single-partition catalog log.
    pub catalog: String,
    /// Compacted changelog of the view.
    pub state: String,
    /// Command results by command_id.
    pub results: String,
    /// CloudEvents for Observability.
    pub lifecycle: String,
    /// Promotion and rollback CloudEvents for Governance.
    pub bundle_promoted: String,
    /// Undecodable input.
    pub dlq: String,
    /// Runtime signals in (keyed by bundle_id, as `commands`).
    pub signals: String,
}

impl Topics {
    /// Names under `prefix` (e.g. `mpr.`).
    pub fn new(prefix: &str) -> Self {
        let t = |n: &str| format!("{prefix}{n}");
        Self {
            commands: t("commands"),
            events: t("events"),
            catalog: t("catalog"),
            state: t("state"),
            results: t("results"),
            lifecycle: t("lifecycle"),
            bundle_promoted: t("bundle_promoted"),
            dlq: t("dlq"),
            signals: t("signals"),
        }
    }
}

/// Wall-clock time in Unix milliseconds, for comparing with log timestamps (metrics only:
/// decisions use the command's log timestamp, never this).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Base settings of every client the registry creates, for `cfg`: the registry's own, then
/// the operator's `kafka.client` settings (security, SASL, TLS) and the values of
/// `kafka.client_secrets` (resolved at load).
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("socket.keepalive.enable", "true")
        .set("reconnect.backoff.max.ms", "2000")
        .set("topic.metadata.refresh.interval.ms", "10000");
    if !cfg.client_debug.is_empty() {
        c.set("debug", &cfg.client_debug);
    }
    for (k, v) in &cfg.client {
        c.set(k, v);
    }
    for (k, v) in &cfg.resolved_secrets {
        c.set(k, v.expose());
    }
    c
}

/// Settings of the registry's producers: acks from all replicas, one request in flight so
/// order holds across retries. Not idempotent on purpose: tansu 0.6 answered some
/// idempotent produce requests with offset -1, which the processor needs to detect a
/// competing writer. A retry may duplicate an event; duplicates are byte-identical (events
/// are deterministic) and every applier skips a seq it has applied.
pub fn producer_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = client_config(cfg);
    c.set("enable.idempotence", "false")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "120000")
        .set("max.in.flight.requests.per.connection", "1");
    c
}

#[cfg(test)]
mod tests {
    use rdkafka::consumer::BaseConsumer;

    use super::*;
    use crate::config::{Config, SecretSource};

    #[test]
    fn operator_settings_and_secrets_reach_every_client() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("kafka_password");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let mut cfg = Config::default().kafka;
        cfg.client
            .insert("security.protocol".into(), "SASL_PLAINTEXT".into());
        cfg.client.insert("sasl.mechanism".into(), "PLAIN".into());
        cfg.client.insert("sasl.username".into(), "mpr".into());
        cfg.client_secrets
            .insert("sasl.password".into(), SecretSource::File(secret));
        cfg.resolve_secrets().unwrap();
        assert!(
            !format!("{cfg:?}").contains("s3cret"),
            "a secret is never printed"
        );
        for c in [client_config(&cfg), producer_config(&cfg)] {
            assert_eq!(c.get("security.protocol"), Some("SASL_PLAINTEXT"));
            assert_eq!(c.get("sasl.username"), Some("mpr"));
            assert_eq!(c.get("sasl.password"), Some("s3cret"));
        }
        // librdkafka accepts them (creating a client does not connect).
        let _: BaseConsumer = client_config(&cfg).create().unwrap();
    }

    #[test]
    fn librdkafka_refuses_an_unknown_setting_by_name() {
        let mut cfg = Config::default().kafka;
        cfg.client.insert("sasl.pasword".into(), "x".into());
        let Err(err) = client_config(&cfg).create::<BaseConsumer>() else {
            panic!("an unknown setting was accepted");
        };
        assert!(err.to_string().contains("sasl.pasword"), "{err}");
    }
}
