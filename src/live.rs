//! The live view of a running pipeline: the latest analytics per series, recent alerts and the
//! pipeline's progress, kept in memory for the dashboard, plus a broadcast hub of updates.
//!
//! It is fed by [`LiveSink`], an ordinary sink, so the pipeline does not know the web exists.
//! Writing never blocks the pipeline: the state sits behind a `std::sync::Mutex` held only for
//! a few field updates (never across an `.await`, as mini-redis argues for its `Db`), and
//! updates go to a bounded broadcast channel whose slow receivers lose old messages instead of
//! holding anyone up (they resynchronise from a snapshot).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::record::{
    AlertRecord, AlertState, DeadLetterRecord, LateRecord, PointRecord, Record, WindowRecord,
};
use crate::sink::{Sink, SinkError, StreamProgress};

/// Recent points kept per series for sparklines and charts.
pub const RECENT_POINTS: usize = 600;
/// Closed windows kept per series.
pub const RECENT_WINDOWS: usize = 20;
/// Recent alerts kept in memory (the store has all of them).
const RECENT_ALERTS: usize = 500;
/// Recent late events and dead letters kept for the status page.
pub const RECENT_PROBLEMS: usize = 50;
/// Batches of updates buffered for slow subscribers before they start losing the oldest (one
/// batch per sink write, so this is thousands of points).
const HUB_CAPACITY: usize = 1024;

/// The updates of one sink write, shared by every subscriber (one broadcast per write, not per
/// record: with a thousand clients, a send per point is a million wake-ups a second).
pub type Updates = Arc<[Update]>;

/// One change, as pushed to dashboard clients.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Update {
    Point(PointRecord),
    Window(WindowRecord),
    Alert(AlertRecord),
    Ack(AlertRecord),
}

/// What the dashboard shows of one series.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesView {
    pub stream: Arc<str>,
    pub series: Arc<str>,
    pub last: PointRecord,
    /// `(ts, value)`, oldest first.
    pub recent: VecDeque<(i64, f64)>,
    /// The same points with their analytics, for the series chart.
    #[serde(skip)]
    pub chart: VecDeque<PointRecord>,
    /// The latest closed windows, oldest first.
    #[serde(skip)]
    pub windows: VecDeque<WindowRecord>,
    /// Processing time of the last point, for staleness.
    #[serde(skip)]
    pub updated: Option<Instant>,
}

/// Everything the dashboard reads.
#[derive(Debug, Default)]
pub struct Dashboard {
    pub series: BTreeMap<(Arc<str>, Arc<str>), SeriesView>,
    pub alerts: BTreeMap<String, AlertRecord>,
    pub streams: Vec<StreamProgress>,
    pub records: BTreeMap<&'static str, u64>,
    pub late_total: u64,
    pub dead_letters_total: u64,
    /// The latest late events and dead letters, oldest first.
    pub recent_late: VecDeque<LateRecord>,
    pub recent_dead_letters: VecDeque<DeadLetterRecord>,
    /// Why the pipeline is paused (a sink is failing and being retried), if it is.
    pub paused: Option<String>,
}

impl Dashboard {
    pub fn open_alerts(&self) -> usize {
        self.alerts
            .values()
            .filter(|a| a.state == AlertState::Open)
            .count()
    }
}

/// Shared between the pipeline (writer) and the web server (readers).
pub struct LiveState {
    dashboard: Mutex<Dashboard>,
    hub: broadcast::Sender<Updates>,
    started: Instant,
}

impl LiveState {
    pub fn new() -> Arc<Self> {
        let (hub, _) = broadcast::channel(HUB_CAPACITY);
        Arc::new(LiveState {
            dashboard: Mutex::new(Dashboard::default()),
            hub,
            started: Instant::now(),
        })
    }

    /// Reads the dashboard. A poisoned lock (a panic elsewhere while holding it) still yields
    /// the data: it is a view, and a stale view beats a dead dashboard.
    pub fn read(&self) -> MutexGuard<'_, Dashboard> {
        self.dashboard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Updates> {
        self.hub.subscribe()
    }

    /// Sends updates to every subscriber; no subscriber is not an error.
    pub fn publish(&self, updates: Vec<Update>) {
        if !updates.is_empty() {
            let _ = self.hub.send(updates.into());
        }
    }

    /// Events per second accepted since start, over all streams.
    pub fn events_per_second(&self) -> f64 {
        let accepted: u64 = self.read().streams.iter().map(|s| s.accepted).sum();
        accepted as f64 / self.started.elapsed().as_secs_f64().max(1e-3)
    }

    /// Applies an acknowledgement already stored, and tells every client.
    pub fn acknowledged(&self, alert: AlertRecord) {
        self.read().alerts.insert(alert.id.clone(), alert.clone());
        self.publish(vec![Update::Ack(alert)]);
    }
}

/// The sink that feeds [`LiveState`].
pub struct LiveSink {
    live: Arc<LiveState>,
}

impl LiveSink {
    pub fn new(live: Arc<LiveState>) -> Self {
        LiveSink { live }
    }
}

impl Sink for LiveSink {
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let mut updates = Vec::new();
        {
            let mut dashboard = self.live.read();
            for record in records {
                *dashboard
                    .records
                    .entry(record.kind().collection())
                    .or_default() += 1;
                match record {
                    Record::Point(p) => {
                        let key = (p.stream.clone(), p.series.clone());
                        let view = dashboard.series.entry(key).or_insert_with(|| SeriesView {
                            stream: p.stream.clone(),
                            series: p.series.clone(),
                            last: p.clone(),
                            recent: VecDeque::with_capacity(RECENT_POINTS),
                            chart: VecDeque::with_capacity(RECENT_POINTS),
                            windows: VecDeque::new(),
                            updated: None,
                        });
                        if view.recent.len() == RECENT_POINTS {
                            view.recent.pop_front();
                            view.chart.pop_front();
                        }
                        view.recent.push_back((p.ts, p.value));
                        view.chart.push_back(p.clone());
                        view.last = p.clone();
                        view.updated = Some(Instant::now());
                        updates.push(Update::Point(p.clone()));
                    }
                    Record::Window(w) => {
                        let key = (w.stream.clone(), w.series.clone());
                        if let Some(view) = dashboard.series.get_mut(&key) {
                            if view.windows.len() == RECENT_WINDOWS {
                                view.windows.pop_front();
                            }
                            view.windows.push_back(w.clone());
                        }
                        updates.push(Update::Window(w.clone()));
                    }
                    Record::Alert(a) => {
                        // As the store does: people's acknowledgements and verdicts stay, and a
                        // replayed "open" does not hide an acknowledgement.
                        let mut alert = AlertRecord::clone(a);
                        if let Some(old) = dashboard.alerts.get(&a.id) {
                            if old.state == AlertState::Acknowledged && a.state == AlertState::Open
                            {
                                alert.state = AlertState::Acknowledged;
                            }
                            if old.acked_by.is_some() {
                                alert.acked_by = old.acked_by.clone();
                                alert.acked_at = old.acked_at;
                                alert.note = old.note.clone();
                            }
                            alert.verdict = alert.verdict.or(old.verdict);
                        }
                        dashboard.alerts.insert(alert.id.clone(), alert.clone());
                        if dashboard.alerts.len() > RECENT_ALERTS {
                            let oldest = dashboard
                                .alerts
                                .iter()
                                .min_by_key(|(_, a)| a.ts)
                                .map(|(id, _)| id.clone());
                            if let Some(id) = oldest {
                                dashboard.alerts.remove(&id);
                            }
                        }
                        updates.push(Update::Alert(alert));
                    }
                    Record::Late(late) => {
                        dashboard.late_total += 1;
                        keep_recent(&mut dashboard.recent_late, late);
                    }
                    Record::DeadLetter(dead) => {
                        dashboard.dead_letters_total += 1;
                        keep_recent(&mut dashboard.recent_dead_letters, dead);
                    }
                    Record::Join(_) => {}
                }
            }
        }
        self.live.publish(updates);
        Ok(())
    }

    fn flush(&mut self, _epoch: u64) -> Result<(), SinkError> {
        Ok(())
    }

    fn on_progress(&mut self, progress: &[StreamProgress]) {
        self.live.read().streams = progress.to_vec();
    }

    fn on_paused(&mut self, reason: Option<&str>) {
        self.live.read().paused = reason.map(str::to_owned);
    }
}

/// Appends to a bounded list of recent records, forgetting the oldest.
fn keep_recent<T: Clone>(list: &mut VecDeque<T>, record: &T) {
    if list.len() == RECENT_PROBLEMS {
        list.pop_front();
    }
    list.push_back(record.clone());
}
