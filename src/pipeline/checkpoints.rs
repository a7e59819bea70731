//! The pipeline's side of checkpoints: which store it uses, and which checkpoints it accepts.

use super::PipelineError;
use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore, Outgoing};
use crate::config::Config;
use crate::engine::plan::EnginePlan;
use crate::engine::Engine;

/// The checkpoint store of a pipeline, if it has one (the first `db` sink's database).
pub struct Checkpoints {
    store: Option<Box<dyn CheckpointStore>>,
}

impl Checkpoints {
    pub fn new(store: Option<Box<dyn CheckpointStore>>) -> Self {
        Checkpoints { store }
    }

    /// The checkpoint stored under `name`; refused when a pipeline of another shape
    /// (`fingerprint`) wrote it.
    pub fn load(
        &mut self,
        name: &str,
        fingerprint: &str,
    ) -> Result<Option<Checkpoint>, PipelineError> {
        let Some(store) = self.store.as_mut() else {
            return Ok(None);
        };
        match store.load(name)? {
            Some(found) if found.fingerprint != fingerprint => {
                Err(PipelineError::ForeignCheckpoint {
                    name: name.to_owned(),
                    found: found.fingerprint,
                    expected: fingerprint.to_owned(),
                })
            }
            found => Ok(found),
        }
    }

    /// Stores `checkpoint` under `name`; the size of the engine state written, `None` when
    /// there is no store to keep it.
    pub fn save(
        &mut self,
        name: &str,
        checkpoint: &Outgoing<'_>,
    ) -> Result<Option<u64>, PipelineError> {
        let Some(store) = self.store.as_mut() else {
            return Ok(None);
        };
        match store.save(name, checkpoint) {
            Ok(bytes) => Ok(Some(bytes)),
            // An engine that cannot be encoded will not be on the next try either.
            Err(CheckpointError::Snapshot(snapshot)) => Err(PipelineError::Snapshot(snapshot)),
            Err(other) => Err(other.into()),
        }
    }
}

/// The engine a checkpoint holds, or a fresh one for `config` when it holds none (a finished
/// batch run keeps positions only). It keeps its key groups' logs for the next checkpoints.
pub fn engine_from(checkpoint: &Checkpoint, config: &Config) -> Result<Engine, PipelineError> {
    let plan = engine_plan(config);
    match &checkpoint.engine {
        Some(state) => Ok(Engine::restore_plan(plan, state)?),
        None => Ok(Engine::from_plan(plan)),
    }
}

/// The plan of the engine of a pipeline with a checkpoint store: its key groups keep logs.
pub fn engine_plan(config: &Config) -> EnginePlan {
    EnginePlan::from_config(config).with_changelog(true)
}
