//! Partition tasks: the state of a stream whose Kafka partitions a consumer group assigns
//! (`assignment = "group"`). Each partition gets an engine of its own — a task, as Kafka
//! Streams calls it — so its state can move with it: checkpointed under the partition's own
//! name when the group takes the partition away, restored by whichever instance the group
//! gives it to next.
//!
//! One engine per partition is what makes the hand-over exact: a task's results depend on its
//! partition's messages alone (its watermark is its own; with a single split there is no idle
//! partition to wait for), so a replay from its checkpoint on another instance writes the same
//! rows. It also means a series must come from one partition, as a producer keying messages by
//! series gives; a series arriving from a second partition on this instance is refused into
//! dead letters rather than split into two windows that would overwrite each other.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tracing::info;

use super::checkpoints::{engine_from, Checkpoints};
use super::PipelineError;
use crate::checkpoint::{self, Checkpoint, SplitPosition};
use crate::config::Config;
use crate::engine::time::PartitionWatermark;
use crate::engine::{Engine, Origin, StreamCounters};
use crate::event::Event;
use crate::record::Record;
use crate::source::SplitRef;

/// The engines of one group-assigned stream, by split.
pub struct PartitionTasks {
    stream: Arc<str>,
    /// The stream alone, no joins: what each task's engine is built from.
    config: Config,
    fingerprint: String,
    tasks: BTreeMap<u32, Task>,
    /// Which split each series seen here comes from.
    owners: HashMap<Arc<str>, u32, foldhash::fast::RandomState>,
    /// Counters of partitions handed to other instances during this run, as they were then
    /// (a partition that comes back brings its counters in its state).
    retired: BTreeMap<u32, StreamCounters>,
}

struct Task {
    engine: Engine,
    source: String,
    partition: u32,
    /// Closed at end of input (`run --once`): checkpointed without state.
    finished: bool,
}

impl PartitionTasks {
    pub fn new(config: &Config, stream: usize) -> Self {
        let config = Config {
            streams: vec![config.streams[stream].clone()],
            joins: Vec::new(),
            ..config.clone()
        };
        PartitionTasks {
            stream: Arc::from(config.streams[0].name.as_str()),
            fingerprint: checkpoint::fingerprint(&config),
            config,
            tasks: BTreeMap::new(),
            owners: HashMap::default(),
            retired: BTreeMap::new(),
        }
    }

    /// Row name of a partition's checkpoint: shared by every instance of the pipeline, so the
    /// group can give the partition to any of them.
    pub fn checkpoint_name(pipeline: &str, stream: &str, topic: &str, partition: u32) -> String {
        format!("{pipeline}/{stream}/{topic}/{partition}")
    }

    /// Starts a task per assigned split, from its checkpoint when one exists; returns the
    /// checkpointed positions, which win over the group's offsets.
    pub fn assign(
        &mut self,
        splits: &[SplitRef],
        checkpoints: &mut Checkpoints,
        pipeline: &str,
        now: i64,
    ) -> Result<Vec<SplitPosition>, PipelineError> {
        let mut resume = Vec::new();
        for split in splits {
            let name =
                Self::checkpoint_name(pipeline, &self.stream, &split.source, split.partition);
            let engine = match checkpoints.load(&name, &self.fingerprint)? {
                Some(checkpoint) => {
                    info!(checkpoint = %name, "Partition state restored.");
                    let engine = engine_from(&checkpoint, &self.config)?;
                    resume.extend(checkpoint.positions.into_iter().flatten());
                    engine
                }
                None => Engine::new(&self.config),
            };
            for (label, _) in engine.series_counters(0) {
                self.owners.insert(label.clone(), split.split);
            }
            let mut task = Task {
                engine,
                source: split.source.clone(),
                partition: split.partition,
                finished: false,
            };
            task.engine.assign_split(0, 0, now);
            self.retired.remove(&split.split);
            self.tasks.insert(split.split, task);
        }
        Ok(resume)
    }

    /// Drops the tasks of revoked splits (their state is checkpointed, or lost to the group).
    pub fn revoke(&mut self, splits: &[SplitRef]) {
        for split in splits {
            if let Some(task) = self.tasks.remove(&split.split) {
                let counters = task.engine.counters(0).unwrap_or_default();
                self.retired.insert(split.split, counters);
            }
        }
        self.owners
            .retain(|_, owner| self.tasks.contains_key(owner));
    }

    /// Runs one event through its partition's task; the error is a dead letter's reason.
    pub fn process(
        &mut self,
        event: &Event<'_>,
        origin: Origin<'_>,
        now: i64,
        out: &mut Vec<Record>,
    ) -> Result<(), String> {
        let split = origin.split;
        let Some(task) = self.tasks.get_mut(&split) else {
            return Err(format!(
                "partition {} of {:?} is not assigned to this instance",
                origin.partition, origin.source
            ));
        };
        match self.owners.get(event.series.as_ref()) {
            Some(&owner) if owner != split => {
                let other = self.tasks.get(&owner).map_or(0, |t| t.partition);
                return Err(format!(
                    "series {:?} already comes from partition {other}; with assignment = \
                     \"group\" each series must come from one partition (key messages by series)",
                    event.series
                ));
            }
            Some(_) => {}
            None => {
                self.owners.insert(Arc::from(event.series.as_ref()), split);
            }
        }
        let origin = Origin { split: 0, ..origin };
        task.engine
            .process(0, event, origin, now, out)
            .map_err(|rejected| rejected.to_string())
    }

    /// Advances processing time in every task.
    pub fn tick(&mut self, now: i64, out: &mut Vec<Record>) {
        for task in self.tasks.values_mut() {
            task.engine.tick(now, out);
        }
    }

    /// End of input: closes every task's windows.
    pub fn finish(&mut self, out: &mut Vec<Record>) {
        for task in self.tasks.values_mut() {
            task.engine.finish(out);
            task.finished = true;
        }
    }

    /// Writes each task's checkpoint at its split's position in `positions`.
    pub fn save(
        &self,
        checkpoints: &mut Checkpoints,
        pipeline: &str,
        epoch: u64,
        written_at: i64,
        positions: &[SplitPosition],
    ) -> Result<(), PipelineError> {
        for task in self.tasks.values() {
            let Some(position) = positions
                .iter()
                .find(|p| p.source == task.source && p.partition == task.partition)
            else {
                continue;
            };
            let checkpoint = Checkpoint {
                fingerprint: self.fingerprint.clone(),
                engine: (!task.finished).then_some(&task.engine),
                positions: vec![vec![position.clone()]],
                epoch,
                written_at,
            };
            let name = Self::checkpoint_name(pipeline, &self.stream, &task.source, task.partition);
            checkpoints.save(&name, &checkpoint)?;
        }
        Ok(())
    }

    /// The stream's counters over its tasks, those handed away during this run included.
    pub fn counters(&self) -> StreamCounters {
        self.tasks
            .values()
            .filter_map(|t| t.engine.counters(0))
            .chain(self.retired.values().copied())
            .fold(StreamCounters::default(), |sum, c| StreamCounters {
                accepted: sum.accepted + c.accepted,
                late: sum.late + c.late,
                duplicates: sum.duplicates + c.duplicates,
            })
    }

    /// The lowest watermark of the tasks: how far the stream as a whole has come.
    pub fn watermark(&self) -> Option<i64> {
        self.tasks
            .values()
            .filter_map(|t| t.engine.watermark(0))
            .min()
    }

    /// Each task's watermark, by split.
    pub fn partition_watermarks(&self) -> Vec<(u32, PartitionWatermark)> {
        self.tasks
            .iter()
            .filter_map(|(&split, task)| {
                let (_, watermark) = task.engine.partition_watermarks(0).into_iter().next()?;
                Some((split, watermark))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::BTreeMap;

    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::checkpoint::{CheckpointError, CheckpointStore, Outgoing};

    /// Keeps checkpoints in memory, as the database keeps them in its table.
    #[derive(Default, Clone)]
    struct InMemory(Arc<Mutex<BTreeMap<String, Checkpoint>>>);

    impl CheckpointStore for InMemory {
        fn save(&mut self, name: &str, checkpoint: &Outgoing<'_>) -> Result<u64, CheckpointError> {
            let stored = checkpoint.to_stored()?;
            let bytes = stored.engine.as_ref().map_or(0, Vec::len) as u64;
            self.0.lock().unwrap().insert(name.to_owned(), stored);
            Ok(bytes)
        }

        fn load(&mut self, name: &str) -> Result<Option<Checkpoint>, CheckpointError> {
            Ok(self.0.lock().unwrap().get(name).cloned())
        }
    }

    fn store() -> (Checkpoints, InMemory) {
        let memory = InMemory::default();
        (Checkpoints::new(Some(Box::new(memory.clone()))), memory)
    }

    const CONFIG: &str = r#"
[[streams]]
name = "s"
source = { kind = "kafka", brokers = "127.0.0.1:9092", topics = ["t"], assignment = "group" }
fields = { time = "ts", series = "series", value = "value" }
windows = [{ kind = "tumbling", size = "10s" }]

[[sinks]]
kind = "db"
url = "sqlite://unused.db"
"#;

    fn split(split: u32) -> SplitRef {
        SplitRef {
            split,
            source: "t".into(),
            partition: split,
        }
    }

    fn event(series: &str, ts: i64) -> Event<'_> {
        Event {
            ts,
            series: Cow::Borrowed(series),
            value: 1.0,
            id: None,
            join_key: None,
        }
    }

    fn origin(split: u32, offset: u64) -> Origin<'static> {
        Origin {
            source: "t",
            split,
            partition: split,
            offset,
        }
    }

    fn position(partition: u32, next_offset: u64) -> SplitPosition {
        SplitPosition {
            source: "t".into(),
            partition,
            next_offset,
        }
    }

    #[test]
    fn a_partition_moves_with_its_state_and_is_counted_once() {
        let config = Config::from_toml_str(CONFIG).unwrap();
        let (mut checkpoints, _memory) = store();
        let mut tasks = PartitionTasks::new(&config, 0);
        let mut out = Vec::new();
        let resume = tasks
            .assign(&[split(0), split(1)], &mut checkpoints, "p", 0)
            .unwrap();
        assert!(resume.is_empty(), "nothing checkpointed yet");
        for offset in 0..5 {
            tasks
                .process(
                    &event("a", offset as i64 * 1_000),
                    origin(0, offset),
                    0,
                    &mut out,
                )
                .unwrap();
        }
        tasks
            .process(&event("b", 0), origin(1, 0), 0, &mut out)
            .unwrap();
        tasks
            .save(
                &mut checkpoints,
                "p",
                1,
                0,
                &[position(0, 5), position(1, 1)],
            )
            .unwrap();
        assert_eq!(tasks.counters().accepted, 6);

        // The group takes both partitions and gives partition 0 back: its state returns from
        // the checkpoint, with its counters, which are not counted a second time.
        tasks.revoke(&[split(0), split(1)]);
        assert_eq!(tasks.counters().accepted, 6);
        let resume = tasks.assign(&[split(0)], &mut checkpoints, "p", 0).unwrap();
        assert_eq!(resume, [position(0, 5)]);
        assert_eq!(tasks.counters().accepted, 6);

        // The restored window still holds the first five events: it closes with all of them.
        tasks
            .process(&event("a", 30_000), origin(0, 5), 0, &mut out)
            .unwrap();
        let windows: Vec<u64> = out
            .iter()
            .filter_map(|r| match r {
                Record::Window(w) if &*w.series == "a" => Some(w.count),
                _ => None,
            })
            .collect();
        assert_eq!(windows, [5]);
    }

    #[test]
    fn a_series_from_a_second_partition_is_refused_with_the_reason() {
        let config = Config::from_toml_str(CONFIG).unwrap();
        let (mut checkpoints, _memory) = store();
        let mut tasks = PartitionTasks::new(&config, 0);
        let mut out = Vec::new();
        tasks
            .assign(&[split(0), split(1)], &mut checkpoints, "p", 0)
            .unwrap();
        tasks
            .process(&event("a", 0), origin(0, 0), 0, &mut out)
            .unwrap();
        let reason = tasks
            .process(&event("a", 1), origin(1, 0), 0, &mut out)
            .unwrap_err();
        assert!(
            reason.contains("series \"a\" already comes from partition 0"),
            "{reason}"
        );
        // Once partition 0 is gone from this instance, partition 1 may have the series.
        tasks.revoke(&[split(0)]);
        tasks
            .process(&event("a", 2), origin(1, 1), 0, &mut out)
            .unwrap();
    }

    #[test]
    fn a_finished_task_is_checkpointed_without_state() {
        let config = Config::from_toml_str(CONFIG).unwrap();
        let (mut checkpoints, mut memory) = store();
        let mut tasks = PartitionTasks::new(&config, 0);
        let mut out = Vec::new();
        tasks.assign(&[split(0)], &mut checkpoints, "p", 0).unwrap();
        tasks
            .process(&event("a", 0), origin(0, 0), 0, &mut out)
            .unwrap();
        tasks.finish(&mut out);
        tasks
            .save(&mut checkpoints, "p", 3, 0, &[position(0, 1)])
            .unwrap();
        let saved = memory.load("p/s/t/0").unwrap().unwrap();
        assert_eq!(saved.engine, None);
        assert_eq!(saved.positions, [[position(0, 1)]]);
        assert_eq!(saved.epoch, 3);
    }
}
