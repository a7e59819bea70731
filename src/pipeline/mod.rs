//! Wires sources → decode → engine → sinks, with checkpoints, in batch mode (`run --once`: read
//! every source to its end, close everything, flush) or continuously (`run`: follow the sources
//! until stopped).
//!
//! A batch run is a replay: processing time does not advance (every event is processed at
//! processing time 0), so no partition turns idle; at the end every watermark moves to +∞.
//!
//! Streams whose partitions a Kafka consumer group assigns keep their state per partition, in
//! [`tasks`], and checkpoint or restore it when the group moves partitions.

mod tasks;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing::{debug, info, info_span, warn};

use crate::checkpoint::{self, Checkpoint};
use crate::clock::now_ms;
use crate::config::Config;
use crate::engine::time::PartitionWatermark;
use crate::engine::{Engine, Origin, StreamCounters};
use crate::event::Decoder;
use crate::record::{describe_counts, DeadLetterRecord, Record, RecordKind};
use crate::sink::{self, PartitionProgress, Sink, SinkError, StreamProgress};
use crate::source::{Polled, Rebalance, Source, SourceError};

use self::tasks::PartitionTasks;

/// Messages read from one source before the pipeline turns to the next one and drains output.
const BATCH: usize = 1024;

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error("stream {stream:?}: {source}")]
    Source {
        stream: String,
        #[source]
        source: SourceError,
    },
    #[error("sink: {0}")]
    Sink(#[from] SinkError),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
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

struct StreamInput {
    index: usize,
    name: Arc<str>,
    decoder: Decoder,
    source: Box<dyn Source>,
    done: bool,
    dead_letters: u64,
    messages: u64,
    /// Under a consumer group: the state per partition (the main engine holds none for it).
    tasks: Option<PartitionTasks>,
    /// A rebalance the source announced, for the run loop to carry out.
    rebalance: Option<Rebalance>,
}

impl StreamInput {
    fn counters(&self, engine: &Engine) -> StreamCounters {
        match &self.tasks {
            Some(tasks) => tasks.counters(),
            None => engine.counters(self.index).unwrap_or_default(),
        }
    }

    fn watermark(&self, engine: &Engine) -> Option<i64> {
        match &self.tasks {
            Some(tasks) => tasks.watermark(),
            None => engine.watermark(self.index),
        }
    }
}

/// How a run ends.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Read every source to its end (Kafka: the end offsets at start), close every window,
    /// write everything, and return.
    Once,
    /// Follow the sources until `stop` is set (SIGINT/SIGTERM), then flush, checkpoint (windows
    /// stay open in the checkpoint) and return.
    Continuous { stop: Arc<AtomicBool> },
}

/// Runs every stream of `config` to the end of its input and writes all records to the sinks.
pub fn run_once(config: &Config) -> Result<RunSummary, PipelineError> {
    run(config, Mode::Once)
}

/// Runs the pipeline of `config` in `mode` with the sinks it lists.
pub fn run(config: &Config, mode: Mode) -> Result<RunSummary, PipelineError> {
    let mut sinks = sink::build(&config.sinks, &config.checkpoint.pipeline)?;
    run_into(config, &mut sinks, mode)
}

/// [`run_once`] into sinks the caller built (tests collect records in memory this way).
pub fn run_once_into(
    config: &Config,
    sinks: &mut [Box<dyn Sink>],
) -> Result<RunSummary, PipelineError> {
    run_into(config, sinks, Mode::Once)
}

/// The run loop.
///
/// With a sink that stores checkpoints (`db`), the run resumes from the pipeline's checkpoint,
/// writes one every `checkpoint.interval`, and a last one when it ends (after a batch run:
/// positions only, every window being closed). A run killed at any point and started again so
/// ends with the same rows.
pub fn run_into(
    config: &Config,
    sinks: &mut [Box<dyn Sink>],
    mode: Mode,
) -> Result<RunSummary, PipelineError> {
    let fingerprint = checkpoint::fingerprint(config);
    let pipeline = config.checkpoint.pipeline.as_str();
    let (mut engine, positions, resume_epoch) =
        match load_checkpoint(sinks, pipeline, &fingerprint)? {
            Some(found) => {
                let engine = engine_from(&found, config)?;
                info!(
                    pipeline,
                    written_at = found.written_at,
                    "Resuming from checkpoint."
                );
                (engine, found.positions, Some(found.epoch))
            }
            None => (Engine::new(config), Vec::new(), None),
        };
    for sink in sinks.iter_mut() {
        sink.begin(resume_epoch)?;
    }
    let mut epoch = resume_epoch.unwrap_or(0);
    let following = matches!(mode, Mode::Continuous { .. });

    let mut inputs = Vec::with_capacity(config.streams.len());
    for (index, stream) in config.streams.iter().enumerate() {
        let resume = positions.get(index).map(Vec::as_slice).unwrap_or_default();
        let source =
            stream
                .source
                .open(resume, following)
                .map_err(|source| PipelineError::Source {
                    stream: stream.name.clone(),
                    source,
                })?;
        for split in source.splits() {
            engine.assign_split(index, split, processing_time(&mode));
        }
        inputs.push(StreamInput {
            index,
            name: Arc::from(stream.name.as_str()),
            decoder: Decoder::new(stream.fields.clone()),
            source,
            done: false,
            dead_letters: 0,
            messages: 0,
            tasks: stream
                .is_group_assigned()
                .then(|| PartitionTasks::new(config, index)),
            rebalance: None,
        });
    }

    let mut out: Vec<Record> = Vec::with_capacity(BATCH * 4);
    let mut written: BTreeMap<RecordKind, u64> = BTreeMap::new();
    let interval = Duration::from_millis(config.checkpoint.interval.ms().max(1) as u64);
    let mut last_checkpoint = Instant::now();
    let mut idle_rounds = 0u32;
    loop {
        if let Mode::Continuous { stop } = &mode {
            if stop.load(Ordering::Relaxed) {
                info!("Stopping: flushing and checkpointing.");
                break;
            }
        }
        if inputs.iter().all(|i| i.done) {
            break;
        }
        // Round-robin over the streams in batches, so joined streams advance together and the
        // join state does not have to hold all of one side.
        let mut read = 0;
        for input in inputs.iter_mut().filter(|i| !i.done) {
            let _span = info_span!("stream", name = %input.name).entered();
            // Wait a little only when every source was idle last round.
            let wait = if idle_rounds > 0 {
                Duration::from_millis(50) / inputs_len(config)
            } else {
                Duration::ZERO
            };
            read += read_batch(input, &mut engine, &mut out, &mode, wait)?;
        }
        idle_rounds = if read == 0 { idle_rounds + 1 } else { 0 };
        if following {
            let now = processing_time(&mode);
            engine.tick(now, &mut out);
            for tasks in inputs.iter_mut().filter_map(|i| i.tasks.as_mut()) {
                tasks.tick(now, &mut out);
            }
        }
        write_out(&mut out, sinks, &mut written, &mode)?;
        for i in 0..inputs.len() {
            if let Some(change) = inputs[i].rebalance.take() {
                // A revocation checkpoints everything first.
                let revoking = matches!(change, Rebalance::Revoked { .. });
                if revoking {
                    epoch += 1;
                    last_checkpoint = Instant::now();
                }
                let run = RunContext {
                    config,
                    fingerprint: &fingerprint,
                    epoch,
                    engine: &engine,
                    mode: &mode,
                };
                rebalance(&run, i, change, &mut inputs, sinks)?;
            }
        }
        if following {
            let progress = progress(&engine, &inputs);
            for sink in sinks.iter_mut() {
                sink.on_progress(&progress);
            }
        }
        if last_checkpoint.elapsed() >= interval {
            epoch += 1;
            let stored = checkpoint(
                config,
                &fingerprint,
                epoch,
                Some(&engine),
                &mut inputs,
                sinks,
            );
            match stored {
                Ok(()) => {}
                // Following, a failed checkpoint is retried at the next interval (with the
                // next epoch: epochs are never reused).
                Err(error) if following => {
                    warn!(%error, "Checkpoint failed; retrying at the next interval.");
                }
                Err(error) => return Err(error),
            }
            last_checkpoint = Instant::now();
        }
    }
    if following {
        epoch += 1;
        checkpoint(
            config,
            &fingerprint,
            epoch,
            Some(&engine),
            &mut inputs,
            sinks,
        )?;
    } else {
        engine.finish(&mut out);
        for tasks in inputs.iter_mut().filter_map(|i| i.tasks.as_mut()) {
            tasks.finish(&mut out);
        }
        write_out(&mut out, sinks, &mut written, &mode)?;
        epoch += 1;
        checkpoint(config, &fingerprint, epoch, None, &mut inputs, sinks)?;
    }

    let streams = inputs
        .iter()
        .map(|input| {
            let counters = input.counters(&engine);
            StreamSummary {
                name: input.name.to_string(),
                messages: input.messages,
                accepted: counters.accepted,
                late: counters.late,
                duplicates: counters.duplicates,
                dead_letters: input.dead_letters,
            }
        })
        .collect();
    let summary = RunSummary {
        streams,
        records: written,
    };
    debug!(%summary, "Run finished.");
    Ok(summary)
}

fn progress(engine: &Engine, inputs: &[StreamInput]) -> Vec<StreamProgress> {
    inputs
        .iter()
        .map(|input| {
            let counters = input.counters(engine);
            StreamProgress {
                name: input.name.to_string(),
                watermark: input
                    .watermark(engine)
                    .filter(|&w| w != i64::MIN && w != i64::MAX),
                messages: input.messages,
                accepted: counters.accepted,
                late: counters.late,
                duplicates: counters.duplicates,
                dead_letters: input.dead_letters,
                partitions: partition_progress(engine, input),
                source_error: input.source.trouble(),
                source_state: input.source.state(),
            }
        })
        .collect()
}

/// The engine's view of each split (watermark, idle) joined with the source's (offset, lag).
fn partition_progress(engine: &Engine, input: &StreamInput) -> Vec<PartitionProgress> {
    let status = input.source.split_status();
    let mut partitions: Vec<PartitionProgress> = status
        .iter()
        .map(|s| PartitionProgress {
            split: s.split,
            source: s.position.source.clone(),
            partition: s.position.partition,
            next_offset: Some(s.position.next_offset),
            lag: s.lag,
            ..PartitionProgress::default()
        })
        .collect();
    let watermarks = match &input.tasks {
        Some(tasks) => tasks.partition_watermarks(),
        None => engine.partition_watermarks(input.index),
    };
    for (split, watermark) in watermarks {
        let index = match partitions.iter().position(|p| p.split == split) {
            Some(index) => index,
            None => {
                partitions.push(PartitionProgress {
                    split,
                    partition: split,
                    ..PartitionProgress::default()
                });
                partitions.len() - 1
            }
        };
        let (value, idle) = match watermark {
            PartitionWatermark::Active(w) => (w, false),
            PartitionWatermark::Idle(w) => (w, true),
        };
        // Before its first event a partition contributes MIN (minus the lateness, saturated).
        let known = value > i64::MIN / 2 && value != i64::MAX;
        partitions[index].watermark = known.then_some(value);
        partitions[index].idle = idle;
    }
    partitions.sort_by_key(|p| p.split);
    partitions
}

fn inputs_len(config: &Config) -> u32 {
    config.streams.len().max(1) as u32
}

/// Processing time for the engine: the wall clock when following; 0 in a batch run, which is a
/// replay (no partition turns idle, results depend on the input alone).
fn processing_time(mode: &Mode) -> i64 {
    match mode {
        Mode::Once => 0,
        Mode::Continuous { .. } => now_ms(),
    }
}

/// Writes the pending records. Following, a failing sink pauses the pipeline and is retried
/// with backoff (nothing is dropped; the status says so in the log) until it recovers or the
/// run is stopped; in a batch run the error ends the run.
fn write_out(
    out: &mut Vec<Record>,
    sinks: &mut [Box<dyn Sink>],
    written: &mut BTreeMap<RecordKind, u64>,
    mode: &Mode,
) -> Result<(), PipelineError> {
    if out.is_empty() {
        return Ok(());
    }
    // Sinks that already have this batch: a retry resumes with the one that failed, so the
    // others do not receive it twice.
    let mut delivered = 0;
    let mut backoff = Duration::from_millis(100);
    let mut retries_after_stop = 0;
    let mut paused = false;
    while delivered < sinks.len() {
        let error = match sinks[delivered].write(out) {
            Ok(()) => {
                delivered += 1;
                continue;
            }
            Err(error) => error,
        };
        // A batch run fails (and resumes later from its checkpoint); a following one waits
        // for the sink to come back, holding its records, and says so on the status page.
        let Mode::Continuous { stop } = mode else {
            return Err(error.into());
        };
        if stop.load(Ordering::Relaxed) {
            retries_after_stop += 1;
            if retries_after_stop > 5 {
                return Err(error.into());
            }
        }
        warn!(%error, retry_in = ?backoff, "Sink failed; pipeline paused.");
        let reason = format!("a sink failed, retrying every {backoff:?}: {error}");
        for sink in sinks.iter_mut() {
            sink.on_paused(Some(&reason));
        }
        paused = true;
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_SINK_BACKOFF);
    }
    if paused {
        info!("Sinks recovered; pipeline resumed.");
        for sink in sinks.iter_mut() {
            sink.on_paused(None);
        }
    }
    for record in out.iter() {
        *written.entry(record.kind()).or_default() += 1;
    }
    out.clear();
    Ok(())
}

/// Longest wait between two attempts to write to a failed sink.
const MAX_SINK_BACKOFF: Duration = Duration::from_secs(30);

/// Reads up to [`BATCH`] messages of one stream through decode and the engine; returns how
/// many were read.
fn read_batch(
    input: &mut StreamInput,
    engine: &mut Engine,
    out: &mut Vec<Record>,
    mode: &Mode,
    wait: Duration,
) -> Result<usize, PipelineError> {
    let now = processing_time(mode);
    let mut read = 0;
    for i in 0..BATCH {
        let polled = input
            .source
            .poll_message(if i == 0 { wait } else { Duration::ZERO })
            .map_err(|source| PipelineError::Source {
                stream: input.name.to_string(),
                source,
            })?;
        let message = match polled {
            Polled::Message(message) => message,
            Polled::Idle => break,
            Polled::End => {
                debug!("Source exhausted.");
                input.done = true;
                break;
            }
            Polled::Rebalance(change) => {
                input.rebalance = Some(change);
                break;
            }
        };
        read += 1;
        input.messages += 1;
        let origin = Origin {
            source: message.source,
            split: message.split,
            partition: message.partition,
            offset: message.offset,
        };
        let reason = match input.decoder.decode(message.payload) {
            Ok(event) => match &mut input.tasks {
                Some(tasks) => tasks.process(&event, origin, now, out).err(),
                None => match engine.process(input.index, &event, origin, now, out) {
                    Ok(()) => None,
                    Err(rejected) => Some(rejected.to_string()),
                },
            },
            Err(bad) => Some(bad.to_string()),
        };
        if let Some(reason) = reason {
            input.dead_letters += 1;
            out.push(Record::DeadLetter(DeadLetterRecord::new(
                input.name.clone(),
                Arc::from(message.source),
                message.partition,
                message.offset,
                reason,
                message.payload,
            )));
        }
    }
    Ok(read)
}

/// Flushes the sinks, stores the engine state with the positions it reflects, then lets the
/// sources commit (Kafka offsets). The order is the delivery guarantee: nothing is marked read
/// before what it produced is durable.
fn checkpoint(
    config: &Config,
    fingerprint: &str,
    epoch: u64,
    engine: Option<&Engine>,
    inputs: &mut [StreamInput],
    sinks: &mut [Box<dyn Sink>],
) -> Result<(), PipelineError> {
    for sink in sinks.iter_mut() {
        sink.flush(epoch)?;
    }
    let state = match engine {
        Some(engine) => Some(
            engine
                .snapshot()
                .map_err(|e| PipelineError::Checkpoint(e.to_string()))?,
        ),
        None => None,
    };
    let written_at = now_ms();
    let pipeline = config.checkpoint.pipeline.as_str();
    let mut positions = Vec::with_capacity(inputs.len());
    for input in inputs.iter() {
        let here = input.source.positions();
        match &input.tasks {
            // A group-assigned stream's positions live in its partitions' checkpoints.
            Some(tasks) => {
                tasks.save(sinks, pipeline, epoch, written_at, &here)?;
                positions.push(Vec::new());
            }
            None => positions.push(here),
        }
    }
    let checkpoint = Checkpoint {
        fingerprint: fingerprint.to_owned(),
        engine: state,
        positions,
        epoch,
        written_at,
    };
    let stored = save_checkpoint(sinks, pipeline, &checkpoint)?;
    debug!(stored, "Checkpoint.");
    for input in inputs.iter_mut() {
        input
            .source
            .commit()
            .map_err(|source| PipelineError::Source {
                stream: input.name.to_string(),
                source,
            })?;
    }
    Ok(())
}

/// The checkpoint named `name` in the first sink holding one; refused when a pipeline of
/// another shape (fingerprint) wrote it.
fn load_checkpoint(
    sinks: &mut [Box<dyn Sink>],
    name: &str,
    fingerprint: &str,
) -> Result<Option<Checkpoint>, PipelineError> {
    for sink in sinks.iter_mut() {
        let Some(found) = sink.load_checkpoint(name)? else {
            continue;
        };
        if found.fingerprint != fingerprint {
            return Err(PipelineError::Checkpoint(format!(
                "checkpoint {name:?} was written by a pipeline with other streams, windows or \
                 analytics, or by another version (fingerprint {} ≠ {fingerprint}); use another \
                 checkpoint.pipeline name or delete its row from the checkpoints table to start \
                 over",
                found.fingerprint
            )));
        }
        return Ok(Some(found));
    }
    Ok(None)
}

/// The engine a checkpoint holds, or a fresh one for `config` when it holds none (a finished
/// batch run keeps positions only).
fn engine_from(checkpoint: &Checkpoint, config: &Config) -> Result<Engine, PipelineError> {
    match &checkpoint.engine {
        Some(state) => Engine::restore(state).map_err(|e| PipelineError::Checkpoint(e.to_string())),
        None => Ok(Engine::new(config)),
    }
}

/// Stores a checkpoint in every sink that keeps them; `false` when none does.
fn save_checkpoint(
    sinks: &mut [Box<dyn Sink>],
    name: &str,
    checkpoint: &Checkpoint,
) -> Result<bool, PipelineError> {
    let mut stored = false;
    for sink in sinks.iter_mut() {
        stored |= sink.save_checkpoint(name, checkpoint)?;
    }
    Ok(stored)
}

/// What a rebalance needs of the run besides the inputs and sinks.
struct RunContext<'a> {
    config: &'a Config,
    fingerprint: &'a str,
    /// The epoch of the checkpoint a revocation writes.
    epoch: u64,
    engine: &'a Engine,
    mode: &'a Mode,
}

/// Carries out a rebalance of input `index`: on revocation, checkpoints everything (so the
/// next owner of the partitions resumes exactly here) and drops the tasks; on assignment,
/// restores the tasks from their checkpoints. Then lets the source go on.
fn rebalance(
    run: &RunContext<'_>,
    index: usize,
    change: Rebalance,
    inputs: &mut [StreamInput],
    sinks: &mut [Box<dyn Sink>],
) -> Result<(), PipelineError> {
    let source_error = |input: &StreamInput, source| PipelineError::Source {
        stream: input.name.to_string(),
        source,
    };
    match change {
        Rebalance::Revoked { splits, lost } => {
            // Checkpointed even when the group already gave the partitions away (`lost`): a
            // checkpoint is a state together with the position it reflects, and a task replayed
            // from any such pair writes the same rows, so this can only save the new owner work.
            if lost {
                info!(
                    partitions = splits.len(),
                    "The consumer group reassigned our partitions without waiting for us."
                );
            }
            let stored = checkpoint(
                run.config,
                run.fingerprint,
                run.epoch,
                Some(run.engine),
                inputs,
                sinks,
            );
            if let Err(error) = stored {
                // The partitions go anyway; their next owner resumes from their last
                // checkpoint and writes the same rows again.
                warn!(%error, "Checkpoint before handing partitions over failed.");
            }
            let input = &mut inputs[index];
            if let Some(tasks) = input.tasks.as_mut() {
                tasks.revoke(&splits);
            }
            input
                .source
                .revoke(&splits)
                .map_err(|e| source_error(input, e))
        }
        Rebalance::Assigned(splits) => {
            let input = &mut inputs[index];
            let now = processing_time(run.mode);
            let resume = match input.tasks.as_mut() {
                Some(tasks) => {
                    tasks.assign(&splits, sinks, &run.config.checkpoint.pipeline, now)?
                }
                None => Vec::new(),
            };
            input
                .source
                .assign(&splits, &resume)
                .map_err(|e| source_error(input, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    use super::*;
    use crate::record::DeadLetterRecord;

    type Log = Arc<Mutex<Vec<String>>>;

    /// Fails its first `failures` writes; logs what happens to it.
    struct Flaky {
        name: &'static str,
        failures: usize,
        log: Log,
    }

    impl Sink for Flaky {
        fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
            let mut log = self.log.lock().unwrap();
            if self.failures > 0 {
                self.failures -= 1;
                log.push(format!("{} failed", self.name));
                return Err(SinkError::Parquet("disk full".into()));
            }
            log.push(format!("{} wrote {}", self.name, records.len()));
            Ok(())
        }

        fn flush(&mut self, _epoch: u64) -> Result<(), SinkError> {
            Ok(())
        }

        fn on_paused(&mut self, reason: Option<&str>) {
            let state = reason.map_or("resumed".to_owned(), |r| format!("paused ({r})"));
            self.log
                .lock()
                .unwrap()
                .push(format!("{} {state}", self.name));
        }
    }

    /// Sink "a" that works, sink "b" that fails `b_failures` times, their log, one record.
    fn setup(b_failures: usize) -> (Vec<Box<dyn Sink>>, Log, Vec<Record>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sinks: Vec<Box<dyn Sink>> = vec![
            Box::new(Flaky {
                name: "a",
                failures: 0,
                log: log.clone(),
            }),
            Box::new(Flaky {
                name: "b",
                failures: b_failures,
                log: log.clone(),
            }),
        ];
        let record = Record::DeadLetter(DeadLetterRecord {
            stream: "s".into(),
            source: "f".into(),
            partition: 0,
            offset: 1,
            reason: "bad".into(),
            payload: String::new(),
        });
        (sinks, log, vec![record])
    }

    #[test]
    fn following_a_failing_sink_pauses_until_it_recovers_and_no_sink_gets_a_batch_twice() {
        let (mut sinks, log, mut out) = setup(2);
        let mut written = BTreeMap::new();
        let mode = Mode::Continuous {
            stop: Arc::new(AtomicBool::new(false)),
        };
        write_out(&mut out, &mut sinks, &mut written, &mode).unwrap();
        let log = log.lock().unwrap();
        let reason = "paused (a sink failed, retrying every";
        assert_eq!(log[0], "a wrote 1");
        assert_eq!(log[1], "b failed");
        assert!(log[2].starts_with(&format!("a {reason} 100ms: parquet: disk full")));
        assert!(log[3].starts_with(&format!("b {reason} 100ms")));
        assert_eq!(log[4], "b failed");
        assert!(log[5].starts_with(&format!("a {reason} 200ms")));
        assert_eq!(log[7..], ["b wrote 1", "a resumed", "b resumed"]);
        assert!(out.is_empty());
        assert_eq!(written[&RecordKind::DeadLetter], 1);
    }

    #[test]
    fn a_batch_run_fails_at_once_on_a_failing_sink() {
        let (mut sinks, log, mut out) = setup(1);
        let mut written = BTreeMap::new();
        let error = write_out(&mut out, &mut sinks, &mut written, &Mode::Once).unwrap_err();
        assert!(error.to_string().contains("disk full"), "{error}");
        assert_eq!(*log.lock().unwrap(), ["a wrote 1", "b failed"]);
        assert!(written.is_empty());
    }
}
