//! Checkpoints in the database: one `checkpoints` row per name (a pipeline's, and one per
//! partition of a group-assigned stream), its engine state in `checkpoint_chunks` rows of a few
//! megabytes, all replaced in one transaction.
//!
//! The state is written a part at a time, so the driver and the database copy a few megabytes
//! at a time, not the whole state (as one value, they each held a copy of it).

use std::io::{self, Write};
use std::sync::Arc;

use sqlx::{Any, Row, Transaction};
use tokio::runtime::Runtime;

use super::Database;
use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore, Outgoing};

/// Size of the parts the engine state is kept in: a gigabyte of state is a few hundred rows,
/// and the copies the driver and the database make of one part are small beside the state.
pub const CHUNK_BYTES: usize = 4 << 20;

/// The checkpoint store of a database, used from the (synchronous) pipeline thread.
pub struct DbCheckpoints {
    runtime: Arc<Runtime>,
    db: Database,
    part_bytes: usize,
}

impl DbCheckpoints {
    pub fn new(runtime: Arc<Runtime>, db: Database) -> Self {
        DbCheckpoints {
            runtime,
            db,
            part_bytes: CHUNK_BYTES,
        }
    }

    /// Keeps the engine state in parts of `bytes` (at least one byte) instead of
    /// [`CHUNK_BYTES`]: lets a test see a small state span many parts.
    pub fn with_part_bytes(mut self, bytes: usize) -> Self {
        self.part_bytes = bytes.max(1);
        self
    }

    fn positions_error(name: &str) -> impl FnOnce(serde_json::Error) -> CheckpointError + '_ {
        move |source| CheckpointError::Positions {
            name: name.to_owned(),
            source,
        }
    }
}

impl CheckpointStore for DbCheckpoints {
    fn save(&mut self, name: &str, checkpoint: &Outgoing<'_>) -> Result<u64, CheckpointError> {
        let positions =
            serde_json::to_string(&checkpoint.positions).map_err(Self::positions_error(name))?;
        let (runtime, db) = (&*self.runtime, &self.db);
        // A transaction dropped on an early return hands its connection back to the pool on
        // the runtime, outside `block_on` too.
        let _context = runtime.enter();
        let failed = |source| CheckpointError::Db(db.error(source));
        let mut tx = runtime.block_on(db.pool().begin()).map_err(failed)?;
        if tx.backend_name() == "PostgreSQL" {
            // Saves of one name take turns. Instances of a group-assigned pipeline share its
            // name and save its own row at times at the same moment; interleaved, the second
            // one's parts collided with the first's (a duplicate key, and a rewind). SQLite
            // writes one transaction at a time anyway.
            runtime
                .block_on(
                    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                        .bind(name)
                        .execute(&mut *tx),
                )
                .map_err(failed)?;
        }
        runtime
            .block_on(
                sqlx::query("DELETE FROM checkpoint_chunks WHERE pipeline = $1")
                    .bind(name)
                    .execute(&mut *tx),
            )
            .map_err(failed)?;
        let mut parts = Parts {
            runtime,
            tx: &mut tx,
            name,
            written: 0,
            bytes: 0,
            failed: None,
        };
        if let Some(engine) = checkpoint.engine {
            let mut buffered = InParts::new(self.part_bytes, &mut parts);
            let encoded = engine.write(&mut buffered);
            let flushed = buffered.flush();
            drop(buffered);
            // A failed insert shows up as a failed write: report the database's reason.
            if let Some(source) = parts.failed.take() {
                return Err(failed(source));
            }
            encoded?;
            flushed.map_err(|source| failed(sqlx::Error::Io(source)))?;
        }
        let (chunks, bytes) = (parts.written, parts.bytes);
        let query = sqlx::query(
            "INSERT INTO checkpoints \
             (pipeline, fingerprint, engine, engine_chunks, positions, epoch, written_at) \
             VALUES ($1, $2, NULL, $3, $4, $5, $6) ON CONFLICT (pipeline) DO UPDATE SET \
             fingerprint = excluded.fingerprint, engine = NULL, \
             engine_chunks = excluded.engine_chunks, positions = excluded.positions, \
             epoch = excluded.epoch, written_at = excluded.written_at",
        )
        .bind(name)
        .bind(checkpoint.fingerprint.as_str())
        .bind(checkpoint.engine.map(|_| chunks as i64))
        .bind(positions)
        .bind(checkpoint.epoch as i64)
        .bind(checkpoint.written_at);
        runtime.block_on(query.execute(&mut *tx)).map_err(failed)?;
        runtime.block_on(tx.commit()).map_err(failed)?;
        Ok(bytes)
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
            .map_err(|source| CheckpointError::Db(self.db.error(source)))?;
        rows.iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(|source| CheckpointError::Db(self.db.error(source)))
    }

    fn load(&mut self, name: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        let (runtime, db) = (&*self.runtime, &self.db);
        // A transaction dropped on an early return hands its connection back to the pool on
        // the runtime, outside `block_on` too.
        let _context = runtime.enter();
        let failed = |source| CheckpointError::Db(db.error(source));
        let mut tx = runtime.block_on(db.pool().begin()).map_err(failed)?;
        if tx.backend_name() == "PostgreSQL" {
            // The row and its parts from one snapshot, should another instance be replacing
            // them (a partition's checkpoint during a hand-over). SQLite's transactions read
            // one snapshot anyway.
            runtime
                .block_on(
                    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                        .execute(&mut *tx),
                )
                .map_err(failed)?;
        }
        let query = sqlx::query(
            "SELECT fingerprint, engine, engine_chunks, positions, epoch, written_at \
             FROM checkpoints WHERE pipeline = $1",
        )
        .bind(name);
        let Some(row) = runtime
            .block_on(query.fetch_optional(&mut *tx))
            .map_err(failed)?
        else {
            return Ok(None);
        };
        let whole: Option<Vec<u8>> = row.try_get(1).map_err(failed)?;
        let chunks: Option<i64> = row.try_get(2).map_err(failed)?;
        let engine = match (whole, chunks) {
            // Written before the state was kept in parts.
            (Some(whole), _) => Some(whole),
            (None, Some(chunks)) => Some(read_parts(
                runtime,
                db,
                &mut tx,
                name,
                chunks.max(0) as u64,
            )?),
            (None, None) => None,
        };
        let positions: String = row.try_get(3).map_err(failed)?;
        runtime.block_on(tx.commit()).map_err(failed)?;
        Ok(Some(Checkpoint {
            fingerprint: row.try_get(0).map_err(failed)?,
            engine,
            positions: serde_json::from_str(&positions).map_err(Self::positions_error(name))?,
            epoch: row.try_get::<i64, _>(4).map_err(failed)?.max(0) as u64,
            written_at: row.try_get(5).map_err(failed)?,
        }))
    }
}

/// The engine state's parts in order, joined; refused unless all `expected` are there.
fn read_parts(
    runtime: &Runtime,
    db: &Database,
    tx: &mut Transaction<'static, Any>,
    name: &str,
    expected: u64,
) -> Result<Vec<u8>, CheckpointError> {
    let failed = |source| CheckpointError::Db(db.error(source));
    let mut state = Vec::new();
    let mut found = 0;
    for seq in 0..expected {
        let part =
            sqlx::query("SELECT bytes FROM checkpoint_chunks WHERE pipeline = $1 AND seq = $2")
                .bind(name)
                .bind(seq as i64);
        let row = runtime
            .block_on(part.fetch_optional(&mut **tx))
            .map_err(failed)?;
        let Some(row) = row else { break };
        let bytes: Vec<u8> = row.try_get(0).map_err(failed)?;
        if seq == 0 {
            // Parts are all of one size but the last: one allocation, not a doubling series.
            // The count comes from the database, so a damaged row must not size it past
            // what could be there (it fails as `Incomplete` below instead).
            let parts = usize::try_from(expected).unwrap_or(usize::MAX).min(1 << 12);
            state.reserve_exact(bytes.len().saturating_mul(parts));
        }
        state.extend_from_slice(&bytes);
        found += 1;
    }
    if found != expected {
        return Err(CheckpointError::Incomplete {
            name: name.to_owned(),
            found,
            expected,
        });
    }
    Ok(state)
}

/// Cuts what is written through it into parts of exactly `size` bytes (the last one shorter),
/// whatever the sizes of the writes: a `BufWriter` passes a large write on whole.
struct InParts<W: Write> {
    size: usize,
    pending: Vec<u8>,
    out: W,
}

impl<W: Write> InParts<W> {
    fn new(size: usize, out: W) -> Self {
        InParts {
            size,
            pending: Vec::with_capacity(size),
            out,
        }
    }
}

impl<W: Write> Write for InParts<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let written = buf.len();
        while !buf.is_empty() {
            let room = self.size - self.pending.len();
            let (now, later) = buf.split_at(room.min(buf.len()));
            self.pending.extend_from_slice(now);
            buf = later;
            if self.pending.len() == self.size {
                self.out.write_all(&self.pending)?;
                self.pending.clear();
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.out.write_all(&self.pending)?;
            self.pending.clear();
        }
        self.out.flush()
    }
}

/// Writes each buffer it is given as the next part of `name`'s engine state.
struct Parts<'a> {
    runtime: &'a Runtime,
    tx: &'a mut Transaction<'static, Any>,
    name: &'a str,
    written: u64,
    bytes: u64,
    /// The database's error, once an insert failed (the encoder only sees that it did).
    failed: Option<sqlx::Error>,
}

impl Write for Parts<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed.is_some() {
            return Err(io::Error::other("an earlier part could not be stored"));
        }
        let insert =
            sqlx::query("INSERT INTO checkpoint_chunks (pipeline, seq, bytes) VALUES ($1, $2, $3)")
                .bind(self.name)
                .bind(self.written as i64)
                .bind(buf);
        match self.runtime.block_on(insert.execute(&mut **self.tx)) {
            Ok(_) => {
                self.written += 1;
                self.bytes += buf.len() as u64;
                Ok(buf.len())
            }
            Err(source) => {
                self.failed = Some(source);
                Err(io::Error::other("a part could not be stored"))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
