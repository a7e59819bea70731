//! Sinks: where records go. Every sink receives every record kind and writes the same logical
//! records (field names of `record.rs`).

mod console;
mod db;
mod kafka;
mod ndjson;

pub use console::ConsoleSink;
pub use db::{DbError, DbSink};
pub use kafka::KafkaSink;
pub use ndjson::NdjsonSink;

use thiserror::Error;

use crate::checkpoint::Checkpoint;
use crate::config::SinkConfig;
use crate::record::Record;

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
}

pub trait Sink {
    /// Called once before the first write: `resumed` says the run continues from a checkpoint,
    /// so a file sink appends instead of starting its files over.
    fn begin(&mut self, _resumed: bool) -> Result<(), SinkError> {
        Ok(())
    }

    fn write(&mut self, records: &[Record]) -> Result<(), SinkError>;
    /// Makes everything written so far durable (or at least handed to the OS).
    fn flush(&mut self) -> Result<(), SinkError>;

    /// Stores a checkpoint atomically; `false` when this sink cannot hold checkpoints.
    fn save_checkpoint(
        &mut self,
        _pipeline: &str,
        _checkpoint: &Checkpoint,
    ) -> Result<bool, SinkError> {
        Ok(false)
    }

    /// The pipeline's last checkpoint, if this sink holds one.
    fn load_checkpoint(&mut self, _pipeline: &str) -> Result<Option<Checkpoint>, SinkError> {
        Ok(None)
    }
}

/// Builds the sinks a config lists.
pub fn build(configs: &[SinkConfig]) -> Result<Vec<Box<dyn Sink>>, SinkError> {
    configs
        .iter()
        .map(|config| match config {
            SinkConfig::Ndjson { path } => {
                NdjsonSink::create(path).map(|s| Box::new(s) as Box<dyn Sink>)
            }
            SinkConfig::Console => Ok(Box::new(ConsoleSink::new()) as Box<dyn Sink>),
            SinkConfig::Kafka {
                brokers,
                topics,
                properties,
            } => KafkaSink::create(brokers, topics.clone(), properties)
                .map(|s| Box::new(s) as Box<dyn Sink>),
            SinkConfig::Db { url } => DbSink::connect(url)
                .map(|s| Box::new(s) as Box<dyn Sink>)
                .map_err(SinkError::from),
        })
        .collect()
}
