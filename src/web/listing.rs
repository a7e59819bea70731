//! Which series a list shows: filtered by name, sorted, one page at a time, so an answer stays
//! small however many series the streams have (tens of thousands of keys are normal).

use serde::{Deserialize, Serialize};

use super::error::WebError;
use crate::live::SeriesView;

/// Series per page when the request names no `limit`.
pub const DEFAULT_LIMIT: usize = 500;
/// The largest `limit` a request may ask for.
pub const MAX_LIMIT: usize = 5_000;

/// `?q=&sort=&limit=&after=` of a series list.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    /// Only series whose `stream/series` name contains this, ignoring case.
    pub q: Option<String>,
    /// `anomaly` (the default: anomalous first, then by |z|), `name`, or `recent` (newest
    /// point first).
    pub sort: Option<String>,
    pub limit: Option<usize>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
}

impl ListQuery {
    /// The query string of the page after this one (`after` being the page's `next` cursor):
    /// the same filter, order and limit.
    pub fn next_page(&self, after: &str) -> String {
        let mut next = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [("q", &self.q), ("sort", &self.sort)] {
            if let Some(value) = value {
                next.append_pair(name, value);
            }
        }
        if let Some(limit) = self.limit {
            next.append_pair("limit", &limit.to_string());
        }
        next.append_pair("after", after);
        next.finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortBy {
    Anomaly,
    Name,
    Recent,
}

/// What a series sorts by, whatever the order: comparable, and small enough to be the cursor.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Key(i64, u64, String, String);

impl SortBy {
    fn parse(text: Option<&str>) -> Result<SortBy, WebError> {
        match text.unwrap_or("anomaly") {
            "anomaly" => Ok(SortBy::Anomaly),
            "name" => Ok(SortBy::Name),
            "recent" => Ok(SortBy::Recent),
            other => Err(WebError::BadRequest(format!(
                "sort: expected anomaly, name or recent, not {other:?}"
            ))),
        }
    }

    fn key(self, v: &SeriesView) -> Key {
        let (stream, series) = (v.stream.to_string(), v.series.to_string());
        match self {
            SortBy::Name => Key(0, 0, stream, series),
            // |z| is never negative, so its bits order like the number; inverted: largest first.
            SortBy::Anomaly => Key(
                -i64::from(v.last.anomaly),
                u64::MAX - v.last.z.map_or(0.0, f64::abs).to_bits(),
                stream,
                series,
            ),
            SortBy::Recent => Key(v.last.ts.saturating_neg(), 0, stream, series),
        }
    }
}

/// One page of a series list.
pub struct Listing<'a> {
    pub items: Vec<&'a SeriesView>,
    /// Series matching the filter, over all pages.
    pub total: usize,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
}

/// The page of `series` that `query` asks for.
pub fn list<'a>(
    series: impl Iterator<Item = &'a SeriesView>,
    query: &ListQuery,
) -> Result<Listing<'a>, WebError> {
    let sort = SortBy::parse(query.sort.as_deref())?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(WebError::BadRequest(format!(
            "limit: between 1 and {MAX_LIMIT}, not {limit}"
        )));
    }
    let after = query.after.as_deref().map(decode_cursor).transpose()?;
    let needle = query.q.as_deref().unwrap_or_default().to_lowercase();
    let mut matching: Vec<(Key, &SeriesView)> = series
        .filter(|v| {
            needle.is_empty()
                || format!("{}/{}", v.stream, v.series)
                    .to_lowercase()
                    .contains(&needle)
        })
        .map(|v| (sort.key(v), v))
        .collect();
    let total = matching.len();
    if let Some(after) = &after {
        matching.retain(|(key, _)| key > after);
    }
    // Only the page needs to be in order: select it, then sort it.
    if matching.len() > limit {
        matching.select_nth_unstable_by(limit, |a, b| a.0.cmp(&b.0));
        matching.truncate(limit + 1);
    }
    matching.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let more = matching.len() > limit;
    matching.truncate(limit);
    let next = match (more, matching.last()) {
        (true, Some((key, _))) => Some(encode_cursor(key)),
        _ => None,
    };
    Ok(Listing {
        items: matching.into_iter().map(|(_, v)| v).collect(),
        total,
        next,
    })
}

/// A cursor is the last key of a page as hex-encoded JSON: opaque to clients, and any text
/// in series names survives a URL.
fn encode_cursor(key: &Key) -> String {
    let json = serde_json::to_string(key).unwrap_or_default();
    json.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(text: &str) -> Result<Key, WebError> {
    let bad = || WebError::BadRequest("after: not a cursor this API gave".into());
    if text.len() % 2 != 0 {
        return Err(bad());
    }
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect();
    serde_json::from_slice(&bytes.ok_or_else(bad)?).map_err(|_| bad())
}

/// Summary of a series for lists: the latest analytics, no history.
#[derive(Serialize)]
pub struct SeriesSummary {
    stream: String,
    series: String,
    ts: i64,
    value: f64,
    sma: f64,
    ewma: f64,
    slope: Option<f64>,
    trend: crate::record::Trend,
    z: Option<f64>,
    anomaly: bool,
}

impl From<&SeriesView> for SeriesSummary {
    fn from(v: &SeriesView) -> Self {
        SeriesSummary {
            stream: v.stream.to_string(),
            series: v.series.to_string(),
            ts: v.last.ts,
            value: v.last.value,
            sma: v.last.sma,
            ewma: v.last.ewma,
            slope: v.last.slope,
            trend: v.last.trend,
            z: v.last.z,
            anomaly: v.last.anomaly,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_any_name() {
        let key = Key(-1, 42, "s".into(), "a/b \"c\" é&x=1".into());
        assert_eq!(decode_cursor(&encode_cursor(&key)).unwrap(), key);
        assert!(decode_cursor("zz").is_err());
        assert!(decode_cursor("7b").is_err());
    }
}
