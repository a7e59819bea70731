//! What every source is: the trait the pipeline reads through, the messages and statuses it
//! hands over, and its error.

use thiserror::Error;

use crate::checkpoint::SplitPosition;

/// One raw message, borrowed from the source's buffer until the next call.
#[derive(Debug, Clone, Copy)]
pub struct RawMessage<'a> {
    /// Where it came from: a file path or a topic.
    pub source: &'a str,
    /// The unit the engine tracks a watermark for: 0 for a file source, one per topic-partition
    /// for Kafka (see [`Source::splits`]).
    pub split: u32,
    pub partition: u32,
    /// Position within the source: the 1-based line number for files, the offset for Kafka.
    pub offset: u64,
    pub payload: &'a [u8],
}

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("cannot read {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no .ndjson or .jsonl files found")]
    Empty { path: String },
    #[error("this source never ends: run without --once")]
    NeverEnds,
    #[error("kafka")]
    Kafka(#[source] rdkafka::error::KafkaError),
    #[error("kafka: topic {topic:?} does not exist or has no partitions")]
    MissingTopic { topic: String },
    #[error("kafka: topic {topic:?} has no partition {partition} (it has {partitions})")]
    MissingPartition {
        topic: String,
        partition: i32,
        partitions: usize,
    },
    #[error("kafka: the consumer group {group:?} assigned no partitions within {waited:?}")]
    NoAssignment {
        group: String,
        waited: std::time::Duration,
    },
    #[error(
        "kafka: no message for {waited:?} while {remaining} partition(s) still had data to read"
    )]
    Stalled {
        remaining: usize,
        waited: std::time::Duration,
    },
}

/// A split's position and, when the source knows it, how many messages remain behind it.
#[derive(Debug, Clone)]
pub struct SplitStatus {
    pub split: u32,
    pub position: SplitPosition,
    pub lag: Option<u64>,
}

/// What a poll of a following source found.
#[derive(Debug)]
pub enum Polled<'a> {
    Message(RawMessage<'a>),
    /// Nothing new within the timeout; try again later.
    Idle,
    /// The source has ended for good.
    End,
    /// A consumer group moved partitions. The source waits (reads nothing of them) until the
    /// pipeline has restored or checkpointed their state and calls [`Source::assign`] or
    /// [`Source::revoke`].
    Rebalance(Rebalance),
}

/// A split a consumer group assigned or took away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitRef {
    pub split: u32,
    /// The topic.
    pub source: String,
    pub partition: u32,
}

/// A change of the splits this instance owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalance {
    Assigned(Vec<SplitRef>),
    /// `lost`: the group gave them away already (this instance was cut off from it); offsets
    /// can no longer be committed for them.
    Revoked {
        splits: Vec<SplitRef>,
        lost: bool,
    },
}

/// A source of raw messages: read to its end (`run --once`) or followed (`run`).
pub trait Source {
    /// The next message, or `None` at the end of the input (batch mode).
    fn next_message(&mut self) -> Result<Option<RawMessage<'_>>, SourceError>;

    /// The next message, waiting at most `timeout` for one (continuous mode). Batch-only
    /// sources end where `next_message` ends.
    fn poll_message(&mut self, _timeout: std::time::Duration) -> Result<Polled<'_>, SourceError> {
        Ok(match self.next_message()? {
            Some(message) => Polled::Message(message),
            None => Polled::End,
        })
    }

    /// Every split this source will read, known before the first message, so a split that has
    /// not delivered yet holds the watermark back instead of finding its events late.
    fn splits(&self) -> Vec<u32> {
        vec![0]
    }

    /// Where each split is: what a checkpoint stores to resume from.
    fn positions(&self) -> Vec<SplitPosition>;

    /// Why the source cannot read right now (broker unreachable, ...), while that lasts: the
    /// status page shows it. Sources that cannot fail this way say `None`.
    fn trouble(&self) -> Option<String> {
        None
    }

    /// What the source is doing, when "reading" does not say it all: a consumer group member
    /// says which partitions it has, or that it waits for some.
    fn state(&self) -> Option<String> {
        None
    }

    /// Where each split is and how far behind the newest message it is, for the status page.
    fn split_status(&self) -> Vec<SplitStatus> {
        self.positions()
            .into_iter()
            .enumerate()
            .map(|(split, position)| SplitStatus {
                split: split as u32,
                position,
                lag: None,
            })
            .collect()
    }

    /// Records that everything read before the positions `at` (taken from [`Self::positions`]
    /// earlier) is durably written: Kafka commits them as its offsets.
    fn commit(&mut self, _at: &[SplitPosition]) -> Result<(), SourceError> {
        Ok(())
    }

    /// Completes an assignment [`Polled::Rebalance`] announced: each split starts at its
    /// position in `resume` (from its checkpoint) when it has one.
    fn assign(
        &mut self,
        _splits: &[SplitRef],
        _resume: &[SplitPosition],
    ) -> Result<(), SourceError> {
        Ok(())
    }

    /// Completes a revocation [`Polled::Rebalance`] announced, once the pipeline has
    /// checkpointed what the splits produced.
    fn revoke(&mut self, _splits: &[SplitRef]) -> Result<(), SourceError> {
        Ok(())
    }
}
