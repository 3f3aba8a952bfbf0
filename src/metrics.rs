//! Prometheus metrics of the registry, rendered in the text exposition format at
//! `/metrics`: resolve latency and outcomes, commands by type and result, processing
//! latency, consumer lag, view version and DLQ count.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of command counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// Command type.
    pub command_type: String,
    /// Outcome.
    pub outcome: String,
    /// Error code or `none`.
    pub code: String,
}

/// Labels with an outcome only.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Outcome (`ok`, `not_modified`, or an error code).
    pub outcome: String,
}

/// Labels with a partition.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: String,
}

/// Labels of a per-topic counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// Topic.
    pub topic: String,
}

/// Every metric.
pub struct Metrics {
    /// The registry that renders them.
    pub registry: Registry,
    /// Resolve latency, seconds.
    pub resolve_seconds: Histogram,
    /// Resolve requests by outcome.
    pub resolve_requests: Family<OutcomeLabels, Counter>,
    /// `resolve_requests{outcome="ok"}`, held apart: the hot path skips the label lookup.
    pub resolve_ok: Counter,
    /// `resolve_requests{outcome="not_modified"}`, likewise.
    pub resolve_not_modified: Counter,
    /// Commands decided, by type, outcome and code.
    pub commands: Family<CommandLabels, Counter>,
    /// Time from a command's log timestamp to its event being durable, seconds.
    pub command_seconds: Histogram,
    /// Time from a command's log timestamp to the processor receiving it, seconds.
    pub command_receive_seconds: Histogram,
    /// Time from a command's log timestamp to its event applied in this replica's view.
    pub view_visible_seconds: Histogram,
    /// Messages sent to the DLQ.
    pub dlq: Counter,
    /// Consumer lag of the view applier per partition.
    pub lag: Family<PartitionLabels, Gauge>,
    /// Sum of applied seqs (a scalar stand-in for the view version).
    pub view_applied_events: Gauge,
    /// Events skipped because they did not chain (a losing writer's fork).
    pub forks_skipped: Counter,
    /// Records on `events` or `catalog` skipped because no registry key signed them.
    pub untrusted_records: Family<TopicLabels, Counter>,
    /// Partition re-syncs after a conflicting writer was noticed.
    pub resyncs: Counter,
    /// Times the processor left and rejoined a consumer group that had stalled.
    pub group_rejoins: Counter,
    /// Events read and applied by partition catch-ups (after an assignment or a failure).
    pub catchup_events: Counter,
    /// Partition catch-ups finished.
    pub catchups: Counter,
    /// Times a partition was sent back to catch-up after a failure or a competing writer.
    pub partition_failures: Counter,
    /// Records read from `signals` by the signal intake.
    pub signals_read: Counter,
    /// Signals whose OBSERVE event this replica's view applied (counted, ignored, refused
    /// or repeated alike).
    pub signals_applied: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Counts a batch of `signals` records and the dead letters among them.
    pub fn signals_read(&self, read: u64, dead: u64) {
        self.signals_read.inc_by(read);
        self.dlq.inc_by(dead);
    }

    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mpr");
        let resolve_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        let command_seconds = Histogram::new(exponential_buckets(0.000_5, 2.0, 16));
        let resolve_requests = Family::<OutcomeLabels, Counter>::default();
        let outcome = |o: &str| {
            resolve_requests
                .get_or_create(&OutcomeLabels {
                    outcome: o.to_owned(),
                })
                .clone()
        };
        let (resolve_ok, resolve_not_modified) = (outcome("ok"), outcome("not_modified"));
        let m = Self {
            resolve_seconds,
            resolve_ok,
            resolve_not_modified,
            resolve_requests,
            commands: Family::default(),
            command_seconds,
            command_receive_seconds: Histogram::new(exponential_buckets(0.000_5, 2.0, 16)),
            view_visible_seconds: Histogram::new(exponential_buckets(0.000_5, 2.0, 16)),
            dlq: Counter::default(),
            lag: Family::default(),
            view_applied_events: Gauge::default(),
            forks_skipped: Counter::default(),
            untrusted_records: Family::default(),
            resyncs: Counter::default(),
            group_rejoins: Counter::default(),
            catchup_events: Counter::default(),
            catchups: Counter::default(),
            partition_failures: Counter::default(),
            signals_read: Counter::default(),
            signals_applied: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "signals_read",
            "Records read from signals by the signal intake",
            m.signals_read.clone(),
        );
        registry.register(
            "signals_applied",
            "Signals whose OBSERVE event the view applied",
            m.signals_applied.clone(),
        );
        registry.register(
            "resolve_duration_seconds",
            "Resolve latency",
            m.resolve_seconds.clone(),
        );
        registry.register(
            "resolve_requests",
            "Resolve requests by outcome",
            m.resolve_requests.clone(),
        );
        registry.register(
            "commands",
            "Commands decided by type, outcome and code",
            m.commands.clone(),
        );
        registry.register(
            "command_processing_seconds",
            "From command log timestamp to durable event",
            m.command_seconds.clone(),
        );
        registry.register(
            "command_receive_seconds",
            "From command log timestamp to the processor receiving it",
            m.command_receive_seconds.clone(),
        );
        registry.register(
            "view_visible_seconds",
            "From command log timestamp to its event applied in this view",
            m.view_visible_seconds.clone(),
        );
        registry.register("dlq_messages", "Messages sent to the DLQ", m.dlq.clone());
        registry.register(
            "processor_catchup_events",
            "Events applied by partition catch-ups",
            m.catchup_events.clone(),
        );
        registry.register(
            "processor_catchups",
            "Partition catch-ups finished",
            m.catchups.clone(),
        );
        registry.register(
            "processor_partition_failures",
            "Partitions sent back to catch-up after a failure or a competing writer",
            m.partition_failures.clone(),
        );
        registry.register(
            "consumer_lag",
            "View applier lag per partition",
            m.lag.clone(),
        );
        registry.register(
            "view_applied_events",
            "Events applied to the view",
            m.view_applied_events.clone(),
        );
        registry.register(
            "forks_skipped",
            "Non-chaining events skipped",
            m.forks_skipped.clone(),
        );
        registry.register(
            "untrusted_records",
            "Records on events or catalog skipped because no registry key signed them (forged or corrupt)",
            m.untrusted_records.clone(),
        );
        registry.register(
            "partition_resyncs",
            "Processor re-syncs after a conflicting writer",
            m.resyncs.clone(),
        );
        registry.register(
            "group_rejoins",
            "Processor rejoins of a stalled consumer group",
            m.group_rejoins.clone(),
        );
        Self { registry, ..m }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("metrics encode");
        out
    }
}
