//! Checkpoints: the engine state together with the source positions it reflects, written
//! atomically to the store after the sinks have flushed everything derived from those positions.
//! A checkpoint writes what changed since the one before (see `engine::changelog`): the store
//! adds it to what it holds.
//!
//! On start, a checkpoint's positions win over the consumer group's committed offsets, and its
//! engine state replaces a fresh engine, so a run killed at any point and restarted produces the
//! same rows as one that never stopped: what was written after the checkpoint is written again,
//! and every sink upserts on natural keys.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::engine::changelog::{GroupImage, LogSegment};
use crate::engine::{SnapshotError, StateDelta, StoredState};

/// Where a source split is: the next message to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitPosition {
    /// File path or topic.
    pub source: String,
    pub partition: u32,
    /// Next offset (Kafka) or next line number (files) to read.
    pub next_offset: u64,
}

/// One pipeline's checkpoint. Stores read back `Checkpoint` (the engine state they hold) and
/// are handed [`Outgoing`] (what changed since the checkpoint before).
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint<State = StoredState> {
    /// The checkpoint belongs to this pipeline shape (see `Config::state_fingerprint`).
    pub fingerprint: String,
    /// The engine state; `None` once a batch run has finished and closed every window: the
    /// next run starts a fresh engine from the positions.
    pub engine: Option<State>,
    /// Positions per stream, in the config's stream order.
    pub positions: Vec<Vec<SplitPosition>>,
    /// Counts the checkpoints of this pipeline: file sinks name their files by it.
    pub epoch: u64,
    /// Processing time it was written at (epoch ms), for the status page.
    pub written_at: i64,
}

/// A checkpoint on its way to a store, holding what changed in the engine state.
pub type Outgoing<'a> = Checkpoint<&'a StateDelta>;

impl Checkpoint<StateDelta> {
    /// The checkpoint as handed to a store.
    pub fn outgoing(&self) -> Outgoing<'_> {
        Checkpoint {
            fingerprint: self.fingerprint.clone(),
            engine: self.engine.as_ref(),
            positions: self.positions.clone(),
            epoch: self.epoch,
            written_at: self.written_at,
        }
    }
}

impl Outgoing<'_> {
    /// The checkpoint as a store reads it back after adding it to `before` (the one stored):
    /// for stores that keep checkpoints whole, such as tests' in-memory ones.
    pub fn to_stored(&self, before: Option<StoredState>) -> Checkpoint {
        Checkpoint {
            fingerprint: self.fingerprint.clone(),
            engine: self.engine.map(|delta| delta.apply(before)),
            positions: self.positions.clone(),
            epoch: self.epoch,
            written_at: self.written_at,
        }
    }
}

/// Where checkpoints are kept, by name (the `db` sink's database: its `checkpoints` table).
pub trait CheckpointStore: Send {
    /// The checkpoint stored under `name`, if there is one.
    fn load(&mut self, name: &str) -> Result<Option<Checkpoint>, CheckpointError>;
    /// Stores `checkpoint` under `name` atomically, adding its engine state (with what was
    /// staged for it) to the stored one, or dropping that, without one; returns the size of
    /// the engine state written.
    fn save(&mut self, name: &str, checkpoint: &Outgoing<'_>) -> Result<u64, CheckpointError>;
    /// Starts writing the next checkpoint of `name` in parts ([`Self::stage`], then
    /// [`Self::save_staged`]), dropping what one that never got that far had staged.
    fn begin(&mut self, name: &str) -> Result<(), CheckpointError>;
    /// Writes part of the next checkpoint of `name`'s state, after [`Self::begin`]: it is
    /// stored once that checkpoint is saved, and dropped if it never is.
    fn stage(
        &mut self,
        name: &str,
        images: &[GroupImage],
        logs: &[LogSegment],
    ) -> Result<(), CheckpointError>;
    /// [`Self::save`] for a checkpoint begun with [`Self::begin`]: what was staged for it
    /// becomes part of the stored state with the rest.
    fn save_staged(
        &mut self,
        name: &str,
        checkpoint: &Outgoing<'_>,
    ) -> Result<u64, CheckpointError>;
    /// The names of the checkpoints stored under names that start with `prefix`, sorted.
    fn names(&mut self, prefix: &str) -> Result<Vec<String>, CheckpointError>;
}

#[derive(Debug, Error)]
pub enum CheckpointError {
    /// The store failed (its own error: a database's, for the `db` store).
    #[error(transparent)]
    Store(Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("checkpoint {name:?}: a part staged before the checkpoint was begun")]
    NotBegun { name: String },
    #[error("checkpoint {name:?}: its source positions cannot be stored or read")]
    Positions {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}
