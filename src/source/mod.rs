//! Sources: where raw messages come from. Each yields payload bytes with their position
//! (source name, partition, offset); decoding them is the pipeline's job, not the source's.

mod demo;
mod file;
mod interface;
mod kafka;
mod socket;

pub use self::interface::{Polled, RawMessage, Rebalance, Source, SourceError, SplitRef};
pub use demo::{DemoConfig, DemoSource};
pub use file::{FileConfig, FileSource};
pub use kafka::{Assignment, KafkaSource, KafkaSourceConfig, StartFrom};
pub use socket::{SocketConfig, SocketSource};

use serde::{Deserialize, Serialize};

use crate::checkpoint::SplitPosition;
use crate::types::Invalid;

/// A stream's `source` table, told apart by `kind` (see `config::tagged`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceConfig {
    /// A `.ndjson`/`.jsonl` file, or every such file of a directory in name order.
    File(FileConfig),
    Kafka(KafkaSourceConfig),
    /// Newline-delimited JSON over TCP.
    Socket(SocketConfig),
    /// The built-in generator.
    Demo(DemoConfig),
}

impl SourceConfig {
    /// The longest message the source hands on as it is, when it has a limit: a longer one
    /// (cut to one byte more) is refused by the decoder as too long.
    pub fn max_message_bytes(&self) -> Option<usize> {
        match self {
            SourceConfig::Socket(_) => Some(socket::MAX_LINE),
            _ => None,
        }
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        match self {
            SourceConfig::File(_) => Ok(()),
            SourceConfig::Socket(socket) => socket.validate(),
            SourceConfig::Kafka(kafka) => kafka.validate(),
            SourceConfig::Demo(demo) => demo.validate(),
        }
    }

    /// Fills in what depends on the stream: a Kafka consumer group named after it.
    pub(crate) fn resolve(&mut self, stream: &str) {
        if let SourceConfig::Kafka(kafka) = self {
            kafka
                .group
                .get_or_insert_with(|| format!("tidewatch-{stream}"));
        }
    }

    /// Whether a consumer group assigns this source's partitions.
    pub fn is_group_assigned(&self) -> bool {
        matches!(self, SourceConfig::Kafka(k) if k.assignment == Assignment::Group)
    }

    /// Opens the source at `resume` (a checkpoint's positions), to be read to its end or,
    /// `following`, until the pipeline stops.
    pub fn open(
        &self,
        resume: &[SplitPosition],
        following: bool,
    ) -> Result<Box<dyn Source>, SourceError> {
        Ok(match self {
            SourceConfig::File(file) => {
                let source = FileSource::open(&file.path, resume.first().cloned())?;
                Box::new(if following { source.follow() } else { source })
            }
            SourceConfig::Kafka(kafka) if following => {
                Box::new(KafkaSource::open_following(kafka, resume)?)
            }
            SourceConfig::Kafka(kafka) => Box::new(KafkaSource::open_to_end(kafka, resume)?),
            SourceConfig::Socket(_) | SourceConfig::Demo(_) if !following => {
                return Err(SourceError::NeverEnds)
            }
            SourceConfig::Socket(socket) => Box::new(SocketSource::bind(socket)?),
            SourceConfig::Demo(demo) => Box::new(DemoSource::new(demo)),
        })
    }
}
