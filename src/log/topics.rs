//! Creates the registry's topics idempotently, with their partition counts and policies.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::{LogError, Topics, client_config};
use crate::config::KafkaConfig;

/// One topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Name.
    pub name: String,
    /// Partitions.
    pub partitions: i32,
    /// Configs.
    pub configs: Vec<(&'static str, String)>,
}

/// The topic plan for `cfg`.
pub fn plan(cfg: &KafkaConfig) -> Vec<TopicSpec> {
    let t = Topics::new(&cfg.topic_prefix);
    let days = (i64::from(cfg.retention_days) * 86_400_000).to_string();
    let delete = || {
        vec![
            ("cleanup.policy", "delete".to_owned()),
            ("retention.ms", days.clone()),
        ]
    };
    // "Never deleted" is retention.ms = i64::MAX rather than -1: Apache Kafka reads both as
    // forever, but tansu 0.6 applies `now - timestamp > retention.ms` literally at start-up,
    // so -1 would delete every record of the audit log.
    let forever = || {
        vec![
            ("cleanup.policy", "delete".to_owned()),
            ("retention.ms", i64::MAX.to_string()),
        ]
    };
    let n = cfg.partitions;
    vec![
        TopicSpec {
            name: t.commands,
            partitions: n,
            configs: delete(),
        },
        TopicSpec {
            name: t.events,
            partitions: n,
            configs: forever(),
        },
        TopicSpec {
            name: t.catalog,
            partitions: 1,
            configs: forever(),
        },
        TopicSpec {
            name: t.state,
            partitions: 1,
            configs: vec![("cleanup.policy", "compact".to_owned())],
        },
        TopicSpec {
            name: t.results,
            partitions: n,
            configs: delete(),
        },
        TopicSpec {
            name: t.lifecycle,
            partitions: n,
            configs: delete(),
        },
        TopicSpec {
            name: t.bundle_promoted,
            partitions: n,
            configs: delete(),
        },
        TopicSpec {
            name: t.dlq,
            partitions: n,
            configs: delete(),
        },
        // Co-partitioned with `commands`: a family's signals land in its partition number.
        TopicSpec {
            name: t.signals,
            partitions: n,
            configs: delete(),
        },
    ]
}

/// Creates every topic that is missing; existing ones are left as they are. Returns the
/// names created.
pub async fn ensure(cfg: &KafkaConfig) -> Result<Vec<String>, LogError> {
    let admin: AdminClient<DefaultClientContext> = client_config(cfg).create()?;
    let existing: Vec<String> = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(30))?
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .collect();
    let specs: Vec<TopicSpec> = plan(cfg)
        .into_iter()
        .filter(|s| !existing.contains(&s.name))
        .collect();
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let new: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|s| {
            s.configs.iter().fold(
                NewTopic::new(
                    &s.name,
                    s.partitions,
                    TopicReplication::Fixed(cfg.replication_factor),
                ),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(new.iter(), &opts).await?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(LogError::Topic(format!("{name}: create failed: {code}")));
            }
        }
    }
    Ok(created)
}
