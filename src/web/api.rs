//! The JSON API, `/healthz` and `/metrics`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::Principal;
use super::error::WebError;
use super::hosts::check_same_origin;
use super::listing::{self, ListQuery, SeriesSummary};
use super::queries::{list_alerts, AlertQuery};
use super::state::AppState;
use crate::clock::now_ms;
use crate::db::{AckEntry, Acknowledgement};
use crate::record::PointRecord;
use crate::record::{AlertRecord, Verdict};
use crate::NotificationDelivery;

/// Longest acknowledgement note, in characters.
pub const NOTE_LIMIT: usize = 2000;

pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /api/status`: the status page's data — streams with their partitions, recent late
/// events and dead letters.
pub async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
    let (late, dead_letters) = {
        let dashboard = state.live.read();
        (
            dashboard
                .recent_late
                .iter()
                .rev()
                .cloned()
                .collect::<Vec<_>>(),
            dashboard
                .recent_dead_letters
                .iter()
                .rev()
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    let status = state.live.status().clone();
    Json(serde_json::json!({
        "streams": status.streams,
        "paused": status.paused,
        "late": late,
        "dead_letters": dead_letters,
    }))
}

/// One series with its recent points: `GET /api/series/{stream}/{series}`.
#[derive(Serialize)]
struct SeriesDetail {
    stream: Arc<str>,
    series: Arc<str>,
    last: Arc<PointRecord>,
    /// `(ts, value)`, oldest first.
    recent: Vec<(i64, f64)>,
}

/// `GET /api/series?q=&sort=&limit=&after=`: one page of series with their latest analytics
/// (see [`listing`]). `X-Total-Count` says how many match; a `Link` header with `rel="next"`
/// gives the next page while there is one.
pub async fn series_list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<impl IntoResponse, WebError> {
    let dashboard = state.live.read();
    let page = listing::list(dashboard.series.values(), &query)?;
    let items: Vec<SeriesSummary> = page.items.iter().map(|v| SeriesSummary::from(*v)).collect();
    let mut headers = HeaderMap::new();
    headers.insert("x-total-count", page.total.into());
    if let Some(after) = page.next {
        let link = format!("</api/series?{}>; rel=\"next\"", query.next_page(&after));
        if let Ok(value) = header::HeaderValue::from_str(&link) {
            headers.insert(header::LINK, value);
        }
    }
    Ok((headers, Json(items)))
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    from: Option<i64>,
    to: Option<i64>,
}

/// Longest history one request may ask for.
const HISTORY_MAX_MS: i64 = 31 * 24 * 3_600_000;
/// Most windows one history answer holds.
const HISTORY_MAX_WINDOWS: i64 = 20_000;

/// `GET /api/series/{stream}/{series}`: the live view (recent points with their analytics).
/// With `from` and/or `to` (epoch ms; default the 24 hours up to now): the series' closed
/// windows starting in `[from, to)` from the store, the history beyond the live view.
pub async fn series_one(
    State(state): State<AppState>,
    Path((stream, series)): Path<(String, String)>,
    Query(range): Query<HistoryQuery>,
) -> Result<axum::response::Response, WebError> {
    if range.from.is_none() && range.to.is_none() {
        let detail = state
            .live
            .read()
            .series
            .get(&(Arc::from(stream.as_str()), Arc::from(series.as_str())))
            .map(|view| SeriesDetail {
                stream: view.stream.clone(),
                series: view.series.clone(),
                last: view.last.clone(),
                recent: view.sparkline_points(usize::MAX),
            });
        return detail
            .map(|detail| Json(detail).into_response())
            .ok_or_else(|| WebError::NotFound(format!("series {stream}/{series}")));
    }
    let to = range.to.unwrap_or_else(now_ms);
    let from = range.from.unwrap_or(to.saturating_sub(24 * 3_600_000));
    if from >= to || to.saturating_sub(from) > HISTORY_MAX_MS {
        return Err(WebError::BadRequest(
            "from must be before to, at most 31 days apart (epoch milliseconds)".into(),
        ));
    }
    let store = state.store.as_ref().ok_or_else(|| {
        WebError::Unavailable("history is read from the database: add a db sink".into())
    })?;
    let windows = store
        .windows(&stream, &series, from, to, HISTORY_MAX_WINDOWS)
        .await?;
    Ok(Json(serde_json::json!({
        "stream": stream,
        "series": series,
        "from": from,
        "to": to,
        "windows": windows,
    }))
    .into_response())
}

/// `GET /api/alerts?state=&verdict=&stream=&series=&before=&limit=`: alerts newest first, one
/// page (default 200) at a time; a `Link` header with `rel="next"` gives the next page while
/// the page is full. `?verdict=real|false_alarm|none` exports what people judged (or did not
/// yet).
pub async fn alerts(
    State(state): State<AppState>,
    Query(query): Query<AlertQuery>,
) -> Result<impl IntoResponse, WebError> {
    let filter = query.filter(200)?;
    let alerts = list_alerts(&state, &filter).await?;
    let mut headers = HeaderMap::new();
    if let Some(last) = alerts
        .last()
        .filter(|_| alerts.len() as i64 == filter.limit)
    {
        let link = format!("</api/alerts?{}>; rel=\"next\"", query.next_page(last));
        if let Ok(value) = header::HeaderValue::from_str(&link) {
            headers.insert(header::LINK, value);
        }
    }
    Ok((headers, Json(alerts)))
}

/// `GET /api/alerts/{id}/notifications`: how the alert's notifications went, per receiver
/// and event (delivered when, or attempts, next attempt and last error).
pub async fn alert_notifications(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<NotificationDelivery>>, WebError> {
    let store = state.store.as_ref().ok_or_else(|| {
        WebError::Unavailable("notifications are kept in the database: add a db sink".into())
    })?;
    let mut deliveries = store.deliveries(std::slice::from_ref(&id)).await?;
    Ok(Json(deliveries.remove(&id).unwrap_or_default()))
}

/// `GET /api/alerts/{id}/acknowledgements`: every acknowledgement of the alert, oldest first
/// (the alert itself shows only the last).
pub async fn alert_acknowledgements(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<AckEntry>>, WebError> {
    let store = store_of(&state)?;
    let mut history = store.acknowledgements(std::slice::from_ref(&id)).await?;
    Ok(Json(history.remove(&id).unwrap_or_default()))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AckBody {
    /// Who acknowledges; default "api" with a token, "anonymous" without.
    by: Option<String>,
    note: Option<String>,
    /// Was it a real problem? `"real"` or `"false_alarm"`.
    verdict: Option<Verdict>,
}

/// `POST /api/alerts/{id}/ack` with a JSON body `{"by": "...", "note": "...", "verdict":
/// "real" | "false_alarm"}` (all optional).
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
    let ack: AckBody = parse_ack_body(&state, &headers, &body)?;
    let (by, note) = ack_fields(&state, &headers, ack.by, ack.note)?;
    let store = store_of(&state)?;
    let alert = store
        .acknowledge(
            &id,
            &Acknowledgement {
                by: &by,
                note: note.as_deref(),
                verdict: ack.verdict,
                at: now_ms(),
            },
        )
        .await?
        .ok_or_else(|| WebError::NotFound(format!("alert {id}")))?;
    // Stored first; only now does every client hear of it.
    state.live.acknowledged(alert.clone());
    Ok(Json(alert))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckManyBody {
    ids: Vec<String>,
    by: Option<String>,
    note: Option<String>,
    verdict: Option<Verdict>,
}

/// Most alerts one bulk acknowledgement may name.
const ACK_MANY_LIMIT: usize = 500;

/// `POST /api/alerts/ack` with `{"ids": [...], "by": "...", "note": "..."}`: acknowledges
/// several alerts at once, all or none (an unknown id is a 404 that acknowledges nothing).
pub async fn acknowledge_many(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Vec<AlertRecord>>, WebError> {
    let ack: AckManyBody = parse_ack_body(&state, &headers, &body)?;
    if ack.ids.is_empty() || ack.ids.len() > ACK_MANY_LIMIT {
        return Err(WebError::BadRequest(format!(
            "ids: between 1 and {ACK_MANY_LIMIT} alert ids"
        )));
    }
    let (by, note) = ack_fields(&state, &headers, ack.by, ack.note)?;
    let store = store_of(&state)?;
    let alerts = store
        .acknowledge_many(
            &ack.ids,
            &Acknowledgement {
                by: &by,
                note: note.as_deref(),
                verdict: ack.verdict,
                at: now_ms(),
            },
        )
        .await?
        .map_err(|missing| WebError::NotFound(format!("alerts {}", missing.join(", "))))?;
    for alert in &alerts {
        state.live.acknowledged(alert.clone());
    }
    Ok(Json(alerts))
}

/// Checks who is asking, where from and in which format, then parses the JSON body (an empty
/// body is the type's default when it has one).
fn parse_ack_body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, WebError> {
    state.auth.principal(headers)?;
    check_same_origin(headers)?;
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
    let text = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    // The path names the field a bad value is in: `invalid body: verdict: unknown variant ...`.
    let mut json = serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        WebError::BadRequest(match path.as_str() {
            "." => format!("invalid body: {inner}"),
            field => format!("invalid body: {field}: {inner}"),
        })
    })
}

/// Who acknowledges (a logged-in user is who they logged in as; others may say, else "api" or
/// "anonymous") and the note, both within their limits.
fn ack_fields(
    state: &AppState,
    headers: &HeaderMap,
    by: Option<String>,
    note: Option<String>,
) -> Result<(String, Option<String>), WebError> {
    let principal = state.auth.principal(headers)?;
    let by = match &principal {
        Principal::User(name) => name.clone(),
        other => by
            .map(|b| b.trim().to_owned())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| other.default_name().to_owned()),
    };
    if by.chars().count() > 100 {
        return Err(WebError::BadRequest("by: at most 100 characters".into()));
    }
    let note = note.filter(|n| !n.trim().is_empty());
    if note
        .as_ref()
        .is_some_and(|n| n.chars().count() > NOTE_LIMIT)
    {
        return Err(WebError::BadRequest(format!(
            "note: at most {NOTE_LIMIT} characters"
        )));
    }
    Ok((by, note))
}

fn store_of(state: &AppState) -> Result<&crate::db::Store, WebError> {
    state.store.as_ref().ok_or_else(|| {
        WebError::Unavailable(
            "acknowledgements are stored in the database: add a db sink to the pipeline".into(),
        )
    })
}
