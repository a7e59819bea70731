//! Checkpoints in the database's `checkpoints` table, one row per name: a pipeline's, and one
//! per partition of a group-assigned stream.

use std::sync::Arc;

use sqlx::Row;

use super::Database;
use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore};

/// The checkpoint store of a database, used from the (synchronous) pipeline thread.
pub struct DbCheckpoints {
    runtime: Arc<tokio::runtime::Runtime>,
    db: Database,
}

impl DbCheckpoints {
    pub fn new(runtime: Arc<tokio::runtime::Runtime>, db: Database) -> Self {
        DbCheckpoints { runtime, db }
    }
}

impl CheckpointStore for DbCheckpoints {
    fn save(&mut self, name: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let positions = serde_json::to_string(&checkpoint.positions).map_err(|source| {
            CheckpointError::Positions {
                name: name.to_owned(),
                source,
            }
        })?;
        let query = sqlx::query(
            "INSERT INTO checkpoints (pipeline, fingerprint, engine, positions, epoch, written_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (pipeline) DO UPDATE SET \
             fingerprint = excluded.fingerprint, engine = excluded.engine, \
             positions = excluded.positions, epoch = excluded.epoch, \
             written_at = excluded.written_at",
        )
        .bind(name.to_owned())
        .bind(checkpoint.fingerprint.clone())
        // Borrowed: sqlx copies an owned `Vec` when it encodes it, and the engine state can
        // be hundreds of megabytes (SQLite and PostgreSQL's drivers make their own copy).
        .bind(checkpoint.engine.as_deref())
        .bind(positions)
        .bind(checkpoint.epoch as i64)
        .bind(checkpoint.written_at);
        self.runtime
            .block_on(query.execute(self.db.pool()))
            .map_err(|source| self.db.error(source))?;
        Ok(())
    }

    fn load(&mut self, name: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        let query = sqlx::query(
            "SELECT fingerprint, engine, positions, epoch, written_at FROM checkpoints \
             WHERE pipeline = $1",
        )
        .bind(name.to_owned());
        let row = self
            .runtime
            .block_on(query.fetch_optional(self.db.pool()))
            .map_err(|source| self.db.error(source))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let column = |source| self.db.error(source);
        let positions: String = row.try_get(2).map_err(column)?;
        Ok(Some(Checkpoint {
            fingerprint: row.try_get(0).map_err(column)?,
            engine: row.try_get(1).map_err(column)?,
            positions: serde_json::from_str(&positions).map_err(|source| {
                CheckpointError::Positions {
                    name: name.to_owned(),
                    source,
                }
            })?,
            epoch: row.try_get::<i64, _>(3).map_err(column)?.max(0) as u64,
            written_at: row.try_get(4).map_err(column)?,
        }))
    }
}
