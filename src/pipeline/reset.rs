//! `tidewatch reset`: starts streams afresh in the stored checkpoint, keeping their source
//! positions, for a pipeline that is not running.
//!
//! A stream's state holds how far its event time has come; an event stamped in the future
//! within `watermark.max_ahead` still moves it, and every event after it is late until real
//! time catches up. Resetting forgets the stream's state (watermark, dedup, open windows,
//! analytics, alert episodes, counters; for a group-assigned stream, each partition's), and the
//! next run reads on from where the last one stopped as if the stream had just begun.

use super::checkpoints::{engine_from, Checkpoints};
use super::error::PipelineError;
use super::tasks::PartitionTasks;
use crate::checkpoint::{Checkpoint, CheckpointStore, Outgoing};
use crate::clock::now_ms;
use crate::config::Config;
use crate::sink::DbSink;

/// What resetting one stream did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetOutcome {
    /// The stream's state in the pipeline's checkpoint was replaced by a fresh one.
    Reset { stream: String },
    /// A group-assigned stream: the state of each of these partition checkpoints was dropped.
    Partitions { stream: String, checkpoints: usize },
    /// There was no state to reset: no checkpoint yet, or one a batch run left (positions only).
    NoState { stream: String },
}

impl std::fmt::Display for ResetOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResetOutcome::Reset { stream } => write!(
                f,
                "stream {stream:?}: state reset (watermark, dedup, open windows, analytics, \
                 alert episodes); the next run reads on from the checkpointed positions"
            ),
            ResetOutcome::Partitions {
                stream,
                checkpoints,
            } => write!(
                f,
                "stream {stream:?}: state of {checkpoints} partition checkpoint(s) reset; each \
                 partition reads on from its checkpointed position"
            ),
            ResetOutcome::NoState { stream } => {
                write!(f, "stream {stream:?}: no stored state to reset")
            }
        }
    }
}

/// Why a reset was refused.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("no stream named {name:?}; the streams are: {known}")]
    UnknownStream { name: String, known: String },
    #[error("the pipeline has no db sink, so nothing is checkpointed and every run starts afresh")]
    NoCheckpoints,
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// Resets each of `streams` (names) in the checkpoints of `config`'s pipeline. The pipeline
/// must not be running: its next checkpoint would write the old state back.
pub fn reset_streams(config: &Config, streams: &[String]) -> Result<Vec<ResetOutcome>, ResetError> {
    let indexes = streams
        .iter()
        .map(|name| {
            config
                .stream_index(name)
                .ok_or_else(|| ResetError::UnknownStream {
                    name: name.clone(),
                    known: config
                        .streams
                        .iter()
                        .map(|s| format!("{:?}", s.name))
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let url = config.database_url().ok_or(ResetError::NoCheckpoints)?;
    let sink = DbSink::connect(url).map_err(|e| PipelineError::Sink(e.into()))?;
    let mut outcomes = Vec::with_capacity(indexes.len());
    for index in indexes {
        let outcome = if config.streams[index].is_group_assigned() {
            reset_partitions(config, index, &mut sink.checkpoints())?
        } else {
            let mut checkpoints = Checkpoints::new(Some(Box::new(sink.checkpoints())));
            reset_in_pipeline(config, index, &mut checkpoints)?
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// A statically assigned stream lives in the pipeline's own checkpoint, beside the others.
fn reset_in_pipeline(
    config: &Config,
    index: usize,
    checkpoints: &mut Checkpoints,
) -> Result<ResetOutcome, PipelineError> {
    let stream = config.streams[index].name.clone();
    let name = config.checkpoint.pipeline.as_str();
    let fingerprint = config.state_fingerprint();
    let Some(found) = checkpoints.load(name, &fingerprint)? else {
        return Ok(ResetOutcome::NoState { stream });
    };
    if found.engine.is_none() {
        return Ok(ResetOutcome::NoState { stream });
    }
    let mut engine = engine_from(&found, config)?;
    engine.reset_stream(index);
    // Every key group's state anew: the logs before no longer lead to it.
    let state = engine.delta(true)?;
    let outgoing = Checkpoint {
        engine: Some(&state),
        written_at: now_ms(),
        ..without_state(found)
    };
    checkpoints.save(name, &outgoing)?;
    Ok(ResetOutcome::Reset { stream })
}

/// A group-assigned stream has a checkpoint per partition: each keeps its position and loses
/// its state, which its next owner then starts afresh.
fn reset_partitions(
    config: &Config,
    index: usize,
    store: &mut impl CheckpointStore,
) -> Result<ResetOutcome, PipelineError> {
    let stream = config.streams[index].name.clone();
    let prefix = PartitionTasks::checkpoint_prefix(&config.checkpoint.pipeline, &stream);
    let mut reset = 0;
    for name in store.names(&prefix)? {
        let Some(found) = store.load(&name)? else {
            continue;
        };
        if found.engine.is_none() {
            continue;
        }
        let outgoing: Outgoing<'_> = Checkpoint {
            engine: None,
            written_at: now_ms(),
            ..without_state(found)
        };
        store.save(&name, &outgoing)?;
        reset += 1;
    }
    Ok(match reset {
        0 => ResetOutcome::NoState { stream },
        checkpoints => ResetOutcome::Partitions {
            stream,
            checkpoints,
        },
    })
}

/// A stored checkpoint's fields with its state left out, to build an outgoing one from.
fn without_state<'a>(found: Checkpoint) -> Outgoing<'a> {
    Checkpoint {
        fingerprint: found.fingerprint,
        engine: None,
        positions: found.positions,
        epoch: found.epoch,
        written_at: found.written_at,
    }
}
