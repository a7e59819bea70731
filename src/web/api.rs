//! The JSON API, `/healthz` and `/metrics`.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{check_same_origin, AppState, WebError, NOTE_LIMIT};
use crate::live::SeriesView;
use crate::record::{AlertRecord, AlertState};

pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /api/status`: the status page's data — streams with their partitions, recent late
/// events and dead letters.
pub async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
    let dashboard = state.live.read();
    Json(serde_json::json!({
        "streams": dashboard.streams,
        "late": dashboard.recent_late.iter().rev().collect::<Vec<_>>(),
        "dead_letters": dashboard.recent_dead_letters.iter().rev().collect::<Vec<_>>(),
    }))
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

pub async fn series_list(State(state): State<AppState>) -> Json<Vec<SeriesSummary>> {
    let dashboard = state.live.read();
    Json(dashboard.series.values().map(SeriesSummary::from).collect())
}

pub async fn series_one(
    State(state): State<AppState>,
    Path((stream, series)): Path<(String, String)>,
) -> Result<Json<SeriesView>, WebError> {
    let dashboard = state.live.read();
    dashboard
        .series
        .values()
        .find(|v| *v.stream == *stream && *v.series == *series)
        .cloned()
        .map(Json)
        .ok_or_else(|| WebError::NotFound(format!("series {stream}/{series}")))
}

#[derive(Deserialize)]
pub struct AlertQuery {
    state: Option<String>,
    limit: Option<i64>,
}

fn parse_state(text: &str) -> Result<AlertState, WebError> {
    match text {
        "open" => Ok(AlertState::Open),
        "acknowledged" => Ok(AlertState::Acknowledged),
        "resolved" => Ok(AlertState::Resolved),
        other => Err(WebError::BadRequest(format!(
            "unknown state {other:?}: expected open, acknowledged or resolved"
        ))),
    }
}

/// Alerts newest first, from the store when there is one, else from the live view.
pub async fn alerts(
    State(state): State<AppState>,
    Query(query): Query<AlertQuery>,
) -> Result<Json<Vec<AlertRecord>>, WebError> {
    let wanted = query.state.as_deref().map(parse_state).transpose()?;
    let limit = query.limit.unwrap_or(200).clamp(1, 5000);
    Ok(Json(list_alerts(&state, wanted, limit).await?))
}

pub(super) async fn list_alerts(
    state: &AppState,
    wanted: Option<AlertState>,
    limit: i64,
) -> Result<Vec<AlertRecord>, WebError> {
    if let Some(store) = &state.store {
        return Ok(store.alerts(wanted, limit).await?);
    }
    let dashboard = state.live.read();
    let mut alerts: Vec<AlertRecord> = dashboard
        .alerts
        .values()
        .filter(|a| wanted.is_none_or(|s| a.state == s))
        .cloned()
        .collect();
    alerts.sort_by_key(|a| std::cmp::Reverse(a.ts));
    alerts.truncate(limit as usize);
    Ok(alerts)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AckBody {
    /// Who acknowledges; default "api" with a token, "anonymous" without.
    by: Option<String>,
    note: Option<String>,
}

/// `POST /api/alerts/{id}/ack` with a JSON body `{"by": "...", "note": "..."}` (both optional).
///
/// CSRF-safe without cookies or tokens in forms: a JSON content type cannot be sent across
/// origins without a CORS preflight, which this server never grants, and a request whose
/// `Origin` is not this host is refused outright.
pub async fn acknowledge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<AlertRecord>, WebError> {
    let authenticated = check_token(&state, &headers)?;
    check_same_origin(&headers)?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim() == "application/json")
        });
    if !is_json {
        return Err(WebError::UnsupportedMediaType);
    }
    let body: AckBody = if body.iter().all(u8::is_ascii_whitespace) {
        AckBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| WebError::BadRequest(format!("invalid body: {e}")))?
    };
    let by = body
        .by
        .map(|b| b.trim().to_owned())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| if authenticated { "api" } else { "anonymous" }.to_owned());
    if by.chars().count() > 100 {
        return Err(WebError::BadRequest("by: at most 100 characters".into()));
    }
    let note = body.note.filter(|n| !n.trim().is_empty());
    if note
        .as_ref()
        .is_some_and(|n| n.chars().count() > NOTE_LIMIT)
    {
        return Err(WebError::BadRequest(format!(
            "note: at most {NOTE_LIMIT} characters"
        )));
    }
    let Some(store) = &state.store else {
        return Err(WebError::Unavailable(
            "acknowledgements are stored in the database: add a db sink to the pipeline".into(),
        ));
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let alert = store
        .acknowledge(&id, &by, note.as_deref(), now)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("alert {id}")))?;
    // Stored first; only now does every client hear of it.
    state.live.acknowledged(alert.clone());
    Ok(Json(alert))
}

/// `Ok(true)` when a valid token was presented, `Ok(false)` when none is required.
fn check_token(state: &AppState, headers: &HeaderMap) -> Result<bool, WebError> {
    let Some(expected) = &state.auth_token else {
        return Ok(false);
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(true),
        _ => Err(WebError::Unauthorized),
    }
}

/// Compares without an early exit, so response timing does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Prometheus text exposition of the pipeline's counters.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let events_per_second = state.live.events_per_second();
    let dashboard = state.live.read();
    let mut text = String::new();
    let mut family = |name: &str, kind: &str, help: &str| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        "tidewatch_messages_total",
        "counter",
        "Messages read, per stream.",
    );
    family(
        "tidewatch_events_total",
        "counter",
        "Events accepted by the engine, per stream.",
    );
    family(
        "tidewatch_late_events_total",
        "counter",
        "Events behind the watermark, per stream.",
    );
    family(
        "tidewatch_duplicates_total",
        "counter",
        "Duplicate events dropped, per stream.",
    );
    family(
        "tidewatch_dead_letters_total",
        "counter",
        "Inputs that could not be decoded, per stream.",
    );
    family(
        "tidewatch_watermark_ms",
        "gauge",
        "Event-time watermark, epoch ms, per stream.",
    );
    family(
        "tidewatch_records_total",
        "counter",
        "Records written, per kind.",
    );
    family(
        "tidewatch_consumer_lag",
        "gauge",
        "Messages behind the newest offset, per source partition.",
    );
    family(
        "tidewatch_partition_watermark_ms",
        "gauge",
        "Watermark contribution of a source partition, epoch ms.",
    );
    family(
        "tidewatch_partition_idle",
        "gauge",
        "1 when the partition is idle and not holding the watermark back.",
    );
    family("tidewatch_open_alerts", "gauge", "Alerts open now.");
    family("tidewatch_series", "gauge", "Series seen.");
    family(
        "tidewatch_events_per_second",
        "gauge",
        "Accepted events per second since start.",
    );
    for s in &dashboard.streams {
        let stream = escape_label(&s.name);
        for (name, value) in [
            ("tidewatch_messages_total", s.messages),
            ("tidewatch_events_total", s.accepted),
            ("tidewatch_late_events_total", s.late),
            ("tidewatch_duplicates_total", s.duplicates),
            ("tidewatch_dead_letters_total", s.dead_letters),
        ] {
            let _ = writeln!(text, "{name}{{stream=\"{stream}\"}} {value}");
        }
        if let Some(watermark) = s.watermark {
            let _ = writeln!(
                text,
                "tidewatch_watermark_ms{{stream=\"{stream}\"}} {watermark}"
            );
        }
        for p in &s.partitions {
            let labels = format!(
                "stream=\"{stream}\",source=\"{}\",partition=\"{}\"",
                escape_label(&p.source),
                p.partition
            );
            if let Some(lag) = p.lag {
                let _ = writeln!(text, "tidewatch_consumer_lag{{{labels}}} {lag}");
            }
            if let Some(watermark) = p.watermark {
                let _ = writeln!(
                    text,
                    "tidewatch_partition_watermark_ms{{{labels}}} {watermark}"
                );
            }
            let _ = writeln!(
                text,
                "tidewatch_partition_idle{{{labels}}} {}",
                u8::from(p.idle)
            );
        }
    }
    for (kind, n) in &dashboard.records {
        let _ = writeln!(text, "tidewatch_records_total{{kind=\"{kind}\"}} {n}");
    }
    let _ = writeln!(text, "tidewatch_open_alerts {}", dashboard.open_alerts());
    let _ = writeln!(text, "tidewatch_series {}", dashboard.series.len());
    let _ = writeln!(text, "tidewatch_events_per_second {events_per_second:.3}");
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// Label values escape backslash, double quote and newline (Prometheus text format).
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
