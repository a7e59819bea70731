//! What every sink is: the trait the pipeline writes through, and its error.

use thiserror::Error;

use crate::db::DbError;
use crate::record::Record;

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
    /// A sink's own failure (the Kafka sink's, the Parquet sink's), named by its kind.
    #[error("{kind} sink")]
    Failed {
        kind: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
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
