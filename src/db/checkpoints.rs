//! Checkpoints in the database: one `checkpoints` row per name (a pipeline's, and one per
//! partition of a group-assigned stream) with the positions and the engine state's head, and
//! the state itself as key groups' images (`state_images`, the newest per group) and log
//! segments (`state_logs`): a checkpoint adds its segments and images, drops the segments its
//! images made useless, and replaces the row (see `engine::changelog`).
//!
//! A large checkpoint writes its images and segments in several transactions (staged) before
//! the one that saves its row, so that no single write holds the pipeline, or SQLite's one
//! writer, for long. Each checkpoint of a name numbers its rows (`seq`) one above the last
//! saved checkpoint's (`checkpoints.state_seq`); a load reads only rows numbered up to that,
//! and a write begins by dropping the rows of one that never reached its save.

use std::collections::HashMap;

use sqlx::{Any, Row, Transaction};
use tokio::runtime::Runtime;

use super::database::Database;
use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore, Outgoing};
use crate::engine::changelog::{GroupImage, LogSegment};
use crate::engine::{StateDelta, StoredState};

/// The checkpoint store of a database, used from the (synchronous) pipeline thread.
pub struct DbCheckpoints {
    runtime: &'static Runtime,
    db: Database,
    /// The names whose checkpoint is being written in parts, and the `seq` of its rows.
    begun: HashMap<String, i64>,
}

impl DbCheckpoints {
    pub fn new(runtime: &'static Runtime, db: Database) -> Self {
        DbCheckpoints {
            runtime,
            db,
            begun: HashMap::new(),
        }
    }

    fn positions_error(name: &str) -> impl FnOnce(serde_json::Error) -> CheckpointError + '_ {
        move |source| CheckpointError::Positions {
            name: name.to_owned(),
            source,
        }
    }

    fn failed(&self) -> impl Fn(sqlx::Error) -> CheckpointError + '_ {
        |source| CheckpointError::Store(Box::new(self.db.error(source)))
    }

    /// Saves `checkpoint` in one transaction: with the rows numbered `staged` when a write
    /// begun before staged some, else as a write of its own.
    fn write(
        &mut self,
        name: &str,
        checkpoint: &Outgoing<'_>,
        staged: Option<i64>,
    ) -> Result<u64, CheckpointError> {
        let positions =
            serde_json::to_string(&checkpoint.positions).map_err(Self::positions_error(name))?;
        // A transaction dropped on an early return hands its connection back to the pool on
        // the runtime, outside `block_on` too.
        let _context = self.runtime.enter();
        let saved = self.runtime.block_on(async {
            let mut tx = self.db.begin_write().await?;
            if tx.backend_name() == "PostgreSQL" {
                // Saves of one name take turns: instances of a group-assigned pipeline share
                // its name and may save its row at the same moment.
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            let seq = match staged {
                Some(seq) => seq,
                None => begin(&mut tx, name).await?,
            };
            let head = match checkpoint.engine {
                Some(delta) => {
                    add_state(&mut tx, name, seq, delta).await?;
                    Some(delta.head.clone())
                }
                // No state: a finished batch run; its next run starts afresh.
                None => {
                    drop_state(&mut tx, name).await?;
                    None
                }
            };
            sqlx::query(
                "INSERT INTO checkpoints (pipeline, fingerprint, engine, engine_chunks, \
                 positions, epoch, written_at, state_seq) \
                 VALUES ($1, $2, $3, NULL, $4, $5, $6, $7) ON CONFLICT (pipeline) DO UPDATE SET \
                 fingerprint = excluded.fingerprint, engine = excluded.engine, \
                 engine_chunks = NULL, positions = excluded.positions, \
                 epoch = excluded.epoch, written_at = excluded.written_at, \
                 state_seq = excluded.state_seq",
            )
            .bind(name)
            .bind(checkpoint.fingerprint.as_str())
            .bind(head)
            .bind(positions)
            .bind(checkpoint.epoch as i64)
            .bind(checkpoint.written_at)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        });
        saved.map_err(self.failed())?;
        Ok(checkpoint.engine.map_or(0, |delta| delta.len() as u64))
    }
}

impl CheckpointStore for DbCheckpoints {
    fn save(&mut self, name: &str, checkpoint: &Outgoing<'_>) -> Result<u64, CheckpointError> {
        // What a write begun before staged is dropped by this one's start.
        self.begun.remove(name);
        self.write(name, checkpoint, None)
    }

    fn save_staged(
        &mut self,
        name: &str,
        checkpoint: &Outgoing<'_>,
    ) -> Result<u64, CheckpointError> {
        let Some(seq) = self.begun.remove(name) else {
            return Err(CheckpointError::NotBegun {
                name: name.to_owned(),
            });
        };
        self.write(name, checkpoint, Some(seq))
    }

    fn begin(&mut self, name: &str) -> Result<(), CheckpointError> {
        self.begun.remove(name);
        let _context = self.runtime.enter();
        let seq = self
            .runtime
            .block_on(async {
                let mut tx = self.db.begin_write().await?;
                let seq = begin(&mut tx, name).await?;
                tx.commit().await?;
                Ok(seq)
            })
            .map_err(self.failed())?;
        self.begun.insert(name.to_owned(), seq);
        Ok(())
    }

    fn stage(
        &mut self,
        name: &str,
        images: &[GroupImage],
        logs: &[LogSegment],
    ) -> Result<(), CheckpointError> {
        let Some(&seq) = self.begun.get(name) else {
            return Err(CheckpointError::NotBegun {
                name: name.to_owned(),
            });
        };
        let _context = self.runtime.enter();
        self.runtime
            .block_on(async {
                let mut tx = self.db.begin_write().await?;
                add_rows(&mut tx, name, seq, images, logs).await?;
                tx.commit().await
            })
            .map_err(self.failed())
    }

    fn names(&mut self, prefix: &str) -> Result<Vec<String>, CheckpointError> {
        // `substr`, not `LIKE`: a prefix may hold `_` and `%`. Both databases count from 1
        // and in characters.
        let query = sqlx::query(
            "SELECT pipeline FROM checkpoints WHERE substr(pipeline, 1, $1) = $2 \
             ORDER BY pipeline",
        )
        .bind(prefix.chars().count() as i64)
        .bind(prefix);
        let _context = self.runtime.enter();
        let rows = self
            .runtime
            .block_on(query.fetch_all(self.db.pool()))
            .map_err(self.failed())?;
        rows.iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(self.failed())
    }

    fn load(&mut self, name: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        let _context = self.runtime.enter();
        let loaded = self.runtime.block_on(async {
            let mut tx = self.db.pool().begin().await?;
            if tx.backend_name() == "PostgreSQL" {
                // The row and the state from one snapshot, should another instance be
                // replacing them (a partition's checkpoint during a hand-over).
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    .execute(&mut *tx)
                    .await?;
            }
            let row = sqlx::query(
                "SELECT fingerprint, engine, engine_chunks, positions, epoch, written_at, \
                 state_seq FROM checkpoints WHERE pipeline = $1",
            )
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let head: Option<Vec<u8>> = row.try_get(1)?;
            let chunks: Option<i64> = row.try_get(2)?;
            let engine = match (head, chunks) {
                // Written by an older version in parts: its format byte refuses it.
                (None, Some(_)) => Some(StoredState {
                    head: old_format(&mut tx, name).await?,
                    ..StoredState::default()
                }),
                (Some(head), _) => {
                    let seq = row.try_get::<Option<i64>, _>(6)?.unwrap_or(0);
                    Some(read_state(&mut tx, name, seq, head).await?)
                }
                (None, None) => None,
            };
            let fields = (
                row.try_get::<String, _>(0)?,
                row.try_get::<String, _>(3)?,
                row.try_get::<i64, _>(4)?,
                row.try_get::<i64, _>(5)?,
            );
            tx.commit().await?;
            Ok(Some((engine, fields)))
        });
        let Some((engine, (fingerprint, positions, epoch, written_at))) =
            loaded.map_err(self.failed())?
        else {
            return Ok(None);
        };
        Ok(Some(Checkpoint {
            fingerprint,
            engine,
            positions: serde_json::from_str(&positions).map_err(Self::positions_error(name))?,
            epoch: epoch.max(0) as u64,
            written_at,
        }))
    }
}

/// Starts a checkpoint of `name`: drops the rows of one that was never saved, and returns the
/// `seq` of this one's rows.
async fn begin(tx: &mut Transaction<'static, Any>, name: &str) -> Result<i64, sqlx::Error> {
    let saved: Option<Option<i64>> =
        sqlx::query_scalar("SELECT state_seq FROM checkpoints WHERE pipeline = $1")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
    let saved = saved.flatten().unwrap_or(0);
    for table in ["state_images", "state_logs"] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE pipeline = $1 AND seq > $2"
        ))
        .bind(name)
        .bind(saved)
        .execute(&mut **tx)
        .await?;
    }
    Ok(saved + 1)
}

/// Adds what a checkpoint changed (what was not staged of it) to the stored state of `name`.
async fn add_state(
    tx: &mut Transaction<'static, Any>,
    name: &str,
    seq: i64,
    delta: &StateDelta,
) -> Result<(), sqlx::Error> {
    if delta.full {
        // Everything before this checkpoint: its own staged rows stay.
        for table in ["state_images", "state_logs"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE pipeline = $1 AND seq < $2"
            ))
            .bind(name)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        }
    }
    add_rows(tx, name, seq, &delta.images, &delta.logs).await?;
    for &(kg, covered) in &delta.covered {
        // Images older than the group's newest, and the log segments before it.
        for (table, end) in [("state_images", "pos"), ("state_logs", "last_pos")] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE pipeline = $1 AND kg = $2 AND {end} < $3"
            ))
            .bind(name)
            .bind(i64::from(kg))
            .bind(covered as i64)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// Writes images and log segments numbered `seq`.
async fn add_rows(
    tx: &mut Transaction<'static, Any>,
    name: &str,
    seq: i64,
    images: &[GroupImage],
    logs: &[LogSegment],
) -> Result<(), sqlx::Error> {
    for image in images {
        sqlx::query(
            "INSERT INTO state_images (pipeline, kg, pos, seq, bytes) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (pipeline, kg, pos) DO UPDATE SET \
             seq = excluded.seq, bytes = excluded.bytes",
        )
        .bind(name)
        .bind(i64::from(image.kg))
        .bind(image.pos as i64)
        .bind(seq)
        .bind(image.bytes.as_slice())
        .execute(&mut **tx)
        .await?;
    }
    for segment in logs {
        sqlx::query(
            "INSERT INTO state_logs (pipeline, kg, first_pos, last_pos, seq, bytes) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (pipeline, kg, first_pos) DO UPDATE \
             SET last_pos = excluded.last_pos, seq = excluded.seq, bytes = excluded.bytes",
        )
        .bind(name)
        .bind(i64::from(segment.kg))
        .bind(segment.first_pos as i64)
        .bind(segment.last_pos as i64)
        .bind(seq)
        .bind(segment.bytes.as_slice())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Forgets the stored state of `name` (its images and logs).
async fn drop_state(tx: &mut Transaction<'static, Any>, name: &str) -> Result<(), sqlx::Error> {
    for table in ["state_images", "state_logs"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE pipeline = $1"))
            .bind(name)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The stored state of `name` with head `head`, saved with rows numbered up to `seq`: every
/// image and log segment.
async fn read_state(
    tx: &mut Transaction<'static, Any>,
    name: &str,
    seq: i64,
    head: Vec<u8>,
) -> Result<StoredState, sqlx::Error> {
    let number = |row: &sqlx::any::AnyRow, i: usize| row.try_get::<i64, _>(i);
    let images = sqlx::query(
        "SELECT kg, pos, bytes FROM state_images WHERE pipeline = $1 AND seq <= $2 \
         ORDER BY kg",
    )
    .bind(name)
    .bind(seq)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|row| {
        Ok(GroupImage {
            kg: number(row, 0)?.clamp(0, i64::from(u16::MAX)) as u16,
            pos: number(row, 1)?.max(0) as u64,
            bytes: row.try_get(2)?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let logs = sqlx::query(
        "SELECT kg, first_pos, last_pos, bytes FROM state_logs WHERE pipeline = $1 \
         AND seq <= $2 ORDER BY kg, first_pos",
    )
    .bind(name)
    .bind(seq)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|row| {
        Ok(LogSegment {
            kg: number(row, 0)?.clamp(0, i64::from(u16::MAX)) as u16,
            first_pos: number(row, 1)?.max(0) as u64,
            last_pos: number(row, 2)?.max(0) as u64,
            bytes: row.try_get(3)?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    Ok(StoredState { head, images, logs })
}

/// The format byte of a state an older version kept in `checkpoint_chunks`.
async fn old_format(
    tx: &mut Transaction<'static, Any>,
    name: &str,
) -> Result<Vec<u8>, sqlx::Error> {
    let first = sqlx::query("SELECT bytes FROM checkpoint_chunks WHERE pipeline = $1 AND seq = 0")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?;
    let bytes: Vec<u8> = match first {
        Some(row) => row.try_get(0)?,
        None => Vec::new(),
    };
    Ok(bytes.into_iter().take(1).collect())
}
