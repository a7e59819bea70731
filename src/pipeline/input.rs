//! One stream's input: its source and its decoder, and under a consumer group the engine task
//! of each partition it owns. Reads batches of messages through decoding into the engine, and
//! says how far along the stream is.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use super::decoding::{DecodeAhead, MessageBatch};
use super::error::{PipelineError, StreamSummary};
use super::progress::{PartitionProgress, StreamProgress};
use super::tasks::PartitionTasks;
use crate::checkpoint::SplitPosition;
use crate::config::Config;
use crate::engine::time::{PartitionWatermark, WatermarkConfig};
use crate::engine::{Engine, Origin, StreamCounters};
use crate::event::{Decoder, Event};
use crate::record::{DeadLetterRecord, Record};
use crate::source::{Polled, RawMessage, Rebalance, Source, SourceError};

/// Messages read from one source before the pipeline turns to the next one and delivers.
pub const BATCH: usize = 1024;

/// Batches one read takes at most when they are decoded ahead: more hides the first batch's
/// decoding (which nothing overlaps) better, fewer returns to the run loop (delivery, ticks,
/// the other streams) sooner.
const ROUNDS_AHEAD: usize = 8;

/// When a read happens, by the two clocks that matter.
#[derive(Debug, Clone, Copy)]
pub struct ReadAt {
    /// Processing time, for the engine: the wall clock when following, 0 in a batch run.
    pub now: i64,
    /// The wall clock, which no event may be stamped too far ahead of (`watermark.max_ahead`).
    pub clock: i64,
}

pub struct StreamInput {
    /// The stream's index in the config (and, for a static stream, its engine task).
    pub index: usize,
    pub name: Arc<str>,
    /// The stream's watermark settings, for refusing events stamped too far ahead.
    watermark: WatermarkConfig,
    decoder: Decoder,
    pub source: Box<dyn Source>,
    /// The source has ended (batch runs).
    pub done: bool,
    dead_letters: u64,
    messages: u64,
    /// Under a consumer group: the engine task of each partition this instance owns.
    pub tasks: Option<PartitionTasks>,
    /// A rebalance the source announced, for the run loop to carry out.
    pub rebalance: Option<Rebalance>,
    /// The thread that decodes batches ahead of the engine, when there is a core for it
    /// (`engine.threads` above 1).
    ahead: Option<DecodeAhead>,
    /// Batches to read into, reused.
    spare: Vec<MessageBatch>,
}

impl StreamInput {
    /// Opens stream `index` of `config` at `resume`, its splits known to `engine`.
    pub fn open(
        config: &Config,
        index: usize,
        resume: &[SplitPosition],
        following: bool,
        engine: &mut Engine,
        now: i64,
    ) -> Result<StreamInput, PipelineError> {
        let stream = &config.streams[index];
        let source =
            stream
                .source
                .open(resume, following)
                .map_err(|source| PipelineError::Source {
                    stream: stream.name.clone(),
                    source,
                })?;
        let tasks = stream
            .is_group_assigned()
            .then(|| PartitionTasks::new(config, index));
        if tasks.is_none() {
            for split in source.splits() {
                engine.assign_split(index, split, now);
            }
        }
        let decoder = Decoder::new(stream.fields.clone())
            .with_label_limit(stream.max_label_bytes)
            .with_message_limit(stream.source.max_message_bytes());
        let ahead = if config.engine.threads() > 1 {
            DecodeAhead::spawn(decoder.clone(), &stream.name)
                .inspect_err(|error| {
                    warn!(%error, stream = %stream.name, "No decoding thread; decoding on the engine's.")
                })
                .ok()
        } else {
            None
        };
        Ok(StreamInput {
            index,
            name: Arc::from(stream.name.as_str()),
            watermark: stream.watermark,
            decoder,
            source,
            done: false,
            dead_letters: 0,
            messages: 0,
            tasks,
            rebalance: None,
            ahead,
            spare: Vec::new(),
        })
    }

    /// A source error, naming this stream.
    pub fn error(&self, source: SourceError) -> PipelineError {
        PipelineError::Source {
            stream: self.name.to_string(),
            source,
        }
    }

    /// Reads up to [`BATCH`] messages through decoding into the engine, waiting at most `wait`
    /// for the first; returns how many were read. Whatever cannot become an event becomes a
    /// dead letter with the reason, in its place among the engine's records.
    ///
    /// With a decoding thread ([`DecodeAhead`]) and a source that has more at once, it reads
    /// up to [`ROUNDS_AHEAD`] batches, each decoded on that thread while the engine takes the
    /// one before; every batch read is in the engine before it returns, so what the source
    /// has given is in the engine when a checkpoint is taken.
    pub fn read_batch(
        &mut self,
        engine: &mut Engine,
        out: &mut Vec<Record>,
        at: ReadAt,
        wait: Duration,
    ) -> Result<usize, PipelineError> {
        if let Some(ahead) = self.ahead.take() {
            let read = self.read_ahead(&ahead, engine, out, at, wait);
            self.ahead = Some(ahead);
            return read;
        }
        let mut batch = self.spare.pop().unwrap_or_default();
        batch.clear();
        let (read, failed) = poll_batch(
            self.source.as_mut(),
            wait,
            &mut self.done,
            &mut self.rebalance,
            |message| batch.push(message),
        );
        batch.decode(&self.decoder);
        self.take_batch(&batch, engine, out, at);
        self.spare.push(batch);
        self.messages += read as u64;
        // What was read before a failure is taken too, as a message at a time would have.
        self.failed(failed).map(|()| read)
    }

    /// [`StreamInput::read_batch`] with a decoding thread.
    fn read_ahead(
        &mut self,
        ahead: &DecodeAhead,
        engine: &mut Engine,
        out: &mut Vec<Record>,
        at: ReadAt,
        wait: Duration,
    ) -> Result<usize, PipelineError> {
        let mut read = 0;
        let mut in_flight = false;
        let mut failed = None;
        for round in 0..ROUNDS_AHEAD {
            let mut batch = self.spare.pop().unwrap_or_default();
            batch.clear();
            let wait = if round == 0 { wait } else { Duration::ZERO };
            let (n, error) = poll_batch(
                self.source.as_mut(),
                wait,
                &mut self.done,
                &mut self.rebalance,
                |message| batch.push(message),
            );
            read += n;
            failed = error;
            // A full batch: the source likely has more at once, worth decoding ahead.
            let more = n == BATCH && round + 1 < ROUNDS_AHEAD;
            if batch.is_empty() {
                self.spare.push(batch);
            } else if in_flight || more {
                ahead.send(batch).map_err(|_| self.decoder_stopped())?;
                if in_flight {
                    self.take_decoded(ahead, engine, out, at)?;
                }
                in_flight = true;
            } else {
                batch.decode(&self.decoder);
                self.take_batch(&batch, engine, out, at);
                self.spare.push(batch);
            }
            if !more {
                break;
            }
        }
        if in_flight {
            self.take_decoded(ahead, engine, out, at)?;
        }
        self.messages += read as u64;
        self.failed(failed).map(|()| read)
    }

    /// Waits for the batch the decoding thread has, processes it and keeps it for reuse.
    fn take_decoded(
        &mut self,
        ahead: &DecodeAhead,
        engine: &mut Engine,
        out: &mut Vec<Record>,
        at: ReadAt,
    ) -> Result<(), PipelineError> {
        let decoded = ahead.recv().map_err(|_| self.decoder_stopped())?;
        self.take_batch(&decoded, engine, out, at);
        self.spare.push(decoded);
        Ok(())
    }

    /// Processes a decoded batch, in the order read.
    fn take_batch(
        &mut self,
        batch: &MessageBatch,
        engine: &mut Engine,
        out: &mut Vec<Record>,
        at: ReadAt,
    ) {
        for message in batch.iter() {
            let raw = &message.raw;
            let refused = match message.event {
                Ok(event) => self.take(engine, raw, &event, at, out).err(),
                Err(reason) => Some(reason.to_owned()),
            };
            if let Some(reason) = refused {
                self.dead_letters += 1;
                engine.reject(Record::DeadLetter(DeadLetterRecord::new(
                    self.name.clone(),
                    Arc::from(raw.source),
                    raw.partition,
                    raw.offset,
                    reason,
                    raw.payload,
                )));
            }
        }
    }

    /// Hands one event to its task in the engine; the error is a dead letter's reason (stamped
    /// too far ahead, a partition this instance does not own, or refused by the engine).
    fn take(
        &self,
        engine: &mut Engine,
        message: &RawMessage<'_>,
        event: &Event<'_>,
        at: ReadAt,
        out: &mut Vec<Record>,
    ) -> Result<(), String> {
        self.watermark
            .check_ahead(event.ts, at.clock)
            .map_err(|ahead| ahead.to_string())?;
        let (task, split) = match &self.tasks {
            None => (self.index, message.split),
            // A partition's task is a stream of one split, numbered 0 wherever it runs.
            Some(tasks) => match tasks.task_of(message.split) {
                Some(task) => (task, 0),
                None => {
                    return Err(format!(
                        "partition {} of {:?} is not assigned to this instance",
                        message.partition, message.source
                    ))
                }
            },
        };
        let origin = Origin {
            source: message.source,
            split,
            partition: message.partition,
            offset: message.offset,
        };
        engine
            .process(task, event, origin, at.now, out)
            .map_err(|refused| refused.to_string())
    }

    fn failed(&self, failed: Option<SourceError>) -> Result<(), PipelineError> {
        match failed {
            Some(source) => Err(PipelineError::Source {
                stream: self.name.to_string(),
                source,
            }),
            None => Ok(()),
        }
    }

    fn decoder_stopped(&self) -> PipelineError {
        PipelineError::DecoderStopped {
            stream: self.name.to_string(),
        }
    }

    fn counters(&self, engine: &Engine) -> StreamCounters {
        match &self.tasks {
            Some(tasks) => tasks.counters(engine),
            None => engine.counters(self.index).unwrap_or_default(),
        }
    }

    fn watermark(&self, engine: &Engine) -> Option<i64> {
        match &self.tasks {
            Some(tasks) => tasks.watermark(engine),
            None => engine.watermark(self.index),
        }
    }

    /// What the run did with this stream.
    pub fn summary(&self, engine: &Engine) -> StreamSummary {
        let counters = self.counters(engine);
        StreamSummary {
            name: self.name.to_string(),
            messages: self.messages,
            accepted: counters.accepted,
            late: counters.late,
            duplicates: counters.duplicates,
            dead_letters: self.dead_letters,
        }
    }

    /// Where the stream is, for the status page.
    pub fn progress(&self, engine: &Engine) -> StreamProgress {
        let counters = self.counters(engine);
        StreamProgress {
            name: self.name.to_string(),
            watermark: self
                .watermark(engine)
                .filter(|&w| w != i64::MIN && w != i64::MAX),
            messages: self.messages,
            accepted: counters.accepted,
            late: counters.late,
            duplicates: counters.duplicates,
            dead_letters: self.dead_letters,
            partitions: self.partition_progress(engine),
            source_error: self.source.trouble(),
            source_state: self.source.state(),
        }
    }

    /// The engine's view of each split (watermark, idle) joined with the source's (offset, lag).
    fn partition_progress(&self, engine: &Engine) -> Vec<PartitionProgress> {
        let mut partitions: Vec<PartitionProgress> = self
            .source
            .split_status()
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
        let watermarks = match &self.tasks {
            Some(tasks) => tasks.partition_watermarks(engine),
            None => engine.partition_watermarks(self.index),
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
}

/// Polls `source` for up to [`BATCH`] messages, handing each to `take`, waiting at most `wait`
/// for the first. Returns how many were read, and the error that ended the read early (what was
/// read before it is taken all the same). Marks the source `done` at its end and keeps a
/// rebalance it announces for the run loop.
fn poll_batch(
    source: &mut dyn Source,
    wait: Duration,
    done: &mut bool,
    rebalance: &mut Option<Rebalance>,
    mut take: impl FnMut(&RawMessage<'_>),
) -> (usize, Option<SourceError>) {
    for read in 0..BATCH {
        let timeout = if read == 0 { wait } else { Duration::ZERO };
        match source.poll_message(timeout) {
            Ok(Polled::Message(message)) => take(&message),
            Ok(Polled::Idle) => return (read, None),
            Ok(Polled::End) => {
                debug!("Source exhausted.");
                *done = true;
                return (read, None);
            }
            Ok(Polled::Rebalance(change)) => {
                *rebalance = Some(change);
                return (read, None);
            }
            Err(failed) => return (read, Some(failed)),
        }
    }
    (BATCH, None)
}
