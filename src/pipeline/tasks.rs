//! Partition tasks: a stream whose Kafka partitions a consumer group assigns
//! (`assignment = "group"`) runs a task per partition in the engine — as Kafka Streams calls it
//! — so its state can move with it: checkpointed under the partition's own name when the group
//! takes the partition away, restored by whichever instance the group gives it to next.
//!
//! A task is a stream of its own in the engine: its watermark is its partition's (with a
//! single split there is no idle partition to wait for), its series are its own, and its
//! results depend on its partition's messages alone, so a replay from its checkpoint on
//! another instance writes the same rows. It also means a series must come from one
//! partition, as a producer keying messages by series gives; a series arriving from a second
//! partition on this instance is refused into dead letters rather than split into two windows
//! that would overwrite each other. Tasks run on the engine's shards like any stream.

use std::collections::BTreeMap;

use tracing::info;

use super::checkpoints::{Checkpoints, Part};
use super::error::PipelineError;
use crate::checkpoint::{Checkpoint, SplitPosition};
use crate::config::Config;
use crate::engine::time::PartitionWatermark;
use crate::engine::{Engine, StreamCounters};
use crate::record::Record;
use crate::source::SplitRef;

/// The tasks of one group-assigned stream, by split.
pub struct PartitionTasks {
    /// The stream's index in the config.
    stream: usize,
    name: String,
    /// What a partition checkpoint must have been written under: the stream alone.
    fingerprint: String,
    tasks: BTreeMap<u32, Task>,
    /// Counters of partitions handed to other instances during this run, as they were then
    /// (a partition that comes back brings its counters in its state).
    retired: BTreeMap<u32, StreamCounters>,
    /// Every task has been through the end of input (`run --once`): checkpointed without
    /// state.
    finished: bool,
}

/// A partition's task.
struct Task {
    /// The engine's id of it.
    id: usize,
    source: String,
    partition: u32,
}

impl PartitionTasks {
    pub fn new(config: &Config, stream: usize) -> Self {
        let alone = Config {
            streams: vec![config.streams[stream].clone()],
            joins: Vec::new(),
            ..config.clone()
        };
        PartitionTasks {
            stream,
            name: config.streams[stream].name.clone(),
            fingerprint: alone.state_fingerprint(),
            tasks: BTreeMap::new(),
            retired: BTreeMap::new(),
            finished: false,
        }
    }

    /// Row name of a partition's checkpoint: shared by every instance of the pipeline, so the
    /// group can give the partition to any of them.
    pub fn checkpoint_name(pipeline: &str, stream: &str, topic: &str, partition: u32) -> String {
        format!(
            "{}{topic}/{partition}",
            Self::checkpoint_prefix(pipeline, stream)
        )
    }

    /// What the names of every partition checkpoint of `stream` start with.
    pub fn checkpoint_prefix(pipeline: &str, stream: &str) -> String {
        format!("{pipeline}/{stream}/")
    }

    /// The engine task of a split, when this instance has it.
    pub fn task_of(&self, split: u32) -> Option<usize> {
        self.tasks.get(&split).map(|t| t.id)
    }

    /// Starts a task per assigned split, from its checkpoint when one exists; returns the
    /// checkpointed positions, which win over the group's offsets. Records the engine had in
    /// flight go to `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn assign(
        &mut self,
        splits: &[SplitRef],
        checkpoints: &mut Checkpoints,
        pipeline: &str,
        engine: &mut Engine,
        now: i64,
        out: &mut Vec<Record>,
    ) -> Result<Vec<SplitPosition>, PipelineError> {
        let mut resume = Vec::new();
        for split in splits {
            if let Some(old) = self.tasks.remove(&split.split) {
                engine.close_task(old.id, out);
            }
            let name = Self::checkpoint_name(pipeline, &self.name, &split.source, split.partition);
            let state = match checkpoints.load(&name, &self.fingerprint)? {
                Some(found) => {
                    info!(checkpoint = %name, "Partition state restored.");
                    resume.extend(found.positions.into_iter().flatten());
                    found.engine
                }
                None => None,
            };
            let id = engine.open_task(self.stream, state.as_ref(), out)?;
            engine.assign_split(id, split.split, now);
            self.retired.remove(&split.split);
            self.tasks.insert(
                split.split,
                Task {
                    id,
                    source: split.source.clone(),
                    partition: split.partition,
                },
            );
        }
        Ok(resume)
    }

    /// Ends the tasks of revoked splits (their state is checkpointed, or lost to the group).
    pub fn revoke(&mut self, splits: &[SplitRef], engine: &mut Engine, out: &mut Vec<Record>) {
        for split in splits {
            if let Some(task) = self.tasks.remove(&split.split) {
                let counters = engine.close_task(task.id, out);
                self.retired.insert(split.split, counters);
            }
        }
    }

    /// The end of input reached every task (the engine's `finish`).
    pub fn finished(&mut self) {
        self.finished = true;
    }

    /// Each task's checkpoint at its split's position in `positions`. Records the engine had
    /// in flight go to `out`.
    pub fn checkpoints(
        &self,
        pipeline: &str,
        epoch: u64,
        written_at: i64,
        positions: &[SplitPosition],
        engine: &mut Engine,
        out: &mut Vec<Record>,
    ) -> Result<Vec<Part>, PipelineError> {
        let mut parts = Vec::with_capacity(self.tasks.len());
        for task in self.tasks.values() {
            let Some(position) = positions
                .iter()
                .find(|p| p.source == task.source && p.partition == task.partition)
            else {
                continue;
            };
            let delta = match self.finished {
                true => None,
                false => Some(engine.task_delta(task.id, out)?),
            };
            parts.push(Part {
                name: Self::checkpoint_name(pipeline, &self.name, &task.source, task.partition),
                checkpoint: Checkpoint {
                    fingerprint: self.fingerprint.clone(),
                    engine: delta,
                    positions: vec![vec![position.clone()]],
                    epoch,
                    written_at,
                },
            });
        }
        Ok(parts)
    }

    /// The stream's counters over its tasks, those handed away during this run included.
    pub fn counters(&self, engine: &Engine) -> StreamCounters {
        self.tasks
            .values()
            .filter_map(|t| engine.counters(t.id))
            .chain(self.retired.values().copied())
            .fold(StreamCounters::default(), |sum, c| sum + c)
    }

    /// The lowest watermark of the tasks: how far the stream as a whole has come.
    pub fn watermark(&self, engine: &Engine) -> Option<i64> {
        self.tasks
            .values()
            .filter_map(|t| engine.watermark(t.id))
            .min()
    }

    /// Each task's watermark, by split.
    pub fn partition_watermarks(&self, engine: &Engine) -> Vec<(u32, PartitionWatermark)> {
        self.tasks
            .iter()
            .filter_map(|(&split, task)| {
                let (_, watermark) = engine.partition_watermarks(task.id).into_iter().next()?;
                Some((split, watermark))
            })
            .collect()
    }
}
