//! One stream's input: its source, its decoder, and (under a consumer group) its partition
//! tasks. Reads batches of messages through decoding into the engine, and says how far along
//! the stream is.

use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use super::progress::{PartitionProgress, StreamProgress};
use super::tasks::{GroupBatch, PartitionTasks};
use super::{PipelineError, StreamSummary};
use crate::checkpoint::SplitPosition;
use crate::config::Config;
use crate::engine::time::PartitionWatermark;
use crate::engine::{Engine, Origin, StreamCounters};
use crate::event::Decoder;
use crate::record::{DeadLetterRecord, Record};
use crate::source::{Polled, Rebalance, Source, SourceError};

/// Messages read from one source before the pipeline turns to the next one and delivers.
pub const BATCH: usize = 1024;

pub struct StreamInput {
    /// The stream's index in the config (and the engine).
    pub index: usize,
    pub name: Arc<str>,
    decoder: Decoder,
    pub source: Box<dyn Source>,
    /// The source has ended (batch runs).
    pub done: bool,
    dead_letters: u64,
    messages: u64,
    /// Under a consumer group: the state per partition (the main engine holds none for it).
    pub tasks: Option<PartitionTasks>,
    /// Under a consumer group: the messages of the batch being read, for the tasks.
    group_batch: GroupBatch,
    /// A rebalance the source announced, for the run loop to carry out.
    pub rebalance: Option<Rebalance>,
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
        for split in source.splits() {
            engine.assign_split(index, split, now);
        }
        Ok(StreamInput {
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
            group_batch: GroupBatch::default(),
        })
    }

    /// A source error, naming this stream.
    pub fn error(&self, source: SourceError) -> PipelineError {
        PipelineError::Source {
            stream: self.name.to_string(),
            source,
        }
    }

    /// Reads up to [`BATCH`] messages through decoding into the engine (or the partition
    /// tasks, which take them on their threads once the batch is read), waiting at most
    /// `wait` for the first; returns how many were read. Whatever cannot become an event
    /// becomes a dead letter with the reason.
    pub fn read_batch(
        &mut self,
        engine: &mut Engine,
        out: &mut Vec<Record>,
        now: i64,
        wait: Duration,
    ) -> Result<usize, PipelineError> {
        let mut read = 0;
        let mut failed = None;
        for i in 0..BATCH {
            let timeout = if i == 0 { wait } else { Duration::ZERO };
            let message = match self.source.poll_message(timeout) {
                Ok(Polled::Message(message)) => message,
                Ok(Polled::Idle) => break,
                Ok(Polled::End) => {
                    debug!("Source exhausted.");
                    self.done = true;
                    break;
                }
                Ok(Polled::Rebalance(change)) => {
                    self.rebalance = Some(change);
                    break;
                }
                Err(source) => {
                    failed = Some(source);
                    break;
                }
            };
            read += 1;
            self.messages += 1;
            if self.tasks.is_some() {
                self.group_batch.push(&message);
                continue;
            }
            let origin = Origin {
                source: message.source,
                split: message.split,
                partition: message.partition,
                offset: message.offset,
            };
            let rejected = match self.decoder.decode(message.payload) {
                Ok(event) => engine
                    .process(self.index, &event, origin, now, out)
                    .err()
                    .map(|rejected| rejected.to_string()),
                Err(bad) => Some(bad.to_string()),
            };
            if let Some(reason) = rejected {
                self.dead_letters += 1;
                out.push(Record::DeadLetter(DeadLetterRecord::new(
                    self.name.clone(),
                    Arc::from(message.source),
                    message.partition,
                    message.offset,
                    reason,
                    message.payload,
                )));
            }
        }
        // What was read before a failure is taken too, as a message at a time would have.
        if let Some(tasks) = &mut self.tasks {
            self.dead_letters +=
                tasks.process_batch(&self.decoder, &mut self.group_batch, now, out);
        }
        match failed {
            Some(source) => Err(PipelineError::Source {
                stream: self.name.to_string(),
                source,
            }),
            None => Ok(read),
        }
    }

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
            Some(tasks) => tasks.partition_watermarks(),
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
