//! The pipeline's side of checkpoints: which store it uses, which checkpoints it accepts, and
//! writing a large one over several rounds.
//!
//! A checkpoint's state is written in transactions of about `checkpoint.bytes_per_round`
//! (2 MiB, some twenty milliseconds in SQLite), one per round of the pipeline, so intake, and
//! SQLite's one writer, which the db sink shares, stop for one such transaction at a time
//! rather than for the whole write. The sources commit their positions once the last part is
//! stored, and no other checkpoint starts before.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::error::PipelineError;
use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore, Outgoing, SplitPosition};
use crate::config::Config;
use crate::engine::changelog::{GroupImage, LogSegment};
use crate::engine::plan::EnginePlan;
use crate::engine::{Engine, StateDelta};

/// A checkpoint under one name, to be stored.
pub struct Part {
    pub name: String,
    pub checkpoint: Checkpoint<StateDelta>,
}

/// A checkpoint being written.
struct Writing {
    /// What is still to store, in order; the first may be begun.
    parts: VecDeque<Part>,
    /// The first part's state is being staged (see [`CheckpointStore::begin`]).
    begun: bool,
    /// Where each stream's source commits once everything is stored.
    commit: Vec<Vec<SplitPosition>>,
    epoch: u64,
    written_at: i64,
    started: Instant,
    /// Until the first part is written the pipeline has been held since `started`.
    first_part: bool,
    /// The longest the write held the pipeline at once.
    longest_pause: Duration,
    bytes: u64,
}

/// A checkpoint stored in full.
#[derive(Debug)]
pub struct Written {
    /// Where each stream's source may commit now.
    pub commit: Vec<Vec<SplitPosition>>,
    pub epoch: u64,
    /// When the pipeline took it (epoch ms).
    pub written_at: i64,
    /// From the checkpoint's start to its last part stored.
    pub took: Duration,
    /// The longest the checkpoint held the pipeline at once: the first time, from taking the
    /// state and flushing the sinks to the first part written.
    pub longest_pause: Duration,
    /// Engine state bytes written; `None` without a store.
    pub bytes: Option<u64>,
}

/// The checkpoint store of a pipeline, if it has one (the `checkpoint.store` database).
pub struct Checkpoints {
    store: Option<Box<dyn CheckpointStore>>,
    writing: Option<Writing>,
}

impl Checkpoints {
    pub fn new(store: Option<Box<dyn CheckpointStore>>) -> Self {
        Checkpoints {
            store,
            writing: None,
        }
    }

    /// Whether a checkpoint is being written.
    pub fn writing(&self) -> bool {
        self.writing.is_some()
    }

    /// Starts writing the checkpoint `epoch`, made of `parts` (every name's, in order), which
    /// the pipeline began taking at `started`; `commit` is where each stream's source commits
    /// once they are stored. Call [`Self::advance`] until it says the checkpoint is written.
    pub fn start(
        &mut self,
        parts: Vec<Part>,
        commit: Vec<Vec<SplitPosition>>,
        epoch: u64,
        started: Instant,
    ) {
        debug_assert!(self.writing.is_none(), "one checkpoint at a time");
        let written_at = parts.last().map_or(0, |p| p.checkpoint.written_at);
        self.writing = Some(Writing {
            parts: parts.into(),
            begun: false,
            commit,
            epoch,
            written_at,
            started,
            first_part: true,
            longest_pause: Duration::ZERO,
            bytes: 0,
        });
    }

    /// Writes about `budget` bytes more of the checkpoint being written (at least one part);
    /// says so once it is all stored. Without a store, it is at once.
    pub fn advance(&mut self, budget: usize) -> Result<Option<Written>, PipelineError> {
        let Some(writing) = self.writing.as_mut() else {
            return Ok(None);
        };
        let paused = match std::mem::take(&mut writing.first_part) {
            true => writing.started,
            false => Instant::now(),
        };
        let mut spent = 0;
        while let Some(part) = writing.parts.front_mut() {
            if spent >= budget {
                break;
            }
            let Some(store) = self.store.as_mut() else {
                writing.parts.clear();
                break;
            };
            let left = part.checkpoint.engine.as_ref().map_or(0, StateDelta::len);
            if writing.begun || left > budget - spent {
                if !writing.begun {
                    store.begin(&part.name)?;
                    writing.begun = true;
                }
                let delta = part
                    .checkpoint
                    .engine
                    .as_mut()
                    .expect("only state is staged");
                let (images, logs) = take_chunk(delta, budget - spent);
                if !images.is_empty() || !logs.is_empty() {
                    fail::fail_point!("checkpoint-stage", |_| Err(PipelineError::Injected {
                        point: "checkpoint-stage"
                    }));
                    store.stage(&part.name, &images, &logs)?;
                    let bytes = chunk_bytes(&images, &logs);
                    (spent, writing.bytes) = (spent + bytes, writing.bytes + bytes as u64);
                    continue;
                }
            }
            fail::fail_point!("checkpoint-save", |_| Err(PipelineError::Injected {
                point: "checkpoint-save"
            }));
            let outgoing = part.checkpoint.outgoing();
            let stored = match writing.begun {
                true => store.save_staged(&part.name, &outgoing),
                false => store.save(&part.name, &outgoing),
            };
            let bytes = stored.map_err(|error| match error {
                // An engine that cannot be encoded will not be on the next try either.
                CheckpointError::Snapshot(snapshot) => PipelineError::Snapshot(snapshot),
                other => other.into(),
            })?;
            (spent, writing.bytes) = (spent + bytes as usize, writing.bytes + bytes);
            writing.begun = false;
            writing.parts.pop_front();
        }
        writing.longest_pause = writing.longest_pause.max(paused.elapsed());
        if !writing.parts.is_empty() {
            return Ok(None);
        }
        let done = self.writing.take().expect("checked above");
        Ok(Some(Written {
            commit: done.commit,
            epoch: done.epoch,
            written_at: done.written_at,
            took: done.started.elapsed(),
            longest_pause: done.longest_pause,
            bytes: self.store.is_some().then_some(done.bytes),
        }))
    }

    /// Gives up the checkpoint being written (the pipeline goes back to the last stored one):
    /// what it staged is dropped by the next one's start.
    pub fn abandon(&mut self) {
        self.writing = None;
    }

    /// The checkpoint stored under `name`; refused when a pipeline of another shape
    /// (`fingerprint`) wrote it.
    pub fn load(
        &mut self,
        name: &str,
        fingerprint: &str,
    ) -> Result<Option<Checkpoint>, PipelineError> {
        let Some(store) = self.store.as_mut() else {
            return Ok(None);
        };
        match store.load(name)? {
            Some(found) if found.fingerprint != fingerprint => {
                Err(PipelineError::ForeignCheckpoint {
                    name: name.to_owned(),
                    found: found.fingerprint,
                    expected: fingerprint.to_owned(),
                })
            }
            found => Ok(found),
        }
    }

    /// Stores `checkpoint` under `name`; the size of the engine state written, `None` when
    /// there is no store to keep it.
    pub fn save(
        &mut self,
        name: &str,
        checkpoint: &Outgoing<'_>,
    ) -> Result<Option<u64>, PipelineError> {
        let Some(store) = self.store.as_mut() else {
            return Ok(None);
        };
        match store.save(name, checkpoint) {
            Ok(bytes) => Ok(Some(bytes)),
            // An engine that cannot be encoded will not be on the next try either.
            Err(CheckpointError::Snapshot(snapshot)) => Err(PipelineError::Snapshot(snapshot)),
            Err(other) => Err(other.into()),
        }
    }
}

/// The engine a checkpoint holds, or a fresh one for `config` when it holds none (a finished
/// batch run keeps positions only). It keeps its key groups' logs for the next checkpoints.
pub fn engine_from(checkpoint: &Checkpoint, config: &Config) -> Result<Engine, PipelineError> {
    let plan = engine_plan(config);
    match &checkpoint.engine {
        Some(state) => Ok(Engine::restore(plan, state)?),
        None => Ok(Engine::new(plan)),
    }
}

/// The plan of the engine of a pipeline with a checkpoint store: its key groups keep logs.
pub fn engine_plan(config: &Config) -> EnginePlan {
    config.engine_plan().with_changelog(true)
}

/// Takes from `delta` its first images, then log segments, up to about `budget` bytes (at
/// least one, however large).
fn take_chunk(delta: &mut StateDelta, budget: usize) -> (Vec<GroupImage>, Vec<LogSegment>) {
    let mut spent = 0;
    let mut fits = |bytes: usize| {
        let fits = spent == 0 || spent + bytes <= budget;
        if fits {
            spent += bytes;
        }
        fits
    };
    let images = delta
        .images
        .iter()
        .take_while(|i| fits(i.bytes.len()))
        .count();
    let images: Vec<_> = delta.images.drain(..images).collect();
    let logs = match delta.images.is_empty() {
        true => delta
            .logs
            .iter()
            .take_while(|l| fits(l.bytes.len()))
            .count(),
        false => 0,
    };
    (images, delta.logs.drain(..logs).collect())
}

fn chunk_bytes(images: &[GroupImage], logs: &[LogSegment]) -> usize {
    images.iter().map(|i| i.bytes.len()).sum::<usize>()
        + logs.iter().map(|l| l.bytes.len()).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(images: &[usize], logs: &[usize]) -> StateDelta {
        StateDelta {
            images: images
                .iter()
                .enumerate()
                .map(|(kg, &n)| GroupImage {
                    kg: kg as u16,
                    pos: 1,
                    bytes: vec![0; n],
                })
                .collect(),
            logs: logs
                .iter()
                .enumerate()
                .map(|(kg, &n)| LogSegment {
                    kg: kg as u16,
                    first_pos: 0,
                    last_pos: 0,
                    bytes: vec![0; n],
                })
                .collect(),
            ..StateDelta::default()
        }
    }

    #[test]
    fn chunks_take_images_then_logs_within_the_budget_and_at_least_one_part() {
        let mut d = delta(&[60, 30], &[20, 20, 20]);
        let sizes = |(i, l): (Vec<GroupImage>, Vec<LogSegment>)| (i.len(), l.len());
        assert_eq!(
            sizes(take_chunk(&mut d, 100)),
            (2, 0),
            "images first, no log before them all"
        );
        assert_eq!(sizes(take_chunk(&mut d, 45)), (0, 2));
        assert_eq!(
            sizes(take_chunk(&mut d, 5)),
            (0, 1),
            "a part larger than the budget goes alone"
        );
        assert_eq!(sizes(take_chunk(&mut d, 5)), (0, 0));
        assert!(d.images.is_empty() && d.logs.is_empty());
    }
}
