//! Records read back from the database: which columns to select and how a row becomes a
//! record. Shared by the dashboard's store and the notification outbox.

use std::sync::Arc;

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::names::UnknownName;
use crate::record::{AlertRecord, WindowRecord};

/// The columns [`window_of`] reads, in its order.
pub(crate) const WINDOW_COLUMNS: &str =
    "stream, series, kind, window_start, window_end, count, sum, mean, \
                              min, max, stddev, first, last, CAST(\"final\" AS INTEGER)";

pub(crate) const ALERT_COLUMNS: &str =
    "id, stream, series, ts, value, expected, stddev, lower, upper, z, \
                             score, probability, method, expectation, direction, severity, \
                             episode_start, state, acked_by, acked_at, note, verdict";

pub(crate) fn window_of(row: &AnyRow) -> Result<WindowRecord, sqlx::Error> {
    let count: i64 = row.try_get(5)?;
    Ok(WindowRecord {
        stream: Arc::from(row.try_get::<String, _>(0)?),
        series: Arc::from(row.try_get::<String, _>(1)?),
        kind: named(row, 2, "windows.kind")?,
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

pub(crate) fn alert_of(row: &AnyRow) -> Result<AlertRecord, sqlx::Error> {
    let text = |i: usize| row.try_get::<String, _>(i);
    Ok(AlertRecord {
        id: text(0)?,
        stream: Arc::from(text(1)?),
        series: Arc::from(text(2)?),
        ts: row.try_get(3)?,
        value: row.try_get(4)?,
        expected: row.try_get(5)?,
        stddev: row.try_get(6)?,
        lower: row.try_get(7)?,
        upper: row.try_get(8)?,
        z: row.try_get(9)?,
        score: row.try_get(10)?,
        probability: row.try_get(11)?,
        method: named(row, 12, "alerts.method")?,
        expectation: row.try_get(13)?,
        direction: named(row, 14, "alerts.direction")?,
        severity: named(row, 15, "alerts.severity")?,
        episode_start: row.try_get(16)?,
        state: named(row, 17, "alerts.state")?,
        acked_by: row.try_get(18)?,
        acked_at: row.try_get(19)?,
        note: row.try_get(20)?,
        verdict: row
            .try_get::<Option<String>, _>(21)?
            .map(|v| parse_named(&v, "alerts.verdict"))
            .transpose()?,
    })
}

/// The value of column `index`, one of an enum's names; an unknown one is an error, not a
/// default (a row written by a newer Tidewatch, or by hand, is not silently misread).
fn named<T>(row: &AnyRow, index: usize, column: &str) -> Result<T, sqlx::Error>
where
    T: std::str::FromStr<Err = UnknownName>,
{
    parse_named(&row.try_get::<String, _>(index)?, column)
}

pub(crate) fn parse_named<T>(text: &str, column: &str) -> Result<T, sqlx::Error>
where
    T: std::str::FromStr<Err = UnknownName>,
{
    text.parse()
        .map_err(|e: UnknownName| sqlx::Error::Decode(format!("{column}: {e}").into()))
}
