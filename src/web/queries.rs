//! What the pages and the API both ask for: a page of alerts (from the store when there is one,
//! else from the live view) and the query string that picks it.

use serde::Deserialize;

use super::error::WebError;
use super::state::AppState;
use crate::db::{AlertCursor, AlertFilter, VerdictFilter};
use crate::names::UnknownName;
use crate::record::{AlertRecord, AlertState};

/// `?state=&verdict=&stream=&series=&before=&limit=` of an alert list.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AlertQuery {
    pub state: Option<String>,
    pub verdict: Option<String>,
    /// With `series`: only that series' alerts.
    pub stream: Option<String>,
    pub series: Option<String>,
    /// The `next` cursor of the previous page (`<ts>:<id>`).
    pub before: Option<String>,
    pub limit: Option<i64>,
}

impl AlertQuery {
    /// The store's filter for this query, with `limit` alerts at most (`default` when none).
    pub fn filter(&self, default: i64) -> Result<AlertFilter, WebError> {
        let series = match (&self.stream, &self.series) {
            (Some(stream), Some(series)) => Some((stream.clone(), series.clone())),
            (None, None) => None,
            _ => {
                return Err(WebError::BadRequest(
                    "stream and series go together: give both or neither".into(),
                ))
            }
        };
        Ok(AlertFilter {
            state: parse_state_filter(self.state.as_deref())?,
            verdict: parse_verdict_filter(self.verdict.as_deref())?,
            series,
            before: match self.before.as_deref() {
                None | Some("") => None,
                Some(text) => Some(
                    text.parse()
                        .map_err(|e: String| WebError::BadRequest(format!("before: {e}")))?,
                ),
            },
            limit: match self.limit {
                None => default,
                Some(limit) if (1..=MAX_ALERTS).contains(&limit) => limit,
                Some(limit) => {
                    return Err(WebError::BadRequest(format!(
                        "limit: between 1 and {MAX_ALERTS}, not {limit}"
                    )))
                }
            },
        })
    }

    /// The query string of the next page, starting after `last`.
    pub fn next_page(&self, last: &AlertRecord) -> String {
        let mut next = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("state", &self.state),
            ("verdict", &self.verdict),
            ("stream", &self.stream),
            ("series", &self.series),
        ] {
            if let Some(value) = value {
                next.append_pair(name, value);
            }
        }
        if let Some(limit) = self.limit {
            next.append_pair("limit", &limit.to_string());
        }
        next.append_pair("before", &AlertCursor::after(last).to_string());
        next.finish()
    }
}

/// The most alerts one answer holds.
const MAX_ALERTS: i64 = 5_000;

/// One page of alerts: from the store when there is one, else from the live view's newest.
pub async fn list_alerts(
    state: &AppState,
    filter: &AlertFilter,
) -> Result<Vec<AlertRecord>, WebError> {
    if let Some(store) = &state.store {
        return Ok(store.alerts(filter).await?);
    }
    let dashboard = state.live.read();
    let mut alerts: Vec<AlertRecord> = dashboard
        .alerts
        .values()
        .filter(|a| filter.matches(a))
        .cloned()
        .collect();
    alerts.sort_by(|a, b| (b.ts, &b.id).cmp(&(a.ts, &a.id)));
    alerts.truncate(filter.limit as usize);
    Ok(alerts)
}

/// An alert state filter: `all` (or nothing) for every state.
pub fn parse_state_filter(text: Option<&str>) -> Result<Option<AlertState>, WebError> {
    match text {
        None | Some("" | "all") => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|e: UnknownName| WebError::BadRequest(format!("{e}, or all"))),
    }
}

/// A verdict filter: `none` for alerts nobody judged yet, `all` (or nothing) for every alert.
pub fn parse_verdict_filter(text: Option<&str>) -> Result<Option<VerdictFilter>, WebError> {
    match text {
        None | Some("" | "all") => Ok(None),
        Some("none") => Ok(Some(VerdictFilter::None)),
        Some(text) => text
            .parse()
            .map(|v| Some(VerdictFilter::Is(v)))
            .map_err(|e: UnknownName| WebError::BadRequest(format!("{e}, none or all"))),
    }
}
