//! What a run can fail with, and what it did.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::checkpoint::CheckpointError;
use crate::engine::SnapshotError;
use crate::record::{describe_counts, RecordKind};
use crate::sink::SinkError;
use crate::source::SourceError;

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error("stream {stream:?}")]
    Source {
        stream: String,
        #[source]
        source: SourceError,
    },
    #[error("sink")]
    Sink(#[from] SinkError),
    #[error("stream {stream:?}: committing offsets")]
    Commit {
        stream: String,
        #[source]
        source: SourceError,
    },
    /// A test's failpoint (see tests/it/faults.rs); never raised outside the test build.
    #[error("fault injected at {point}")]
    Injected { point: &'static str },
    #[error("stream {stream:?}: the decoding thread stopped")]
    DecoderStopped { stream: String },
    #[error("checkpoint")]
    Checkpoint(#[from] CheckpointError),
    #[error("checkpoint")]
    Snapshot(#[from] SnapshotError),
    #[error(
        "checkpoint {name:?} was written by a pipeline with other streams, windows or \
         analytics, or by another version (fingerprint {found} ≠ {expected}); use another \
         checkpoint.pipeline name or delete its row from the checkpoints table to start over"
    )]
    ForeignCheckpoint {
        name: String,
        found: String,
        expected: String,
    },
}

impl PipelineError {
    /// Whether going back to the last checkpoint and replaying can get past it: a sink, the
    /// checkpoint store or an offset commit failed (the weather), as opposed to a checkpoint
    /// that cannot be used or a source that cannot be read (the configuration).
    pub(super) fn is_transient(&self) -> bool {
        matches!(
            self,
            PipelineError::Sink(_)
                | PipelineError::Checkpoint(_)
                | PipelineError::Commit { .. }
                | PipelineError::Injected { .. }
        )
    }
}

/// What a run did, per stream and per record kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub streams: Vec<StreamSummary>,
    pub records: BTreeMap<RecordKind, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamSummary {
    pub name: String,
    pub messages: u64,
    pub accepted: u64,
    pub late: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in &self.streams {
            writeln!(
                f,
                "stream {:?}: {} messages, {} accepted, {} late, {} duplicates, {} dead letters",
                s.name, s.messages, s.accepted, s.late, s.duplicates, s.dead_letters
            )?;
        }
        write!(
            f,
            "records written: {}",
            describe_counts(self.records.iter().map(|(k, n)| (*k, *n)))
        )
    }
}
