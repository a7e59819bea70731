//! The live view of a running pipeline: the latest analytics per series, recent alerts and the
//! pipeline's status, kept in memory for the dashboard, plus a broadcast hub of updates.
//!
//! It is fed by [`LiveSink`], an ordinary sink, and by the pipeline's status channel, so the
//! pipeline does not know the web exists. Writing never blocks the pipeline for long: the
//! state sits behind a `std::sync::Mutex` taken per record, for a few field updates (never
//! across an `.await`, as mini-redis argues for its `Db`), and updates go to a bounded
//! broadcast channel whose slow receivers lose old messages instead of holding anyone up (they
//! resynchronise from a snapshot).
//!
//! Memory is bounded for any number of series: each series keeps its last point once, in
//! full, and its recent points compactly ([`ChartPoint`]), as many as a shared budget allows
//! ([`POINT_BUDGET`]: 600 each up to 1,666 series, 10 each at 100,000).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::pipeline::progress::PipelineStatus;
use crate::record::{
    AlertRecord, AlertState, DeadLetterRecord, LateRecord, PointRecord, Record, WindowRecord,
};
use crate::sink::{Sink, SinkError};

/// Most recent points kept per series for sparklines and charts.
pub const RECENT_POINTS: usize = 600;
/// Recent points kept over all series: what bounds the live view's memory (~64 bytes each).
pub const POINT_BUDGET: usize = 1_000_000;
/// Most closed windows kept per series...
pub const RECENT_WINDOWS: usize = 20;
/// ...and over all series (~150 bytes each).
pub const WINDOW_BUDGET: usize = 200_000;
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
    /// Shared with the series' [`SeriesView::last`]: one copy per point.
    Point(Arc<PointRecord>),
    Window(WindowRecord),
    Alert(AlertRecord),
    Ack(AlertRecord),
}

/// What a chart draws of one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartPoint {
    pub ts: i64,
    pub value: f64,
    pub sma: f64,
    pub ewma: f64,
    /// The band and expectation; NaN where the record has `null` (8 bytes, not 16).
    lower: f64,
    upper: f64,
    expected: f64,
    pub anomaly: bool,
}

impl ChartPoint {
    fn of(p: &PointRecord) -> Self {
        ChartPoint {
            ts: p.ts,
            value: p.value,
            sma: p.sma,
            ewma: p.ewma,
            lower: p.lower.unwrap_or(f64::NAN),
            upper: p.upper.unwrap_or(f64::NAN),
            expected: p.expected.unwrap_or(f64::NAN),
            anomaly: p.anomaly,
        }
    }

    pub fn lower(&self) -> Option<f64> {
        Some(self.lower).filter(|v| !v.is_nan())
    }

    pub fn upper(&self) -> Option<f64> {
        Some(self.upper).filter(|v| !v.is_nan())
    }

    pub fn expected(&self) -> Option<f64> {
        Some(self.expected).filter(|v| !v.is_nan())
    }
}

/// What the dashboard shows of one series.
#[derive(Debug, Clone)]
pub struct SeriesView {
    pub stream: Arc<str>,
    pub series: Arc<str>,
    pub last: Arc<PointRecord>,
    /// The recent points, oldest first.
    pub recent: VecDeque<ChartPoint>,
    /// The latest closed windows, oldest first.
    pub windows: VecDeque<WindowRecord>,
    /// Processing time of the last point, for staleness.
    pub updated: Option<Instant>,
}

impl SeriesView {
    /// The last `n` points as `(ts, value)`, for a sparkline.
    pub fn sparkline_points(&self, n: usize) -> Vec<(i64, f64)> {
        let skip = self.recent.len().saturating_sub(n);
        self.recent
            .iter()
            .skip(skip)
            .map(|p| (p.ts, p.value))
            .collect()
    }
}

/// Everything the dashboard reads, besides the pipeline status.
#[derive(Debug, Default)]
pub struct Dashboard {
    pub series: BTreeMap<(Arc<str>, Arc<str>), SeriesView>,
    pub alerts: BTreeMap<String, AlertRecord>,
    pub records: BTreeMap<&'static str, u64>,
    pub late_total: u64,
    pub dead_letters_total: u64,
    /// The latest late events and dead letters, oldest first.
    pub recent_late: VecDeque<LateRecord>,
    pub recent_dead_letters: VecDeque<DeadLetterRecord>,
    /// Recent points and windows held over all series, kept near their budgets.
    points_held: usize,
    windows_held: usize,
}

impl Dashboard {
    pub fn open_alerts(&self) -> usize {
        self.alerts
            .values()
            .filter(|a| a.state == AlertState::Open)
            .count()
    }

    /// Applies one record; returns what clients should hear of it.
    fn apply(&mut self, record: &Record) -> Option<Update> {
        *self.records.entry(record.kind().collection()).or_default() += 1;
        match record {
            Record::Point(p) => self.point(p),
            Record::Window(w) => Some(self.window(w)),
            Record::Alert(a) => Some(self.alert(a)),
            Record::Late(late) => {
                self.late_total += 1;
                keep_recent(&mut self.recent_late, late);
                None
            }
            Record::DeadLetter(dead) => {
                self.dead_letters_total += 1;
                keep_recent(&mut self.recent_dead_letters, dead);
                None
            }
            Record::Join(_) => None,
        }
    }

    /// A series' points come in event-time order; an older one is a replay after the pipeline
    /// went back to its checkpoint (see `pipeline`), which the chart already shows.
    fn point(&mut self, p: &PointRecord) -> Option<Update> {
        let key = (p.stream.clone(), p.series.clone());
        if self
            .series
            .get(&key)
            .is_some_and(|view| p.ts < view.last.ts)
        {
            return None;
        }
        let last = Arc::new(p.clone());
        let capacity = share(POINT_BUDGET, RECENT_POINTS, self.series.len() + 1);
        let view = self.series.entry(key).or_insert_with(|| SeriesView {
            stream: p.stream.clone(),
            series: p.series.clone(),
            last: last.clone(),
            recent: VecDeque::new(),
            windows: VecDeque::new(),
            updated: None,
        });
        while view.recent.len() >= capacity {
            view.recent.pop_front();
            self.points_held -= 1;
        }
        view.recent.push_back(ChartPoint::of(p));
        view.last = last.clone();
        view.updated = Some(Instant::now());
        self.points_held += 1;
        if self.points_held > POINT_BUDGET + POINT_BUDGET / 8 {
            self.trim_points(capacity);
        }
        Some(Update::Point(last))
    }

    /// Series that received no point since their share shrank still hold their old share:
    /// once that adds up to an eighth over the budget, every series gives its excess back.
    fn trim_points(&mut self, capacity: usize) {
        self.points_held = 0;
        for view in self.series.values_mut() {
            let excess = view.recent.len().saturating_sub(capacity);
            view.recent.drain(..excess);
            self.points_held += view.recent.len();
        }
    }

    fn trim_windows(&mut self, capacity: usize) {
        self.windows_held = 0;
        for view in self.series.values_mut() {
            let excess = view.windows.len().saturating_sub(capacity);
            view.windows.drain(..excess);
            self.windows_held += view.windows.len();
        }
    }

    fn window(&mut self, w: &WindowRecord) -> Update {
        let capacity = share(WINDOW_BUDGET, RECENT_WINDOWS, self.series.len());
        if let Some(view) = self.series.get_mut(&(w.stream.clone(), w.series.clone())) {
            while view.windows.len() >= capacity {
                view.windows.pop_front();
                self.windows_held -= 1;
            }
            view.windows.push_back(w.clone());
            self.windows_held += 1;
            if self.windows_held > WINDOW_BUDGET + WINDOW_BUDGET / 8 {
                self.trim_windows(capacity);
            }
        }
        Update::Window(w.clone())
    }

    /// As the store does: people's acknowledgements and verdicts stay, and a replayed "open"
    /// does not hide an acknowledgement.
    fn alert(&mut self, a: &AlertRecord) -> Update {
        let mut alert = a.clone();
        if let Some(old) = self.alerts.get(&a.id) {
            if old.state == AlertState::Acknowledged && a.state == AlertState::Open {
                alert.state = AlertState::Acknowledged;
            }
            if old.acked_by.is_some() {
                alert.acked_by = old.acked_by.clone();
                alert.acked_at = old.acked_at;
                alert.note = old.note.clone();
            }
            alert.verdict = alert.verdict.or(old.verdict);
        }
        self.alerts.insert(alert.id.clone(), alert.clone());
        if self.alerts.len() > RECENT_ALERTS {
            let oldest = self
                .alerts
                .iter()
                .min_by_key(|(_, a)| a.ts)
                .map(|(id, _)| id.clone());
            if let Some(id) = oldest {
                self.alerts.remove(&id);
            }
        }
        Update::Alert(alert)
    }
}

/// Each of `holders`' share of `budget`, at most `most` and at least 2 (a sparkline's least).
fn share(budget: usize, most: usize, holders: usize) -> usize {
    (budget / holders.max(1)).clamp(2, most)
}

/// Shared between the pipeline (writer) and the web server (readers).
pub struct LiveState {
    dashboard: Mutex<Dashboard>,
    hub: broadcast::Sender<Updates>,
    status: watch::Sender<PipelineStatus>,
    started: Instant,
}

impl LiveState {
    pub fn new() -> Arc<Self> {
        let (hub, _) = broadcast::channel(HUB_CAPACITY);
        Arc::new(LiveState {
            dashboard: Mutex::new(Dashboard::default()),
            hub,
            status: watch::Sender::new(PipelineStatus::default()),
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

    /// The pipeline's latest status. Hold it briefly: the pipeline waits to send a new one.
    pub fn status(&self) -> watch::Ref<'_, PipelineStatus> {
        self.status.borrow()
    }

    /// Where the pipeline sends its status (`pipeline::Outputs::status`).
    pub fn status_sender(&self) -> watch::Sender<PipelineStatus> {
        self.status.clone()
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
        let accepted: u64 = self.status().streams.iter().map(|s| s.accepted).sum();
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
    /// Takes the lock per record, so a page or a snapshot waits for one record at most.
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let updates: Vec<Update> = records
            .iter()
            .filter_map(|record| self.live.read().apply(record))
            .collect();
        self.live.publish(updates);
        Ok(())
    }

    fn flush(&mut self, _epoch: u64) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Appends to a bounded list of recent records, forgetting the oldest.
fn keep_recent<T: Clone>(list: &mut VecDeque<T>, record: &T) {
    if list.len() == RECENT_PROBLEMS {
        list.pop_front();
    }
    list.push_back(record.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(series: &str, ts: i64) -> Record {
        Record::Point(PointRecord {
            stream: "s".into(),
            series: series.into(),
            ts,
            value: ts as f64,
            sma: 0.0,
            ewma: 0.0,
            slope: None,
            trend: crate::record::Trend::Flat,
            z: None,
            anomaly: false,
            expected: None,
            spread: None,
            lower: Some(1.0),
            upper: None,
        })
    }

    #[test]
    fn recent_points_share_a_budget_and_keep_the_newest() {
        let mut dashboard = Dashboard::default();
        for ts in 0..1_000 {
            dashboard.apply(&point("a", ts));
        }
        let a = &dashboard.series[&(Arc::from("s"), Arc::from("a"))];
        assert_eq!(a.recent.len(), RECENT_POINTS);
        assert_eq!(a.recent.back().map(|p| p.ts), Some(999));
        assert_eq!(a.recent[0].lower(), Some(1.0));
        assert_eq!(a.recent[0].upper(), None);
        // With as many series as the budget allows at two points each, every series keeps
        // two, and the whole view stays within the budget.
        let many = POINT_BUDGET / 2;
        for i in 0..many {
            let series = format!("b{i}");
            for ts in 0..3 {
                dashboard.apply(&point(&series, ts));
            }
        }
        let held: usize = dashboard.series.values().map(|v| v.recent.len()).sum();
        assert_eq!(held, dashboard.points_held);
        assert!(
            held <= POINT_BUDGET + POINT_BUDGET / 8,
            "{held} points held"
        );
        let a = &dashboard.series[&(Arc::from("s"), Arc::from("a"))];
        assert_eq!(a.recent.len(), 2, "the first series gave its excess back");
        let last = &dashboard.series[&(Arc::from("s"), Arc::from("b0"))];
        assert_eq!(last.sparkline_points(10), [(1, 1.0), (2, 2.0)]);
    }
}
