//! `/ws`: live updates for dashboard pages.
//!
//! Protocol (JSON text messages, every one with `"v": 1`):
//! - server → client, on connect and after falling behind: `{"type": "snapshot", "series":
//!   [...], "alerts": [...], "streams": [...], "events_per_second": f}`;
//! - server → client, at most every 100 ms: `{"type": "batch", "updates": [update, ...]}` where
//!   an update is `{"type": "point" | "window" | "alert" | "ack", ...record fields}`. With the
//!   subscription `all`, only the newest point of each series is kept per batch; subscribed to
//!   one series, every point of it is sent;
//! - server → client, every second: `{"type": "status", "streams": [...], "events_per_second": f,
//!   "open_alerts": n}`;
//! - client → server: `{"subscribe": "all"}` or `{"subscribe": {"stream": s, "series": s}}`.
//!
//! Each client reads the hub on its own; the hub never waits for anyone. A client too slow to
//! keep up loses its place in the hub and is sent a fresh snapshot; one that does not take a
//! message within [`SEND_TIMEOUT`] is disconnected.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tracing::debug;

use super::api::SeriesSummary;
use super::{check_same_origin, AppState, WebError};
use crate::live::Update;

/// Protocol version, in every message.
pub const PROTOCOL_VERSION: u32 = 1;
/// How often batched updates are sent.
const BATCH_EVERY: Duration = Duration::from_millis(100);
/// How often the pipeline status is sent.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// A client that does not take a message within this is dropped.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Alerts in a snapshot.
const SNAPSHOT_ALERTS: usize = 100;

pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, WebError> {
    check_same_origin(&headers)?;
    Ok(upgrade.on_upgrade(move |socket| client(socket, state)))
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum Subscription {
    /// "all"
    All(String),
    One {
        stream: String,
        series: String,
    },
}

impl Subscription {
    fn wants(&self, stream: &str, series: &str) -> bool {
        match self {
            Subscription::All(_) => true,
            Subscription::One {
                stream: s,
                series: n,
            } => s == stream && n == series,
        }
    }

    fn is_all(&self) -> bool {
        matches!(self, Subscription::All(_))
    }
}

#[derive(Deserialize)]
struct ClientMessage {
    subscribe: Subscription,
}

fn snapshot(state: &AppState) -> Value {
    let events_per_second = state.live.events_per_second();
    let dashboard = state.live.read();
    let series: Vec<Value> = dashboard
        .series
        .values()
        .map(|v| {
            let recent: Vec<(i64, f64)> = v.recent.iter().rev().take(120).rev().copied().collect();
            let mut summary = serde_json::to_value(SeriesSummary::from(v)).unwrap_or(Value::Null);
            summary["recent"] = json!(recent);
            summary
        })
        .collect();
    let mut alerts: Vec<_> = dashboard.alerts.values().cloned().collect();
    alerts.sort_by_key(|a| std::cmp::Reverse(a.ts));
    alerts.truncate(SNAPSHOT_ALERTS);
    json!({
        "v": PROTOCOL_VERSION,
        "type": "snapshot",
        "series": series,
        "alerts": alerts,
        "streams": dashboard.streams,
        "events_per_second": events_per_second,
    })
}

fn status(state: &AppState) -> Value {
    let events_per_second = state.live.events_per_second();
    let dashboard = state.live.read();
    json!({
        "v": PROTOCOL_VERSION,
        "type": "status",
        "streams": dashboard.streams,
        "events_per_second": events_per_second,
        "open_alerts": dashboard.open_alerts(),
        "paused": dashboard.paused,
    })
}

/// Updates gathered between two batches.
#[derive(Default)]
struct Pending {
    /// Newest point per series (subscription "all").
    latest: BTreeMap<(String, String), Update>,
    /// Everything else, in order.
    ordered: Vec<Update>,
}

impl Pending {
    fn add(&mut self, update: Update, subscription: &Subscription) {
        match &update {
            Update::Point(p) => {
                if !subscription.wants(&p.stream, &p.series) {
                    return;
                }
                if subscription.is_all() {
                    self.latest
                        .insert((p.stream.to_string(), p.series.to_string()), update);
                } else {
                    self.ordered.push(update);
                }
            }
            Update::Window(w) => {
                if subscription.wants(&w.stream, &w.series) {
                    self.ordered.push(update);
                }
            }
            Update::Alert(_) | Update::Ack(_) => self.ordered.push(update),
        }
    }

    fn take(&mut self) -> Option<Value> {
        if self.latest.is_empty() && self.ordered.is_empty() {
            return None;
        }
        let updates: Vec<Update> = std::mem::take(&mut self.latest)
            .into_values()
            .chain(std::mem::take(&mut self.ordered))
            .collect();
        Some(json!({ "v": PROTOCOL_VERSION, "type": "batch", "updates": updates }))
    }
}

async fn client(socket: WebSocket, state: AppState) {
    let (mut sender, mut receiver) = socket.split();
    let mut hub = state.live.subscribe();
    let mut subscription = Subscription::All("all".into());
    let mut pending = Pending::default();
    let mut batch = tokio::time::interval(BATCH_EVERY);
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    let send = |value: Value| Message::Text(value.to_string().into());

    if send_within(&mut sender, send(snapshot(&state)))
        .await
        .is_err()
    {
        return;
    }
    loop {
        let outgoing = tokio::select! {
            update = hub.recv() => match update {
                Ok(update) => {
                    pending.add(update, &subscription);
                    None
                }
                Err(RecvError::Lagged(missed)) => {
                    // Fell behind the hub: start again from the current state.
                    debug!(missed, "WebSocket client lagged; sending a fresh snapshot.");
                    pending = Pending::default();
                    Some(snapshot(&state))
                }
                Err(RecvError::Closed) => break,
            },
            message = receiver.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(request) = serde_json::from_str::<ClientMessage>(&text) {
                        subscription = request.subscribe;
                        pending = Pending::default();
                    }
                    None
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => None,
            },
            _ = batch.tick() => pending.take(),
            _ = status_tick.tick() => Some(status(&state)),
        };
        if let Some(value) = outgoing {
            if send_within(&mut sender, send(value)).await.is_err() {
                debug!("WebSocket client too slow or gone; disconnecting.");
                break;
            }
        }
    }
}

async fn send_within<S>(sender: &mut S, message: Message) -> Result<(), ()>
where
    S: futures_util::Sink<Message> + Unpin,
{
    match tokio::time::timeout(SEND_TIMEOUT, sender.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
