//! What the engine runs: its streams (how their events are judged and what is computed from
//! them) and the joins between them. Built from the pipeline file; the engine needs nothing
//! else of it (sources, sinks and the dashboard are the pipeline's).

use std::sync::Arc;

use super::dedup::DedupConfig;
use super::join::{JoinKind, Side};
use super::points::AnalyticsConfig;
use super::time::WatermarkConfig;
use super::window::WindowSpec;

/// The engine's streams and joins, and how many shards run them.
#[derive(Debug, Clone)]
pub struct EnginePlan {
    pub streams: Vec<StreamPlan>,
    pub joins: Vec<JoinPlan>,
    /// Shards, each on a thread of its own when there are several (`engine.threads`).
    pub threads: usize,
    /// Keep each key group's log for checkpoints (see [`super::changelog`]): when there is a
    /// checkpoint store to write them to.
    pub changelog: bool,
    /// Log bytes a key group gathers before its first image (after that, half its last
    /// image's size); also the image bytes a shard may take per checkpoint beyond the log
    /// bytes written since the last one.
    pub first_image_after: u64,
}

/// One stream as the engine runs it.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub name: Arc<str>,
    pub watermark: WatermarkConfig,
    pub dedup: Option<DedupConfig>,
    pub windows: Vec<WindowSpec>,
    pub analytics: Option<AnalyticsConfig>,
    pub max_series: usize,
    /// A consumer group assigns its partitions: a task per partition, not one for the stream.
    pub group_assigned: bool,
    /// The joins it feeds: the join's index, this stream's side, and whether the join keys on
    /// a named field (else on the series).
    pub joins: Vec<(usize, Side, bool)>,
}

/// An interval join between two streams.
#[derive(Debug, Clone)]
pub struct JoinPlan {
    pub name: Arc<str>,
    pub left: usize,
    pub right: usize,
    pub within_ms: i64,
    pub kind: JoinKind,
}

impl StreamPlan {
    /// Whether duplicates are found where events are read rather than in the shards: for a
    /// stream that feeds a join, whose rows may sit in another key group than the series (a
    /// join on a field), the join must only ever see events that are not duplicates.
    pub fn dedups_at_router(&self) -> bool {
        self.dedup.is_some() && !self.joins.is_empty()
    }
}

impl EnginePlan {
    /// The plan of `streams` and `joins` on `threads` shards, keeping no logs.
    pub fn new(streams: Vec<StreamPlan>, joins: Vec<JoinPlan>, threads: usize) -> EnginePlan {
        EnginePlan {
            streams,
            joins,
            threads: threads.max(1),
            changelog: false,
            first_image_after: 256 << 10,
        }
    }

    /// The plan with `threads` shards instead.
    pub fn with_threads(mut self, threads: usize) -> EnginePlan {
        self.threads = threads.max(1);
        self
    }

    /// The plan taking a key group's first image after `bytes` of log.
    pub fn with_first_image_after(mut self, bytes: u64) -> EnginePlan {
        self.first_image_after = bytes;
        self
    }

    /// The plan keeping (or not) the key groups' logs for checkpoints.
    pub fn with_changelog(mut self, changelog: bool) -> EnginePlan {
        self.changelog = changelog;
        self
    }
}
