//! Sinks: where records go. Every sink receives every record kind and writes the same logical
//! records (field names of `record.rs`).

pub(crate) mod console;
pub(crate) mod db;
mod kafka;
mod ndjson;
mod parquet;

pub use console::{ConsoleConfig, ConsoleSink};
pub use db::{DbConfig, DbError, DbSink};
pub use kafka::{KafkaSink, KafkaSinkConfig};
pub use ndjson::{NdjsonConfig, NdjsonSink};
pub use parquet::{ParquetConfig, ParquetError, ParquetSink};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::checkpoint::Checkpoint;
use crate::config::Invalid;
use crate::record::Record;

/// One `[[sinks]]` table, told apart by `kind` (see `config::tagged`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkConfig {
    /// One NDJSON file per record kind in a directory.
    Ndjson(NdjsonConfig),
    /// SQLite (`sqlite://PATH`) or PostgreSQL (`postgres://...`).
    Db(DbConfig),
    /// Records as JSON to Kafka topics, one per record kind.
    Kafka(KafkaSinkConfig),
    /// Closed windows and alerts as readable lines on standard output.
    Console(ConsoleConfig),
    /// Parquet files partitioned by kind, date and hour on an object store.
    Parquet(ParquetConfig),
}

impl SinkConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        match self {
            SinkConfig::Ndjson(_) | SinkConfig::Console(_) => Ok(()),
            SinkConfig::Db(db) => db.validate(),
            SinkConfig::Kafka(kafka) => kafka.validate(),
            SinkConfig::Parquet(parquet) => parquet.validate(),
        }
    }

    /// Opens the sink; `pipeline` names this pipeline's files.
    pub fn build(&self, pipeline: &str) -> Result<Box<dyn Sink>, SinkError> {
        Ok(match self {
            SinkConfig::Ndjson(ndjson) => Box::new(NdjsonSink::create(&ndjson.path)?),
            SinkConfig::Console(_) => Box::new(ConsoleSink::new()),
            SinkConfig::Parquet(parquet) => Box::new(ParquetSink::create(parquet, pipeline)?),
            SinkConfig::Kafka(kafka) => Box::new(KafkaSink::create(kafka)?),
            SinkConfig::Db(db) => Box::new(DbSink::connect(&db.url)?),
        })
    }
}

#[derive(Debug, Error)]
pub enum SinkError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("parquet: {0}")]
    Parquet(String),
}

/// One stream's progress, as the status page shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamProgress {
    pub name: String,
    /// `None` before the first event.
    pub watermark: Option<i64>,
    pub messages: u64,
    pub accepted: u64,
    pub late: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
    /// Per source partition, in split order.
    pub partitions: Vec<PartitionProgress>,
    /// Why the source cannot read right now (e.g. every broker down); `None` while it reads.
    pub source_error: Option<String>,
    /// What the source is doing when that is more than reading, e.g. which partitions a
    /// consumer group gave this instance (see [`crate::source::Source::state`]).
    pub source_state: Option<String>,
}

impl StreamProgress {
    /// Consumer lag summed over the partitions that report one.
    pub fn total_lag(&self) -> Option<u64> {
        self.partitions
            .iter()
            .filter_map(|p| p.lag)
            .reduce(|a, b| a + b)
    }
}

/// One source partition (a Kafka topic-partition, a file) as the status page shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PartitionProgress {
    /// The id the engine tracks the partition's watermark by.
    pub split: u32,
    /// Topic or file; empty when the source has no name for it (socket, demo).
    pub source: String,
    pub partition: u32,
    /// Next offset (Kafka) or line (file) to read; `None` when the source has no positions.
    pub next_offset: Option<u64>,
    /// Messages between the next offset and the newest the broker has reported (Kafka only).
    pub lag: Option<u64>,
    /// This partition's contribution: max event time − lateness; `None` before its first event.
    pub watermark: Option<i64>,
    /// Silent for `idle_timeout`: not holding the stream's watermark back.
    pub idle: bool,
}

pub trait Sink: Send {
    /// Called once before the first write. `resume` is the epoch of the checkpoint the run
    /// continues from (`None`: a fresh start), so file sinks know whether to start over or to
    /// continue, and what a crashed run wrote after that checkpoint.
    fn begin(&mut self, _resume: Option<u64>) -> Result<(), SinkError> {
        Ok(())
    }

    fn write(&mut self, records: &[Record]) -> Result<(), SinkError>;
    /// Makes everything written so far durable (or at least handed to the OS). It belongs to
    /// checkpoint `epoch`; epochs only grow (a failed checkpoint's epoch is skipped, not reused),
    /// which file sinks rely on to name their files.
    fn flush(&mut self, epoch: u64) -> Result<(), SinkError>;

    /// Stores a checkpoint atomically; `false` when this sink cannot hold checkpoints.
    fn save_checkpoint(
        &mut self,
        _pipeline: &str,
        _checkpoint: &Checkpoint,
    ) -> Result<bool, SinkError> {
        Ok(false)
    }

    /// The pipeline's progress after each round of reading (status pages, metrics).
    fn on_progress(&mut self, _progress: &[StreamProgress]) {}

    /// The pipeline stopped because a sink failed (`Some(reason)`) or resumed (`None`).
    fn on_paused(&mut self, _reason: Option<&str>) {}

    /// The pipeline's last checkpoint, if this sink holds one.
    fn load_checkpoint(&mut self, _pipeline: &str) -> Result<Option<Checkpoint>, SinkError> {
        Ok(None)
    }
}

/// Builds the sinks a config lists; `pipeline` names this pipeline's files and checkpoint.
pub fn build(configs: &[SinkConfig], pipeline: &str) -> Result<Vec<Box<dyn Sink>>, SinkError> {
    configs
        .iter()
        .map(|config| config.build(pipeline))
        .collect()
}
