//! Sinks: where records go, each configured by its own table and built by [`SinkConfig::build`].

mod background;
pub(crate) mod console;
pub(crate) mod db;
mod interface;
mod kafka;
mod lake_store;
mod ndjson;
mod parquet;

pub use self::interface::{Sink, SinkError};
pub use console::{ConsoleConfig, ConsoleSink};
pub use db::{DbConfig, DbSink};
pub use kafka::{KafkaSink, KafkaSinkConfig};
pub use ndjson::{NdjsonConfig, NdjsonSink};
pub use parquet::{ParquetConfig, ParquetSink};

use serde::{Deserialize, Serialize};

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
