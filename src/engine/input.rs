//! What comes into the engine's operators and where it came from: an event's origin, its
//! place in its stream's log, the accepted event itself, and what is refused and counted.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An event that reached the operators: deduplicated, not late, its series numbered.
pub struct Accepted<'a> {
    /// The series' number in its key group.
    pub series: u32,
    /// The series' number in its task: the order of their first events.
    pub global: u32,
    pub label: &'a Arc<str>,
    pub ts: i64,
    pub value: f64,
    /// Where the event sits in its stream's logs: the tie-breaker for equal event times, so
    /// their order does not depend on how partitions interleave.
    pub seq: LogOrder,
    /// The engine's input position of the event.
    pub pos: u64,
    /// The task's watermark as the event arrives.
    pub watermark: i64,
}

/// An event's place in its stream's input: its split (partition) and offset in it. Ordering
/// equal event times by it, rather than by arrival, makes every result a function of each
/// partition's log alone.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogOrder {
    pub split: u32,
    pub offset: u64,
}

impl LogOrder {
    pub const MIN: LogOrder = LogOrder {
        split: 0,
        offset: 0,
    };
    pub const MAX: LogOrder = LogOrder {
        split: u32::MAX,
        offset: u64::MAX,
    };
}

impl From<Origin<'_>> for LogOrder {
    fn from(origin: Origin<'_>) -> Self {
        LogOrder {
            split: origin.split,
            offset: origin.offset,
        }
    }
}

/// Where an event came from, for late records and dead letters.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub source: &'a str,
    /// What the watermark is tracked per: a file, a Kafka topic-partition.
    pub split: u32,
    pub partition: u32,
    pub offset: u64,
}

/// Why the engine refused an event. The caller turns it into a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RejectError {
    #[error("stream {stream:?} already tracks its maximum of {max} series (max_series); new series are refused")]
    TooManySeries { stream: String, max: usize },
    #[error("no stream with index {0}")]
    UnknownStream(usize),
    #[error(
        "series {series:?} already comes from partition {partition}; with assignment = \
         \"group\" each series must come from one partition (key messages by series)"
    )]
    OtherPartition { series: String, partition: u32 },
}

/// Counters of one stream, for the status page and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCounters {
    pub accepted: u64,
    pub late: u64,
    pub duplicates: u64,
}

impl std::ops::Add for StreamCounters {
    type Output = StreamCounters;

    fn add(self, other: StreamCounters) -> StreamCounters {
        StreamCounters {
            accepted: self.accepted + other.accepted,
            late: self.late + other.late,
            duplicates: self.duplicates + other.duplicates,
        }
    }
}
