//! Server-rendered pages (askama): real data on first paint, escaped everywhere by default.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;

use super::api::{list_alerts, AlertQuery};
use super::auth::safe_next;
use super::listing::{self, ListQuery};
use super::{asset_cache, check_same_origin, AppState, WebError};
use crate::clock::{format_ms, now_ms};
use crate::db::{AckEntry, AlertFilter};
use crate::live::{Dashboard, RecentWindow, SeriesView, RECENT_WINDOWS};
use crate::pipeline::{PipelineStatus, StreamProgress};
use crate::record::{
    AlertMethod, AlertRecord, AlertState, Trend, Verdict, WindowKind, WindowRecord,
};
use crate::NotificationDelivery;

/// What the page header shows of the person looking, and what they may do.
#[derive(Clone)]
pub struct Viewer {
    /// A token is set: show the login or logout link.
    pub login_enabled: bool,
    /// The logged-in user's name; empty when not logged in.
    pub user: String,
    /// May acknowledge: no token is set, or logged in.
    pub can_write: bool,
}

impl Viewer {
    fn of(state: &AppState, headers: &HeaderMap) -> Viewer {
        let user = state.auth.signed_in_user(headers);
        Viewer {
            login_enabled: state.auth.token_required(),
            can_write: !state.auth.token_required() || user.is_some(),
            user: user.unwrap_or_default(),
        }
    }
}

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
    fn of(s: &StreamProgress, now: i64) -> StreamRow {
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

#[derive(Template)]
#[template(path = "alerts.html")]
pub struct AlertsPage {
    /// A page of alerts, newest first.
    pub alerts: Vec<AlertRow>,
    /// Whether the page starts at the newest alert (alerts opening live go on top of it).
    pub newest: bool,
    /// The next (older) page's address while this one is full.
    pub older: Option<String>,
    /// The row the page script fills for an alert that opens live.
    pub blank_alert: AlertRow,
    pub filter: String,
    pub verdict: String,
    /// Per stream: the share of false alarms among the alerts people judged.
    pub verdicts: Vec<VerdictRow>,
    pub open_alerts: usize,
    pub viewer: Viewer,
}

pub struct VerdictRow {
    pub stream: String,
    pub judged: i64,
    pub false_alarms: i64,
    pub share: String,
}

#[derive(Default)]
pub struct AlertRow {
    pub id: String,
    /// The series around the alert as SVG polyline points (empty when no longer in memory),
    /// and where the alert's point is on it.
    pub spark: String,
    pub dot_x: String,
    pub dot_y: String,
    pub stream: String,
    pub series: String,
    pub time: String,
    pub value: String,
    pub expected: String,
    /// The band of normal values the detector used there.
    pub band: String,
    pub z: String,
    /// The likelihood score and probability, or |z| for a threshold alert.
    pub score: String,
    /// What fired, and what the expectation followed.
    pub why: String,
    pub direction: &'static str,
    pub severity: &'static str,
    pub state: &'static str,
    pub acked: String,
    /// When the last acknowledgement was (epoch ms), empty without one: the page script
    /// tells a new acknowledgement from the one shown by it.
    pub acked_at: String,
    pub note: String,
    /// The acknowledgements before the last, oldest first, each as one line.
    pub earlier_acks: Vec<String>,
    /// `real`, `false_alarm` or empty, and how to show it.
    pub verdict: &'static str,
    pub verdict_text: &'static str,
    pub can_ack: bool,
    /// How its notifications went (empty without receivers), in a word and in full.
    pub notified: String,
    pub notified_class: &'static str,
    pub notified_detail: String,
}

impl AlertRow {
    /// Adds the acknowledgements before the last one (the row shows the last itself).
    fn with_history(mut self, history: Option<&Vec<AckEntry>>) -> AlertRow {
        let Some((_last, earlier)) = history.and_then(|h| h.split_last()) else {
            return self;
        };
        self.earlier_acks = earlier
            .iter()
            .map(|ack| {
                let mut line = format!("{}, {}", ack.by, format_ms(ack.at));
                if let Some(verdict) = ack.verdict {
                    line += match verdict {
                        Verdict::Real => ": real",
                        Verdict::FalseAlarm => ": false alarm",
                    };
                }
                if let Some(note) = &ack.note {
                    line += &format!(" — {note}");
                }
                line
            })
            .collect();
        self
    }

    /// Adds how the alert's notifications went: delivered, or still being retried and why.
    fn with_deliveries(mut self, deliveries: Option<&Vec<NotificationDelivery>>) -> AlertRow {
        let Some(deliveries) = deliveries.filter(|d| !d.is_empty()) else {
            return self;
        };
        let pending: Vec<&NotificationDelivery> = deliveries
            .iter()
            .filter(|d| d.delivered_at.is_none())
            .collect();
        let mut targets: Vec<&str> = deliveries.iter().map(|d| d.target.as_str()).collect();
        targets.sort_unstable();
        targets.dedup();
        if pending.is_empty() {
            self.notified = format!("notified: {}", targets.join(", "));
            self.notified_class = "ok";
        } else {
            let attempts: i64 = pending.iter().map(|d| d.attempts).max().unwrap_or(0);
            self.notified = format!(
                "notifying {} ({attempts} attempt{})",
                pending[0].target,
                if attempts == 1 { "" } else { "s" }
            );
            self.notified_class = "pending";
        }
        self.notified_detail = deliveries
            .iter()
            .map(|d| match (&d.delivered_at, &d.last_error) {
                (Some(at), _) => format!("{} {}: delivered {}", d.target, d.event, format_ms(*at)),
                (None, Some(error)) => format!(
                    "{} {}: {} attempts, next {}, last error: {error}",
                    d.target,
                    d.event,
                    d.attempts,
                    format_ms(d.next_attempt)
                ),
                (None, None) => format!("{} {}: pending", d.target, d.event),
            })
            .collect::<Vec<_>>()
            .join("\n");
        self
    }
}

fn number(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// Maps `(time, value)` into a 120×28 sparkline box fitted to `points`.
fn spark_scale(points: &[(i64, f64)]) -> Option<impl Fn(i64, f64) -> (f64, f64)> {
    let (first, last) = (points.first()?.0, points.last()?.0);
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let span_t = (last - first).max(1) as f64;
    let span_v = if hi > lo { hi - lo } else { 1.0 };
    Some(move |t: i64, v: f64| {
        (
            (t - first) as f64 / span_t * 120.0,
            27.0 - (v - lo) / span_v * 26.0,
        )
    })
}

/// SVG polyline points of a sparkline.
fn sparkline(points: &[(i64, f64)]) -> String {
    let Some(scale) = spark_scale(points) else {
        return String::new();
    };
    points
        .iter()
        .map(|&(t, v)| {
            let (x, y) = scale(t, v);
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The alert's series around its point (5 minutes before, 2 after), from the points the
/// dashboard still holds, with the alert's point marked; `None` once they are gone.
fn alert_spark(dashboard: &Dashboard, a: &AlertRecord) -> Option<(String, f64, f64)> {
    let view = dashboard
        .series
        .get(&(a.stream.clone(), a.series.clone()))?;
    let around: Vec<(i64, f64)> = view
        .recent
        .iter()
        .filter(|p| p.ts >= a.ts - 300_000 && p.ts <= a.ts + 120_000)
        .map(|p| (p.ts, p.value))
        .collect();
    let &(_, value) = around.iter().find(|&&(t, _)| t == a.ts)?;
    if around.len() < 2 {
        return None;
    }
    let (x, y) = spark_scale(&around)?(a.ts, value);
    Some((sparkline(&around), x, y))
}

pub async fn overview(
    State(state): State<AppState>,
    Query(query): Query<OverviewQuery>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, WebError> {
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

/// Alerts on one page of the alerts page.
const ALERTS_PAGE: i64 = 100;

pub async fn alerts(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<AlertQuery>,
) -> Result<impl IntoResponse, WebError> {
    let filter = query.filter(ALERTS_PAGE)?;
    let alerts = list_alerts(&state, &filter).await?;
    let older = alerts
        .last()
        .filter(|_| alerts.len() as i64 == filter.limit)
        .map(|last| format!("/alerts?{}", query.next_page(last)));
    let verdicts = match &state.store {
        Some(store) => store.verdicts().await?,
        None => Vec::new(),
    };
    let (deliveries, history) = match &state.store {
        Some(store) => {
            let ids: Vec<String> = alerts.iter().map(|a| a.id.clone()).collect();
            (
                store.deliveries(&ids).await?,
                store.acknowledgements(&ids).await?,
            )
        }
        None => Default::default(),
    };
    let open_alerts = state.live.read().open_alerts();
    let page = AlertsPage {
        blank_alert: AlertRow::blank(),
        alerts: {
            let dashboard = state.live.read();
            alerts
                .iter()
                .map(|a| {
                    alert_row(&dashboard, a)
                        .with_deliveries(deliveries.get(&a.id))
                        .with_history(history.get(&a.id))
                })
                .collect()
        },
        newest: filter.before.is_none(),
        older,
        filter: query.state.unwrap_or_else(|| "all".into()),
        verdict: query.verdict.unwrap_or_else(|| "all".into()),
        verdicts: verdicts
            .into_iter()
            .map(|v| VerdictRow {
                share: format!(
                    "{:.0} %",
                    100.0 * v.false_alarms as f64 / v.judged.max(1) as f64
                ),
                stream: v.stream,
                judged: v.judged,
                false_alarms: v.false_alarms,
            })
            .collect(),
        open_alerts,
        viewer: Viewer::of(&state, &headers),
    };
    Ok(Html(page.render()?))
}

fn alert_row(dashboard: &Dashboard, a: &AlertRecord) -> AlertRow {
    let (spark, dot_x, dot_y) = alert_spark(dashboard, a).unwrap_or_default();
    let (verdict, verdict_text) = match a.verdict {
        Some(Verdict::Real) => (Verdict::Real.as_str(), "real"),
        Some(Verdict::FalseAlarm) => (Verdict::FalseAlarm.as_str(), "false alarm"),
        None => ("", ""),
    };
    AlertRow {
        spark,
        dot_x: format!("{dot_x:.1}"),
        dot_y: format!("{dot_y:.1}"),
        id: a.id.clone(),
        stream: a.stream.to_string(),
        series: a.series.to_string(),
        time: format_ms(a.ts),
        value: number(a.value),
        expected: number(a.expected),
        band: band_text(a.lower, a.upper),
        z: format!("{:+.2}", a.z),
        score: score_text(a.method, a.score, a.probability),
        why: why_text(a.method, a.expectation.as_deref()),
        direction: a.direction.as_str(),
        severity: a.severity.as_str(),
        state: a.state.as_str(),
        acked: match (&a.acked_by, a.acked_at) {
            (Some(by), Some(at)) => format!("{by}, {}", format_ms(at)),
            _ => String::new(),
        },
        acked_at: a.acked_at.map(|at| at.to_string()).unwrap_or_default(),
        note: a.note.clone().unwrap_or_default(),
        verdict,
        verdict_text,
        can_ack: a.state == AlertState::Open,
        ..AlertRow::default()
    }
}

impl AlertRow {
    /// The row the page script fills for an alert that opens while the page is open.
    fn blank() -> AlertRow {
        AlertRow {
            can_ack: true,
            ..AlertRow::default()
        }
    }
}

/// `10.2 – 14.8`, or "unbounded" where no value would have been anomalous on its own.
fn band_text(lower: Option<f64>, upper: Option<f64>) -> String {
    match (lower, upper) {
        (Some(l), Some(u)) => format!("{} – {}", number(l), number(u)),
        _ => "unbounded".into(),
    }
}

/// The likelihood score and tail probability, or |z| and its normal tail for a threshold alert.
fn score_text(method: AlertMethod, score: Option<f64>, probability: Option<f64>) -> String {
    let p = probability.map_or(String::new(), |p| format!("p {p:.1e}"));
    match (method, score) {
        (AlertMethod::Likelihood | AlertMethod::Spike, Some(s)) => format!("{s:.1} σ, {p}"),
        (AlertMethod::Threshold, Some(s)) => format!("|z| {s:.1}, {p}"),
        (_, None) => p,
    }
}

/// What fired, in words: `likelihood, daily pattern`.
fn why_text(method: AlertMethod, expectation: Option<&str>) -> String {
    let method = method.as_str();
    match expectation {
        Some("flat") | None => method.to_owned(),
        Some(model) => format!("{method}, {}", expectation_text(model)),
    }
}

/// How the expectation model reads on the dashboard.
fn expectation_text(model: &str) -> String {
    match model {
        "1d" => "daily pattern".to_owned(),
        "1w" => "weekly pattern".to_owned(),
        period => format!("{period} pattern"),
    }
}

pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                "text/css; charset=utf-8"
                    .parse()
                    .unwrap_or(header::HeaderValue::from_static("text/css")),
            ),
            asset_cache(),
        ],
        include_str!("../../static/app.css"),
    )
}

/// The dashboard's script modules (`static/js/`), embedded in the binary.
const SCRIPTS: [(&str, &str); 9] = [
    ("main.js", include_str!("../../static/js/main.js")),
    ("alerts.js", include_str!("../../static/js/alerts.js")),
    ("chrome.js", include_str!("../../static/js/chrome.js")),
    ("format.js", include_str!("../../static/js/format.js")),
    ("live.js", include_str!("../../static/js/live.js")),
    ("overview.js", include_str!("../../static/js/overview.js")),
    ("series.js", include_str!("../../static/js/series.js")),
    ("spark.js", include_str!("../../static/js/spark.js")),
    ("streams.js", include_str!("../../static/js/streams.js")),
];

/// `GET /static/js/{file}`: one of the dashboard's script modules.
pub async fn script(
    axum::extract::Path(file): axum::extract::Path<String>,
) -> Result<impl IntoResponse, WebError> {
    let (_, body) = SCRIPTS
        .iter()
        .find(|(name, _)| *name == file)
        .ok_or_else(|| WebError::NotFound(format!("script {file:?}")))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            asset_cache(),
        ],
        *body,
    ))
}

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
) -> Result<impl IntoResponse, WebError> {
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

pub async fn uplot_script() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            asset_cache(),
        ],
        include_str!("../../static/vendor/uplot/uPlot.iife.min.js"),
    )
}

pub async fn uplot_style() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            asset_cache(),
        ],
        include_str!("../../static/vendor/uplot/uPlot.min.css"),
    )
}

#[derive(Template)]
#[template(path = "status.html")]
pub struct StatusPage {
    pub streams: Vec<StreamStatus>,
    pub late: Vec<LateRow>,
    pub dead_letters: Vec<DeadLetterRow>,
    pub open_alerts: usize,
    pub viewer: Viewer,
    /// Why the pipeline is paused; empty when it runs.
    pub paused: String,
    pub engine: EngineStatus,
}

/// Checkpoints, shards and sinks as the status page shows them (static/js/streams.js
/// `applyEngine` writes the same after a live update).
pub struct EngineStatus {
    pub checkpoint_age: String,
    pub checkpoint_took: String,
    pub checkpoint_pause: String,
    pub checkpoint_bytes: String,
    pub checkpoints: u64,
    pub shards: Vec<(u64, String)>,
    /// Kind, writes, mean write time.
    pub sinks: Vec<(String, u64, String)>,
}

impl EngineStatus {
    fn of(status: &PipelineStatus, now: i64) -> EngineStatus {
        let c = &status.checkpoints;
        let dash = || "–".to_string();
        let when = |ms: u64| c.written_at.map_or_else(dash, |_| millis(ms as f64));
        EngineStatus {
            checkpoint_age: c
                .written_at
                .map_or_else(dash, |at| format!("{} ago", seconds(now - at))),
            checkpoint_took: when(c.took_ms),
            checkpoint_pause: when(c.longest_pause_ms),
            checkpoint_bytes: c.written_at.map_or_else(dash, |_| byte_size(c.bytes)),
            checkpoints: c.count,
            shards: status
                .shards
                .iter()
                .map(|s| (s.queued, seconds(s.busy_ms as i64)))
                .collect(),
            sinks: status
                .sinks
                .iter()
                .map(|s| {
                    let mean = match s.writes {
                        0 => dash(),
                        n => millis(s.write_us as f64 / n as f64 / 1000.0),
                    };
                    (s.kind.clone(), s.writes, mean)
                })
                .collect(),
        }
    }
}

/// `12.3 ms`, as format.js `millis`.
fn millis(ms: f64) -> String {
    format!("{ms:.1} ms")
}

/// `20.1 MB`, as format.js `bytes`.
fn byte_size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.2} GB", bytes as f64 / 1e9),
    }
}

pub struct StreamStatus {
    pub row: StreamRow,
    pub partitions: Vec<PartitionRow>,
}

pub struct PartitionRow {
    pub split: u32,
    pub source: String,
    pub partition: u32,
    pub next_offset: String,
    pub lag: String,
    pub watermark: String,
    /// `active`, `idle`, or `waiting` (assigned, nothing read yet: holds the watermark back).
    pub state: &'static str,
}

pub struct LateRow {
    pub stream: String,
    pub series: String,
    pub time: String,
    pub watermark: String,
    pub late_by: String,
    pub source: String,
    pub partition: u32,
    pub offset: u64,
}

pub struct DeadLetterRow {
    pub stream: String,
    pub source: String,
    pub partition: u32,
    pub offset: u64,
    pub reason: String,
    pub payload: String,
}

/// A span of time as people read it: `12.5 s`, `4 min 10 s`, `3 h 5 min`, `2 d 4 h`.
fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let s = ms.unsigned_abs() / 1000;
    match s {
        0..60 => format!("{sign}{:.1} s", ms.unsigned_abs() as f64 / 1000.0),
        60..3600 => format!("{sign}{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{sign}{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{sign}{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

/// `/status`: per stream and partition — offsets, lag, watermark, idle or not — and the recent
/// late events and dead letters with their reasons.
pub async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, WebError> {
    let viewer = Viewer::of(&state, &headers);
    let page = {
        let status = state.live.status().clone();
        let dashboard = state.live.read();
        let now = now_ms();
        let dash = || "–".to_string();
        StatusPage {
            streams: status
                .streams
                .iter()
                .map(|s| StreamStatus {
                    row: StreamRow::of(s, now),
                    partitions: s
                        .partitions
                        .iter()
                        .map(|p| PartitionRow {
                            split: p.split,
                            source: if p.source.is_empty() {
                                format!("split {}", p.split)
                            } else {
                                p.source.clone()
                            },
                            partition: p.partition,
                            next_offset: p.next_offset.map_or_else(dash, |o| o.to_string()),
                            lag: p.lag.map_or_else(dash, |l| l.to_string()),
                            watermark: p.watermark.map_or_else(dash, format_ms),
                            state: match (p.idle, p.watermark) {
                                (true, _) => "idle",
                                (false, None) => "waiting",
                                (false, Some(_)) => "active",
                            },
                        })
                        .collect(),
                })
                .collect(),
            late: dashboard
                .recent_late
                .iter()
                .rev()
                .map(|l| LateRow {
                    stream: l.stream.to_string(),
                    series: l.series.to_string(),
                    time: format_ms(l.ts),
                    watermark: format_ms(l.watermark),
                    late_by: seconds(l.lateness_ms),
                    source: l.source.to_string(),
                    partition: l.partition,
                    offset: l.offset,
                })
                .collect(),
            dead_letters: dashboard
                .recent_dead_letters
                .iter()
                .rev()
                .map(|d| DeadLetterRow {
                    stream: d.stream.to_string(),
                    source: d.source.to_string(),
                    partition: d.partition,
                    offset: d.offset,
                    reason: d.reason.clone(),
                    payload: d.payload.clone(),
                })
                .collect(),
            open_alerts: dashboard.open_alerts(),
            engine: EngineStatus::of(&status, now),
            paused: status.paused.unwrap_or_default(),
            viewer,
        }
    };
    Ok(Html(page.render()?))
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub next: String,
    pub error: String,
    pub open_alerts: usize,
    pub viewer: Viewer,
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /login`: the form that exchanges the token for a session cookie.
pub async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Result<Response, WebError> {
    let next = safe_next(query.next.as_deref());
    if !state.auth.token_required() {
        return Ok(Redirect::to(&next).into_response());
    }
    let page = LoginPage {
        next,
        error: String::new(),
        open_alerts: 0,
        viewer: Viewer::of(&state, &headers),
    };
    Ok(Html(page.render()?).into_response())
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
    #[serde(default)]
    name: String,
    next: Option<String>,
}

/// How long a wrong token typed into the login form waits for its answer.
const WRONG_TOKEN_DELAY: Duration = Duration::from_secs(1);

/// Longest user name an acknowledgement records.
const NAME_LIMIT: usize = 100;

/// `POST /login`: checks the token, opens a session, and goes back where the user was.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, WebError> {
    check_same_origin(&headers)?;
    let next = safe_next(form.next.as_deref());
    let name: String = match form.name.trim() {
        "" => "dashboard user".to_owned(),
        name => name.chars().take(NAME_LIMIT).collect(),
    };
    match state.auth.login(&form.token, &name) {
        Ok(session) => Ok((
            [(
                header::SET_COOKIE,
                state.auth.session_cookie(Some(&session)),
            )],
            Redirect::to(&next),
        )
            .into_response()),
        Err(WebError::Unauthorized) => {
            // Every wrong guess costs a second: guessing a token through the form is slow.
            tokio::time::sleep(WRONG_TOKEN_DELAY).await;
            let page = LoginPage {
                next,
                error: "That token is not the one this dashboard was started with.".into(),
                open_alerts: 0,
                viewer: Viewer::of(&state, &headers),
            };
            Ok((StatusCode::UNAUTHORIZED, Html(page.render()?)).into_response())
        }
        Err(other) => Err(other),
    }
}

/// `POST /logout`: ends the session and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    check_same_origin(&headers)?;
    state.auth.logout(&headers);
    Ok((
        [(header::SET_COOKIE, state.auth.session_cookie(None))],
        Redirect::to("/"),
    )
        .into_response())
}
