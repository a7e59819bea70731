//! The database sink: SQLite (embedded default) or PostgreSQL, one implementation over both
//! through sqlx's `Any` driver. Both speak `INSERT ... ON CONFLICT (...) DO UPDATE`, so every
//! record is an upsert on its natural key and a replay rewrites rows instead of adding them.
//!
//! Tables: `windows` (key: stream, series, kind, window_start, window_end), `alerts` (key: id,
//! itself derived from stream, series and episode start), `late_events` and `dead_letters` (key:
//! source, partition, offset). Point records are not stored (one row per event would dwarf
//! everything else; the dashboard keeps recent points in memory and history comes from
//! windows); join records go to the other sinks. The `checkpoints` table holds one row per
//! pipeline (see `checkpoint.rs`).
//!
//! The pipeline is synchronous today, so the sink drives sqlx on a runtime of its own.

use std::fmt::Write as _;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Connection, Row};
use thiserror::Error;
use tracing::info;

use super::{Sink, SinkError};
use crate::checkpoint::Checkpoint;
use crate::record::{AlertRecord, DeadLetterRecord, LateRecord, Record, Verdict, WindowRecord};

/// Rows per INSERT statement: well under SQLite's 32766 and PostgreSQL's 65535 bind limits.
const ROWS_PER_STATEMENT: usize = 500;

#[derive(Debug, Error)]
pub enum DbError {
    #[error("database {url}: {source}")]
    Sqlx {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("cannot start the database runtime: {0}")]
    Runtime(std::io::Error),
}

/// Schema changes in order; `schema_version` records how many have been applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE IF NOT EXISTS windows (
    stream TEXT NOT NULL,
    series TEXT NOT NULL,
    kind TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    count BIGINT NOT NULL,
    sum DOUBLE PRECISION NOT NULL,
    mean DOUBLE PRECISION NOT NULL,
    min DOUBLE PRECISION NOT NULL,
    max DOUBLE PRECISION NOT NULL,
    stddev DOUBLE PRECISION,
    first DOUBLE PRECISION NOT NULL,
    last DOUBLE PRECISION NOT NULL,
    "final" BOOLEAN NOT NULL,
    PRIMARY KEY (stream, series, kind, window_start, window_end)
);
CREATE INDEX IF NOT EXISTS windows_by_end ON windows (stream, series, window_end);
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    stream TEXT NOT NULL,
    series TEXT NOT NULL,
    ts BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    expected DOUBLE PRECISION NOT NULL,
    stddev DOUBLE PRECISION NOT NULL,
    z DOUBLE PRECISION NOT NULL,
    direction TEXT NOT NULL,
    severity TEXT NOT NULL,
    episode_start BIGINT NOT NULL,
    state TEXT NOT NULL,
    acked_by TEXT,
    acked_at BIGINT,
    note TEXT
);
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts (state, ts);
CREATE TABLE IF NOT EXISTS late_events (
    stream TEXT NOT NULL,
    series TEXT NOT NULL,
    ts BIGINT NOT NULL,
    watermark BIGINT NOT NULL,
    lateness_ms BIGINT NOT NULL,
    source TEXT NOT NULL,
    "partition" BIGINT NOT NULL,
    "offset" BIGINT NOT NULL,
    PRIMARY KEY (source, "partition", "offset")
);
CREATE TABLE IF NOT EXISTS dead_letters (
    stream TEXT NOT NULL,
    source TEXT NOT NULL,
    "partition" BIGINT NOT NULL,
    "offset" BIGINT NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (source, "partition", "offset")
)
"#,
    r#"
CREATE TABLE IF NOT EXISTS checkpoints (
    pipeline TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    engine {BLOB},
    positions TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    written_at BIGINT NOT NULL
)
"#,
    // What the detector found (method, expectation, band, score, probability) and people's
    // verdicts. Alerts from before were all threshold alerts.
    r#"
ALTER TABLE alerts ADD COLUMN lower DOUBLE PRECISION;
ALTER TABLE alerts ADD COLUMN upper DOUBLE PRECISION;
ALTER TABLE alerts ADD COLUMN score DOUBLE PRECISION;
ALTER TABLE alerts ADD COLUMN probability DOUBLE PRECISION;
ALTER TABLE alerts ADD COLUMN method TEXT NOT NULL DEFAULT 'threshold';
ALTER TABLE alerts ADD COLUMN expectation TEXT;
ALTER TABLE alerts ADD COLUMN verdict TEXT;
CREATE INDEX IF NOT EXISTS alerts_by_verdict ON alerts (stream, verdict)
"#,
];

/// A `db` sink table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbConfig {
    /// `sqlite://PATH` (default `sqlite://tidewatch.db`) or `postgres://USER:PASSWORD@HOST/DB`.
    pub url: String,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            url: "sqlite://tidewatch.db".into(),
        }
    }
}

impl DbConfig {
    pub fn validate(&self) -> Result<(), crate::config::Invalid> {
        match connection_url(&self.url) {
            Ok(_) => Ok(()),
            Err(_) => Err(crate::config::Invalid::new(
                "url",
                "expected sqlite://PATH or postgres://USER:PASSWORD@HOST/DB",
            )),
        }
    }
}

pub struct DbSink {
    runtime: tokio::runtime::Runtime,
    pool: AnyPool,
    url: String,
}

impl DbSink {
    /// Connects (creating a SQLite file if needed) and brings the schema up to date.
    pub fn connect(url: &str) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(DbError::Runtime)?;
        let connect_url = connection_url(url)?;
        let shown = redact(url);
        let sqlx_error = |source| DbError::Sqlx {
            url: shown.clone(),
            source,
        };
        let pool = runtime.block_on(async {
            let pool = AnyPoolOptions::new()
                .max_connections(4)
                .connect(&connect_url)
                .await?;
            if connect_url.starts_with("sqlite:") {
                // WAL lets the dashboard read while the pipeline writes.
                sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(&pool)
                    .await?;
            }
            migrate(&pool, connect_url.starts_with("postgres")).await?;
            Ok::<_, sqlx::Error>(pool)
        });
        let pool = pool.map_err(sqlx_error)?;
        info!(url = %shown, "Database ready.");
        Ok(DbSink {
            runtime,
            pool,
            url: shown,
        })
    }

    /// Runs a query returning rows, for tests and tools that read the store.
    pub fn fetch_all(&self, sql: &str) -> Result<Vec<AnyRow>, DbError> {
        self.runtime
            .block_on(sqlx::query(sql).fetch_all(&self.pool))
            .map_err(|source| DbError::Sqlx {
                url: self.url.clone(),
                source,
            })
    }

    fn error(&self, source: sqlx::Error) -> SinkError {
        SinkError::Db(DbError::Sqlx {
            url: self.url.clone(),
            source,
        })
    }

    async fn write_all(pool: &AnyPool, records: &[Record]) -> Result<(), sqlx::Error> {
        let mut windows = Vec::new();
        let mut alerts = Vec::new();
        let mut late = Vec::new();
        let mut dead = Vec::new();
        for record in records {
            match record {
                Record::Window(r) => windows.push(r),
                Record::Alert(r) => alerts.push(r),
                Record::Late(r) => late.push(r),
                Record::DeadLetter(r) => dead.push(r),
                Record::Point(_) | Record::Join(_) => {}
            }
        }
        let mut tx = pool.begin().await?;
        for chunk in windows.chunks(ROWS_PER_STATEMENT) {
            upsert_windows(&mut tx, chunk).await?;
        }
        // Alerts one by one, in order: the same id may appear several times in one batch.
        for alert in alerts {
            upsert_alert(&mut tx, alert).await?;
        }
        for chunk in late.chunks(ROWS_PER_STATEMENT) {
            upsert_late(&mut tx, chunk).await?;
        }
        for chunk in dead.chunks(ROWS_PER_STATEMENT) {
            upsert_dead_letters(&mut tx, chunk).await?;
        }
        tx.commit().await
    }
}

impl Sink for DbSink {
    fn save_checkpoint(
        &mut self,
        pipeline: &str,
        checkpoint: &Checkpoint,
    ) -> Result<bool, SinkError> {
        let positions = serde_json::to_string(&checkpoint.positions)
            .map_err(|e| SinkError::Checkpoint(e.to_string()))?;
        let query = sqlx::query(
            "INSERT INTO checkpoints (pipeline, fingerprint, engine, positions, epoch, written_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (pipeline) DO UPDATE SET \
             fingerprint = excluded.fingerprint, engine = excluded.engine, \
             positions = excluded.positions, epoch = excluded.epoch, \
             written_at = excluded.written_at",
        )
        .bind(pipeline.to_owned())
        .bind(checkpoint.fingerprint.clone())
        .bind(checkpoint.engine.clone())
        .bind(positions)
        .bind(checkpoint.epoch as i64)
        .bind(checkpoint.written_at);
        self.runtime
            .block_on(query.execute(&self.pool))
            .map_err(|source| self.error(source))?;
        Ok(true)
    }

    fn load_checkpoint(&mut self, pipeline: &str) -> Result<Option<Checkpoint>, SinkError> {
        let query = sqlx::query(
            "SELECT fingerprint, engine, positions, epoch, written_at FROM checkpoints WHERE pipeline = $1",
        )
        .bind(pipeline.to_owned());
        let row = self
            .runtime
            .block_on(query.fetch_optional(&self.pool))
            .map_err(|source| self.error(source))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let read = |e: sqlx::Error| SinkError::Checkpoint(e.to_string());
        let positions: String = row.try_get(2).map_err(read)?;
        Ok(Some(Checkpoint {
            fingerprint: row.try_get(0).map_err(read)?,
            engine: row.try_get(1).map_err(read)?,
            positions: serde_json::from_str(&positions)
                .map_err(|e| SinkError::Checkpoint(e.to_string()))?,
            epoch: row.try_get::<i64, _>(3).map_err(read)?.max(0) as u64,
            written_at: row.try_get(4).map_err(read)?,
        }))
    }

    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        self.runtime
            .block_on(Self::write_all(&self.pool, records))
            .map_err(|source| self.error(source))
    }

    /// Every `write` commits its transaction, so there is nothing left to flush.
    fn flush(&mut self, _epoch: u64) -> Result<(), SinkError> {
        Ok(())
    }
}

/// sqlx wants `mode=rwc` to create a SQLite file; users should not have to know that.
pub(crate) fn connection_url(url: &str) -> Result<String, DbError> {
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if rest.contains("mode=") {
            return Ok(format!("sqlite://{rest}"));
        }
        let separator = if rest.contains('?') { '&' } else { '?' };
        return Ok(format!("sqlite://{rest}{separator}mode=rwc"));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(url.to_owned());
    }
    Err(DbError::UnsupportedUrl(redact(url)))
}

/// The URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Key of the PostgreSQL advisory lock migrations hold: instances starting together (a
/// consumer group, the dashboard beside the pipeline) take turns, since concurrent `CREATE
/// TABLE IF NOT EXISTS` can fail on PostgreSQL and two could apply the same migration.
const MIGRATION_LOCK: i64 = 0x7469_6465_7761_7463; // "tidewatc"

pub(crate) async fn migrate(pool: &AnyPool, postgres: bool) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    if postgres {
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    let result = apply_migrations(&mut conn, postgres).await;
    if postgres {
        // Also released when the connection closes, should this fail.
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    result
}

async fn apply_migrations(conn: &mut AnyConnection, postgres: bool) -> Result<(), sqlx::Error> {
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .execute(&mut *conn)
        .await?;
    let applied: i64 = sqlx::query("SELECT COUNT(*) FROM schema_version")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
        // The one type the two dialects spell differently.
        let migration = migration.replace("{BLOB}", if postgres { "BYTEA" } else { "BLOB" });
        let mut tx = conn.begin().await?;
        for statement in migration.split(';').filter(|s| !s.trim().is_empty()) {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
            .bind(index as i64 + 1)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// `($1, $2, ...), ($n+1, ...)` for `rows` rows of `columns` columns.
fn placeholders(rows: usize, columns: usize) -> String {
    let mut sql = String::new();
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            let _ = write!(sql, "${}", row * columns + column + 1);
        }
        sql.push(')');
    }
    sql
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

async fn upsert_windows(tx: &mut Tx<'_>, rows: &[&WindowRecord]) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO windows (stream, series, kind, window_start, window_end, count, sum, mean, \
         min, max, stddev, first, last, \"final\") VALUES {} \
         ON CONFLICT (stream, series, kind, window_start, window_end) DO UPDATE SET \
         count = excluded.count, sum = excluded.sum, mean = excluded.mean, min = excluded.min, \
         max = excluded.max, stddev = excluded.stddev, first = excluded.first, \
         last = excluded.last, \"final\" = excluded.\"final\"",
        placeholders(rows.len(), 14)
    );
    let mut query = sqlx::query(&sql);
    for w in rows {
        query = query
            .bind(w.stream.to_string())
            .bind(w.series.to_string())
            .bind(w.kind.as_str())
            .bind(w.window_start)
            .bind(w.window_end)
            .bind(w.count as i64)
            .bind(w.sum)
            .bind(w.mean)
            .bind(w.min)
            .bind(w.max)
            .bind(w.stddev)
            .bind(w.first)
            .bind(w.last)
            .bind(w.is_final);
    }
    query.execute(&mut **tx).await.map(drop)
}

/// Upserts an alert. A replay must not undo a person's acknowledgement: the ack columns (and
/// the verdict) are never overwritten, and an acknowledged alert stays acknowledged unless it
/// has resolved.
async fn upsert_alert(tx: &mut Tx<'_>, a: &AlertRecord) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO alerts (id, stream, series, ts, value, expected, stddev, lower, upper, z, \
         score, probability, method, expectation, direction, severity, episode_start, state, acked_by, \
         acked_at, note, verdict) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20, $21, $22) \
         ON CONFLICT (id) DO UPDATE SET ts = excluded.ts, value = excluded.value, \
         expected = excluded.expected, stddev = excluded.stddev, lower = excluded.lower, \
         upper = excluded.upper, z = excluded.z, score = excluded.score, \
         probability = excluded.probability, method = excluded.method, \
         expectation = excluded.expectation, direction = excluded.direction, \
         severity = excluded.severity, \
         state = CASE WHEN alerts.state = 'acknowledged' AND excluded.state = 'open' \
                      THEN alerts.state ELSE excluded.state END",
    )
    .bind(a.id.clone())
    .bind(a.stream.to_string())
    .bind(a.series.to_string())
    .bind(a.ts)
    .bind(a.value)
    .bind(a.expected)
    .bind(a.stddev)
    .bind(a.lower)
    .bind(a.upper)
    .bind(a.z)
    .bind(a.score)
    .bind(a.probability)
    .bind(a.method.as_str())
    .bind(a.expectation.clone())
    .bind(a.direction.as_str())
    .bind(a.severity.as_str())
    .bind(a.episode_start)
    .bind(a.state.as_str())
    .bind(a.acked_by.clone())
    .bind(a.acked_at)
    .bind(a.note.clone())
    .bind(a.verdict.map(Verdict::as_str))
    .execute(&mut **tx)
    .await
    .map(drop)
}

async fn upsert_late(tx: &mut Tx<'_>, rows: &[&LateRecord]) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO late_events (stream, series, ts, watermark, lateness_ms, source, \
         \"partition\", \"offset\") VALUES {} ON CONFLICT (source, \"partition\", \"offset\") \
         DO UPDATE SET stream = excluded.stream, series = excluded.series, ts = excluded.ts, \
         watermark = excluded.watermark, lateness_ms = excluded.lateness_ms",
        placeholders(rows.len(), 8)
    );
    let mut query = sqlx::query(&sql);
    for l in rows {
        query = query
            .bind(l.stream.to_string())
            .bind(l.series.to_string())
            .bind(l.ts)
            .bind(l.watermark)
            .bind(l.lateness_ms)
            .bind(l.source.to_string())
            .bind(i64::from(l.partition))
            .bind(l.offset as i64);
    }
    query.execute(&mut **tx).await.map(drop)
}

async fn upsert_dead_letters(
    tx: &mut Tx<'_>,
    rows: &[&DeadLetterRecord],
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO dead_letters (stream, source, \"partition\", \"offset\", reason, payload) \
         VALUES {} ON CONFLICT (source, \"partition\", \"offset\") DO UPDATE SET \
         stream = excluded.stream, reason = excluded.reason, payload = excluded.payload",
        placeholders(rows.len(), 6)
    );
    let mut query = sqlx::query(&sql);
    for d in rows {
        query = query
            .bind(d.stream.to_string())
            .bind(d.source.to_string())
            .bind(i64::from(d.partition))
            .bind(d.offset as i64)
            .bind(d.reason.clone())
            .bind(d.payload.clone());
    }
    query.execute(&mut **tx).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised_and_redacted() {
        assert_eq!(
            connection_url("sqlite://tidewatch.db").unwrap(),
            "sqlite://tidewatch.db?mode=rwc"
        );
        assert_eq!(
            connection_url("sqlite:data/x.db?cache=shared").unwrap(),
            "sqlite://data/x.db?cache=shared&mode=rwc"
        );
        assert!(connection_url("mysql://x").is_err());
        assert_eq!(
            redact("postgres://tw:secret@db:5432/tw"),
            "postgres://tw:***@db:5432/tw"
        );
        assert_eq!(placeholders(2, 2), "($1, $2), ($3, $4)");
    }
}
