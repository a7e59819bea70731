//! `/ws`: live updates for dashboard pages.
//!
//! Protocol (JSON text messages, every one with `"v": 2`):
//! - server → client, on connect: `{"type": "snapshot", "series": [...], "alerts": [...],
//!   "streams": [...], "events_per_second": f}` with the overview's first page of series (50,
//!   most anomalous first, each with its sparkline points), the 100 newest alerts and the
//!   streams' figures: bounded, however many series there are. Again after a page subscription
//!   (with that page's series) and after falling behind;
//! - server → client, at most every 100 ms (50 ms for a page): `{"type": "batch", "updates":
//!   [update, ...]}` where an update is `{"type": "point" | "window" | "alert" | "ack",
//!   ...record fields}`. Subscribed to `all`, only the newest point of each series is kept per
//!   batch, and every window; to a page, the newest point of each of its series and no windows
//!   (a page shows none); to one series, every point and window of it. Alerts and
//!   acknowledgements go to everyone;
//! - server → client, every second: `{"type": "status", "streams": [...], "events_per_second": f,
//!   "open_alerts": n, "paused": reason | null, "shards": [...], "sinks": [...], "checkpoints":
//!   {...}}` (the fields of `pipeline::PipelineStatus`);
//! - client → server: `{"subscribe": "all"}` (every series: for small setups and tools; the
//!   default), `{"subscribe": {"series": [{"stream": s, "series": s}, ...]}}` (the series a
//!   page shows, at most 500), or `{"subscribe": {"stream": s, "series": s}}` (one series).
//!
//! A snapshot holds only what the client subscribed to: every series at 20,000 series is a
//! 47 MB message, which a browser tab showing 50 of them should not have to take.
//!
//! Fan-out: the pipeline publishes one batch of updates per sink write to the live hub. One
//! task ([`Fanout`]) reads it for every client subscribed to `all`: it keeps the newest point
//! per series, and every 100 ms serialises one batch message that all those clients share (and
//! once a second one status message for everyone). A client of a page or of one series registers
//! its series in the interest index ([`Interest`]), and the same task hands it the updates of
//! those series only. Nobody ever waits for a client: one too slow to keep up loses its place
//! and is sent a fresh snapshot (and when the shared task itself falls behind, every client
//! is); one that does not take a message within [`SEND_TIMEOUT`] is disconnected.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::broadcast::{self, error::RecvError};
use tracing::debug;

use super::error::WebError;
use super::hosts::check_same_origin;
use super::interest::{Interest, Registration};
use super::listing::{self, ListQuery, SeriesSummary};
use crate::live::{LiveState, SeriesView, Update, Updates};
use crate::record::AlertRecord;

/// Protocol version, in every message.
pub const PROTOCOL_VERSION: u32 = 2;
/// Series in the snapshot sent on connect: the overview's first page in its default order.
const SNAPSHOT_SERIES: usize = 50;
/// Series one page subscription may name.
const PAGE_SUBSCRIPTION_MAX: usize = 500;
/// How often batched updates are sent.
const BATCH_EVERY: Duration = Duration::from_millis(100);
/// How often page clients get the newest point of their series: a page shows one value per
/// series, so a shorter interval costs few messages (about one per changed series) and keeps
/// the page within 100 ms of the engine.
const PAGE_EVERY: Duration = Duration::from_millis(50);
/// How often the pipeline status is sent.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// A client that does not take a message within this is dropped.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Alerts in a snapshot.
const SNAPSHOT_ALERTS: usize = 100;
/// Serialised messages buffered for clients of the shared feed (100 ms apart: 6 s of them).
const WIRE_CAPACITY: usize = 64;

/// What the WebSocket feed needs of the server's state.
#[derive(Clone)]
pub struct WsState {
    pub live: Arc<LiveState>,
    pub fanout: Arc<Fanout>,
}

pub async fn upgrade(
    State(state): State<WsState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, WebError> {
    check_same_origin(&headers)?;
    state.fanout.start(&state.live);
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
    /// The series a page shows (an overview page), at most [`PAGE_SUBSCRIPTION_MAX`].
    Page(PageSet),
}

/// A series as a client names it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct SeriesName {
    stream: String,
    series: String,
}

#[derive(Debug, Deserialize)]
struct PageRequest {
    series: Vec<SeriesName>,
}

/// The series of a page subscription, by stream, looked up without allocating.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "PageRequest")]
struct PageSet(HashMap<String, HashSet<String>>);

impl From<PageRequest> for PageSet {
    fn from(request: PageRequest) -> Self {
        let mut set: HashMap<String, HashSet<String>> = HashMap::new();
        for name in request.series.into_iter().take(PAGE_SUBSCRIPTION_MAX) {
            set.entry(name.stream).or_default().insert(name.series);
        }
        PageSet(set)
    }
}

impl Subscription {
    fn wants(&self, stream: &str, series: &str) -> bool {
        match self {
            Subscription::All(_) => true,
            Subscription::One {
                stream: s,
                series: n,
            } => s == stream && n == series,
            Subscription::Page(PageSet(set)) => set.get(stream).is_some_and(|s| s.contains(series)),
        }
    }

    /// Whether a batch keeps only the newest point of each series (a list), rather than every
    /// point (a chart of one series).
    fn newest_only(&self) -> bool {
        !matches!(self, Subscription::One { .. })
    }
}

#[derive(Deserialize)]
struct ClientMessage {
    subscribe: Subscription,
}

/// A series in a snapshot: its summary and the points of its sparkline.
#[derive(Serialize)]
struct SnapshotSeries {
    #[serde(flatten)]
    summary: SeriesSummary,
    recent: Vec<(i64, f64)>,
}

/// What a client needs to start from: the series it shows (on connect, the overview's first
/// page in its default order; after a page subscription, that page), the newest alerts and the
/// streams' figures — bounded however many series there are. The data is copied out under the
/// lock and serialised after it is released, so the pipeline never waits for the serialisation.
fn snapshot(live: &LiveState, page: Option<&Subscription>) -> Value {
    let events_per_second = live.events_per_second();
    let (series, alerts) = {
        let dashboard = live.read();
        let shown: Vec<&SeriesView> = match page {
            Some(subscription) => dashboard
                .series
                .values()
                .filter(|v| subscription.wants(&v.stream, &v.series))
                .take(PAGE_SUBSCRIPTION_MAX)
                .collect(),
            None => {
                let first_page = ListQuery {
                    limit: Some(SNAPSHOT_SERIES),
                    ..ListQuery::default()
                };
                listing::list(dashboard.series.values(), &first_page)
                    .map(|listed| listed.items)
                    .unwrap_or_default()
            }
        };
        let series: Vec<SnapshotSeries> = shown
            .into_iter()
            .map(|v| SnapshotSeries {
                summary: SeriesSummary::from(v),
                recent: v.sparkline_points(120),
            })
            .collect();
        let mut alerts: Vec<&AlertRecord> = dashboard.alerts.values().collect();
        alerts.sort_by_key(|a| std::cmp::Reverse(a.ts));
        alerts.truncate(SNAPSHOT_ALERTS);
        let alerts: Vec<AlertRecord> = alerts.into_iter().cloned().collect();
        (series, alerts)
    };
    let streams = live.status().streams.clone();
    json!({
        "v": PROTOCOL_VERSION,
        "type": "snapshot",
        "series": series,
        "alerts": alerts,
        "streams": streams,
        "events_per_second": events_per_second,
    })
}

fn status(live: &LiveState) -> Value {
    let events_per_second = live.events_per_second();
    let open_alerts = live.read().open_alerts();
    let status = live.status().clone();
    json!({
        "v": PROTOCOL_VERSION,
        "type": "status",
        "streams": status.streams,
        "events_per_second": events_per_second,
        "open_alerts": open_alerts,
        "paused": status.paused,
        "shards": status.shards,
        "sinks": status.sinks,
        "checkpoints": status.checkpoints,
    })
}

/// Updates gathered between two batches.
#[derive(Default)]
struct Pending {
    /// Newest point per series (subscription "all").
    latest: BTreeMap<(Arc<str>, Arc<str>), Update>,
    /// Everything else, in order.
    ordered: Vec<Update>,
}

impl Pending {
    fn add(&mut self, update: &Update, subscription: &Subscription) {
        match update {
            Update::Point(p) => {
                if !subscription.wants(&p.stream, &p.series) {
                    return;
                }
                if subscription.newest_only() {
                    self.latest
                        .insert((p.stream.clone(), p.series.clone()), update.clone());
                } else {
                    self.ordered.push(update.clone());
                }
            }
            Update::Window(w) => {
                if subscription.wants(&w.stream, &w.series) {
                    self.ordered.push(update.clone());
                }
            }
            Update::Alert(_) | Update::Ack(_) => self.ordered.push(update.clone()),
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

/// A message serialised once and shared by every client it is for.
#[derive(Clone)]
struct Wire {
    /// A batch for the subscription `all` (clients of one series skip it); else a status or
    /// a snapshot, for everyone.
    batch: bool,
    text: Utf8Bytes,
}

/// The shared feed: one task serialises what every `all` client gets.
pub struct Fanout {
    wire: broadcast::Sender<Wire>,
    /// Clients of a page or of one series, by the series they want.
    interest: Arc<Interest>,
    /// Clients subscribed to `all`: without any, the feed gathers no batch for them (at
    /// 100,000 series that batch is most of the feed's work).
    all_clients: Arc<AtomicUsize>,
    started: Once,
}

impl Default for Fanout {
    fn default() -> Self {
        Fanout {
            wire: broadcast::channel(WIRE_CAPACITY).0,
            interest: Arc::default(),
            all_clients: Arc::default(),
            started: Once::new(),
        }
    }
}

/// Counts a client among the `all` clients while it is one.
struct AllClient {
    counter: Arc<AtomicUsize>,
    counted: bool,
}

impl AllClient {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        let mut client = AllClient {
            counter: counter.clone(),
            counted: false,
        };
        client.set(true);
        client
    }

    fn set(&mut self, all: bool) {
        if all != self.counted {
            if all {
                self.counter.fetch_add(1, Ordering::Relaxed);
            } else {
                self.counter.fetch_sub(1, Ordering::Relaxed);
            }
            self.counted = all;
        }
    }
}

impl Drop for AllClient {
    fn drop(&mut self) {
        self.set(false);
    }
}

impl Fanout {
    /// Starts the feed task, once, on the current runtime. It ends when the live state goes.
    fn start(&self, live: &Arc<LiveState>) {
        self.started.call_once(|| {
            tokio::spawn(feed(
                live.subscribe(),
                Arc::downgrade(live),
                self.wire.clone(),
                self.interest.clone(),
                self.all_clients.clone(),
            ));
        });
    }
}

async fn feed(
    mut hub: broadcast::Receiver<Updates>,
    live: std::sync::Weak<LiveState>,
    wire: broadcast::Sender<Wire>,
    interest: Arc<Interest>,
    all_clients: Arc<AtomicUsize>,
) {
    let all = Subscription::All("all".into());
    let mut pending = Pending::default();
    // The newest point of each series since the last page tick, for page clients.
    let mut page_newest: HashMap<(Arc<str>, Arc<str>), Update> = HashMap::new();
    let mut batch = tokio::time::interval(BATCH_EVERY);
    let mut page_tick = tokio::time::interval(PAGE_EVERY);
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    loop {
        let message = tokio::select! {
            updates = hub.recv() => match updates {
                Ok(updates) => {
                    let for_all = all_clients.load(Ordering::Relaxed) > 0;
                    for update in updates.iter() {
                        if let Update::Point(p) = update {
                            page_newest.insert((p.stream.clone(), p.series.clone()), update.clone());
                        }
                        if for_all {
                            pending.add(update, &all);
                        }
                    }
                    interest.deliver(&updates);
                    None
                }
                Err(RecvError::Lagged(missed)) => {
                    // The feed itself fell behind (the runtime is starved) and lost updates,
                    // alerts among them: every client starts again from one fresh snapshot,
                    // which holds what the missed updates did.
                    debug!(missed, "Live feed lagged behind the hub; resynchronising clients.");
                    pending = Pending::default();
                    interest.all_lagged();
                    let Some(live) = live.upgrade() else { return };
                    Some((false, snapshot(&live, None)))
                }
                Err(RecvError::Closed) => return,
            },
            _ = page_tick.tick() => {
                interest.deliver_newest(page_newest.values());
                page_newest.clear();
                None
            }
            _ = batch.tick() => pending.take().map(|value| (true, value)),
            _ = status_tick.tick() => {
                let Some(live) = live.upgrade() else { return };
                Some((false, status(&live)))
            }
        };
        if let Some((batch, value)) = message {
            let text = Utf8Bytes::from(value.to_string());
            // No receiver (no client of the feed) is fine.
            let _ = wire.send(Wire { batch, text });
        }
    }
}

async fn client(socket: WebSocket, state: WsState) {
    let (mut sender, mut receiver) = socket.split();
    let mut wire = state.fanout.wire.subscribe();
    // A client of a page or of one series gets its updates from the interest index.
    let mut own: Option<Own> = None;
    let mut all_client = AllClient::new(&state.fanout.all_clients);
    let mut batch = tokio::time::interval(BATCH_EVERY);

    let text = |value: Value| Message::Text(value.to_string().into());
    if send_within(&mut sender, text(snapshot(&state.live, None)))
        .await
        .is_err()
    {
        return;
    }
    loop {
        let outgoing = tokio::select! {
            shared = wire.recv() => match shared {
                Ok(Wire { batch, text }) => {
                    (!batch || own.is_none()).then_some(Message::Text(text))
                }
                Err(RecvError::Lagged(missed)) => {
                    debug!(missed, "WebSocket client lagged; sending a fresh snapshot.");
                    Some(text(snapshot(&state.live, own.as_ref().map(|o| &o.subscription))))
                }
                Err(RecvError::Closed) => break,
            },
            updates = recv_own(&mut own) => match (updates, own.as_mut()) {
                (Some(updates), Some(own)) => {
                    for update in &updates {
                        own.pending.add(update, &own.subscription);
                    }
                    // A page's points come once per page interval (50 ms) from the feed already:
                    // passed on at once rather than held for this client's own tick.
                    match own.subscription {
                        Subscription::Page(_) => own.pending.take().map(text),
                        _ => None,
                    }
                }
                _ => None,
            },
            message = receiver.next() => match message {
                Some(Ok(Message::Text(request))) => {
                    match serde_json::from_str::<ClientMessage>(&request) {
                        Ok(request) => {
                            let page = matches!(request.subscribe, Subscription::Page(_));
                            // The old registration goes before the new one comes.
                            drop(own.take());
                            own = Own::of(request.subscribe, &state.fanout.interest);
                            all_client.set(own.is_none());
                            // A page starts from a snapshot of its own series.
                            page.then(|| {
                                text(snapshot(&state.live, own.as_ref().map(|o| &o.subscription)))
                            })
                        }
                        Err(_) => None,
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => None,
            },
            _ = batch.tick(), if own.is_some() => match own.as_mut() {
                Some(own) if own.registration.take_lagged() => {
                    debug!("WebSocket client fell behind; sending a fresh snapshot.");
                    own.pending = Pending::default();
                    Some(text(snapshot(&state.live, Some(&own.subscription))))
                }
                Some(own) => own.pending.take().map(text),
                None => None,
            },
        };
        if let Some(message) = outgoing {
            if send_within(&mut sender, message).await.is_err() {
                debug!("WebSocket client too slow or gone; disconnecting.");
                break;
            }
        }
    }
}

/// The subscription of a client of a page or of one series, its place in the interest index,
/// and what it has gathered since its last batch.
struct Own {
    subscription: Subscription,
    registration: Registration,
    pending: Pending,
}

impl Own {
    /// `None` for the subscription `all`, which the shared feed serves.
    fn of(subscription: Subscription, interest: &Arc<Interest>) -> Option<Own> {
        let series = match &subscription {
            Subscription::All(_) => return None,
            Subscription::One { stream, series } => vec![(stream.clone(), series.clone())],
            Subscription::Page(PageSet(set)) => set
                .iter()
                .flat_map(|(stream, names)| names.iter().map(|n| (stream.clone(), n.clone())))
                .collect(),
        };
        let every_point = matches!(subscription, Subscription::One { .. });
        Some(Own {
            registration: interest.register(series, every_point),
            subscription,
            pending: Pending::default(),
        })
    }
}

/// The next delivery of a client's own registration; never resolves without one.
async fn recv_own(own: &mut Option<Own>) -> Option<Vec<Update>> {
    match own {
        Some(own) => own.registration.recv().await,
        None => std::future::pending().await,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::LiveSink;
    use crate::record::{Record, WindowRecord};
    use crate::sink::Sink;

    fn window(start: i64) -> Record {
        let record: WindowRecord = serde_json::from_value(serde_json::json!({
            "stream": "s", "series": "a", "kind": "tumbling", "window_start": start,
            "window_end": start + 1, "count": 1, "sum": 1.0, "mean": 1.0, "min": 1.0,
            "max": 1.0, "stddev": null, "first": 1.0, "last": 1.0, "final": true
        }))
        .unwrap();
        Record::Window(record)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_feed_that_falls_behind_sends_every_client_a_fresh_snapshot() {
        let live = LiveState::new();
        let hub = live.subscribe();
        let mut sink = LiveSink::new(live.clone());
        // More sink writes than the hub keeps, before the feed reads any: it lags.
        for start in 0..2_000 {
            sink.write(&[window(start)]).unwrap();
        }
        let (wire, mut received) = broadcast::channel(WIRE_CAPACITY);
        let all_clients = Arc::new(AtomicUsize::new(1));
        let task = tokio::spawn(feed(
            hub,
            Arc::downgrade(&live),
            wire,
            Arc::default(),
            all_clients,
        ));
        let resynchronised = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match received.recv().await {
                    Ok(Wire { batch: false, text }) if text.contains("\"type\":\"snapshot\"") => {
                        break true
                    }
                    Ok(_) => continue,
                    Err(_) => break false,
                }
            }
        })
        .await;
        task.abort();
        assert_eq!(
            resynchronised,
            Ok(true),
            "no snapshot after the feed lagged"
        );
    }

    /// The batch for `all` clients is gathered only while there are some.
    #[tokio::test(flavor = "current_thread")]
    async fn without_all_clients_the_feed_sends_no_batch() {
        for clients in [0, 1] {
            let live = LiveState::new();
            let hub = live.subscribe();
            let (wire, mut received) = broadcast::channel(WIRE_CAPACITY);
            let counter = Arc::new(AtomicUsize::new(0));
            let client = (clients == 1).then(|| AllClient::new(&counter));
            let task = tokio::spawn(feed(
                hub,
                Arc::downgrade(&live),
                wire,
                Arc::default(),
                counter.clone(),
            ));
            tokio::task::yield_now().await;
            LiveSink::new(live.clone()).write(&[window(0)]).unwrap();
            let batch = tokio::time::timeout(Duration::from_millis(1500), async {
                loop {
                    match received.recv().await {
                        Ok(Wire { batch: true, .. }) => break,
                        Ok(_) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
            .await;
            task.abort();
            assert_eq!(batch.is_ok(), clients == 1, "{clients} all clients");
            drop(client);
            assert_eq!(counter.load(Ordering::Relaxed), 0);
        }
    }
}
