//! `/`: the streams and one page of series with their latest values and sparklines.

use std::time::Duration;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse};

use super::format::{number, seconds, sparkline};
use super::viewer::Viewer;
use crate::clock::{format_ms, now_ms};
use crate::live::SeriesView;
use crate::pipeline::StreamProgress;
use crate::record::Trend;
use crate::web::error::PageError;
use crate::web::listing::{self, ListQuery};
use crate::web::state::AppState;

/// A series that has sent nothing for this long is shown as stale.
const STALE_AFTER: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct SeriesRow {
    pub stream: String,
    pub series: String,
    pub value: String,
    pub sma: String,
    pub ewma: String,
    pub trend: &'static str,
    pub slope: String,
    pub z: String,
    pub status: &'static str,
    /// SVG polyline points of the recent values, 120×28.
    pub sparkline: String,
}

pub struct StreamRow {
    pub name: String,
    pub messages: u64,
    pub accepted: u64,
    pub late: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
    pub watermark: String,
    pub behind: String,
    pub lag: String,
    /// `reading` (or what the source says it is doing), or why the source cannot read.
    pub source: String,
    pub source_ok: bool,
}

impl StreamRow {
    /// A stream's progress as the overview and the status page show it, at wall-clock `now`.
    pub(super) fn of(s: &StreamProgress, now: i64) -> StreamRow {
        let dash = || "–".to_string();
        StreamRow {
            name: s.name.clone(),
            messages: s.messages,
            accepted: s.accepted,
            late: s.late,
            duplicates: s.duplicates,
            dead_letters: s.dead_letters,
            watermark: s.watermark.map_or_else(dash, format_ms),
            behind: s.watermark.map_or_else(dash, |w| seconds(now - w)),
            lag: s.total_lag().map_or_else(dash, |lag| lag.to_string()),
            source: match (&s.source_error, &s.source_state) {
                (Some(error), _) => format!("down: {error}"),
                (None, Some(state)) => state.clone(),
                (None, None) => "reading".into(),
            },
            source_ok: s.source_error.is_none(),
        }
    }
}

#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub streams: Vec<StreamRow>,
    pub totals: SeriesTotals,
    /// One page of series, in the chosen order.
    pub series: Vec<SeriesRow>,
    /// Whether the page script may add rows for series that appear live.
    pub grows: bool,
    pub q: String,
    pub sort: String,
    /// Whether this is a page after the first.
    pub paged: bool,
    /// The link to the next page, when there is one.
    pub next: Option<String>,
    pub events_per_second: String,
    pub open_alerts: usize,
    pub late_total: u64,
    pub dead_letters_total: u64,
    pub viewer: Viewer,
    /// Why the pipeline is paused; empty when it runs.
    pub paused: String,
    /// The row the page script fills for a series that appears live.
    pub blank_series: SeriesRow,
}

pub async fn overview(
    State(state): State<AppState>,
    Query(query): Query<OverviewQuery>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, PageError> {
    let viewer = Viewer::of(&state, &headers);
    let events_per_second = state.live.events_per_second();
    let list_query = ListQuery {
        q: query.q.clone().filter(|q| !q.is_empty()),
        sort: query.sort.clone(),
        limit: Some(OVERVIEW_PAGE),
        after: query.after.clone().filter(|a| !a.is_empty()),
    };
    let page = {
        let dashboard = state.live.read();
        let listed = listing::list(dashboard.series.values(), &list_query)?;
        let series: Vec<SeriesRow> = listed.items.iter().map(|v| series_row(v)).collect();
        let stale = dashboard
            .series
            .values()
            .filter(|v| v.updated.elapsed() > STALE_AFTER)
            .count();
        let anomalous = dashboard.series.values().filter(|v| v.last.anomaly).count();
        // A first page of the default order, not yet full, shows new series as they come.
        let grows = list_query.q.is_none()
            && list_query.after.is_none()
            && query.sort.as_deref().is_none_or(|s| s == "anomaly")
            && series.len() < OVERVIEW_PAGE;
        // The overview's page size is fixed: no `limit` in its links.
        let next = listed.next.map(|after| {
            let link = ListQuery {
                limit: None,
                ..list_query.clone()
            };
            format!("/?{}", link.next_page(&after))
        });
        let status = state.live.status();
        let now = now_ms();
        OverviewPage {
            streams: status
                .streams
                .iter()
                .map(|s| StreamRow::of(s, now))
                .collect(),
            totals: SeriesTotals {
                series: dashboard.series.len(),
                anomalous,
                stale,
                matching: listed.total,
            },
            series,
            grows,
            q: list_query.q.clone().unwrap_or_default(),
            sort: query.sort.clone().unwrap_or_else(|| "anomaly".into()),
            paged: list_query.after.is_some(),
            next,
            events_per_second: format!("{events_per_second:.1}"),
            open_alerts: dashboard.open_alerts(),
            late_total: dashboard.late_total,
            dead_letters_total: dashboard.dead_letters_total,
            paused: status.paused.clone().unwrap_or_default(),
            viewer,
            blank_series: SeriesRow::default(),
        }
    };
    Ok(Html(page.render()?))
}

/// Rows the overview shows at once; the rest are a filter or a page away.
const OVERVIEW_PAGE: usize = 50;

/// `/?q=&sort=&after=`: the overview's filter, order and page (see [`listing`]).
#[derive(serde::Deserialize)]
pub struct OverviewQuery {
    q: Option<String>,
    sort: Option<String>,
    after: Option<String>,
}

/// Figures over every series, whatever the page shows.
pub struct SeriesTotals {
    pub series: usize,
    pub anomalous: usize,
    pub stale: usize,
    /// Series the filter keeps.
    pub matching: usize,
}

fn series_row(v: &SeriesView) -> SeriesRow {
    let recent = v.sparkline_points(120);
    let stale = v.updated.elapsed() > STALE_AFTER;
    SeriesRow {
        stream: v.stream.to_string(),
        series: v.series.to_string(),
        value: number(v.last.value),
        sma: number(v.last.sma),
        ewma: number(v.last.ewma),
        trend: match v.last.trend {
            Trend::Rising => "↗",
            Trend::Falling => "↘",
            Trend::Flat => "→",
        },
        slope: v.last.slope.map_or("–".into(), |s| format!("{s:+.4}/s")),
        z: v.last.z.map_or("–".into(), |z| format!("{z:+.2}")),
        status: if stale {
            "stale"
        } else if v.last.anomaly {
            "anomalous"
        } else {
            "normal"
        },
        sparkline: sparkline(&recent),
    }
}
