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
//!
//! Tasks share nothing else, so they run in parallel: the pipeline thread reads a batch,
//! copying each message into its split's share, and each task decodes and processes its share
//! on one of `engine.threads` threads. What they produce is handed on in split order, each
//! split's records in the order of its messages: the same records as one task after another,
//! whatever the threads. (Only which of two partitions gets a series first can differ, when
//! both send it for the first time within one batch: a producer that does not key by series.)
//! The consumer queue hands over a partition's fetched messages in one long run, so a batch
//! mostly holds one partition's and the reading gains little yet; closing at the end of input
//! does. Reading each partition from its own queue, a share of each per batch, is what is left.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use tracing::info;

use super::checkpoints::{engine_from, Checkpoints};
use super::input::ReadAt;
use super::PipelineError;
use crate::checkpoint::{self, Checkpoint, SplitPosition};
use crate::config::Config;
use crate::engine::time::{PartitionWatermark, WatermarkConfig};
use crate::engine::{Engine, Origin, StreamCounters};
use crate::event::{Decoder, Event};
use crate::record::{DeadLetterRecord, Record};
use crate::source::{RawMessage, SplitRef};

type Labels<V> = HashMap<Arc<str>, V, foldhash::fast::RandomState>;

/// Records a task's output buffer keeps room for between batches.
const KEPT_OUTPUT: usize = 4 * super::BATCH;
/// Fewest messages in a batch for the tasks to take it on several threads: below, starting
/// the threads costs more than they save (a trickle while following).
const SPREAD_FROM: usize = 256;

/// The engines of one group-assigned stream, by split.
pub struct PartitionTasks {
    stream: Arc<str>,
    /// The stream alone, no joins: what each task's engine is built from.
    config: Config,
    fingerprint: String,
    tasks: BTreeMap<u32, Task>,
    /// Which split each series seen here comes from. Tasks running on several threads claim
    /// a series here the first time they see it, and after that from their own `claimed`.
    owners: Mutex<Labels<Owner>>,
    /// Counters of partitions handed to other instances during this run, as they were then
    /// (a partition that comes back brings its counters in its state).
    retired: BTreeMap<u32, StreamCounters>,
    /// Threads the tasks run on ([`crate::config::EngineConfig::threads`]).
    threads: usize,
}

#[derive(Debug, Clone, Copy)]
struct Owner {
    split: u32,
    partition: u32,
}

struct Task {
    engine: Engine,
    source: String,
    partition: u32,
    /// Series this task owns in `owners`, looked up without the lock.
    claimed: HashSet<Arc<str>, foldhash::fast::RandomState>,
    /// What the task produced during a batch, handed on in split order after it.
    out: Vec<Record>,
    /// Closed at end of input (`run --once`): checkpointed without state.
    finished: bool,
}

/// The messages of one read of a group-assigned stream, by split, their payloads copied side
/// by side so that each split's task can take its share on a thread of its own.
#[derive(Debug, Default)]
pub struct GroupBatch {
    splits: BTreeMap<u32, SplitMessages>,
}

#[derive(Debug, Default)]
struct SplitMessages {
    source: String,
    partition: u32,
    payloads: Vec<u8>,
    /// Each message's offset and where its payload ends in `payloads`.
    messages: Vec<(u64, usize)>,
}

impl GroupBatch {
    /// Adds a copy of `message`.
    pub fn push(&mut self, message: &RawMessage<'_>) {
        let split = self.splits.entry(message.split).or_default();
        if split.source != message.source {
            split.source.clear();
            split.source.push_str(message.source);
        }
        split.partition = message.partition;
        split.payloads.extend_from_slice(message.payload);
        split.messages.push((message.offset, split.payloads.len()));
    }

    /// Empties the batch, keeping its buffers for the next.
    fn clear(&mut self) {
        for split in self.splits.values_mut() {
            split.payloads.clear();
            split.messages.clear();
        }
    }
}

impl SplitMessages {
    /// Offset and payload of each message, in the order read.
    fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let mut start = 0;
        self.messages.iter().map(move |&(offset, end)| {
            let payload = &self.payloads[start..end];
            start = end;
            (offset, payload)
        })
    }

    fn dead_letter(
        &self,
        stream: &Arc<str>,
        offset: u64,
        reason: String,
        payload: &[u8],
    ) -> Record {
        Record::DeadLetter(DeadLetterRecord::new(
            stream.clone(),
            Arc::from(self.source.as_str()),
            self.partition,
            offset,
            reason,
            payload,
        ))
    }
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
            threads: config.engine.threads(),
            config,
            tasks: BTreeMap::new(),
            owners: Mutex::default(),
            retired: BTreeMap::new(),
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
        let owners = self
            .owners
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
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
            let mut claimed = HashSet::default();
            for (label, _) in engine.series_counters(0) {
                let owner = Owner {
                    split: split.split,
                    partition: split.partition,
                };
                // The restored partition has the series now; whichever task had it before
                // asks again (and is refused) on its next event of it.
                if let Some(before) = owners.insert(label.clone(), owner) {
                    if let Some(task) = self.tasks.get_mut(&before.split) {
                        task.claimed.remove(label);
                    }
                }
                claimed.insert(label.clone());
            }
            let mut task = Task {
                engine,
                source: split.source.clone(),
                partition: split.partition,
                claimed,
                out: Vec::new(),
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
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, owner| self.tasks.contains_key(&owner.split));
    }

    /// Decodes and runs each split's messages of `batch` through its task, the tasks spread
    /// over the configured threads, then hands on what they produced in split order (each
    /// split's records in the order of its messages). Whatever cannot become an event is a
    /// dead letter with the reason; returns how many. Empties `batch`.
    ///
    /// The tasks share nothing but the series' owners, so the records are those of running
    /// them one after the other, whatever the threads.
    pub fn process_batch(
        &mut self,
        decoder: &Decoder,
        batch: &mut GroupBatch,
        at: ReadAt,
        out: &mut Vec<Record>,
    ) -> u64 {
        let mut dead_letters = 0;
        for (split, messages) in &batch.splits {
            if self.tasks.contains_key(split) {
                continue;
            }
            for (offset, payload) in messages.iter() {
                let reason = format!(
                    "partition {} of {:?} is not assigned to this instance",
                    messages.partition, messages.source
                );
                out.push(messages.dead_letter(&self.stream, offset, reason, payload));
                dead_letters += 1;
            }
        }
        let units: Vec<(u32, &mut Task, &SplitMessages)> = self
            .tasks
            .iter_mut()
            .filter_map(|(&split, task)| {
                let messages = batch.splits.get(&split)?;
                (!messages.messages.is_empty()).then_some((split, task, messages))
            })
            .collect();
        let messages: usize = units.iter().map(|(_, _, m)| m.messages.len()).sum();
        let threads = if messages < SPREAD_FROM {
            1
        } else {
            self.threads
        };
        let (stream, owners) = (&self.stream, &self.owners);
        let watermark = &self.config.streams[0].watermark;
        dead_letters += spread(
            units,
            threads,
            |(_, _, messages)| messages.messages.len(),
            |(split, task, messages)| {
                let reading = Reading {
                    stream,
                    decoder,
                    watermark,
                    at,
                };
                task.take_batch(&reading, owners, split, messages)
            },
        );
        batch.clear();
        self.hand_on(out);
        dead_letters
    }

    /// Advances processing time in every task.
    pub fn tick(&mut self, now: i64, out: &mut Vec<Record>) {
        for task in self.tasks.values_mut() {
            task.engine.tick(now, out);
        }
    }

    /// End of input: closes every task's windows (and runs what waited for them), the tasks
    /// spread over the configured threads.
    pub fn finish(&mut self, out: &mut Vec<Record>) {
        let units: Vec<&mut Task> = self.tasks.values_mut().collect();
        spread(
            units,
            self.threads,
            |_| 1,
            |task| {
                task.engine.finish(&mut task.out);
                task.finished = true;
                0
            },
        );
        self.hand_on(out);
    }

    /// Moves what the tasks produced to `out`, in split order.
    fn hand_on(&mut self, out: &mut Vec<Record>) {
        for task in self.tasks.values_mut() {
            out.append(&mut task.out);
            // A watermark that releases much at once leaves a large buffer behind: not kept
            // per task beyond what a batch usually needs.
            task.out.shrink_to(KEPT_OUTPUT);
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

/// What every task of a stream reads a batch with.
struct Reading<'a> {
    stream: &'a Arc<str>,
    decoder: &'a Decoder,
    watermark: &'a WatermarkConfig,
    at: ReadAt,
}

impl Task {
    /// Decodes and runs one split's messages through this task; returns the dead letters.
    fn take_batch(
        &mut self,
        reading: &Reading<'_>,
        owners: &Mutex<Labels<Owner>>,
        split: u32,
        messages: &SplitMessages,
    ) -> u64 {
        let Reading {
            stream,
            decoder,
            watermark,
            at,
        } = *reading;
        let mut dead_letters = 0;
        for (offset, payload) in messages.iter() {
            let origin = Origin {
                source: &messages.source,
                split: 0,
                partition: messages.partition,
                offset,
            };
            let taken = match decoder.decode(payload) {
                Ok(event) => match watermark.check_ahead(event.ts, at.clock) {
                    Ok(()) => self.take(owners, split, &event, origin, at.now),
                    Err(ahead) => Err(ahead.to_string()),
                },
                Err(bad) => Err(bad.to_string()),
            };
            if let Err(reason) = taken {
                self.out
                    .push(messages.dead_letter(stream, offset, reason, payload));
                dead_letters += 1;
            }
        }
        dead_letters
    }

    /// Runs one event through the engine once the series is known to be this split's; the
    /// error is a dead letter's reason.
    fn take(
        &mut self,
        owners: &Mutex<Labels<Owner>>,
        split: u32,
        event: &Event<'_>,
        origin: Origin<'_>,
        now: i64,
    ) -> Result<(), String> {
        if !self.claimed.contains(event.series.as_ref()) {
            let mut owners = owners.lock().unwrap_or_else(PoisonError::into_inner);
            match owners.get(event.series.as_ref()) {
                Some(other) if other.split != split => {
                    return Err(format!(
                        "series {:?} already comes from partition {}; with assignment = \
                         \"group\" each series must come from one partition (key messages by \
                         series)",
                        event.series, other.partition
                    ));
                }
                _ => {
                    let label: Arc<str> = Arc::from(event.series.as_ref());
                    let owner = Owner {
                        split,
                        partition: self.partition,
                    };
                    owners.insert(label.clone(), owner);
                    self.claimed.insert(label);
                }
            }
        }
        self.engine
            .process(0, event, origin, now, &mut self.out)
            .map_err(|rejected| rejected.to_string())
    }
}

/// Runs `work` on each of `units` on up to `threads` threads, this one among them, and returns
/// the sum of what it returned. The heaviest units (by `weight`) are placed first, each on
/// the thread with the least so far; one thread, or one unit, runs here without spawning.
fn spread<U: Send>(
    units: Vec<U>,
    threads: usize,
    weight: impl Fn(&U) -> usize,
    work: impl Fn(U) -> u64 + Sync,
) -> u64 {
    let workers = threads.min(units.len()).max(1);
    if workers == 1 {
        return units.into_iter().map(work).sum();
    }
    let mut weighted: Vec<(usize, U)> = units.into_iter().map(|u| (weight(&u), u)).collect();
    weighted.sort_by_key(|(weight, _)| std::cmp::Reverse(*weight));
    let mut shares: Vec<(usize, Vec<U>)> = (0..workers).map(|_| (0, Vec::new())).collect();
    for (weight, unit) in weighted {
        if let Some(lightest) = shares.iter_mut().min_by_key(|(load, _)| *load) {
            lightest.0 += weight;
            lightest.1.push(unit);
        }
    }
    let work = &work;
    std::thread::scope(|scope| {
        let mut shares = shares.into_iter().map(|(_, units)| units);
        let here = shares.next().unwrap_or_default();
        let spawned: Vec<_> = shares
            .map(|units| scope.spawn(move || units.into_iter().map(work).sum::<u64>()))
            .collect();
        let mut total: u64 = here.into_iter().map(work).sum();
        for thread in spawned {
            total += thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        }
        total
    })
}

#[cfg(test)]
mod tests {
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

        fn names(&mut self, prefix: &str) -> Result<Vec<String>, CheckpointError> {
            let stored = self.0.lock().unwrap();
            Ok(stored
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect())
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

    /// A message of partition `split`: an event of `series` at `ts`, or `None` for a
    /// malformed one.
    type Message<'a> = (u32, u64, Option<(&'a str, i64)>);

    /// Runs `messages` through the tasks as one batch read; returns the dead letters.
    fn take(tasks: &mut PartitionTasks, messages: &[Message<'_>], out: &mut Vec<Record>) -> u64 {
        let decoder = Decoder::new(tasks.config.streams[0].fields.clone());
        let mut batch = GroupBatch::default();
        for &(split, offset, event) in messages {
            let payload = match event {
                Some((series, ts)) => {
                    format!(r#"{{"ts": {ts}, "series": "{series}", "value": 1}}"#)
                }
                None => "{not json".to_owned(),
            };
            batch.push(&RawMessage {
                source: "t",
                split,
                partition: split,
                offset,
                payload: payload.as_bytes(),
            });
        }
        let at = ReadAt {
            now: 0,
            clock: crate::clock::now_ms(),
        };
        tasks.process_batch(&decoder, &mut batch, at, out)
    }

    fn position(partition: u32, next_offset: u64) -> SplitPosition {
        SplitPosition {
            source: "t".into(),
            partition,
            next_offset,
        }
    }

    /// Tasks of the stream of `config` (TOML) with partitions `splits` assigned afresh, the
    /// store their checkpoints go to, and what that store holds.
    fn assigned(config: &str, splits: &[u32]) -> (PartitionTasks, Checkpoints, InMemory) {
        let config = Config::from_toml_str(config).unwrap();
        let (mut checkpoints, memory) = store();
        let mut tasks = PartitionTasks::new(&config, 0);
        let splits: Vec<SplitRef> = splits.iter().copied().map(split).collect();
        let resume = tasks.assign(&splits, &mut checkpoints, "p", 0).unwrap();
        assert!(resume.is_empty(), "nothing checkpointed yet");
        (tasks, checkpoints, memory)
    }

    #[test]
    fn a_partition_moves_with_its_state_and_is_counted_once() {
        let (mut tasks, mut checkpoints, _memory) = assigned(CONFIG, &[0, 1]);
        let mut out = Vec::new();
        let mut messages: Vec<Message<'_>> = (0..5)
            .map(|offset| (0, offset, Some(("a", offset as i64 * 1_000))))
            .collect();
        messages.push((1, 0, Some(("b", 0))));
        assert_eq!(take(&mut tasks, &messages, &mut out), 0);
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
        take(&mut tasks, &[(0, 5, Some(("a", 30_000)))], &mut out);
        let windows: Vec<u64> = out
            .iter()
            .filter_map(|r| match r {
                Record::Window(w) if &*w.series == "a" => Some(w.count),
                _ => None,
            })
            .collect();
        assert_eq!(windows, [5]);
    }

    fn dead_letter_reasons(out: &[Record]) -> Vec<String> {
        out.iter()
            .filter_map(|r| match r {
                Record::DeadLetter(d) => {
                    Some(format!("{}@{}: {}", d.partition, d.offset, d.reason))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_series_from_a_second_partition_is_refused_with_the_reason() {
        let (mut tasks, _checkpoints, _memory) = assigned(CONFIG, &[0, 1]);
        let mut out = Vec::new();
        take(&mut tasks, &[(0, 0, Some(("a", 0)))], &mut out);
        let refused = take(&mut tasks, &[(1, 0, Some(("a", 1)))], &mut out);
        assert_eq!(refused, 1);
        let reasons = dead_letter_reasons(&out);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].starts_with("1@0: series \"a\" already comes from partition 0"),
            "{reasons:?}"
        );
        // Once partition 0 is gone from this instance, partition 1 may have the series.
        tasks.revoke(&[split(0)]);
        assert_eq!(take(&mut tasks, &[(1, 1, Some(("a", 2)))], &mut out), 0);
        // Partition 0's event (its counters retired with it) and now partition 1's.
        assert_eq!(tasks.counters().accepted, 2);
    }

    #[test]
    fn messages_of_a_partition_not_assigned_and_malformed_ones_are_dead_letters() {
        let (mut tasks, _checkpoints, _memory) = assigned(CONFIG, &[0]);
        let mut out = Vec::new();
        let messages = [(0, 0, None), (2, 7, Some(("a", 0))), (0, 1, Some(("a", 0)))];
        assert_eq!(take(&mut tasks, &messages, &mut out), 2);
        let reasons = dead_letter_reasons(&out);
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons[0].starts_with("2@7: partition 2 of \"t\" is not assigned"),
            "{reasons:?}"
        );
        assert!(reasons[1].starts_with("0@0: "), "{reasons:?}");
        assert_eq!(tasks.counters().accepted, 1);
    }

    /// Partitions of many series each, out of order, with malformed messages and series that
    /// show up in a second partition, in batches.
    fn mixed_input() -> Vec<Vec<Message<'static>>> {
        const SERIES: [&str; 12] = [
            "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11",
        ];
        let mut batches = Vec::new();
        let mut offsets = [0u64; 4];
        for round in 0..12i64 {
            let mut batch = Vec::new();
            // Enough for the batch to be spread over threads.
            for n in 0..(SPREAD_FROM as i64 + 64) {
                let split = ((n * 7 + round) % 4) as u32;
                let offset = offsets[split as usize];
                offsets[split as usize] += 1;
                let event = match (n + round) % 29 {
                    0 => None,
                    // Now and then a series another partition has had since the first round.
                    1 if round > 0 => Some((SERIES[((split as usize) + 1) % 4 * 3], round * 5_000)),
                    _ => {
                        let series = SERIES[split as usize * 3 + (n as usize % 3)];
                        Some((series, round * 5_000 + (n * 389) % 9_000))
                    }
                };
                batch.push((split, offset, event));
            }
            batches.push(batch);
        }
        batches
    }

    fn run_with_threads(threads: usize) -> (Vec<Record>, u64) {
        let text = format!("{CONFIG}\n[engine]\nthreads = {threads}\n");
        let (mut tasks, _checkpoints, _memory) = assigned(&text, &[0, 1, 2, 3]);
        let mut out = Vec::new();
        let mut dead_letters = 0;
        for batch in mixed_input() {
            dead_letters += take(&mut tasks, &batch, &mut out);
        }
        tasks.finish(&mut out);
        (out, dead_letters)
    }

    #[test]
    fn tasks_on_several_threads_give_the_records_of_one_thread() {
        let (one, one_dead) = run_with_threads(1);
        let (four, four_dead) = run_with_threads(4);
        assert!(
            one.iter()
                .filter(|r| matches!(r, Record::Window(_)))
                .count()
                > 40,
            "the input closes windows"
        );
        assert!(one_dead > 0, "the input has malformed and refused messages");
        assert_eq!(one_dead, four_dead);
        assert_eq!(one.len(), four.len());
        for (i, (a, b)) in one.iter().zip(&four).enumerate() {
            assert_eq!(a, b, "record {i}");
        }
    }

    #[test]
    fn spread_runs_every_unit_once_across_threads() {
        let seen = Mutex::new(Vec::new());
        let threads = Mutex::new(HashSet::<std::thread::ThreadId>::new());
        let total = spread(
            (1..=10u64).collect(),
            3,
            |&unit| unit as usize,
            |unit| {
                seen.lock().unwrap().push(unit);
                threads.lock().unwrap().insert(std::thread::current().id());
                unit
            },
        );
        assert_eq!(total, 55);
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, (1..=10).collect::<Vec<_>>());
        assert_eq!(threads.into_inner().unwrap().len(), 3);
    }

    #[test]
    fn a_finished_task_is_checkpointed_without_state() {
        let (mut tasks, mut checkpoints, mut memory) = assigned(CONFIG, &[0]);
        let mut out = Vec::new();
        take(&mut tasks, &[(0, 0, Some(("a", 0)))], &mut out);
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
