//! The store as the web server reads it: alerts with their acknowledgements. Same database and
//! schema as the `db` sink (which writes it); the one write here is an acknowledgement.

use std::sync::Arc;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::record::{AlertRecord, AlertState, Direction, Severity, WindowKind, WindowRecord};
use crate::sink::db::{connection_url, migrate, redact};
use crate::sink::DbError;

const ALERT_COLUMNS: &str = "id, stream, series, ts, value, expected, stddev, z, direction, \
                             severity, episode_start, state, acked_by, acked_at, note";

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    url: String,
}

impl Store {
    pub async fn connect(url: &str) -> Result<Store, DbError> {
        sqlx::any::install_default_drivers();
        let connect_url = connection_url(url)?;
        let shown = redact(url);
        let error = |source| DbError::Sqlx {
            url: shown.clone(),
            source,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .connect(&connect_url)
            .await
            .map_err(error)?;
        migrate(&pool, connect_url.starts_with("postgres"))
            .await
            .map_err(error)?;
        Ok(Store { pool, url: shown })
    }

    fn error(&self, source: sqlx::Error) -> DbError {
        DbError::Sqlx {
            url: self.url.clone(),
            source,
        }
    }

    /// Closed windows of one series starting in `[from, to)`, oldest first, at most `limit`:
    /// the history the live view (the last few hundred points) no longer holds.
    pub async fn windows(
        &self,
        stream: &str,
        series: &str,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<WindowRecord>, DbError> {
        let rows = sqlx::query(
            "SELECT stream, series, kind, window_start, window_end, count, sum, mean, min, max, \
             stddev, first, last, CAST(\"final\" AS INTEGER) FROM windows \
             WHERE stream = $1 AND series = $2 AND window_start >= $3 AND window_start < $4 \
             ORDER BY window_start, kind LIMIT $5",
        )
        .bind(stream.to_owned())
        .bind(series.to_owned())
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error(e))?;
        rows.iter()
            .map(|r| window_of(r).map_err(|e| self.error(e)))
            .collect()
    }

    /// Alerts newest first, optionally of one state.
    pub async fn alerts(
        &self,
        state: Option<AlertState>,
        limit: i64,
    ) -> Result<Vec<AlertRecord>, DbError> {
        let rows = match state {
            Some(state) => {
                sqlx::query(&format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts WHERE state = $1 ORDER BY ts DESC LIMIT $2"
                ))
                .bind(state_text(state))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts ORDER BY ts DESC LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(|e| self.error(e))?;
        rows.iter()
            .map(|r| alert_of(r).map_err(|e| self.error(e)))
            .collect()
    }

    /// Stores an acknowledgement; `None` when there is no alert with this id. An open alert
    /// becomes acknowledged; a resolved one stays resolved but records who looked at it.
    pub async fn acknowledge(
        &self,
        id: &str,
        by: &str,
        note: Option<&str>,
        at: i64,
    ) -> Result<Option<AlertRecord>, DbError> {
        let acked = self
            .acknowledge_many(&[id.to_owned()], by, note, at)
            .await?;
        Ok(acked.ok().and_then(|mut alerts| alerts.pop()))
    }
}

impl Store {
    /// Acknowledges several alerts in one transaction: all of them, or none when some id is
    /// unknown (then `Err` lists those ids).
    pub async fn acknowledge_many(
        &self,
        ids: &[String],
        by: &str,
        note: Option<&str>,
        at: i64,
    ) -> Result<Result<Vec<AlertRecord>, Vec<String>>, DbError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.error(e))?;
        let mut missing = Vec::new();
        let mut alerts = Vec::with_capacity(ids.len());
        for id in ids {
            let updated = sqlx::query(
                "UPDATE alerts SET acked_by = $1, acked_at = $2, note = $3, \
                 state = CASE WHEN state = 'open' THEN 'acknowledged' ELSE state END WHERE id = $4",
            )
            .bind(by.to_owned())
            .bind(at)
            .bind(note.map(str::to_owned))
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error(e))?;
            if updated.rows_affected() == 0 {
                missing.push(id.clone());
                continue;
            }
            let row = sqlx::query(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"))
                .bind(id.to_owned())
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.error(e))?;
            alerts.push(alert_of(&row).map_err(|e| self.error(e))?);
        }
        if !missing.is_empty() {
            tx.rollback().await.map_err(|e| self.error(e))?;
            return Ok(Err(missing));
        }
        tx.commit().await.map_err(|e| self.error(e))?;
        Ok(Ok(alerts))
    }
}

fn state_text(state: AlertState) -> &'static str {
    match state {
        AlertState::Open => "open",
        AlertState::Acknowledged => "acknowledged",
        AlertState::Resolved => "resolved",
    }
}

fn window_of(row: &AnyRow) -> Result<WindowRecord, sqlx::Error> {
    let count: i64 = row.try_get(5)?;
    Ok(WindowRecord {
        stream: Arc::from(row.try_get::<String, _>(0)?),
        series: Arc::from(row.try_get::<String, _>(1)?),
        kind: match row.try_get::<String, _>(2)?.as_str() {
            "sliding" => WindowKind::Sliding,
            "session" => WindowKind::Session,
            "global" => WindowKind::Global,
            _ => WindowKind::Tumbling,
        },
        window_start: row.try_get(3)?,
        window_end: row.try_get(4)?,
        count: count.max(0) as u64,
        sum: row.try_get(6)?,
        mean: row.try_get(7)?,
        min: row.try_get(8)?,
        max: row.try_get(9)?,
        stddev: row.try_get(10)?,
        first: row.try_get(11)?,
        last: row.try_get(12)?,
        // Read as an integer (cast in the query): the Any driver cannot decode SQLite booleans.
        is_final: row.try_get::<i64, _>(13)? != 0,
    })
}

fn alert_of(row: &AnyRow) -> Result<AlertRecord, sqlx::Error> {
    let text = |i: usize| row.try_get::<String, _>(i);
    Ok(AlertRecord {
        id: text(0)?,
        stream: Arc::from(text(1)?),
        series: Arc::from(text(2)?),
        ts: row.try_get(3)?,
        value: row.try_get(4)?,
        expected: row.try_get(5)?,
        stddev: row.try_get(6)?,
        z: row.try_get(7)?,
        direction: if text(8)? == "low" {
            Direction::Low
        } else {
            Direction::High
        },
        severity: if text(9)? == "critical" {
            Severity::Critical
        } else {
            Severity::Warning
        },
        episode_start: row.try_get(10)?,
        state: match text(11)?.as_str() {
            "acknowledged" => AlertState::Acknowledged,
            "resolved" => AlertState::Resolved,
            _ => AlertState::Open,
        },
        acked_by: row.try_get(12)?,
        acked_at: row.try_get(13)?,
        note: row.try_get(14)?,
    })
}
