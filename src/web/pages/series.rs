//! `/series/{stream}/{series}`: one series' chart, windows and alerts, live or from the store.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse};

use super::alerts::{alert_row, AlertRow};
use super::format::number;
use super::viewer::Viewer;
use crate::clock::format_ms;
use crate::db::AlertFilter;
use crate::live::{Dashboard, RecentWindow, SeriesView, RECENT_WINDOWS};
use crate::record::{AlertRecord, Trend, WindowKind, WindowRecord};
use crate::web::error::{PageError, WebError};
use crate::web::state::AppState;

#[derive(Template)]
#[template(path = "series.html")]
pub struct SeriesPage {
    pub stream: String,
    pub series: String,
    pub value: String,
    pub sma: String,
    pub ewma: String,
    pub trend: &'static str,
    pub z: String,
    pub status: &'static str,
    /// Why the page shows less than usual.
    pub note: Option<String>,
    /// Chart data as JSON, safe inside a `<script>` element.
    pub chart_json: String,
    pub windows: Vec<WindowRow>,
    pub alerts: Vec<AlertRow>,
    pub blank_alert: AlertRow,
    pub open_alerts: usize,
    pub viewer: Viewer,
}

pub struct WindowRow {
    pub kind: &'static str,
    pub start: String,
    pub end: String,
    pub count: u64,
    pub mean: String,
    pub min: String,
    pub max: String,
    pub stddev: String,
}

/// JSON for a `<script type="application/json">` element: `<` is escaped so no value (a series
/// name, say) can close the element.
fn script_json(value: &serde_json::Value) -> String {
    value.to_string().replace('<', "\\u003c")
}

/// The series chart's data: the recent points as columns (time in seconds, value, SMA, EWMA,
/// band low, band high, anomaly marker, expected), as uPlot takes them.
fn chart_data(view: &SeriesView) -> serde_json::Value {
    let mut columns: [Vec<serde_json::Value>; 8] = Default::default();
    for p in view.recent.iter() {
        let cells = [
            serde_json::json!(p.ts as f64 / 1000.0),
            serde_json::json!(p.value),
            serde_json::json!(p.sma),
            serde_json::json!(p.ewma),
            serde_json::json!(p.lower),
            serde_json::json!(p.upper),
            serde_json::json!(p.anomaly.then_some(p.value)),
            serde_json::json!(p.expected),
        ];
        for (column, cell) in columns.iter_mut().zip(cells) {
            column.push(cell);
        }
    }
    serde_json::json!({
        "stream": *view.stream,
        "series": *view.series,
        "data": columns,
    })
}

/// The series' latest alerts the live view holds, newest first.
fn series_alerts(dashboard: &Dashboard, view: &SeriesView) -> Vec<AlertRow> {
    let mut mine: Vec<&AlertRecord> = dashboard
        .alerts
        .values()
        .filter(|a| a.stream == view.stream && a.series == view.series)
        .collect();
    mine.sort_by_key(|a| std::cmp::Reverse(a.ts));
    mine.into_iter()
        .take(50)
        .map(|a| alert_row(dashboard, a))
        .collect()
}

pub async fn series(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path((stream, series)): axum::extract::Path<(String, String)>,
) -> Result<impl IntoResponse, PageError> {
    let viewer = Viewer::of(&state, &headers);
    let live_page = {
        let dashboard = state.live.read();
        dashboard
            .series
            .get(&(Arc::from(stream.as_str()), Arc::from(series.as_str())))
            .map(|view| live_series_page(&dashboard, view, viewer.clone()))
    };
    let page = match live_page {
        Some(page) => page,
        None => stored_series_page(&state, &stream, &series, viewer).await?,
    };
    Ok(Html(page.render()?))
}

fn live_series_page(dashboard: &Dashboard, view: &SeriesView, viewer: Viewer) -> SeriesPage {
    let last = &view.last;
    SeriesPage {
        blank_alert: AlertRow::blank(),
        stream: view.stream.to_string(),
        series: view.series.to_string(),
        value: number(last.value),
        sma: number(last.sma),
        ewma: number(last.ewma),
        trend: match last.trend {
            Trend::Rising => "↗ rising",
            Trend::Falling => "↘ falling",
            Trend::Flat => "→ flat",
        },
        z: last.z.map_or("–".into(), |z| format!("{z:+.2}")),
        status: if last.anomaly { "anomalous" } else { "normal" },
        note: None,
        chart_json: script_json(&chart_data(view)),
        windows: view.windows.iter().rev().map(window_row).collect(),
        alerts: series_alerts(dashboard, view),
        open_alerts: dashboard.open_alerts(),
        viewer,
    }
}

/// Closed windows a series page lists.
const SERIES_PAGE_WINDOWS: i64 = 200;

/// The page of a series the live view no longer holds (idle, or over `live.max_memory`): its
/// latest windows (charted by their means) and alerts from the store.
async fn stored_series_page(
    state: &AppState,
    stream: &str,
    series: &str,
    viewer: Viewer,
) -> Result<SeriesPage, WebError> {
    let not_found = || WebError::NotFound(format!("series {stream}/{series}"));
    let store = state.store.as_ref().ok_or_else(not_found)?;
    let windows = store
        .latest_windows(stream, series, SERIES_PAGE_WINDOWS)
        .await?;
    let alerts = store
        .alerts(&AlertFilter {
            series: Some((stream.to_owned(), series.to_owned())),
            limit: 50,
            ..AlertFilter::default()
        })
        .await?;
    if windows.is_empty() && alerts.is_empty() {
        return Err(not_found());
    }
    let dashboard = state.live.read();
    Ok(SeriesPage {
        blank_alert: AlertRow::blank(),
        stream: stream.to_owned(),
        series: series.to_owned(),
        value: windows.first().map_or("–".into(), |w| number(w.last)),
        sma: "–".into(),
        ewma: "–".into(),
        trend: "–",
        z: "–".into(),
        status: "idle",
        note: Some(
            "No recent points in memory (idle, or beyond the live view's memory budget): \
             the chart shows the means of the stored windows. The series returns with its \
             next point."
                .into(),
        ),
        chart_json: script_json(&window_chart_data(stream, series, &windows)),
        windows: windows
            .iter()
            .take(RECENT_WINDOWS)
            .map(|w| window_row(&RecentWindow::from(w)))
            .collect(),
        alerts: alerts.iter().map(|a| alert_row(&dashboard, a)).collect(),
        open_alerts: dashboard.open_alerts(),
        viewer,
    })
}

/// A chart of stored windows (newest first) of the newest window's kind: their means at
/// their ends, in the columns of [`chart_data`].
fn window_chart_data(stream: &str, series: &str, windows: &[WindowRecord]) -> serde_json::Value {
    let kind = windows.first().map(|w| w.kind);
    let mut columns: [Vec<serde_json::Value>; 8] = Default::default();
    for w in windows.iter().rev().filter(|w| Some(w.kind) == kind) {
        columns[0].push(serde_json::json!(w.window_end as f64 / 1000.0));
        columns[1].push(serde_json::json!(w.mean));
        for column in &mut columns[2..] {
            column.push(serde_json::Value::Null);
        }
    }
    serde_json::json!({ "stream": stream, "series": series, "data": columns })
}

fn window_row(w: &RecentWindow) -> WindowRow {
    WindowRow {
        kind: match w.kind {
            // The one window kind whose name is not plain English.
            WindowKind::Global => "all time",
            kind => kind.as_str(),
        },
        start: format_ms(w.window_start),
        end: format_ms(w.window_end),
        count: w.count,
        mean: number(w.mean),
        min: number(w.min),
        max: number(w.max),
        stddev: w.stddev().map_or("–".into(), number),
    }
}
