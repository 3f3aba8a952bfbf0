//! Reads partitions from an offset up to the high watermarks seen at the start (blocking;
//! call from a blocking thread). Catch-up, rebuild and tests use it.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{LogError, client_config};
use crate::config::KafkaConfig;

/// A raw record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Payload.
    pub payload: Option<Vec<u8>>,
    /// Log timestamp in ms.
    pub timestamp_ms: Option<i64>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// Copies a borrowed message.
    pub fn from_message(m: &BorrowedMessage<'_>) -> Self {
        use rdkafka::message::Headers;
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| (x.key.to_owned(), x.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            timestamp_ms: m.timestamp().to_millis(),
            headers,
        }
    }

    /// A header value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// Calls `f` for every record of `topic`/`partition` from `from` up to the high watermark
/// captured at the start. Returns that watermark.
pub fn read_to_end(
    cfg: &KafkaConfig,
    topic: &str,
    partition: i32,
    from: i64,
    f: impl FnMut(Record) -> Result<(), LogError>,
) -> Result<i64, LogError> {
    Ok(read_all_to_end(cfg, &[(topic, partition, from)], f)?[0])
}

/// Calls `f` for every record of each (`topic`, `partition`) from its `from` offset up to
/// the high watermark captured at the start, with one consumer: records of one partition
/// come in their order, those of different partitions interleaved as they arrive. Returns
/// the watermarks, in the order of `logs`.
pub fn read_all_to_end(
    cfg: &KafkaConfig,
    logs: &[(&str, i32, i64)],
    mut f: impl FnMut(Record) -> Result<(), LogError>,
) -> Result<Vec<i64>, LogError> {
    let c: BaseConsumer = client_config(cfg)
        .set("group.id", "mpr-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "50")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    // Per log: its watermark and the next offset to read.
    let mut ends = Vec::with_capacity(logs.len());
    let mut next = Vec::with_capacity(logs.len());
    for &(topic, partition, from) in logs {
        let (low, high) = c.fetch_watermarks(topic, partition, Duration::from_secs(30))?;
        let start = from.max(low);
        ends.push(high);
        next.push(start);
        if start < high {
            tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
        }
    }
    if tpl.count() == 0 {
        return Ok(ends);
    }
    c.assign(&tpl)?;
    let mut idle_since = Instant::now();
    while let Some(i) = (0..logs.len()).find(|&i| next[i] < ends[i]) {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                idle_since = Instant::now();
                let Some(j) = logs
                    .iter()
                    .position(|&(t, p, _)| t == m.topic() && p == m.partition())
                else {
                    continue;
                };
                if m.offset() >= ends[j] {
                    // Past the end captured at the start: not this read's.
                    continue;
                }
                next[j] = m.offset() + 1;
                f(Record::from_message(&m))?;
            }
            Some(Err(e)) => return Err(e.into()),
            None => {
                if idle_since.elapsed() > Duration::from_secs(60) {
                    let (topic, partition, _) = logs[i];
                    return Err(LogError::Topic(format!(
                        "{topic}/{partition}: no progress for 60s at offset {} of {}",
                        next[i], ends[i]
                    )));
                }
            }
        }
    }
    Ok(ends)
}
