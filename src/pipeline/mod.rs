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
pub(crate) mod decoding;
mod delivery;
mod error;
mod input;
pub mod progress;
mod reset;
mod tasks;

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{debug, info, info_span, warn};

use self::checkpoints::{engine_from, engine_plan, Checkpoints, Part};
use self::delivery::Delivery;
use self::input::{ReadAt, StreamInput};
use self::progress::StatusReporter;
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::clock::now_ms;
use crate::config::Config;
use crate::db::Database;
use crate::engine::Engine;
use crate::record::Record;
use crate::report::Report;
use crate::shutdown::Shutdown;
use crate::sink::{DbSink, Sink, SinkConfig, SinkError};
use crate::source::Rebalance;

pub use self::error::{PipelineError, RunSummary};
pub use self::input::BATCH;
pub use self::progress::{
    CheckpointProgress, PartitionProgress, PipelineStatus, ShardProgress, SinkProgress,
    StreamProgress,
};
pub use self::reset::reset_streams;

/// How a run ends.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Read every source to its end (Kafka: the end offsets at start), close every window,
    /// write everything, and return.
    Once,
    /// Follow the sources until `stop` is triggered (SIGINT/SIGTERM), then flush, checkpoint
    /// (windows stay open in the checkpoint) and return.
    Continuous { stop: Shutdown },
}

impl Mode {
    fn following(&self) -> bool {
        matches!(self, Mode::Continuous { .. })
    }

    fn stop_requested(&self) -> bool {
        matches!(self, Mode::Continuous { stop } if stop.is_triggered())
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

/// How [`Pipeline::restore`] tells the sinks.
#[derive(Debug, Clone, Copy)]
enum Restore {
    Begin,
    Rewind,
}

/// Where a pipeline's results go.
pub struct Outputs {
    pub sinks: Vec<Box<dyn Sink>>,
    /// Where checkpoints are kept: the `checkpoint.store` database. Without one, a run starts
    /// over each time.
    pub checkpoints: Option<Box<dyn CheckpointStore>>,
    /// The `checkpoint.store` database, which also holds the notification outbox and answers
    /// the dashboard: handed to the store and the notifier, so the process has one pool.
    pub database: Option<Database>,
    /// Who hears of progress and pauses while the pipeline follows (the live view).
    pub status: Option<watch::Sender<PipelineStatus>>,
}

impl Outputs {
    /// The sinks `config` lists, and the checkpoint store of its `checkpoint.store` sink.
    pub fn build(config: &Config) -> Result<Outputs, SinkError> {
        let pipeline = config.checkpoint.pipeline.as_str();
        let mut outputs = Outputs {
            sinks: Vec::with_capacity(config.sinks.len()),
            checkpoints: None,
            database: None,
            status: None,
        };
        let store = config.database_url();
        for sink in &config.sinks {
            if let SinkConfig::Db(db) = sink {
                let mut sink = DbSink::connect(&db.url)?;
                if outputs.checkpoints.is_none() && store == Some(db.url.as_str()) {
                    // The store's db sink holds the checkpoints and the notification outbox.
                    outputs.checkpoints = Some(Box::new(sink.checkpoints()));
                    outputs.database = Some(sink.database().clone());
                    sink = sink.notifying(config.notify_targets());
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
    delivery: Delivery,
    checkpoints: Checkpoints,
    status: StatusReporter,
    /// Number of the last checkpoint (file sinks name their files by it); grows, and goes back
    /// to the stored one's on a rewind.
    epoch: u64,
    last_checkpoint: Instant,
    /// Records produced and not yet delivered to every sink.
    pending: Vec<Record>,
    /// Consecutive rounds that read nothing.
    idle_rounds: u32,
    /// Rewinds since the last checkpoint that succeeded: how long to wait before the next.
    failures: u32,
    /// Checkpoints stored since start.
    checkpoints_written: u64,
}

/// The first wait before replaying from the checkpoint after a failure; it doubles with each
/// failure in a row, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl<'a> Pipeline<'a> {
    /// Restores the engine from the pipeline's checkpoint (or starts a fresh one), tells the
    /// sinks where the run begins, and opens every source where the checkpoint left it.
    pub fn open(config: &'a Config, outputs: Outputs, mode: Mode) -> Result<Self, PipelineError> {
        let mut pipeline = Pipeline {
            config,
            mode,
            fingerprint: config.state_fingerprint(),
            engine: Engine::new(engine_plan(config)),
            inputs: Vec::with_capacity(config.streams.len()),
            delivery: Delivery::new(outputs.sinks),
            checkpoints: Checkpoints::new(outputs.checkpoints),
            status: StatusReporter::new(outputs.status),
            epoch: 0,
            last_checkpoint: Instant::now(),
            pending: Vec::with_capacity(BATCH * 4),
            idle_rounds: 0,
            failures: 0,
            checkpoints_written: 0,
        };
        pipeline.restore(Restore::Begin)?;
        Ok(pipeline)
    }

    /// Puts the engine and every source where the last stored checkpoint left them (a fresh
    /// start without one), and tells the sinks where the run continues from: `begin` when the
    /// pipeline opens, `rewind` when it goes back after a failure.
    fn restore(&mut self, how: Restore) -> Result<(), PipelineError> {
        // Sources close first: a Kafka consumer leaves its group before a new one joins.
        self.inputs.clear();
        self.checkpoints.abandon();
        self.pending.clear();
        let name = self.config.checkpoint.pipeline.as_str();
        let (engine, positions, resume_epoch) =
            match self.checkpoints.load(name, &self.fingerprint)? {
                Some(found) => {
                    let engine = engine_from(&found, self.config)?;
                    info!(
                        pipeline = name,
                        written_at = found.written_at,
                        "Resuming from checkpoint."
                    );
                    (engine, found.positions, Some(found.epoch))
                }
                None => (Engine::new(engine_plan(self.config)), Vec::new(), None),
            };
        for sink in &mut self.delivery.sinks {
            match how {
                Restore::Begin => sink.begin(resume_epoch)?,
                Restore::Rewind => sink.rewind(resume_epoch)?,
            }
        }
        self.engine = engine;
        let (now, following) = (self.mode.now(), self.mode.following());
        for index in 0..self.config.streams.len() {
            let resume = positions.get(index).map(Vec::as_slice).unwrap_or_default();
            let input =
                StreamInput::open(self.config, index, resume, following, &mut self.engine, now)?;
            self.inputs.push(input);
        }
        self.epoch = resume_epoch.unwrap_or(0);
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Reads, processes and delivers until the sources end (batch) or a stop is requested
    /// (following), checkpointing on the way; then finishes the run.
    pub fn run(mut self) -> Result<RunSummary, PipelineError> {
        while !self.mode.stop_requested() && self.inputs.iter().any(|i| !i.done) {
            if let Err(error) = self.step() {
                self.recover(error)?;
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
            records: std::mem::take(&mut self.delivery.written),
        };
        debug!(%summary, "Run finished.");
        Ok(summary)
    }

    /// One round: read, process, deliver, carry out rebalances, and checkpoint when it is time.
    fn step(&mut self) -> Result<(), PipelineError> {
        self.read_round()?;
        self.deliver()?;
        self.carry_out_rebalances()?;
        self.report_progress();
        self.write_checkpoint(self.config.checkpoint.bytes_per_round.0)?;
        if !self.checkpoints.writing()
            && self.last_checkpoint.elapsed() >= self.checkpoint_interval()
        {
            self.checkpoint(true, false)?;
            self.last_checkpoint = Instant::now();
        }
        Ok(())
    }

    /// Following, a failed sink write, flush, checkpoint or offset commit sends the pipeline
    /// back to its last stored checkpoint (engine state and source positions), after a backoff,
    /// to replay from there: what the sinks were given since is written again, which upserting
    /// sinks (db, Parquet files by epoch) absorb, and which ndjson and Kafka sinks repeat (at
    /// least once). Retrying a flush instead would move on past records that are gone. Anything
    /// else, and any failure of a batch run, ends the run (which a restart resumes from the same
    /// checkpoint).
    fn recover(&mut self, mut error: PipelineError) -> Result<(), PipelineError> {
        if !self.mode.following() || !error.is_transient() {
            return Err(error);
        }
        // The engine goes back too: a round run beside the next one is dropped unfinished.
        let round_in_flight = self.engine.in_flight();
        loop {
            if self.mode.stop_requested() {
                return Err(error);
            }
            self.failures += 1;
            let backoff = FIRST_BACKOFF
                .saturating_mul(1 << self.failures.min(12).saturating_sub(1))
                .min(MAX_BACKOFF);
            let report = Report(&error).to_string();
            warn!(
                error = %report,
                retry_in = ?backoff,
                round_in_flight,
                "Pipeline failed; going back to the last checkpoint."
            );
            self.status.paused(Some(format!(
                "{report}; replaying from the last checkpoint in {backoff:?}"
            )));
            self.sleep_unless_stopped(backoff);
            match self.restore(Restore::Rewind) {
                Ok(()) => return Ok(()),
                // A checkpoint that cannot be used stays unusable; the rest is weather too
                // (the database or the broker still down).
                Err(
                    fatal @ (PipelineError::ForeignCheckpoint { .. } | PipelineError::Snapshot(_)),
                ) => return Err(fatal),
                Err(again) => error = again,
            }
        }
    }

    fn sleep_unless_stopped(&self, duration: Duration) {
        let until = Instant::now() + duration;
        while !self.mode.stop_requested() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
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
        let at = ReadAt {
            now: self.mode.now(),
            clock: now_ms(),
        };
        let mut read = 0;
        let mut failed = None;
        for input in self.inputs.iter_mut().filter(|i| !i.done) {
            let _span = info_span!("stream", name = %input.name).entered();
            match input.read_batch(&mut self.engine, &mut self.pending, at, wait) {
                Ok(n) => read += n,
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        if let Some(error) = failed {
            // What was read before the failure is in the engine: its records too.
            self.engine.settle(&mut self.pending);
            return Err(error);
        }
        self.idle_rounds = if read == 0 { self.idle_rounds + 1 } else { 0 };
        if self.mode.following() {
            self.engine.tick(self.mode.now());
        }
        // The round runs on the shards while the next one is read; its records come with the
        // next round's end.
        self.engine.end_round(&mut self.pending);
        Ok(())
    }

    /// Hands what the round produced to every sink (see [`deliver`]).
    fn deliver(&mut self) -> Result<(), PipelineError> {
        self.delivery.deliver(&mut self.pending)
    }

    fn report_progress(&mut self) {
        if !self.mode.following() {
            return;
        }
        let (inputs, engine) = (&self.inputs, &self.engine);
        let (delivery, config) = (&self.delivery, self.config);
        self.status.progress(|| {
            let streams = inputs.iter().map(|i| i.progress(engine)).collect();
            let shards = engine
                .shard_loads()
                .iter()
                .map(|load| ShardProgress {
                    queued: load.queued,
                    busy_ms: load.busy.as_millis() as u64,
                })
                .collect();
            let sinks = delivery
                .timings()
                .iter()
                .enumerate()
                .map(|(i, &(writes, took))| SinkProgress {
                    // Past the config's sinks: the live view `serve` adds.
                    kind: config.sinks.get(i).map_or("live", |s| s.kind()).to_owned(),
                    writes,
                    write_us: took.as_micros() as u64,
                })
                .collect();
            (streams, shards, sinks)
        });
    }

    /// Following: the last checkpoint, windows still open in it. Batch: every window closes,
    /// the last records are delivered, and the checkpoint keeps positions only.
    fn finish(&mut self) -> Result<(), PipelineError> {
        if self.mode.following() {
            return self.checkpoint(true, true);
        }
        let started = Instant::now();
        self.engine.finish(&mut self.pending);
        for tasks in self.inputs.iter_mut().filter_map(|i| i.tasks.as_mut()) {
            tasks.finished();
        }
        let (closed, records) = (started.elapsed(), self.pending.len());
        self.deliver()?;
        debug!(
            records,
            closing_ms = closed.as_millis() as u64,
            delivering_ms = (started.elapsed() - closed).as_millis() as u64,
            "End of input: every window closed, every point released."
        );
        self.checkpoint(false, true)
    }

    /// Flushes the sinks, then stores the engine state (`with_state`) with the positions it
    /// reflects and lets the sources commit them (Kafka offsets). The order is the delivery
    /// guarantee: nothing is marked read before what it produced is durable. A checkpoint
    /// larger than a round's share is written over the next rounds (see [`checkpoints`])
    /// unless `now`; one being written is completed first.
    fn checkpoint(&mut self, with_state: bool, now: bool) -> Result<(), PipelineError> {
        self.write_checkpoint(usize::MAX)?;
        let started = Instant::now();
        // The state and positions stored cover the round in flight: its records first.
        self.engine.land(&mut self.pending);
        self.deliver()?;
        // What the state changed since the last checkpoint, as the shards hand it over.
        let delta = if with_state {
            Some(self.engine.delta(false)?)
        } else {
            None
        };
        self.epoch += 1;
        for sink in &mut self.delivery.sinks {
            fail::fail_point!("sink-flush", |_| Err(PipelineError::Injected {
                point: "sink-flush"
            }));
            sink.flush(self.epoch)?;
        }
        let written_at = now_ms();
        let name = self.config.checkpoint.pipeline.as_str();
        let mut parts = Vec::new();
        let mut positions = Vec::with_capacity(self.inputs.len());
        let mut commit = Vec::with_capacity(self.inputs.len());
        for input in &self.inputs {
            let here = input.source.positions();
            match &input.tasks {
                // A group-assigned stream's positions live in its partitions' checkpoints.
                Some(tasks) => {
                    parts.extend(tasks.checkpoints(
                        name,
                        self.epoch,
                        written_at,
                        &here,
                        &mut self.engine,
                        &mut self.pending,
                    )?);
                    positions.push(Vec::new());
                }
                None => positions.push(here.clone()),
            }
            commit.push(here);
        }
        parts.push(Part {
            name: name.to_owned(),
            checkpoint: Checkpoint {
                fingerprint: self.fingerprint.clone(),
                engine: delta,
                positions,
                epoch: self.epoch,
                written_at,
            },
        });
        self.checkpoints.start(parts, commit, self.epoch, started);
        let budget = match now {
            true => usize::MAX,
            false => self.config.checkpoint.bytes_per_round.0,
        };
        self.write_checkpoint(budget)
    }

    /// Writes about `budget` bytes more of the checkpoint being written, if one is; once it
    /// is stored, the sources commit the positions it holds.
    fn write_checkpoint(&mut self, budget: usize) -> Result<(), PipelineError> {
        let Some(written) = self.checkpoints.advance(budget)? else {
            return Ok(());
        };
        debug!(
            epoch = written.epoch,
            stored = written.bytes.is_some(),
            state_bytes = written.bytes.unwrap_or(0),
            took_ms = written.took.as_millis() as u64,
            longest_pause_ms = written.longest_pause.as_millis() as u64,
            "Checkpoint."
        );
        self.checkpoints_written += 1;
        self.status.checkpointed(CheckpointProgress {
            count: self.checkpoints_written,
            written_at: Some(written.written_at),
            took_ms: written.took.as_millis() as u64,
            longest_pause_ms: written.longest_pause.as_millis() as u64,
            bytes: written.bytes.unwrap_or(0),
        });
        for (input, at) in self.inputs.iter_mut().zip(&written.commit) {
            fail::fail_point!("offset-commit", |_| Err(PipelineError::Injected {
                point: "offset-commit"
            }));
            input
                .source
                .commit(at)
                .map_err(|source| PipelineError::Commit {
                    stream: input.name.to_string(),
                    source,
                })?;
        }
        if self.failures > 0 {
            info!("Checkpoint stored again; the pipeline has recovered.");
            self.failures = 0;
            self.status.paused(None);
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
        let checkpointed = self.checkpoint(true, true);
        self.last_checkpoint = Instant::now();
        let input = &mut self.inputs[index];
        if let Some(tasks) = input.tasks.as_mut() {
            tasks.revoke(splits, &mut self.engine, &mut self.pending);
        }
        input.source.revoke(splits).map_err(|e| input.error(e))?;
        // The partitions go anyway: their next owner resumes from their last checkpoint and
        // writes the same rows again. What this instance keeps goes back to its own.
        checkpointed
    }

    /// A consumer group gives partitions: restore their tasks from their checkpoints, then
    /// let the source read them from the checkpointed positions.
    fn assign(
        &mut self,
        index: usize,
        splits: &[crate::source::SplitRef],
    ) -> Result<(), PipelineError> {
        // Partition checkpoints are read from a store that has taken everything written.
        self.write_checkpoint(usize::MAX)?;
        let now = self.mode.now();
        let pipeline = self.config.checkpoint.pipeline.as_str();
        let input = &mut self.inputs[index];
        let resume = match input.tasks.as_mut() {
            Some(tasks) => tasks.assign(
                splits,
                &mut self.checkpoints,
                pipeline,
                &mut self.engine,
                now,
                &mut self.pending,
            )?,
            None => Vec::new(),
        };
        input
            .source
            .assign(splits, &resume)
            .map_err(|e| input.error(e))
    }
}
