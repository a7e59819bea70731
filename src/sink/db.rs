//! The database sink: records as rows of the [`database`](crate::db), SQLite or PostgreSQL.
//! Both speak `INSERT ... ON CONFLICT (...) DO UPDATE`, so every record is an upsert on its
//! natural key and a replay rewrites rows instead of adding them.
//!
//! The pipeline is synchronous: the sink's writer thread drives sqlx on the process's runtime
//! (`crate::runtime`), as the checkpoint store of the same database does
//! ([`DbSink::checkpoints`]); its [`Database`] may be handed to the dashboard and the notifier,
//! so that a process holds one pool per database.

use std::fmt::Write as _;
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;

use futures_util::future::try_join_all;

use sqlx::any::AnyRow;
use sqlx::AnyPool;
use tracing::info;

use super::background::BackgroundWriter;
use super::interface::{Sink, SinkError};
use crate::db::{connection_url, Database, DbCheckpoints, DbError};
use crate::notify::message::Event;
use crate::notify::outbox;
use crate::record::{AlertRecord, DeadLetterRecord, LateRecord, Record, Verdict, WindowRecord};
use crate::runtime::runtime;

/// Rows per INSERT statement: well under SQLite's 32766 and PostgreSQL's 65535 bind limits.
const ROWS_PER_STATEMENT: usize = 500;

/// Window rows per PostgreSQL statement, all in its one JSON parameter (about 200 bytes each).
const PG_WINDOWS_PER_STATEMENT: usize = 5_000;

/// Transactions that upsert a batch's windows on PostgreSQL at once, each on a connection (and
/// so a server process) of its own, each holding the windows of a share of the series. With
/// one, the pipeline waited on one server process while the server's other cores idled. The
/// pool has 4 connections; one more writes the batch's alerts, late events and dead letters.
const PG_WINDOW_CONNECTIONS: usize = 2;

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
    pub fn validate(&self) -> Result<(), crate::types::Invalid> {
        match connection_url(&self.url) {
            Ok(_) => Ok(()),
            Err(_) => Err(crate::types::Invalid::new(
                "url",
                "expected sqlite://PATH or postgres://USER:PASSWORD@HOST/DB",
            )),
        }
    }
}

pub struct DbSink {
    runtime: &'static tokio::runtime::Runtime,
    db: Database,
    placeholders: Placeholders,
    /// Receivers that hear of each alert: its outbox rows go in with it (see `notify`).
    notify: Arc<[String]>,
    /// Writes the rows, a batch at a time (one transaction on SQLite, a few side by side on
    /// PostgreSQL), while the pipeline goes on (see [`background`](super::background));
    /// started by the first write.
    writer: Option<BackgroundWriter<DbError>>,
}

/// How a statement's parameters are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholders {
    /// `$1, $2, ...`: PostgreSQL's only form.
    Numbered,
    /// `?, ?, ...`: SQLite binds these by position. It reads `$1` as a parameter *named* "$1"
    /// and sqlx then finds each one by name, a scan per parameter: with 500-row statements of 14
    /// columns that lookup took a quarter of the CPU of a Kafka → SQLite run.
    Positional,
}

impl Placeholders {
    /// Whether a statement that binds nullable doubles may be prepared once and reused. Not on
    /// PostgreSQL: sqlx's `Any` driver (0.8) declares a NULL double as `float4` (it swaps the
    /// NULLs of `float4` and `float8`; sqlx issue 4284), the prepared statement keeps that
    /// parameter type, and the next execution that binds a value there fails with "incorrect
    /// binary data format in bind parameter N". A window of one event (no stddev) followed by
    /// any other window in a statement of the same shape was enough.
    fn reuse_statements_with_nullable_doubles(self) -> bool {
        self == Placeholders::Positional
    }

    /// `($1, $2, ...), ($n+1, ...)` (or the same with `?`) for `rows` rows of `columns` columns.
    fn rows(self, rows: usize, columns: usize) -> String {
        let mut sql = String::with_capacity(rows * columns * 4);
        for row in 0..rows {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for column in 0..columns {
                if column > 0 {
                    sql.push_str(", ");
                }
                match self {
                    Placeholders::Numbered => {
                        let _ = write!(sql, "${}", row * columns + column + 1);
                    }
                    Placeholders::Positional => sql.push('?'),
                }
            }
            sql.push(')');
        }
        sql
    }
}

impl DbSink {
    /// Connects (creating a SQLite file if needed) and brings the schema up to date.
    pub fn connect(url: &str) -> Result<Self, DbError> {
        let runtime = runtime().map_err(DbError::Runtime)?;
        let db = runtime.block_on(Database::connect(url))?;
        info!(url = %db.url(), "Database ready.");
        let placeholders = match db.is_postgres() {
            true => Placeholders::Numbered,
            false => Placeholders::Positional,
        };
        Ok(DbSink {
            runtime,
            db,
            placeholders,
            notify: Arc::from([]),
            writer: None,
        })
    }

    /// Writes, with each alert opening or resolving, a notification for each of `targets`.
    pub fn notifying(mut self, targets: Vec<String>) -> Self {
        self.notify = targets.into();
        self
    }

    /// The checkpoint store of this database.
    pub fn checkpoints(&self) -> DbCheckpoints {
        DbCheckpoints::new(self.runtime, self.db.clone())
    }

    /// This sink's database, to hand to the dashboard's store and the notifier.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Runs a query returning rows, for tests and tools that read the store.
    pub fn fetch_all(&self, sql: &str) -> Result<Vec<AnyRow>, DbError> {
        self.runtime
            .block_on(sqlx::query(sql).fetch_all(self.db.pool()))
            .map_err(|source| self.db.error(source))
    }

    async fn write_all(
        pool: &AnyPool,
        records: &[Record],
        style: Placeholders,
        notify: &[String],
    ) -> Result<(), sqlx::Error> {
        let mut windows = Vec::new();
        let mut alerts = Vec::new();
        let mut late = Vec::new();
        let mut dead = Vec::new();
        for record in records {
            match record {
                Record::Window(r) => windows.push(r),
                Record::Alert(r) => alerts.push(&**r),
                Record::Late(r) => late.push(r),
                Record::DeadLetter(r) => dead.push(r),
                Record::Point(_) | Record::Join(_) => {}
            }
        }
        // A batch may hold several versions of one row (the writer thread joins rounds, and
        // global windows are updated as the watermark moves): keep the last of each, as the
        // upserts in order would. PostgreSQL refuses to touch one row twice in a statement.
        let windows = last_of_each(windows, |w| {
            (&*w.stream, &*w.series, w.kind, w.window_start, w.window_end)
        });
        let late = last_of_each(late, |l| (&*l.stream, &*l.source, l.partition, l.offset));
        let dead = last_of_each(dead, |d| (&*d.stream, &*d.source, d.partition, d.offset));
        if style == Placeholders::Numbered {
            // PostgreSQL: the windows (most of the rows) on connections of their own, side by
            // side with the rest, since one server process runs one connection's statements.
            let groups = by_series(windows, PG_WINDOW_CONNECTIONS);
            let windows = try_join_all(groups.iter().map(|group| async move {
                let mut tx = pool.begin().await?;
                for chunk in group.chunks(PG_WINDOWS_PER_STATEMENT) {
                    upsert_windows_from_json(&mut tx, chunk, style).await?;
                }
                tx.commit().await
            }));
            let rest = async {
                let mut tx = pool.begin().await?;
                Self::upsert_alerts_late_dead(&mut tx, &alerts, &late, &dead, style, notify)
                    .await?;
                tx.commit().await
            };
            let (windows, rest) = tokio::join!(windows, rest);
            return windows.and(rest);
        }
        let mut tx = pool.begin().await?;
        for chunk in windows.chunks(ROWS_PER_STATEMENT) {
            upsert_windows(&mut tx, chunk, style).await?;
        }
        Self::upsert_alerts_late_dead(&mut tx, &alerts, &late, &dead, style, notify).await?;
        tx.commit().await
    }

    async fn upsert_alerts_late_dead(
        tx: &mut Tx<'_>,
        alerts: &[&AlertRecord],
        late: &[&LateRecord],
        dead: &[&DeadLetterRecord],
        style: Placeholders,
        notify: &[String],
    ) -> Result<(), sqlx::Error> {
        // Alerts one by one, in order: the same id may appear several times in one batch.
        let now = crate::clock::now_ms();
        for &alert in alerts {
            upsert_alert(tx, alert, style).await?;
            if !notify.is_empty() {
                let event = Event::of_record(alert);
                outbox::enqueue(tx, notify, &alert.id, event, now, false).await?;
            }
        }
        for chunk in late.chunks(ROWS_PER_STATEMENT) {
            upsert_late(tx, chunk, style).await?;
        }
        for chunk in dead.chunks(ROWS_PER_STATEMENT) {
            upsert_dead_letters(tx, chunk, style).await?;
        }
        Ok(())
    }

    /// The writer thread, started at the first write with this sink's database, placeholders
    /// and notification targets.
    fn writer(&mut self) -> Result<&BackgroundWriter<DbError>, SinkError> {
        let writer = match self.writer.take() {
            Some(writer) => writer,
            None => {
                let (runtime, db) = (self.runtime, self.db.clone());
                let (style, notify) = (self.placeholders, self.notify.clone());
                BackgroundWriter::start("db-writer", move |records: &[Record]| {
                    runtime
                        .block_on(Self::write_all(db.pool(), records, style, &notify))
                        .map_err(|source| db.error(source))
                })
                .map_err(DbError::Writer)?
            }
        };
        Ok(self.writer.insert(writer))
    }
}

/// The last row of each key, in the order of their last versions.
fn last_of_each<'a, T, K: Eq + std::hash::Hash>(
    rows: Vec<&'a T>,
    key: impl Fn(&'a T) -> K,
) -> Vec<&'a T> {
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    let mut last: Vec<&'a T> = rows
        .into_iter()
        .rev()
        .filter(|&row| seen.insert(key(row)))
        .collect();
    last.reverse();
    last
}

/// `rows` in `groups` groups by series, each in the order given: every version of a row lands
/// in the same group, so writing the groups side by side keeps the last version of each.
fn by_series(rows: Vec<&WindowRecord>, groups: usize) -> Vec<Vec<&WindowRecord>> {
    let mut split = vec![Vec::with_capacity(rows.len() / groups + 1); groups];
    for row in rows {
        let mut hasher = std::hash::DefaultHasher::new();
        row.series.hash(&mut hasher);
        split[hasher.finish() as usize % groups].push(row);
    }
    split.retain(|group| !group.is_empty());
    split
}

/// Records the database keeps: points and join rows go to the other sinks only.
fn stored(record: &Record) -> bool {
    !matches!(record, Record::Point(_) | Record::Join(_))
}

impl Sink for DbSink {
    /// Hands the rows to the writer thread: they are in the database once a later `flush`
    /// returns (a person may see an alert on the live dashboard a transaction before its row
    /// can be acknowledged).
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let rows = records.iter().filter(|r| stored(r)).cloned();
        Ok(self.writer()?.hand_over(rows)?)
    }

    /// Waits until every row handed over is committed.
    fn flush(&mut self, _epoch: u64) -> Result<(), SinkError> {
        match &self.writer {
            Some(writer) => Ok(writer.wait()?),
            None => Ok(()),
        }
    }

    /// Rows not yet written are dropped (the replay writes them again); rows written are
    /// upserts the replay rewrites.
    fn rewind(&mut self, _resume: Option<u64>) -> Result<(), SinkError> {
        if let Some(writer) = &self.writer {
            writer.discard();
        }
        Ok(())
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

async fn upsert_windows(
    tx: &mut Tx<'_>,
    rows: &[&WindowRecord],
    style: Placeholders,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO windows (stream, series, kind, window_start, window_end, count, sum, mean, \
         min, max, stddev, first, last, \"final\") VALUES {} \
         ON CONFLICT (stream, series, kind, window_start, window_end) DO UPDATE SET \
         count = excluded.count, sum = excluded.sum, mean = excluded.mean, min = excluded.min, \
         max = excluded.max, stddev = excluded.stddev, first = excluded.first, \
         last = excluded.last, \"final\" = excluded.\"final\"",
        style.rows(rows.len(), 14)
    );
    let mut query = sqlx::query(&sql).persistent(style.reuse_statements_with_nullable_doubles());
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

/// Upserts window rows on PostgreSQL from one JSON array, unpacked by `json_to_recordset`.
///
/// The multi-row `VALUES` form binds 14 parameters a row: PostgreSQL parses and plans a
/// statement of 7,000 parameters every time (sqlx's `Any` driver cannot reuse it, see
/// [`Placeholders::reuse_statements_with_nullable_doubles`]), and sqlx converts each parameter
/// on the way. This statement has one text parameter, so it is prepared once per connection,
/// and the rows cost a JSON parse on the server. The doubles survive exactly: serde_json writes
/// the shortest text that reads back as the same `f64`, and PostgreSQL reads it correctly rounded.
/// JSON has no NaN or infinity (serde_json writes `null`), so a chunk holding one goes the
/// `VALUES` way.
async fn upsert_windows_from_json(
    tx: &mut Tx<'_>,
    rows: &[&WindowRecord],
    style: Placeholders,
) -> Result<(), sqlx::Error> {
    if !rows.iter().all(|w| window_doubles_are_finite(w)) {
        return upsert_windows(tx, rows, style).await;
    }
    let json = serde_json::to_string(rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO windows (stream, series, kind, window_start, window_end, count, sum, mean, \
         min, max, stddev, first, last, \"final\") \
         SELECT stream, series, kind, window_start, window_end, count, sum, mean, min, max, \
         stddev, first, last, \"final\" FROM json_to_recordset($1::json) AS row(stream TEXT, \
         series TEXT, kind TEXT, window_start BIGINT, window_end BIGINT, count BIGINT, \
         sum DOUBLE PRECISION, mean DOUBLE PRECISION, min DOUBLE PRECISION, \
         max DOUBLE PRECISION, stddev DOUBLE PRECISION, first DOUBLE PRECISION, \
         last DOUBLE PRECISION, \"final\" BOOLEAN) \
         ON CONFLICT (stream, series, kind, window_start, window_end) DO UPDATE SET \
         count = excluded.count, sum = excluded.sum, mean = excluded.mean, min = excluded.min, \
         max = excluded.max, stddev = excluded.stddev, first = excluded.first, \
         last = excluded.last, \"final\" = excluded.\"final\"",
    )
    .bind(json)
    .execute(&mut **tx)
    .await
    .map(drop)
}

fn window_doubles_are_finite(w: &WindowRecord) -> bool {
    [w.sum, w.mean, w.min, w.max, w.first, w.last]
        .into_iter()
        .chain(w.stddev)
        .all(f64::is_finite)
}

/// Upserts an alert. A replay must not undo a person's acknowledgement: the ack columns (and
/// the verdict) are never overwritten, and an acknowledged alert stays acknowledged unless it
/// has resolved.
async fn upsert_alert(
    tx: &mut Tx<'_>,
    a: &AlertRecord,
    style: Placeholders,
) -> Result<(), sqlx::Error> {
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
    .persistent(style.reuse_statements_with_nullable_doubles())
    .execute(&mut **tx)
    .await
    .map(drop)
}

async fn upsert_late(
    tx: &mut Tx<'_>,
    rows: &[&LateRecord],
    style: Placeholders,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO late_events (stream, series, ts, watermark, lateness_ms, source, \
         \"partition\", \"offset\") VALUES {} ON CONFLICT (stream, source, \"partition\", \"offset\") \
         DO UPDATE SET stream = excluded.stream, series = excluded.series, ts = excluded.ts, \
         watermark = excluded.watermark, lateness_ms = excluded.lateness_ms",
        style.rows(rows.len(), 8)
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
    style: Placeholders,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO dead_letters (stream, source, \"partition\", \"offset\", reason, payload) \
         VALUES {} ON CONFLICT (stream, source, \"partition\", \"offset\") DO UPDATE SET \
         stream = excluded.stream, reason = excluded.reason, payload = excluded.payload",
        style.rows(rows.len(), 6)
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
    fn the_last_version_of_each_key_is_kept_in_order() {
        let rows = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)];
        let last = last_of_each(rows.iter().collect(), |row| row.0);
        assert_eq!(last, [&("a", 3), &("c", 4), &("b", 5)]);
    }

    #[test]
    fn windows_split_by_series_keep_each_series_whole_and_in_order() {
        let window = |series: &str, window_start: i64| WindowRecord {
            stream: "s".into(),
            series: series.into(),
            kind: crate::record::WindowKind::Tumbling,
            window_start,
            window_end: window_start + 1,
            count: 1,
            sum: 1.0,
            mean: 1.0,
            min: 1.0,
            max: 1.0,
            stddev: None,
            first: 1.0,
            last: 1.0,
            is_final: true,
        };
        let rows: Vec<WindowRecord> = (0..400)
            .map(|i| window(&format!("series-{}", i % 40), i))
            .collect();
        let groups = by_series(rows.iter().collect(), 2);
        assert_eq!(groups.len(), 2, "40 series should fill both groups");
        let mut seen = Vec::new();
        for group in &groups {
            for pair in group.windows(2) {
                if pair[0].series == pair[1].series {
                    assert!(pair[0].window_start < pair[1].window_start);
                }
            }
            for row in group {
                let elsewhere = groups.iter().filter(|g| !std::ptr::eq(*g, group));
                assert!(elsewhere.flatten().all(|other| other.series != row.series));
            }
            seen.extend(group.iter().map(|w| w.window_start));
        }
        seen.sort();
        assert_eq!(seen, (0..400).collect::<Vec<_>>());
    }

    #[test]
    fn placeholders_cover_every_column_of_every_row() {
        assert_eq!(Placeholders::Numbered.rows(2, 2), "($1, $2), ($3, $4)");
        assert_eq!(Placeholders::Numbered.rows(1, 3), "($1, $2, $3)");
        assert_eq!(Placeholders::Positional.rows(2, 2), "(?, ?), (?, ?)");
    }
}
