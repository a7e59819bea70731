//! The Kafka source. In a batch run it reads each partition from its checkpoint, else the
//! group's committed offset, else `start`, up to the end offset it had when the run began (or,
//! under a group, when the partition was assigned) — like Spark's `availableNow` trigger;
//! following, it reads on for ever. It commits the offsets read once the sinks have flushed, so
//! `kafka-consumer-groups` shows progress and lag as usual.
//!
//! Two ways to get partitions ([`Assignment`]):
//! - **static**: the source assigns itself every partition (or those listed), no rebalance;
//! - **group**: it subscribes and the consumer group shares the partitions among the instances.
//!   librdkafka's rebalances are not applied inside its callback but handed to the pipeline as
//!   [`Polled::Rebalance`]: librdkafka waits for the assign/unassign call, which comes once the
//!   pipeline has checkpointed the revoked partitions' state, or restored the assigned ones'
//!   (so their start offsets come from the checkpoint store, not the group).

mod config;
mod context;
mod fetch;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use self::context::{apply_assign, apply_revoke, lock, LagContext, PendingRebalance};
use super::interface::{Polled, RawMessage, Rebalance, Source, SourceError, SplitRef, SplitStatus};
use crate::checkpoint::SplitPosition;
use crate::digest::fnv1a;
use fetch::{Fetcher, ReadAhead};

pub use self::config::{Assignment, KafkaSourceConfig, StartFrom};

/// How long metadata, offset and commit requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// A run that receives nothing for this long while partitions still have data to read fails
/// instead of hanging: the broker is gone, or the data was deleted under us.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// One topic-partition to read, `[next, end)`.
#[derive(Debug, Clone)]
struct Split {
    /// What the engine tracks this partition's watermark and orders its events by: derived
    /// from the topic and partition (see [`split_id`]), so it survives edits of `topics`.
    id: u32,
    topic: String,
    partition: i32,
    next: i64,
    end: i64,
    /// This instance reads it: always under static assignment; under a group, while assigned.
    owned: bool,
}

/// How often librdkafka reports statistics while following: the high watermarks lag is
/// computed from.
const STATISTICS_INTERVAL: &str = "1000";

/// How long librdkafka waits before fetching a partition again once its local queue is full
/// (`queued.min.messages`, `queued.max.messages.kbytes`); its default is a whole second. A
/// consumer that does work per message fills the queue, drains it in a fraction of that second
/// and then sits idle: a `run --once` over 600,000 messages took 3.9 s with the default, 1.3 s
/// with this, its CPU time unchanged (`scripts/bench-kafka.sh`). Set `kafka = {
/// "fetch.queue.backoff.ms" = ... }` to override. (`benches/kafka_consume.rs` sets the same.)
const FETCH_QUEUE_BACKOFF: &str = "10";

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
    /// Shared with the read-ahead thread, when there is one (see `fetch`).
    consumer: Arc<BaseConsumer<LagContext>>,
    fetch: Fetcher,
    /// Every partition seen, in the order first seen.
    splits: Vec<Split>,
    /// Split index by topic, then partition: looked up per message with the message's own
    /// `&str`, no allocation.
    by_partition: HashMap<String, HashMap<i32, usize>>,
    by_id: HashMap<u32, usize>,
    /// Owned splits with messages left to read.
    remaining: usize,
    /// Split, partition and offset of the current message; its topic and payload stay in the
    /// fetcher, copied out of librdkafka's buffer (see `fetch`).
    current: (u32, i32, i64),
    /// The last consumption error and when it came, while no message has arrived since.
    trouble: Option<(String, Instant)>,
    follow: bool,
    start: StartFrom,
    group: String,
    /// Under a group: the state of the assignment.
    membership: Option<Membership>,
    /// The last message, assignment or revocation: a batch run that sees none for
    /// [`STALL_TIMEOUT`] fails instead of hanging.
    last_activity: Instant,
    /// A message arrived since `last_activity` was last brought up to date: set per message
    /// instead of reading the clock per message, and folded in when a poll comes back empty.
    active: bool,
}

/// Where a group-assigned source is in the group's rebalances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Membership {
    /// Joining, or between a revocation and the assignment that follows it.
    AwaitingAssignment,
    Assigned,
}

impl KafkaSource {
    /// Connects, finds every partition's range to read, and assigns the non-empty ones (under a
    /// group: subscribes, and the ranges are found as partitions are assigned).
    ///
    /// A partition starts at its `resume` position when there is one (a checkpoint wins over the
    /// group), else at the group's committed offset, else at `start`. Split ids are digests of
    /// (topic, partition) ([`split_id`]), stable across restarts, versions and edits of
    /// `topics` or `partitions`, because checkpointed watermarks are keyed by them.
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
            .set("group.id", config.group_id())
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", config.start.as_str());
        if !config.properties.contains_key("fetch.queue.backoff.ms") {
            client.set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF);
        }
        if follow && !config.properties.contains_key("statistics.interval.ms") {
            client.set("statistics.interval.ms", STATISTICS_INTERVAL);
        }
        let consumer: BaseConsumer<LagContext> = client
            .create_with_context(LagContext::default())
            .map_err(kafka_error)?;
        let partitions = list_partitions(&consumer, config)?;
        let group = config.assignment == Assignment::Group;
        let mut source = KafkaSource {
            consumer: Arc::new(consumer),
            fetch: Fetcher::inline(),
            splits: Vec::new(),
            by_partition: HashMap::new(),
            by_id: HashMap::new(),
            remaining: 0,
            current: (0, 0, 0),
            trouble: None,
            follow,
            start: config.start,
            group: config.group_id().to_owned(),
            membership: group.then_some(Membership::AwaitingAssignment),
            last_activity: Instant::now(),
            active: false,
        };
        for (topic, partition) in partitions {
            source.split_of(&topic, partition);
        }
        if group {
            let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
            source.consumer.subscribe(&topics).map_err(kafka_error)?;
            info!(group = %config.group_id(), topics = ?config.topics, "Joining the consumer group.");
            return Ok(source);
        }

        let all: Vec<usize> = (0..source.splits.len()).collect();
        let assign = source.take_over(&all, resume)?;
        source.consumer.assign(&assign).map_err(kafka_error)?;
        // Static partitions keep their positions while the source lives: read ahead.
        match ReadAhead::start(source.consumer.clone()) {
            Ok(ahead) => source.fetch = Fetcher::ReadAhead(ahead),
            Err(error) => warn!(%error, "Cannot start the read-ahead thread; polling inline."),
        }
        if follow {
            info!(partitions = source.splits.len(), group = %config.group_id(), "Following Kafka.");
        } else {
            let to_read: i64 = source.splits.iter().map(|s| (s.end - s.next).max(0)).sum();
            info!(
                partitions = source.splits.len(),
                messages = to_read,
                group = %config.group_id(),
                "Reading Kafka to the end offsets."
            );
        }
        Ok(source)
    }

    /// The split id of a partition, adding a split for a partition not seen before (the group
    /// can assign partitions created after the start).
    fn split_of(&mut self, topic: &str, partition: i32) -> usize {
        if let Some(&index) = self.by_partition.get(topic).and_then(|p| p.get(&partition)) {
            return index;
        }
        let index = self.splits.len();
        let mut id = split_id(topic, partition);
        // Two partitions whose digests collide (about one pair in four billion) take the next
        // free id, in (topic, partition) order at start.
        while self.by_id.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.splits.push(Split {
            id,
            topic: topic.to_owned(),
            partition,
            next: 0,
            end: 0,
            owned: false,
        });
        self.by_partition
            .entry(topic.to_owned())
            .or_default()
            .insert(partition, index);
        self.by_id.insert(id, index);
        index
    }

    /// The group's committed offsets of `wanted`. A group coordinator still being elected or
    /// loading answers with a retriable error (Apache Kafka creates `__consumer_offsets` on the
    /// first request to a new cluster, and says "not coordinator" meanwhile): asked again,
    /// within [`REQUEST_TIMEOUT`].
    fn committed_offsets(
        &self,
        wanted: &TopicPartitionList,
    ) -> Result<TopicPartitionList, SourceError> {
        use rdkafka::types::RDKafkaErrorCode::{
            CoordinatorLoadInProgress, CoordinatorNotAvailable, NotCoordinator,
        };
        let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            match self
                .consumer
                .committed_offsets(wanted.clone(), REQUEST_TIMEOUT)
            {
                Err(error)
                    if matches!(
                        error.rdkafka_error_code(),
                        Some(NotCoordinator | CoordinatorNotAvailable | CoordinatorLoadInProgress)
                    ) && std::time::Instant::now() < deadline =>
                {
                    debug!(%error, "Group coordinator not ready; asking again.");
                    std::thread::sleep(Duration::from_millis(200));
                }
                result => return result.map_err(kafka_error),
            }
        }
    }

    /// The indexes of the splits `refs` name (by id).
    fn indexes_of(&self, refs: &[SplitRef]) -> Vec<usize> {
        refs.iter()
            .filter_map(|s| self.by_id.get(&s.split).copied())
            .collect()
    }

    /// Makes the splits at `indexes` owned and finds where each starts and ends; returns them as
    /// a list to assign (the non-empty ones), with their start offsets.
    fn take_over(
        &mut self,
        indexes: &[usize],
        resume: &[SplitPosition],
    ) -> Result<TopicPartitionList, SourceError> {
        let mut wanted = TopicPartitionList::new();
        for &i in indexes {
            let split = &self.splits[i];
            wanted
                .add_partition_offset(&split.topic, split.partition, Offset::Invalid)
                .map_err(kafka_error)?;
        }
        let committed = self.committed_offsets(&wanted)?;
        let committed: HashMap<(String, i32), Offset> = committed
            .elements()
            .iter()
            .map(|e| ((e.topic().to_owned(), e.partition()), e.offset()))
            .collect();
        let mut assign = TopicPartitionList::new();
        for &i in indexes {
            let (topic, partition) = (self.splits[i].topic.clone(), self.splits[i].partition);
            let (low, high) = self
                .consumer
                .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
                .map_err(kafka_error)?;
            let resumed = resume
                .iter()
                .find(|p| p.source == topic && i64::from(p.partition) == i64::from(partition))
                .map(|p| p.next_offset as i64);
            let group_offset = committed
                .get(&(topic.clone(), partition))
                .copied()
                .unwrap_or(Offset::Invalid);
            let start = match (resumed, group_offset) {
                // Offsets below the low watermark were deleted by retention. The two
                // watermarks come from separate requests (and under read_committed the high
                // one is the last stable offset), so low may pass high in between.
                (Some(next), _) | (None, Offset::Offset(next)) => next.clamp(low, high.max(low)),
                (None, _) => match self.start {
                    StartFrom::Earliest => low,
                    StartFrom::Latest => high,
                },
            };
            if self.follow {
                // Lag is known from the start, before the first statistics arrive.
                lock(&self.consumer.context().high_watermarks)
                    .insert((topic.clone(), partition), high);
            }
            let end = if self.follow { i64::MAX } else { high };
            debug!(%topic, partition, start, end, "Partition range.");
            // Under a group every assigned partition is assigned, even one with nothing to read:
            // an eager assignment replaces the whole set.
            if start < end || self.membership.is_some() {
                assign
                    .add_partition_offset(&topic, partition, Offset::Offset(start))
                    .map_err(kafka_error)?;
            }
            let split = &mut self.splits[i];
            split.next = start;
            split.end = end;
            split.owned = true;
        }
        self.count_remaining();
        Ok(assign)
    }

    fn count_remaining(&mut self) {
        self.remaining = self
            .splits
            .iter()
            .filter(|s| s.owned && s.next < s.end)
            .count();
    }

    /// The oldest rebalance librdkafka announced, as splits.
    fn take_rebalance(&mut self) -> Option<Rebalance> {
        let pending = lock(&self.consumer.context().rebalances).pop_front()?;
        let mut refs = |partitions: Vec<(String, i32)>| -> Vec<SplitRef> {
            partitions
                .into_iter()
                .map(|(topic, partition)| SplitRef {
                    split: {
                        let index = self.split_of(&topic, partition);
                        self.splits[index].id
                    },
                    source: topic,
                    partition: partition.max(0) as u32,
                })
                .collect()
        };
        Some(match pending {
            PendingRebalance::Assign(partitions) => Rebalance::Assigned(refs(partitions)),
            PendingRebalance::Revoke { partitions, lost } => Rebalance::Revoked {
                splits: refs(partitions),
                lost,
            },
        })
    }

    /// Whether polling can still yield something: owned splits with messages left, or, under
    /// a group, an assignment to come (following, always).
    fn has_work(&self) -> bool {
        self.remaining > 0
            || match self.membership {
                None => false,
                Some(_) if self.follow => true,
                Some(state) => state == Membership::AwaitingAssignment,
            }
    }

    /// In a batch run, nothing arriving for [`STALL_TIMEOUT`] while there is data to read (or an
    /// assignment to wait for) is an error.
    fn check_stall(&mut self) -> Result<(), SourceError> {
        if std::mem::take(&mut self.active) {
            self.last_activity = Instant::now();
        }
        if self.follow || self.last_activity.elapsed() <= STALL_TIMEOUT {
            return Ok(());
        }
        Err(if self.remaining == 0 {
            SourceError::NoAssignment {
                group: self.group.clone(),
                waited: STALL_TIMEOUT,
            }
        } else {
            SourceError::Stalled {
                remaining: self.remaining,
                waited: STALL_TIMEOUT,
            }
        })
    }

    /// Polls until a message inside a split's range arrives; `false` when every split is done.
    fn advance(&mut self) -> Result<bool, SourceError> {
        match self.advance_within(STALL_TIMEOUT)? {
            Progress::Message => Ok(true),
            Progress::End => Ok(false),
            // Only group-assigned sources rebalance, and the pipeline polls those.
            Progress::Idle | Progress::Rebalance(_) => Ok(false),
        }
    }

    /// Polls for up to `patience`. Running out of it is idleness; in a batch run, nothing
    /// arriving for [`STALL_TIMEOUT`] while there is data to read (or an assignment to wait
    /// for) is an error.
    fn advance_within(&mut self, patience: Duration) -> Result<Progress, SourceError> {
        // No clock read when there is no patience: a batch polls all but its first message
        // with none, and reading the clock per message showed in profiles.
        let started = (!patience.is_zero()).then(Instant::now);
        let out_of_patience = |started: Option<Instant>| match started {
            None => true,
            Some(started) => started.elapsed() >= patience,
        };
        loop {
            if let Some(change) = self.take_rebalance() {
                return Ok(Progress::Rebalance(change));
            }
            if !self.has_work() {
                return Ok(Progress::End);
            }
            let slice = patience.min(Duration::from_millis(500));
            let message = match self.fetch.next(&self.consumer, slice) {
                Some(Ok(message)) => message,
                // librdkafka reconnects and retries by itself; everything short of a fatal error
                // (the client cannot go on) is weather: say so and keep polling.
                Some(Err(error @ KafkaError::MessageConsumptionFatal(_))) => {
                    return Err(kafka_error(error))
                }
                Some(Err(error)) => {
                    let text = error.to_string();
                    if self.trouble.is_none() {
                        warn!(error = %text, "Kafka is failing; retrying (librdkafka reconnects).");
                    } else {
                        debug!(error = %text, "Kafka still failing.");
                    }
                    self.trouble = Some((text, Instant::now()));
                    // A steady stream of errors is no message either: the stall and patience
                    // checks below still hand control back.
                    self.check_stall()?;
                    if out_of_patience(started) {
                        return Ok(Progress::Idle);
                    }
                    continue;
                }
                None => {
                    self.check_stall()?;
                    if out_of_patience(started) {
                        return Ok(Progress::Idle);
                    }
                    continue;
                }
            };
            if self.trouble.take().is_some() {
                info!("Kafka is back.");
            }
            let Some(&index) = self
                .by_partition
                .get(message.topic)
                .and_then(|p| p.get(&message.partition))
            else {
                continue;
            };
            let split = &mut self.splits[index];
            let offset = message.offset;
            if !split.owned || offset < split.next || split.next >= split.end {
                continue; // not ours (any more), already read, or past this run's end offset
            }
            split.next = offset + 1;
            self.active = true;
            if split.next >= split.end {
                self.remaining -= 1;
            }
            self.current = (split.id, message.partition, offset);
            return Ok(Progress::Message);
        }
    }
}

impl KafkaSource {
    fn current_message(&self) -> RawMessage<'_> {
        let (split, partition, offset) = self.current;
        // Asked for only after `advance_within` reported a message, which the fetcher holds.
        let (source, payload) = self
            .fetch
            .last()
            .map_or(("", &[][..]), |message| (message.topic, message.payload));
        RawMessage {
            source,
            split,
            partition: partition.max(0) as u32,
            offset: offset.max(0) as u64,
            payload,
        }
    }
}

#[derive(Debug)]
enum Progress {
    Message,
    Idle,
    End,
    Rebalance(Rebalance),
}

impl Source for KafkaSource {
    fn poll_message(&mut self, timeout: Duration) -> Result<Polled<'_>, SourceError> {
        Ok(match self.advance_within(timeout)? {
            Progress::Message => Polled::Message(self.current_message()),
            Progress::Idle => Polled::Idle,
            Progress::End => Polled::End,
            Progress::Rebalance(change) => Polled::Rebalance(change),
        })
    }

    fn next_message(&mut self) -> Result<Option<RawMessage<'_>>, SourceError> {
        if !self.advance()? {
            return Ok(None);
        }
        Ok(Some(self.current_message()))
    }

    fn splits(&self) -> Vec<u32> {
        self.splits
            .iter()
            .filter(|s| s.owned && s.next < s.end)
            .map(|s| s.id)
            .collect()
    }

    fn positions(&self) -> Vec<SplitPosition> {
        self.splits
            .iter()
            .filter(|s| s.owned)
            .map(Split::position)
            .collect()
    }

    fn trouble(&self) -> Option<String> {
        let (text, at) = self.trouble.as_ref()?;
        let up_since = *lock(&self.consumer.context().broker_up_at);
        match up_since {
            Some(up) if up > *at => None,
            _ => Some(text.clone()),
        }
    }

    fn state(&self) -> Option<String> {
        self.membership?;
        let owned = self.splits.iter().filter(|s| s.owned).count();
        Some(match owned {
            0 => format!(
                "waiting for consumer group {:?} to assign partitions",
                self.group
            ),
            1 => format!("reading 1 partition of consumer group {:?}", self.group),
            n => format!("reading {n} partitions of consumer group {:?}", self.group),
        })
    }

    /// Lag against the end offset found at start (`--once`) or, following, the newest high
    /// watermark of librdkafka's statistics: no broker request on this path.
    fn split_status(&self) -> Vec<SplitStatus> {
        let high = lock(&self.consumer.context().high_watermarks);
        self.splits
            .iter()
            .filter(|s| s.owned)
            .map(|s| {
                let end = if s.end == i64::MAX {
                    high.get(&(s.topic.clone(), s.partition)).copied()
                } else {
                    Some(s.end)
                };
                let lag = end.map(|end| (end - s.next).max(0) as u64);
                SplitStatus {
                    split: s.id,
                    position: s.position(),
                    lag,
                }
            })
            .collect()
    }

    /// Commits the offsets `at` names of the partitions this instance still owns; call only
    /// after what was read before them is durable. Under a group a failed commit is only
    /// logged: the checkpoint, not the group's offset, is where an assigned partition resumes,
    /// and a commit fails while the group rebalances.
    fn commit(&mut self, at: &[SplitPosition]) -> Result<(), SourceError> {
        let mut offsets = TopicPartitionList::new();
        for split in self.splits.iter().filter(|s| s.owned) {
            let Some(position) = at.iter().find(|p| {
                p.source == split.topic && i64::from(p.partition) == i64::from(split.partition)
            }) else {
                continue;
            };
            let next = i64::try_from(position.next_offset).unwrap_or(i64::MAX);
            offsets
                .add_partition_offset(&split.topic, split.partition, Offset::Offset(next))
                .map_err(kafka_error)?;
        }
        if offsets.count() == 0 {
            return Ok(());
        }
        match self.consumer.commit(&offsets, CommitMode::Sync) {
            Ok(()) => {
                info!(partitions = offsets.count(), "Offsets committed.");
                Ok(())
            }
            Err(error) if self.membership.is_some() => {
                warn!(%error, "Offset commit failed; the checkpoint keeps the positions.");
                Ok(())
            }
            Err(error) => Err(kafka_error(error)),
        }
    }

    fn assign(&mut self, splits: &[SplitRef], resume: &[SplitPosition]) -> Result<(), SourceError> {
        let indexes = self.indexes_of(splits);
        let assign = self.take_over(&indexes, resume)?;
        apply_assign(&self.consumer, &assign).map_err(kafka_error)?;
        self.membership = Some(Membership::Assigned);
        self.last_activity = Instant::now();
        info!(
            group = %self.group,
            partitions = ?splits.iter().map(|s| format!("{}/{}", s.source, s.partition)).collect::<Vec<_>>(),
            "Partitions assigned."
        );
        Ok(())
    }

    fn revoke(&mut self, splits: &[SplitRef]) -> Result<(), SourceError> {
        let mut revoked = TopicPartitionList::new();
        for index in self.indexes_of(splits) {
            let split = &mut self.splits[index];
            split.owned = false;
            revoked.add_partition(&split.topic, split.partition);
        }
        apply_revoke(&self.consumer, &revoked).map_err(kafka_error)?;
        self.count_remaining();
        self.last_activity = Instant::now();
        if self.splits.iter().all(|s| !s.owned) {
            self.membership = Some(Membership::AwaitingAssignment);
        }
        info!(group = %self.group, partitions = splits.len(), "Partitions revoked.");
        Ok(())
    }
}

impl Drop for KafkaSource {
    /// Leaving the group revokes every partition: apply that at once (the pipeline has taken
    /// its last checkpoint) instead of queueing it for a pipeline that is gone.
    fn drop(&mut self) {
        // The read-ahead thread first: it holds the consumer, which must close here, on the
        // pipeline's thread, once.
        self.fetch = Fetcher::inline();
        self.consumer
            .context()
            .closing
            .store(true, Ordering::Relaxed);
    }
}

/// A partition's split id: a digest of its topic and number, the same in every run and
/// version, whatever else the stream reads.
fn split_id(topic: &str, partition: i32) -> u32 {
    let digest = fnv1a(topic.bytes().chain([0]).chain(partition.to_le_bytes()));
    (digest ^ (digest >> 32)) as u32
}

/// Every partition of the configured topics (those `partitions` lists, when it does), in
/// topic order and then the broker's partition order.
fn list_partitions(
    consumer: &BaseConsumer<LagContext>,
    config: &KafkaSourceConfig,
) -> Result<Vec<(String, i32)>, SourceError> {
    let mut partitions = Vec::new();
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
            return Err(SourceError::MissingPartition {
                topic: topic.clone(),
                partition: *missing,
                partitions: found.partitions().len(),
            });
        }
        for partition in found.partitions() {
            let chosen = config
                .partitions
                .as_ref()
                .is_none_or(|list| list.contains(&partition.id()));
            if chosen {
                partitions.push((topic.clone(), partition.id()));
            }
        }
    }
    Ok(partitions)
}

fn kafka_error(error: KafkaError) -> SourceError {
    SourceError::Kafka(error)
}

#[cfg(test)]
mod tests {
    use super::split_id;

    #[test]
    fn split_ids_depend_on_the_partition_alone_and_do_not_collide_among_neighbours() {
        // Stable across runs and versions: a checkpoint written today keys its watermarks by
        // these (FNV-1a of "orders\0" and the partition, folded to 32 bits).
        assert_eq!(split_id("orders", 0), 1_376_431_657);
        assert_ne!(split_id("orders", 0), split_id("orders", 1));
        assert_ne!(split_id("orders", 1), split_id("orders-2", 1));
        let mut ids: Vec<u32> = ["a", "b", "events", "orders"]
            .iter()
            .flat_map(|t| (0..256).map(move |p| split_id(t, p)))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 4 * 256);
    }
}
