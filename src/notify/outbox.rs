//! The notification outbox, a table of the store: a row per receiver, alert and event, written
//! in the same transaction as the alert (by the `db` sink) or the acknowledgement (by the
//! dashboard), so no alert is stored without its notification and a replay adds none twice.
//! The notifier delivers the rows and marks them; a row that fails waits its backoff and is
//! tried again, across restarts, until it goes through.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{AnyConnection, AnyPool, Row};

use super::message::Event;
use crate::db::rows::{alert_of, ALERT_COLUMNS};
use crate::record::AlertRecord;

/// Writes the rows announcing `event` of `alert_id` to every target. `again`: a row already
/// there is made due again (a second acknowledgement is news; a replayed "open" is not).
pub(crate) async fn enqueue(
    conn: &mut AnyConnection,
    targets: &[String],
    alert_id: &str,
    event: Event,
    now: i64,
    again: bool,
) -> Result<(), sqlx::Error> {
    let on_conflict = if again {
        "DO UPDATE SET created_at = excluded.created_at, attempts = 0, \
         next_attempt = excluded.next_attempt, delivered_at = NULL, last_error = NULL"
    } else {
        "DO NOTHING"
    };
    for target in targets {
        sqlx::query(&format!(
            "INSERT INTO notifications (target, alert_id, event, created_at, attempts, \
             next_attempt) VALUES ($1, $2, $3, $4, 0, $4) \
             ON CONFLICT (target, alert_id, event) {on_conflict}"
        ))
        .bind(target.clone())
        .bind(alert_id.to_owned())
        .bind(event.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A notification to send: the alert as it is now, and what happened to it.
#[derive(Debug, Clone)]
pub struct Due {
    pub target: String,
    pub event: Event,
    pub attempts: i64,
    /// When the event was written (for a resolution: when the alert resolved).
    pub created_at: i64,
    /// Not to be tried before this (epoch ms): the backoff after a failed attempt.
    pub next_attempt: i64,
    pub alert: AlertRecord,
}

/// The oldest undelivered rows of `target`, oldest event first (an alert's opening before its
/// acknowledgement before its resolution), due or not: a receiver's rows go out in this order,
/// so one that waits out its backoff holds back the rows behind it. (Per target, so rows left
/// by a receiver no longer configured hold nobody back.)
pub async fn pending(pool: &AnyPool, target: &str, limit: i64) -> Result<Vec<Due>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {ALERT_COLUMNS}, n.target, n.event, n.attempts, n.created_at, n.next_attempt \
         FROM notifications n JOIN alerts ON alerts.id = n.alert_id \
         WHERE n.target = $1 AND n.delivered_at IS NULL \
         ORDER BY n.created_at, CASE n.event WHEN 'open' THEN 0 WHEN 'acknowledged' THEN 1 \
         ELSE 2 END, n.alert_id LIMIT $2"
    ))
    .bind(target.to_owned())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let event: String = row.try_get(23)?;
            Ok(Due {
                alert: alert_of(row)?,
                target: row.try_get(22)?,
                event: event.parse().map_err(|e| sqlx::Error::ColumnDecode {
                    index: "notifications.event".into(),
                    source: Box::new(e),
                })?,
                attempts: row.try_get(24)?,
                created_at: row.try_get(25)?,
                next_attempt: row.try_get(26)?,
            })
        })
        .collect()
}

/// How an attempt to deliver a notification went.
pub enum Attempt<'a> {
    Delivered { at: i64 },
    Failed { next_attempt: i64, error: &'a str },
}

/// Records an attempt: delivered (at when), or failed (why, and when to try again).
pub async fn attempted(pool: &AnyPool, due: &Due, attempt: Attempt<'_>) -> Result<(), sqlx::Error> {
    let (delivered_at, next_attempt, error) = match attempt {
        Attempt::Delivered { at } => (Some(at), at, None),
        Attempt::Failed {
            next_attempt,
            error,
        } => (None, next_attempt, Some(error.to_owned())),
    };
    sqlx::query(
        "UPDATE notifications SET attempts = attempts + 1, delivered_at = $1, \
         next_attempt = $2, last_error = $3 WHERE target = $4 AND alert_id = $5 AND event = $6",
    )
    .bind(delivered_at)
    .bind(next_attempt)
    .bind(error)
    .bind(due.target.clone())
    .bind(due.alert.id.clone())
    .bind(due.event.as_str())
    .execute(pool)
    .await
    .map(drop)
}

/// The newest alerts still open or acknowledged (what Alertmanager must keep hearing of).
pub async fn open_alerts(pool: &AnyPool, limit: i64) -> Result<Vec<AlertRecord>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE state IN ('open', 'acknowledged') \
         ORDER BY ts DESC, id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(alert_of).collect()
}

/// How one notification of an alert went, for the dashboard and the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub target: String,
    pub event: String,
    pub attempts: i64,
    /// Epoch ms; `null` while it has not gone through.
    pub delivered_at: Option<i64>,
    pub next_attempt: i64,
    pub last_error: Option<String>,
}

/// The deliveries of each of `alert_ids`, oldest event first.
pub async fn deliveries(
    pool: &AnyPool,
    alert_ids: &[String],
) -> Result<HashMap<String, Vec<Delivery>>, sqlx::Error> {
    let mut by_alert: HashMap<String, Vec<Delivery>> = HashMap::new();
    // One statement per few hundred ids keeps under every bind limit.
    for chunk in alert_ids.chunks(500) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT alert_id, target, event, attempts, delivered_at, next_attempt, last_error \
             FROM notifications WHERE alert_id IN ({}) ORDER BY created_at, target",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.clone());
        }
        for row in query.fetch_all(pool).await? {
            by_alert.entry(row.try_get(0)?).or_default().push(Delivery {
                target: row.try_get(1)?,
                event: row.try_get(2)?,
                attempts: row.try_get(3)?,
                delivered_at: row.try_get(4)?,
                next_attempt: row.try_get(5)?,
                last_error: row.try_get(6)?,
            });
        }
    }
    Ok(by_alert)
}
