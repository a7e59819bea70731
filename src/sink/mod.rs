//! Sinks: where records go, each configured by its own table and built by [`SinkConfig::build`].

mod background;
pub(crate) mod console;
pub(crate) mod db;
mod kafka;
mod lake_store;
mod ndjson;
mod parquet;

pub use crate::db::DbError;
pub use console::{ConsoleConfig, ConsoleSink};
pub use db::{DbConfig, DbSink};
pub use kafka::{KafkaSink, KafkaSinkConfig, KafkaSinkError};
pub use ndjson::{NdjsonConfig, NdjsonSink};
pub use parquet::{ParquetConfig, ParquetError, ParquetSink};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::record::Record;
use crate::types::Invalid;

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
    /// The `kind` the config names it by.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Ndjson(_) => "ndjson",
            SinkConfig::Db(_) => "db",
            SinkConfig::Kafka(_) => "kafka",
            SinkConfig::Console(_) => "console",
            SinkConfig::Parquet(_) => "parquet",
        }
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        match self {
            SinkConfig::Ndjson(_) | SinkConfig::Console(_) => Ok(()),
            SinkConfig::Db(db) => db.validate(),
            SinkConfig::Kafka(kafka) => kafka.validate(),
            SinkConfig::Parquet(parquet) => parquet.validate(),
        }
    }

    /// Opens the sink; `pipeline` names this pipeline's files. (The pipeline opens `db` sinks
    /// itself, to take the first one's checkpoint store: see `pipeline::Outputs`.)
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
    #[error("cannot write {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("kafka sink")]
    Kafka(#[from] KafkaSinkError),
    #[error("parquet sink")]
    Parquet(#[from] ParquetError),
}

/// Where records go. Every sink receives every record kind and writes the same logical records
/// (the fields of `record.rs`); what it makes of a replay (upsert, append) is its own.
pub trait Sink: Send {
    /// Called once before the first write. `resume` is the epoch of the checkpoint the run
    /// continues from (`None`: a fresh start), so file sinks know whether to start over or to
    /// continue, and what a crashed run wrote after that checkpoint.
    fn begin(&mut self, _resume: Option<u64>) -> Result<(), SinkError> {
        Ok(())
    }

    fn write(&mut self, records: &[Record]) -> Result<(), SinkError>;

    /// The pipeline went back to checkpoint `resume` after a failure (`None`: it has none) and
    /// will write again everything that followed it. Drop what is buffered and not durable, and
    /// undo what can be undone; sinks that upsert make the rest of the replay harmless. By
    /// default, what `begin` does.
    fn rewind(&mut self, resume: Option<u64>) -> Result<(), SinkError> {
        self.begin(resume)
    }

    /// Makes everything written so far durable (or at least handed to the OS). It belongs to
    /// checkpoint `epoch`. Epochs grow, except that after a failure the pipeline goes back to
    /// its last stored checkpoint and numbers on from there, having first called
    /// [`Sink::rewind`] (file sinks delete what later epochs wrote, so a name is never reused
    /// for other contents).
    fn flush(&mut self, epoch: u64) -> Result<(), SinkError>;
}
