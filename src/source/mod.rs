//! Sources: where raw messages come from. Each yields payload bytes with their position
//! (source name, partition, offset); decoding them is the pipeline's job, not the source's.

mod file;

pub use file::FileSource;

use thiserror::Error;

/// One raw message, borrowed from the source's buffer until the next call.
#[derive(Debug, Clone, Copy)]
pub struct RawMessage<'a> {
    /// Where it came from: a file path, later a topic.
    pub source: &'a str,
    pub partition: u32,
    /// Position within the source: the 1-based line number for files, the offset for Kafka.
    pub offset: u64,
    pub payload: &'a [u8],
}

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no .ndjson or .jsonl files found")]
    Empty { path: String },
}

/// A source read to its end (`run --once`).
pub trait Source {
    /// The next message, or `None` at the end of the input.
    fn next_message(&mut self) -> Result<Option<RawMessage<'_>>, SourceError>;
}
