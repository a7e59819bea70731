//! The store as the web server reads it: alerts with their acknowledgements. Same database and
//! schema as the `db` sink (which writes it); the one write here is an acknowledgement.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::Row;

use super::database::{Database, DbError};
use super::rows::{alert_of, parse_named, window_of, ALERT_COLUMNS, WINDOW_COLUMNS};
use crate::notify::message::Event;
use crate::notify::outbox::{self, Delivery};
use crate::record::{AlertRecord, AlertState, Verdict, WindowRecord};

/// Who acknowledges, when, with what note and verdict.
#[derive(Debug, Clone, Copy)]
pub struct Acknowledgement<'a> {
    pub by: &'a str,
    pub note: Option<&'a str>,
    pub verdict: Option<Verdict>,
    pub at: i64,
}

/// One acknowledgement of an alert, as its history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AckEntry {
    pub at: i64,
    pub by: String,
    pub note: Option<String>,
    pub verdict: Option<Verdict>,
}

/// Which alerts by their verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictFilter {
    Is(Verdict),
    /// Not judged yet.
    None,
}

/// Which alerts a page lists. Pages follow one another by [`AlertCursor`]: the time and id of
/// the last alert shown, so a page stays right while new alerts arrive (an offset would not).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFilter {
    pub state: Option<AlertState>,
    pub verdict: Option<VerdictFilter>,
    /// Only this `(stream, series)`.
    pub series: Option<(String, String)>,
    /// Only alerts older than this one.
    pub before: Option<AlertCursor>,
    pub limit: i64,
}

impl AlertFilter {
    /// Whether `alert` is one the filter lists (ignoring the limit): the same rule as the SQL,
    /// for the live view's alerts when there is no store.
    pub fn matches(&self, alert: &AlertRecord) -> bool {
        self.state.is_none_or(|s| alert.state == s)
            && match self.verdict {
                None => true,
                Some(VerdictFilter::Is(v)) => alert.verdict == Some(v),
                Some(VerdictFilter::None) => alert.verdict.is_none(),
            }
            && self.series.as_ref().is_none_or(|(stream, series)| {
                *alert.stream == **stream && *alert.series == **series
            })
            && self.before.as_ref().is_none_or(|before| {
                (alert.ts, alert.id.as_str()) < (before.ts, before.id.as_str())
            })
    }
}

/// Where the next page of alerts starts: written `<ts>:<id>` in URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertCursor {
    pub ts: i64,
    pub id: String,
}

impl AlertCursor {
    pub fn after(alert: &AlertRecord) -> Self {
        AlertCursor {
            ts: alert.ts,
            id: alert.id.clone(),
        }
    }
}

impl std::fmt::Display for AlertCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.ts, self.id)
    }
}

impl std::str::FromStr for AlertCursor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (ts, id) = text
            .split_once(':')
            .ok_or_else(|| format!("expected <ts>:<id>, not {text:?}"))?;
        let ts = ts
            .parse()
            .map_err(|_| format!("expected <ts>:<id> with ts in epoch ms, not {text:?}"))?;
        Ok(AlertCursor {
            ts,
            id: id.to_owned(),
        })
    }
}

/// A query parameter, in order of its `$n`.
enum Bind {
    Text(String),
    Int(i64),
}

/// How good a stream's alerts have been, as people judged them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VerdictShare {
    pub stream: String,
    pub judged: i64,
    pub false_alarms: i64,
}

#[derive(Clone)]
pub struct Store {
    db: Database,
    /// Receivers told of each acknowledgement (see `notify`).
    notify: Arc<[String]>,
}

impl Store {
    pub async fn connect(url: &str) -> Result<Store, DbError> {
        Ok(Store::new(Database::connect(url).await?))
    }

    /// The store of a database already connected (the pipeline's, to share its pool).
    pub fn new(db: Database) -> Store {
        Store {
            db,
            notify: Arc::from([]),
        }
    }

    /// Acknowledgements also write a notification for each of `targets`.
    pub fn notifying(mut self, targets: Vec<String>) -> Store {
        self.notify = targets.into();
        self
    }

    /// How the notifications of each of `alert_ids` went.
    pub async fn deliveries(
        &self,
        alert_ids: &[String],
    ) -> Result<HashMap<String, Vec<Delivery>>, DbError> {
        outbox::deliveries(self.db.pool(), alert_ids)
            .await
            .map_err(|e| self.error(e))
    }

    fn error(&self, source: sqlx::Error) -> DbError {
        self.db.error(source)
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
        let rows = sqlx::query(&format!(
            "SELECT {WINDOW_COLUMNS} FROM windows \
             WHERE stream = $1 AND series = $2 AND window_start >= $3 AND window_start < $4 \
             ORDER BY window_start, kind LIMIT $5"
        ))
        .bind(stream.to_owned())
        .bind(series.to_owned())
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
        .map_err(|e| self.error(e))?;
        rows.iter()
            .map(|r| window_of(r).map_err(|e| self.error(e)))
            .collect()
    }

    /// The newest `limit` closed windows of one series (every kind), newest first: what the
    /// series page shows of a series the live view no longer holds.
    pub async fn latest_windows(
        &self,
        stream: &str,
        series: &str,
        limit: i64,
    ) -> Result<Vec<WindowRecord>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {WINDOW_COLUMNS} FROM windows \
             WHERE stream = $1 AND series = $2 ORDER BY window_end DESC, kind LIMIT $3"
        ))
        .bind(stream.to_owned())
        .bind(series.to_owned())
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
        .map_err(|e| self.error(e))?;
        rows.iter()
            .map(|r| window_of(r).map_err(|e| self.error(e)))
            .collect()
    }

    /// One page of alerts, newest first (by time, then id), as `filter` picks them.
    pub async fn alerts(&self, filter: &AlertFilter) -> Result<Vec<AlertRecord>, DbError> {
        let mut conditions = Vec::new();
        let mut binds: Vec<Bind> = Vec::new();
        let mut bind = |value: Bind| {
            binds.push(value);
            format!("${}", binds.len())
        };
        if let Some(state) = filter.state {
            conditions.push(format!(
                "state = {}",
                bind(Bind::Text(state.as_str().into()))
            ));
        }
        match filter.verdict {
            Some(VerdictFilter::Is(verdict)) => conditions.push(format!(
                "verdict = {}",
                bind(Bind::Text(verdict.as_str().into()))
            )),
            Some(VerdictFilter::None) => conditions.push("verdict IS NULL".into()),
            None => {}
        }
        if let Some((stream, series)) = &filter.series {
            conditions.push(format!(
                "stream = {} AND series = {}",
                bind(Bind::Text(stream.clone())),
                bind(Bind::Text(series.clone()))
            ));
        }
        if let Some(before) = &filter.before {
            let ts = bind(Bind::Int(before.ts));
            conditions.push(format!(
                "(ts < {ts} OR (ts = {ts} AND id < {}))",
                bind(Bind::Text(before.id.clone()))
            ));
        }
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let limit = bind(Bind::Int(filter.limit));
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts {filter_sql} ORDER BY ts DESC, id DESC LIMIT {limit}"
        );
        let mut query = sqlx::query(&sql);
        for value in binds {
            query = match value {
                Bind::Text(text) => query.bind(text),
                Bind::Int(number) => query.bind(number),
            };
        }
        let rows = query
            .fetch_all(self.db.pool())
            .await
            .map_err(|e| self.error(e))?;
        rows.iter()
            .map(|r| alert_of(r).map_err(|e| self.error(e)))
            .collect()
    }

    /// Per stream, how many alerts people judged and how many of those were false alarms.
    pub async fn verdicts(&self) -> Result<Vec<VerdictShare>, DbError> {
        let rows = sqlx::query(
            "SELECT stream, COUNT(verdict), \
             SUM(CASE WHEN verdict = 'false_alarm' THEN 1 ELSE 0 END) \
             FROM alerts WHERE verdict IS NOT NULL GROUP BY stream ORDER BY stream",
        )
        .fetch_all(self.db.pool())
        .await
        .map_err(|e| self.error(e))?;
        rows.iter()
            .map(|r| {
                Ok(VerdictShare {
                    stream: r.try_get(0)?,
                    judged: r.try_get(1)?,
                    false_alarms: r.try_get(2)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.error(e))
    }

    /// Every acknowledgement of each of `alert_ids`, oldest first.
    pub async fn acknowledgements(
        &self,
        alert_ids: &[String],
    ) -> Result<HashMap<String, Vec<AckEntry>>, DbError> {
        let mut history: HashMap<String, Vec<AckEntry>> = HashMap::new();
        if alert_ids.is_empty() {
            return Ok(history);
        }
        let placeholders: Vec<String> = (1..=alert_ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT alert_id, acked_at, acked_by, note, verdict FROM acknowledgements \
             WHERE alert_id IN ({}) ORDER BY alert_id, acked_at",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for id in alert_ids {
            query = query.bind(id.clone());
        }
        let rows = query
            .fetch_all(self.db.pool())
            .await
            .map_err(|e| self.error(e))?;
        for row in &rows {
            let entry = (|| -> Result<(String, AckEntry), sqlx::Error> {
                Ok((
                    row.try_get(0)?,
                    AckEntry {
                        at: row.try_get(1)?,
                        by: row.try_get(2)?,
                        note: row.try_get(3)?,
                        verdict: row
                            .try_get::<Option<String>, _>(4)?
                            .map(|v| parse_named(&v, "acknowledgements.verdict"))
                            .transpose()?,
                    },
                ))
            })()
            .map_err(|e| self.error(e))?;
            history.entry(entry.0).or_default().push(entry.1);
        }
        Ok(history)
    }

    /// Stores an acknowledgement; `None` when there is no alert with this id. An open alert
    /// becomes acknowledged; a resolved one stays resolved but records who looked at it.
    pub async fn acknowledge(
        &self,
        id: &str,
        ack: &Acknowledgement<'_>,
    ) -> Result<Option<AlertRecord>, DbError> {
        let acked = self.acknowledge_many(&[id.to_owned()], ack).await?;
        Ok(acked.ok().and_then(|mut alerts| alerts.pop()))
    }
}

impl Store {
    /// Acknowledges several alerts in one transaction: all of them, or none when some id is
    /// unknown (then `Err` lists those ids). A verdict replaces an earlier one; an
    /// acknowledgement without a verdict leaves an earlier verdict as it was.
    pub async fn acknowledge_many(
        &self,
        ids: &[String],
        ack: &Acknowledgement<'_>,
    ) -> Result<Result<Vec<AlertRecord>, Vec<String>>, DbError> {
        let mut tx = self.db.pool().begin().await.map_err(|e| self.error(e))?;
        let mut missing = Vec::new();
        let mut alerts = Vec::with_capacity(ids.len());
        for id in ids {
            let updated = sqlx::query(
                "UPDATE alerts SET acked_by = $1, acked_at = $2, note = $3, \
                 verdict = COALESCE($4, verdict), \
                 state = CASE WHEN state = 'open' THEN 'acknowledged' ELSE state END WHERE id = $5",
            )
            .bind(ack.by.to_owned())
            .bind(ack.at)
            .bind(ack.note.map(str::to_owned))
            .bind(ack.verdict.map(Verdict::as_str))
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
            sqlx::query(
                "INSERT INTO acknowledgements (alert_id, acked_at, acked_by, note, verdict) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id.to_owned())
            .bind(ack.at)
            .bind(ack.by.to_owned())
            .bind(ack.note.map(str::to_owned))
            .bind(ack.verdict.map(Verdict::as_str))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error(e))?;
            // The acknowledgement's notifications commit with it.
            outbox::enqueue(&mut tx, &self.notify, id, Event::Acknowledged, ack.at, true)
                .await
                .map_err(|e| self.error(e))?;
        }
        if !missing.is_empty() {
            tx.rollback().await.map_err(|e| self.error(e))?;
            return Ok(Err(missing));
        }
        tx.commit().await.map_err(|e| self.error(e))?;
        Ok(Ok(alerts))
    }
}
