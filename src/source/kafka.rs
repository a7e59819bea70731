//! The Kafka source, batch flavour: reads each partition of the configured topics from the
//! group's committed offset (or `start`) up to the end offset it had when the run began — like
//! Spark's `availableNow` trigger — and commits the offsets it read once the sinks have flushed.
//!
//! Partitions are assigned directly (no group rebalance to wait for); the group is used for its
//! committed offsets, so `kafka-consumer-groups` shows progress and lag as usual.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use std::collections::HashMap;
use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::{RawMessage, Source, SourceError, SplitStatus};
use crate::checkpoint::SplitPosition;
use crate::config::{KafkaSourceConfig, StartFrom};

/// How long metadata, offset and commit requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// A run that receives nothing for this long while partitions still have data to read fails
/// instead of hanging: the broker is gone, or the data was deleted under us.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// One topic-partition to read, `[next, end)`.
#[derive(Debug, Clone)]
struct Split {
    topic: String,
    partition: i32,
    next: i64,
    end: i64,
}

/// How often librdkafka reports statistics while following: the high watermarks lag is
/// computed from.
const STATISTICS_INTERVAL: &str = "1000";

/// Keeps the newest high watermark librdkafka reports per partition. Statistics arrive during
/// `poll`, on the pipeline thread, so the lock is never contended.
#[derive(Default)]
pub struct LagContext {
    high_watermarks: Mutex<HashMap<(String, i32), i64>>,
    /// When statistics last showed a broker connection up: clears a reported outage on an
    /// idle topic, where no message would.
    broker_up_at: Mutex<Option<Instant>>,
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        let mut high = self
            .high_watermarks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if statistics.brokers.values().any(|b| b.state == "UP") {
            *self
                .broker_up_at
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now());
        }
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                // librdkafka lists an internal partition -1 and reports -1 before it knows.
                if partition >= 0 && p.hi_offset >= 0 {
                    high.insert((topic.clone(), partition), p.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for LagContext {}

impl Split {
    /// Where this split is, as a checkpoint stores it.
    fn position(&self) -> SplitPosition {
        SplitPosition {
            source: self.topic.clone(),
            partition: self.partition.max(0) as u32,
            next_offset: self.next.max(0) as u64,
        }
    }
}

pub struct KafkaSource {
    consumer: BaseConsumer<LagContext>,
    /// Index = the split id the engine tracks watermarks by.
    splits: Vec<Split>,
    by_partition: BTreeMap<(String, i32), usize>,
    remaining: usize,
    /// The current message, copied out of librdkafka's buffer so no `BorrowedMessage` outlives
    /// a call (dropping a consumer while one is alive blocks forever).
    payload: Vec<u8>,
    topic: String,
    current: (u32, i32, i64),
    /// The last consumption error and when it came, while no message has arrived since.
    trouble: Option<(String, Instant)>,
}

impl KafkaSource {
    /// Connects, finds every partition's range to read, and assigns the non-empty ones.
    ///
    /// A partition starts at its `resume` position when there is one (a checkpoint wins over the
    /// group), else at the group's committed offset, else at `start`. Split ids are the
    /// partitions' indexes in (topic, partition) order, stable across restarts even when a
    /// partition has nothing left to read, because checkpointed watermarks are keyed by them.
    pub fn open_to_end(
        config: &KafkaSourceConfig,
        resume: &[SplitPosition],
    ) -> Result<Self, SourceError> {
        Self::open(config, resume, false)
    }

    /// Like [`KafkaSource::open_to_end`], but keeps reading new messages for ever (`run`).
    /// The partitions are those the topics have at start; each one is its own split.
    pub fn open_following(
        config: &KafkaSourceConfig,
        resume: &[SplitPosition],
    ) -> Result<Self, SourceError> {
        Self::open(config, resume, true)
    }

    fn open(
        config: &KafkaSourceConfig,
        resume: &[SplitPosition],
        follow: bool,
    ) -> Result<Self, SourceError> {
        let mut client = ClientConfig::new();
        for (key, value) in &config.properties {
            client.set(key, value);
        }
        client
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match config.start {
                    StartFrom::Earliest => "earliest",
                    StartFrom::Latest => "latest",
                },
            );
        if follow && !config.properties.contains_key("statistics.interval.ms") {
            client.set("statistics.interval.ms", STATISTICS_INTERVAL);
        }
        let consumer: BaseConsumer<LagContext> = client
            .create_with_context(LagContext::default())
            .map_err(kafka_error)?;

        let mut wanted = TopicPartitionList::new();
        for topic in &config.topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
                .map_err(kafka_error)?;
            let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
                return Err(SourceError::MissingTopic {
                    topic: topic.clone(),
                });
            };
            if found.error().is_some() || found.partitions().is_empty() {
                return Err(SourceError::MissingTopic {
                    topic: topic.clone(),
                });
            }
            let exists = |id: i32| found.partitions().iter().any(|p| p.id() == id);
            if let Some(missing) = config.partitions.iter().flatten().find(|&&p| !exists(p)) {
                return Err(SourceError::Kafka(format!(
                    "topic {topic:?} has no partition {missing} (it has {})",
                    found.partitions().len()
                )));
            }
            for partition in found.partitions() {
                let chosen = config
                    .partitions
                    .as_ref()
                    .is_none_or(|list| list.contains(&partition.id()));
                if chosen {
                    wanted
                        .add_partition_offset(topic, partition.id(), Offset::Invalid)
                        .map_err(kafka_error)?;
                }
            }
        }
        let committed = consumer
            .committed_offsets(wanted, REQUEST_TIMEOUT)
            .map_err(kafka_error)?;

        let mut splits = Vec::new();
        let mut assign = TopicPartitionList::new();
        for element in committed.elements() {
            let (topic, partition) = (element.topic().to_owned(), element.partition());
            let (low, high) = consumer
                .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
                .map_err(kafka_error)?;
            let resumed = resume
                .iter()
                .find(|p| p.source == topic && i64::from(p.partition) == i64::from(partition))
                .map(|p| p.next_offset as i64);
            let start = match (resumed, element.offset()) {
                // Offsets below the low watermark were deleted by retention.
                (Some(next), _) | (None, Offset::Offset(next)) => next.clamp(low, high),
                (None, _) => match config.start {
                    StartFrom::Earliest => low,
                    StartFrom::Latest => high,
                },
            };
            if follow {
                // Lag is known from the start, before the first statistics arrive.
                consumer
                    .context()
                    .high_watermarks
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert((topic.clone(), partition), high);
            }
            let high = if follow { i64::MAX } else { high };
            debug!(%topic, partition, start, end = high, "Partition range.");
            if start < high {
                assign
                    .add_partition_offset(&topic, partition, Offset::Offset(start))
                    .map_err(kafka_error)?;
            }
            splits.push(Split {
                topic,
                partition,
                next: start,
                end: high,
            });
        }
        drop(committed);
        consumer.assign(&assign).map_err(kafka_error)?;
        let by_partition = splits
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.topic.clone(), s.partition), i))
            .collect();
        if follow {
            info!(partitions = splits.len(), group = %config.group, "Following Kafka.");
        } else {
            let to_read: i64 = splits.iter().map(|s| (s.end - s.next).max(0)).sum();
            info!(
                partitions = splits.len(),
                messages = to_read,
                group = %config.group,
                "Reading Kafka to the end offsets."
            );
        }
        Ok(KafkaSource {
            consumer,
            remaining: splits.iter().filter(|s| s.next < s.end).count(),
            splits,
            by_partition,
            payload: Vec::new(),
            topic: String::new(),
            current: (0, 0, 0),
            trouble: None,
        })
    }

    /// Polls until a message inside a split's range arrives; `false` when every split is done.
    fn advance(&mut self) -> Result<bool, SourceError> {
        Ok(self.advance_within(STALL_TIMEOUT)? == Progress::Message)
    }

    /// Polls for up to `patience` (a stall is an error only in batch mode, where `patience`
    /// is the stall timeout); in follow mode running out of patience is just idleness.
    fn advance_within(&mut self, patience: Duration) -> Result<Progress, SourceError> {
        let started = Instant::now();
        let batch = patience == STALL_TIMEOUT;
        while self.remaining > 0 {
            let slice = patience.min(Duration::from_millis(500));
            let Some(result) = self.consumer.poll(slice) else {
                if !batch && started.elapsed() >= patience {
                    return Ok(Progress::Idle);
                }
                if batch && started.elapsed() > STALL_TIMEOUT {
                    return Err(SourceError::Stalled {
                        remaining: self.remaining,
                        waited: STALL_TIMEOUT,
                    });
                }
                continue;
            };
            let message = match result {
                Ok(message) => message,
                // librdkafka reconnects and retries by itself; everything short of a fatal error
                // (the client cannot go on) is weather: say so and keep polling. A batch run
                // still fails once nothing has arrived for the stall timeout.
                Err(error @ KafkaError::MessageConsumptionFatal(_)) => {
                    return Err(kafka_error(error))
                }
                Err(error) => {
                    let text = error.to_string();
                    if self.trouble.is_none() {
                        warn!(error = %text, "Kafka is failing; retrying (librdkafka reconnects).");
                    } else {
                        debug!(error = %text, "Kafka still failing.");
                    }
                    self.trouble = Some((text, Instant::now()));
                    continue;
                }
            };
            if self.trouble.take().is_some() {
                info!("Kafka is back.");
            }
            let key = (message.topic().to_owned(), message.partition());
            let Some(&index) = self.by_partition.get(&key) else {
                continue;
            };
            let split = &mut self.splits[index];
            let offset = message.offset();
            if offset < split.next || split.next >= split.end {
                continue; // already read, or past the end offset of this run
            }
            split.next = offset + 1;
            if split.next >= split.end {
                self.remaining -= 1;
            }
            self.payload.clear();
            self.payload
                .extend_from_slice(message.payload().unwrap_or_default());
            self.topic.clear();
            self.topic.push_str(message.topic());
            self.current = (index as u32, message.partition(), offset);
            return Ok(Progress::Message);
        }
        Ok(Progress::End)
    }
}

impl KafkaSource {
    fn current_message(&self) -> RawMessage<'_> {
        let (split, partition, offset) = self.current;
        RawMessage {
            source: &self.topic,
            split,
            partition: partition.max(0) as u32,
            offset: offset.max(0) as u64,
            payload: &self.payload,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Message,
    Idle,
    End,
}

impl Source for KafkaSource {
    fn poll_message(&mut self, timeout: Duration) -> Result<super::Polled<'_>, SourceError> {
        Ok(match self.advance_within(timeout)? {
            Progress::Message => super::Polled::Message(self.current_message()),
            Progress::Idle => super::Polled::Idle,
            Progress::End => super::Polled::End,
        })
    }

    fn next_message(&mut self) -> Result<Option<RawMessage<'_>>, SourceError> {
        if !self.advance()? {
            return Ok(None);
        }
        Ok(Some(self.current_message()))
    }

    fn splits(&self) -> Vec<u32> {
        (0..self.splits.len() as u32)
            .filter(|&i| self.splits[i as usize].next < self.splits[i as usize].end)
            .collect()
    }

    fn positions(&self) -> Vec<SplitPosition> {
        self.splits.iter().map(Split::position).collect()
    }

    fn trouble(&self) -> Option<String> {
        let (text, at) = self.trouble.as_ref()?;
        let up_since = *self
            .consumer
            .context()
            .broker_up_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match up_since {
            Some(up) if up > *at => None,
            _ => Some(text.clone()),
        }
    }

    /// Lag against the end offset found at start (`--once`) or, following, the newest high
    /// watermark of librdkafka's statistics: no broker request on this path.
    fn split_status(&self) -> Vec<SplitStatus> {
        let high = self
            .consumer
            .context()
            .high_watermarks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.splits
            .iter()
            .enumerate()
            .map(|(split, s)| {
                let end = if s.end == i64::MAX {
                    high.get(&(s.topic.clone(), s.partition)).copied()
                } else {
                    Some(s.end)
                };
                let lag = end.map(|end| (end - s.next).max(0) as u64);
                SplitStatus {
                    split: split as u32,
                    position: s.position(),
                    lag,
                }
            })
            .collect()
    }

    /// Commits the next offset of every partition read; call only after the sinks flushed.
    fn commit(&mut self) -> Result<(), SourceError> {
        let mut offsets = TopicPartitionList::new();
        for split in &self.splits {
            offsets
                .add_partition_offset(&split.topic, split.partition, Offset::Offset(split.next))
                .map_err(kafka_error)?;
        }
        if offsets.count() == 0 {
            return Ok(());
        }
        self.consumer
            .commit(&offsets, CommitMode::Sync)
            .map_err(kafka_error)?;
        info!(partitions = offsets.count(), "Offsets committed.");
        Ok(())
    }
}

fn kafka_error(error: KafkaError) -> SourceError {
    SourceError::Kafka(error.to_string())
}
