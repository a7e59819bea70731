//! What the pipeline tells the live view while it follows its sources: each stream's progress
//! and whether it is paused. It goes over a `watch` channel, which holds only the newest value:
//! a reader wants the current state, and the pipeline never waits for one.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

/// How often progress is rebuilt and sent: often enough for a live status page, rare enough
/// that a busy pipeline does not rebuild it after every batch.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// The pipeline as the status page and `/metrics` show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PipelineStatus {
    pub streams: Vec<StreamProgress>,
    /// Why the pipeline is paused (a sink is failing and being retried), if it is.
    pub paused: Option<String>,
    /// The engine's shards, in order.
    pub shards: Vec<ShardProgress>,
    /// The sinks, in the config's order.
    pub sinks: Vec<SinkProgress>,
    /// The checkpoints stored since start.
    pub checkpoints: CheckpointProgress,
}

/// Where an engine shard stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShardProgress {
    /// Events and other items sent to it and not yet run: a shard that keeps a backlog is the
    /// one holding the pipeline back.
    pub queued: u64,
    /// Time it spent running rounds since start, in ms.
    pub busy_ms: u64,
}

/// How a sink's writes go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SinkProgress {
    /// Its `kind` in the config.
    pub kind: String,
    /// Batches of records written.
    pub writes: u64,
    /// Time those writes took, in µs.
    pub write_us: u64,
}

/// The checkpoints stored since start; the last one's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckpointProgress {
    pub count: u64,
    /// When the last was taken (epoch ms); `None` before the first.
    pub written_at: Option<i64>,
    /// From taking the last one to its last part stored, in ms.
    pub took_ms: u64,
    /// The longest the last one held the pipeline at once, in ms.
    pub longest_pause_ms: u64,
    /// Engine state bytes the last one wrote.
    pub bytes: u64,
}

/// One stream's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamProgress {
    pub name: String,
    /// `None` before the first event.
    pub watermark: Option<i64>,
    pub messages: u64,
    pub accepted: u64,
    pub late: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
    /// Per source partition, in split order.
    pub partitions: Vec<PartitionProgress>,
    /// Why the source cannot read right now (e.g. every broker down); `None` while it reads.
    pub source_error: Option<String>,
    /// What the source is doing when that is more than reading, e.g. which partitions a
    /// consumer group gave this instance (see [`crate::source::Source::state`]).
    pub source_state: Option<String>,
}

impl StreamProgress {
    /// Consumer lag summed over the partitions that report one.
    pub fn total_lag(&self) -> Option<u64> {
        self.partitions
            .iter()
            .filter_map(|p| p.lag)
            .reduce(|a, b| a + b)
    }
}

/// One source partition (a Kafka topic-partition, a file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartitionProgress {
    /// The id the engine tracks the partition's watermark by.
    pub split: u32,
    /// Topic or file; empty when the source has no name for it (socket, demo).
    pub source: String,
    pub partition: u32,
    /// Next offset (Kafka) or line (file) to read; `None` when the source has no positions.
    pub next_offset: Option<u64>,
    /// Messages between the next offset and the newest the broker has reported (Kafka only).
    pub lag: Option<u64>,
    /// This partition's contribution: max event time − lateness; `None` before its first event.
    pub watermark: Option<i64>,
    /// Silent for `idle_timeout`: not holding the stream's watermark back.
    pub idle: bool,
}

/// The pipeline's end of the status channel (none when nobody watches).
pub struct StatusReporter {
    sender: Option<watch::Sender<PipelineStatus>>,
    last_progress: Option<Instant>,
}

impl StatusReporter {
    pub fn new(sender: Option<watch::Sender<PipelineStatus>>) -> Self {
        StatusReporter {
            sender,
            last_progress: None,
        }
    }

    /// Sends the streams', shards' and sinks' progress if [`PROGRESS_INTERVAL`] has passed
    /// since the last time; `progress` is only called then.
    pub fn progress(
        &mut self,
        progress: impl FnOnce() -> (Vec<StreamProgress>, Vec<ShardProgress>, Vec<SinkProgress>),
    ) {
        let Some(sender) = &self.sender else {
            return;
        };
        if self
            .last_progress
            .is_some_and(|last| last.elapsed() < PROGRESS_INTERVAL)
        {
            return;
        }
        self.last_progress = Some(Instant::now());
        let (streams, shards, sinks) = progress();
        sender.send_if_modified(|status| {
            let changed =
                status.streams != streams || status.shards != shards || status.sinks != sinks;
            (status.streams, status.shards, status.sinks) = (streams, shards, sinks);
            changed
        });
    }

    /// A checkpoint was stored; sent at once.
    pub fn checkpointed(&self, checkpoint: CheckpointProgress) {
        if let Some(sender) = &self.sender {
            sender.send_modify(|status| status.checkpoints = checkpoint);
        }
    }

    /// The pipeline paused (`Some(reason)`) or resumed (`None`); sent at once.
    pub fn paused(&self, reason: Option<String>) {
        if let Some(sender) = &self.sender {
            sender.send_if_modified(|status| {
                let changed = status.paused != reason;
                status.paused = reason;
                changed
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_built_at_most_once_per_interval_and_pauses_go_at_once() {
        let (sender, receiver) = watch::channel(PipelineStatus::default());
        let mut reporter = StatusReporter::new(Some(sender));
        let mut built = 0;
        for _ in 0..100 {
            reporter.progress(|| {
                built += 1;
                let stream = StreamProgress {
                    name: "s".into(),
                    ..StreamProgress::default()
                };
                (vec![stream], Vec::new(), Vec::new())
            });
        }
        assert_eq!(built, 1, "rebuilt only when due");
        assert_eq!(receiver.borrow().streams[0].name, "s");
        reporter.paused(Some("db down".into()));
        assert_eq!(receiver.borrow().paused.as_deref(), Some("db down"));
        reporter.paused(None);
        assert_eq!(receiver.borrow().paused, None);
    }
}
