//! Wires sources → decode → engine → sinks, with checkpoints, in batch mode (`run --once`: read
//! every source to its end, close everything, flush) or continuously (`run`: follow the sources
//! until stopped).
//!
//! A batch run is a replay: processing time does not advance (every event is processed at
//! processing time 0), so no partition turns idle; at the end every watermark moves to +∞.
//!
//! Streams whose partitions a Kafka consumer group assigns keep their state per partition, in
//! [`tasks`], and checkpoint or restore it when the group moves partitions.

mod checkpoints;
mod delivery;
mod input;
pub mod progress;
mod tasks;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::watch;
use tracing::{debug, info, info_span, warn};

use self::checkpoints::{engine_from, Checkpoints};
use self::delivery::deliver;
use self::input::StreamInput;
use self::progress::StatusReporter;
use crate::checkpoint::{self, Checkpoint, CheckpointError, CheckpointStore};
use crate::clock::now_ms;
use crate::config::Config;
use crate::engine::{Engine, SnapshotError};
use crate::record::{describe_counts, Record, RecordKind};
use crate::report::Report;
use crate::sink::{DbSink, Sink, SinkConfig, SinkError};
use crate::source::{Rebalance, SourceError};

pub use self::input::BATCH;
pub use self::progress::{PartitionProgress, PipelineStatus, StreamProgress};

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

impl Mode {
    fn following(&self) -> bool {
        matches!(self, Mode::Continuous { .. })
    }

    fn stop_requested(&self) -> bool {
        matches!(self, Mode::Continuous { stop } if stop.load(Ordering::Relaxed))
    }

    /// Processing time for the engine: the wall clock when following; 0 in a batch run, which
    /// is a replay (no partition turns idle, results depend on the input alone).
    fn now(&self) -> i64 {
        match self {
            Mode::Once => 0,
            Mode::Continuous { .. } => now_ms(),
        }
    }
}

/// Where a pipeline's results go.
pub struct Outputs {
    pub sinks: Vec<Box<dyn Sink>>,
    /// Where checkpoints are kept: the first `db` sink's database. Without one, a run starts
    /// over each time.
    pub checkpoints: Option<Box<dyn CheckpointStore>>,
    /// Who hears of progress and pauses while the pipeline follows (the live view).
    pub status: Option<watch::Sender<PipelineStatus>>,
}

impl Outputs {
    /// The sinks `config` lists, and the checkpoint store of its first `db` sink.
    pub fn build(config: &Config) -> Result<Outputs, SinkError> {
        let pipeline = config.checkpoint.pipeline.as_str();
        let mut outputs = Outputs {
            sinks: Vec::with_capacity(config.sinks.len()),
            checkpoints: None,
            status: None,
        };
        for sink in &config.sinks {
            if let SinkConfig::Db(db) = sink {
                let sink = DbSink::connect(&db.url)?;
                if outputs.checkpoints.is_none() {
                    outputs.checkpoints = Some(Box::new(sink.checkpoints()));
                }
                outputs.sinks.push(Box::new(sink));
            } else {
                outputs.sinks.push(sink.build(pipeline)?);
            }
        }
        Ok(outputs)
    }
}

/// Runs every stream of `config` to the end of its input and writes all records to the sinks.
pub fn run_once(config: &Config) -> Result<RunSummary, PipelineError> {
    run(config, Mode::Once)
}

/// Runs the pipeline of `config` in `mode` with the sinks it lists.
pub fn run(config: &Config, mode: Mode) -> Result<RunSummary, PipelineError> {
    Pipeline::open(config, Outputs::build(config)?, mode)?.run()
}

/// A running pipeline.
///
/// With a checkpoint store (a `db` sink), the run resumes from the pipeline's checkpoint,
/// writes one every `checkpoint.interval`, and a last one when it ends (after a batch run:
/// positions only, every window being closed). A run killed at any point and started again so
/// ends with the same rows.
pub struct Pipeline<'a> {
    config: &'a Config,
    mode: Mode,
    /// The shape of `config` a checkpoint must have been written under.
    fingerprint: String,
    engine: Engine,
    inputs: Vec<StreamInput>,
    sinks: Vec<Box<dyn Sink>>,
    checkpoints: Checkpoints,
    status: StatusReporter,
    /// Number of the last checkpoint; only grows (file sinks name their files by it).
    epoch: u64,
    last_checkpoint: Instant,
    /// Records produced and not yet delivered to every sink.
    pending: Vec<Record>,
    written: BTreeMap<RecordKind, u64>,
    /// Consecutive rounds that read nothing.
    idle_rounds: u32,
}

impl<'a> Pipeline<'a> {
    /// Restores the engine from the pipeline's checkpoint (or starts a fresh one), tells the
    /// sinks where the run begins, and opens every source where the checkpoint left it.
    pub fn open(config: &'a Config, outputs: Outputs, mode: Mode) -> Result<Self, PipelineError> {
        let fingerprint = checkpoint::fingerprint(config);
        let mut checkpoints = Checkpoints::new(outputs.checkpoints);
        let name = config.checkpoint.pipeline.as_str();
        let (mut engine, positions, resume_epoch) = match checkpoints.load(name, &fingerprint)? {
            Some(found) => {
                let engine = engine_from(&found, config)?;
                info!(
                    pipeline = name,
                    written_at = found.written_at,
                    "Resuming from checkpoint."
                );
                (engine, found.positions, Some(found.epoch))
            }
            None => (Engine::new(config), Vec::new(), None),
        };
        let mut sinks = outputs.sinks;
        for sink in &mut sinks {
            sink.begin(resume_epoch)?;
        }
        let mut inputs = Vec::with_capacity(config.streams.len());
        for index in 0..config.streams.len() {
            let resume = positions.get(index).map(Vec::as_slice).unwrap_or_default();
            let now = mode.now();
            let following = mode.following();
            inputs.push(StreamInput::open(
                config,
                index,
                resume,
                following,
                &mut engine,
                now,
            )?);
        }
        Ok(Pipeline {
            config,
            mode,
            fingerprint,
            engine,
            inputs,
            sinks,
            checkpoints,
            status: StatusReporter::new(outputs.status),
            epoch: resume_epoch.unwrap_or(0),
            last_checkpoint: Instant::now(),
            pending: Vec::with_capacity(BATCH * 4),
            written: BTreeMap::new(),
            idle_rounds: 0,
        })
    }

    /// Reads, processes and delivers until the sources end (batch) or a stop is requested
    /// (following), checkpointing on the way; then finishes the run.
    pub fn run(mut self) -> Result<RunSummary, PipelineError> {
        while !self.mode.stop_requested() && self.inputs.iter().any(|i| !i.done) {
            self.read_round()?;
            self.deliver()?;
            self.carry_out_rebalances()?;
            self.report_progress();
            if self.last_checkpoint.elapsed() >= self.checkpoint_interval() {
                self.periodic_checkpoint()?;
            }
        }
        if self.mode.stop_requested() {
            info!("Stopping: flushing and checkpointing.");
        }
        self.finish()?;
        let summary = RunSummary {
            streams: self
                .inputs
                .iter()
                .map(|input| input.summary(&self.engine))
                .collect(),
            records: std::mem::take(&mut self.written),
        };
        debug!(%summary, "Run finished.");
        Ok(summary)
    }

    fn checkpoint_interval(&self) -> Duration {
        Duration::from_millis(self.config.checkpoint.interval.ms().max(1) as u64)
    }

    /// One batch from every source that has not ended, round-robin, so joined streams advance
    /// together and a join does not have to hold all of one side. Following, processing time
    /// then advances (idle partitions, session gaps).
    fn read_round(&mut self) -> Result<(), PipelineError> {
        // Wait a little for input only when every source was idle last round.
        let wait = if self.idle_rounds > 0 {
            Duration::from_millis(50) / self.inputs.len().max(1) as u32
        } else {
            Duration::ZERO
        };
        let now = self.mode.now();
        let mut read = 0;
        for input in self.inputs.iter_mut().filter(|i| !i.done) {
            let _span = info_span!("stream", name = %input.name).entered();
            read += input.read_batch(&mut self.engine, &mut self.pending, now, wait)?;
        }
        self.idle_rounds = if read == 0 { self.idle_rounds + 1 } else { 0 };
        if self.mode.following() {
            let now = self.mode.now();
            self.engine.tick(now, &mut self.pending);
            for tasks in self.inputs.iter_mut().filter_map(|i| i.tasks.as_mut()) {
                tasks.tick(now, &mut self.pending);
            }
        }
        Ok(())
    }

    /// Hands what the round produced to every sink (see [`deliver`]).
    fn deliver(&mut self) -> Result<(), PipelineError> {
        let status = &self.status;
        deliver(
            &mut self.pending,
            &mut self.sinks,
            &mut self.written,
            &self.mode,
            |reason| status.paused(reason),
        )
    }

    fn report_progress(&mut self) {
        if self.mode.following() {
            let (inputs, engine) = (&self.inputs, &self.engine);
            self.status
                .progress(|| inputs.iter().map(|i| i.progress(engine)).collect());
        }
    }

    /// The checkpoint every `checkpoint.interval`. Following, a failed one is retried at the
    /// next interval (with the next epoch: epochs are never reused); a batch run fails.
    fn periodic_checkpoint(&mut self) -> Result<(), PipelineError> {
        let result = self.checkpoint(true);
        self.last_checkpoint = Instant::now();
        match result {
            Err(error) if self.mode.following() => {
                warn!(error = %Report(&error), "Checkpoint failed; retrying at the next interval.");
                Ok(())
            }
            other => other,
        }
    }

    /// Following: the last checkpoint, windows still open in it. Batch: every window closes,
    /// the last records are delivered, and the checkpoint keeps positions only.
    fn finish(&mut self) -> Result<(), PipelineError> {
        if self.mode.following() {
            return self.checkpoint(true);
        }
        self.engine.finish(&mut self.pending);
        for tasks in self.inputs.iter_mut().filter_map(|i| i.tasks.as_mut()) {
            tasks.finish(&mut self.pending);
        }
        self.deliver()?;
        self.checkpoint(false)
    }

    /// Flushes the sinks, stores the engine state (`with_state`) with the positions it reflects,
    /// then lets the sources commit (Kafka offsets). The order is the delivery guarantee:
    /// nothing is marked read before what it produced is durable.
    fn checkpoint(&mut self, with_state: bool) -> Result<(), PipelineError> {
        self.epoch += 1;
        for sink in &mut self.sinks {
            sink.flush(self.epoch)?;
        }
        let engine = match with_state {
            true => Some(self.engine.snapshot()?),
            false => None,
        };
        let written_at = now_ms();
        let name = self.config.checkpoint.pipeline.as_str();
        let mut positions = Vec::with_capacity(self.inputs.len());
        for input in &self.inputs {
            let here = input.source.positions();
            match &input.tasks {
                // A group-assigned stream's positions live in its partitions' checkpoints.
                Some(tasks) => {
                    tasks.save(&mut self.checkpoints, name, self.epoch, written_at, &here)?;
                    positions.push(Vec::new());
                }
                None => positions.push(here),
            }
        }
        let checkpoint = Checkpoint {
            fingerprint: self.fingerprint.clone(),
            engine,
            positions,
            epoch: self.epoch,
            written_at,
        };
        let stored = self.checkpoints.save(name, &checkpoint)?;
        debug!(stored, epoch = self.epoch, "Checkpoint.");
        for input in &mut self.inputs {
            input.source.commit().map_err(|e| input.error(e))?;
        }
        Ok(())
    }

    /// Carries out the rebalances the sources announced during the round.
    fn carry_out_rebalances(&mut self) -> Result<(), PipelineError> {
        for index in 0..self.inputs.len() {
            match self.inputs[index].rebalance.take() {
                Some(Rebalance::Revoked { splits, lost }) => self.revoke(index, &splits, lost)?,
                Some(Rebalance::Assigned(splits)) => self.assign(index, &splits)?,
                None => {}
            }
        }
        Ok(())
    }

    /// A consumer group takes partitions away: checkpoint everything first, so their next
    /// owner resumes exactly here, then drop their tasks and let the source go on.
    fn revoke(
        &mut self,
        index: usize,
        splits: &[crate::source::SplitRef],
        lost: bool,
    ) -> Result<(), PipelineError> {
        // Checkpointed even when the group already gave the partitions away (`lost`): a
        // checkpoint is a state together with the position it reflects, and a task replayed
        // from any such pair writes the same rows, so this can only save the new owner work.
        if lost {
            info!(
                partitions = splits.len(),
                "The consumer group reassigned our partitions without waiting for us."
            );
        }
        if let Err(error) = self.checkpoint(true) {
            // The partitions go anyway; their next owner resumes from their last checkpoint
            // and writes the same rows again.
            warn!(error = %Report(&error), "Checkpoint before handing partitions over failed.");
        }
        self.last_checkpoint = Instant::now();
        let input = &mut self.inputs[index];
        if let Some(tasks) = input.tasks.as_mut() {
            tasks.revoke(splits);
        }
        input.source.revoke(splits).map_err(|e| input.error(e))
    }

    /// A consumer group gives partitions: restore their tasks from their checkpoints, then
    /// let the source read them from the checkpointed positions.
    fn assign(
        &mut self,
        index: usize,
        splits: &[crate::source::SplitRef],
    ) -> Result<(), PipelineError> {
        let now = self.mode.now();
        let pipeline = self.config.checkpoint.pipeline.as_str();
        let input = &mut self.inputs[index];
        let resume = match input.tasks.as_mut() {
            Some(tasks) => tasks.assign(splits, &mut self.checkpoints, pipeline, now)?,
            None => Vec::new(),
        };
        input
            .source
            .assign(splits, &resume)
            .map_err(|e| input.error(e))
    }
}
