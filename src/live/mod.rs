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
//! Memory is bounded for any number of series, by [`Limits`]: each series keeps its last
//! point once, in full, and its recent points compactly ([`ring`], 13 bytes a point), up to
//! [`RECENT_POINTS`] each while the budget allows and an equal share of it beyond (600 each
//! up to about 57,800 series in the default 512 MiB); when even the least share
//! ([`LEAST_POINTS`]) no longer fits, the least recently updated series leave the view, as do
//! series idle for longer than [`Limits::idle_after`]. They stay in the store, and come back
//! with their next point.

mod ring;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::pipeline::progress::PipelineStatus;
use crate::record::{
    AlertRecord, AlertState, DeadLetterRecord, LateRecord, PointRecord, Record, WindowKind,
    WindowRecord,
};
use crate::sink::{Sink, SinkError};
use crate::types::{ByteSize, Invalid};
pub use ring::{Lines, PointRing, MAX_HISTORY, POINT_BYTES, RECENT_POINTS};

/// The fewest recent points a series keeps before the least recently updated series are
/// evicted instead (a sparkline's worth).
pub const LEAST_POINTS: usize = 60;
/// Most closed windows kept per series (at least 2, within a sixteenth of the budget).
pub const RECENT_WINDOWS: usize = 20;
/// What a series costs besides its points and windows: its map entry and names, the last
/// point in full, its view (measured with `scripts/measure-live-memory.sh`).
pub const SERIES_BYTES: usize = 512;
/// What a series' ring may hold beyond the points it shows (the SMA's history), counted with
/// its fixed costs.
const HISTORY_BYTES: usize = MAX_HISTORY * POINT_BYTES;
/// What one closed window kept for the series page costs.
pub const WINDOW_BYTES: usize = std::mem::size_of::<RecentWindow>();
/// Recent alerts kept in memory (the store has all of them).
const RECENT_ALERTS: usize = 500;
/// Recent late events and dead letters kept for the status page.
pub const RECENT_PROBLEMS: usize = 50;
/// Batches of updates buffered for slow subscribers before they start losing the oldest (one
/// batch per sink write, up to about a thousand records each, ~250 bytes a point: this bounds
/// the buffer near 60 MB; a subscriber that falls further behind resynchronises).
const HUB_CAPACITY: usize = 256;

/// `[live]` in the config: how much the dashboard's live view may hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveConfig {
    /// Estimated memory over all series (their recent points, windows and last point).
    pub max_memory: ByteSize,
    /// How long a series may go without a point before it leaves the view.
    pub evict_idle_after: crate::types::Duration,
}

impl Default for LiveConfig {
    fn default() -> Self {
        let limits = Limits::default();
        LiveConfig {
            max_memory: ByteSize(limits.max_memory),
            evict_idle_after: crate::types::Duration::from_secs(limits.idle_after.as_secs() as i64),
        }
    }
}

impl LiveConfig {
    pub fn limits(&self) -> Limits {
        Limits {
            max_memory: self.max_memory.0,
            idle_after: Duration::from_millis(self.evict_idle_after.ms() as u64),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        let least = SERIES_BYTES + HISTORY_BYTES + LEAST_POINTS * POINT_BYTES;
        if self.max_memory.0 < 64 * least {
            return Err(Invalid::new(
                "live.max_memory",
                format!(
                    "{} is too small: a series needs about {least} bytes; give at least {}",
                    self.max_memory,
                    ByteSize(64 * least)
                ),
            ));
        }
        self.evict_idle_after
            .positive("live.evict_idle_after")
            .map(|_| ())
    }
}

/// How much the live view may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Estimated bytes over all series: points, windows and per-series costs.
    pub max_memory: usize,
    /// A series without a point for this long leaves the view.
    pub idle_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory: 512 << 20,
            idle_after: Duration::from_secs(3600),
        }
    }
}

impl Limits {
    /// Recent windows over all series: a sixteenth of the budget (at 100,000 series and
    /// 1000 MiB, 10 windows each).
    fn window_budget(&self) -> usize {
        self.max_memory / 16 / WINDOW_BYTES
    }

    /// What the points and the series' fixed costs may take: the rest.
    fn series_budget(&self) -> usize {
        self.max_memory - self.max_memory / 16
    }

    /// Recent points shown over all series, once `series` series have paid their fixed costs
    /// (their rings' history included).
    fn point_budget(&self, series: usize) -> usize {
        self.series_budget()
            .saturating_sub(series * (SERIES_BYTES + HISTORY_BYTES))
            / POINT_BYTES
    }

    /// Most series the view holds, each with [`LEAST_POINTS`].
    fn most_series(&self) -> usize {
        (self.series_budget() / (SERIES_BYTES + HISTORY_BYTES + LEAST_POINTS * POINT_BYTES)).max(1)
    }
}

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

/// A closed window as the series page lists it: the record's figures without the names the
/// view's key already has, nor the sum, first and last the page does not show: 64 bytes where
/// the record takes 112.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecentWindow {
    pub kind: WindowKind,
    pub window_start: i64,
    pub window_end: i64,
    pub count: u64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// NaN for none (see [`RecentWindow::stddev`]): an `Option` would take 8 bytes more.
    stddev: f64,
}

impl RecentWindow {
    /// Sample standard deviation; `None` for a window of one event.
    pub fn stddev(&self) -> Option<f64> {
        Some(self.stddev).filter(|s| !s.is_nan())
    }
}

impl From<&WindowRecord> for RecentWindow {
    fn from(w: &WindowRecord) -> Self {
        RecentWindow {
            kind: w.kind,
            window_start: w.window_start,
            window_end: w.window_end,
            count: w.count,
            mean: w.mean,
            min: w.min,
            max: w.max,
            stddev: w.stddev.unwrap_or(f64::NAN),
        }
    }
}

/// What the dashboard shows of one series.
#[derive(Debug)]
pub struct SeriesView {
    pub stream: Arc<str>,
    pub series: Arc<str>,
    pub last: Arc<PointRecord>,
    /// The recent points, oldest first.
    pub recent: PointRing,
    /// The latest closed windows, oldest first.
    pub windows: VecDeque<RecentWindow>,
    /// Processing time of the last point, for staleness and eviction.
    pub updated: Instant,
}

impl SeriesView {
    /// The last `n` points as `(ts, value)`, for a sparkline.
    pub fn sparkline_points(&self, n: usize) -> Vec<(i64, f64)> {
        self.recent.last_values(n)
    }
}

type SeriesKey = (Arc<str>, Arc<str>);

/// Everything the dashboard reads, besides the pipeline status.
#[derive(Debug, Default)]
pub struct Dashboard {
    pub series: BTreeMap<SeriesKey, SeriesView>,
    pub alerts: BTreeMap<String, AlertRecord>,
    pub records: BTreeMap<&'static str, u64>,
    pub late_total: u64,
    pub dead_letters_total: u64,
    /// Series that left the view, idle or least recently updated over the budget.
    pub evicted_total: u64,
    /// The latest late events and dead letters, oldest first.
    pub recent_late: VecDeque<LateRecord>,
    pub recent_dead_letters: VecDeque<DeadLetterRecord>,
    limits: Limits,
    /// How each stream's SMA and EWMA are taken, for the rings to compute them again (streams
    /// not named here use the defaults).
    lines: HashMap<Arc<str>, Lines>,
    /// Recent point slots (ring capacity) and windows held over all series, kept near their
    /// budgets.
    points_held: usize,
    windows_held: usize,
    /// When idle series were last looked for.
    swept: Option<Instant>,
}

impl Dashboard {
    pub fn new(limits: Limits) -> Self {
        Dashboard {
            limits,
            ..Dashboard::default()
        }
    }

    /// Charts `stream`'s SMA and EWMA as `lines` say they are taken.
    pub fn set_lines(&mut self, stream: &str, lines: Lines) {
        self.lines.insert(stream.into(), lines);
    }

    pub fn open_alerts(&self) -> usize {
        self.alerts
            .values()
            .filter(|a| a.state == AlertState::Open)
            .count()
    }

    /// Estimated bytes the series hold (what [`Limits::max_memory`] bounds).
    pub fn memory_bytes(&self) -> usize {
        self.series.len() * SERIES_BYTES
            + self.points_held * POINT_BYTES
            + self.windows_held * WINDOW_BYTES
    }

    /// Applies one record at processing time `now`; returns what clients should hear of it.
    fn apply(&mut self, record: &Record, now: Instant) -> Option<Update> {
        *self.records.entry(record.kind().collection()).or_default() += 1;
        match record {
            Record::Point(p) => self.point(p, now),
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
    fn point(&mut self, p: &PointRecord, now: Instant) -> Option<Update> {
        let key = (p.stream.clone(), p.series.clone());
        let known = match self.series.get(&key) {
            Some(view) if p.ts < view.last.ts => return None,
            Some(_) => true,
            None => false,
        };
        if !known && self.series.len() >= self.limits.most_series() {
            let keep = self.limits.most_series() - self.limits.most_series() / 16 - 1;
            self.evict_least_recent(keep);
        }
        let last = Arc::new(p.clone());
        let holders = self.series.len() + usize::from(!known);
        let point_budget = self.limits.point_budget(holders);
        let capacity = share(point_budget, RECENT_POINTS, holders);
        let view = self.series.entry(key).or_insert_with(|| SeriesView {
            stream: p.stream.clone(),
            series: p.series.clone(),
            last: last.clone(),
            recent: PointRing::default(),
            windows: VecDeque::new(),
            updated: now,
        });
        let lines = self.lines.get(&p.stream).copied().unwrap_or_default();
        let before = view.recent.slots();
        view.recent.push(p, capacity, lines);
        self.points_held = self.points_held - before + view.recent.slots();
        view.last = last.clone();
        view.updated = now;
        let history = holders * MAX_HISTORY;
        if self.points_held > point_budget + history + point_budget / 8 {
            self.trim_points(capacity);
        }
        Some(Update::Point(last))
    }

    /// Series that received no point since their share shrank still hold their old share:
    /// once that adds up to an eighth over the budget, every series gives its excess back.
    fn trim_points(&mut self, capacity: usize) {
        self.points_held = 0;
        for view in self.series.values_mut() {
            view.recent.keep(capacity);
            self.points_held += view.recent.slots();
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

    fn remove(&mut self, key: &SeriesKey) {
        if let Some(view) = self.series.remove(key) {
            self.points_held -= view.recent.slots();
            self.windows_held -= view.windows.len();
            self.evicted_total += 1;
        }
    }

    /// Evicts the least recently updated series until `keep` remain.
    fn evict_least_recent(&mut self, keep: usize) {
        let Some(cut) = self.series.len().checked_sub(keep).filter(|&cut| cut > 0) else {
            return;
        };
        let mut by_age: Vec<(Instant, SeriesKey)> = self
            .series
            .iter()
            .map(|(key, view)| (view.updated, key.clone()))
            .collect();
        by_age.select_nth_unstable_by_key(cut - 1, |(updated, _)| *updated);
        for (_, key) in &by_age[..cut] {
            self.remove(key);
        }
        tracing::debug!(evicted = cut, "live view over its memory budget");
    }

    /// Evicts the series idle for longer than the limit; looks at most every few seconds.
    fn sweep_idle(&mut self, now: Instant) {
        let every = (self.limits.idle_after / 4).min(Duration::from_secs(10));
        if self
            .swept
            .is_some_and(|swept| now.duration_since(swept) < every)
        {
            return;
        }
        self.swept = Some(now);
        let idle: Vec<SeriesKey> = self
            .series
            .iter()
            .filter(|(_, view)| {
                now.saturating_duration_since(view.updated) > self.limits.idle_after
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in &idle {
            self.remove(key);
        }
    }

    fn window(&mut self, w: &WindowRecord) -> Update {
        let budget = self.limits.window_budget();
        let capacity = share(budget, RECENT_WINDOWS, self.series.len());
        if let Some(view) = self.series.get_mut(&(w.stream.clone(), w.series.clone())) {
            while view.windows.len() >= capacity {
                view.windows.pop_front();
                self.windows_held -= 1;
            }
            if view.windows.capacity() < capacity {
                // The whole share at once, as the rings do: grown by doubling, every series'
                // windows moved to a block twice the size at its 5th and 9th window, and the
                // RSS of 100,000 series stepped up by 60 and 100 MB there. Every slot is
                // written once now, as a ring's are, so the share is resident from the first
                // window rather than a page at a time over its first `capacity` windows.
                view.windows.reserve_exact(capacity - view.windows.len());
                let len = view.windows.len();
                view.windows
                    .resize(view.windows.capacity(), RecentWindow::from(w));
                view.windows.truncate(len);
            }
            view.windows.push_back(RecentWindow::from(w));
            self.windows_held += 1;
            if self.windows_held > budget + budget / 8 {
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
    /// A live view within the default [`Limits`].
    pub fn new() -> Arc<Self> {
        LiveState::with_limits(Limits::default())
    }

    /// A live view within `limits`, charting each stream's SMA and EWMA as `lines` says.
    pub fn for_streams<'a>(
        limits: Limits,
        lines: impl IntoIterator<Item = (&'a str, Lines)>,
    ) -> Arc<Self> {
        let mut dashboard = Dashboard::new(limits);
        for (stream, lines) in lines {
            dashboard.set_lines(stream, lines);
        }
        LiveState::with_dashboard(dashboard)
    }

    pub fn with_limits(limits: Limits) -> Arc<Self> {
        LiveState::with_dashboard(Dashboard::new(limits))
    }

    fn with_dashboard(dashboard: Dashboard) -> Arc<Self> {
        let (hub, _) = broadcast::channel(HUB_CAPACITY);
        Arc::new(LiveState {
            dashboard: Mutex::new(dashboard),
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
    /// Takes the lock per record, so a page or a snapshot waits for one record at most. One
    /// clock read per write: the records of a write arrived together.
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let now = Instant::now();
        self.live.read().sweep_idle(now);
        let updates: Vec<Update> = records
            .iter()
            .filter_map(|record| self.live.read().apply(record, now))
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
    use crate::config::Config;

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
            expected: Some(1.0),
            spread: None,
            lower: Some(0.5),
            upper: Some(1.5),
        })
    }

    fn key(series: &str) -> SeriesKey {
        (Arc::from("s"), Arc::from(series))
    }

    #[test]
    fn each_stream_is_charted_with_its_own_sma_and_ewma() {
        let config = Config::from_toml_str(
            &crate::config::DEFAULT_PIPELINE
                .replace("name = \"demo\"", "name = \"s\"")
                .replace(
                    "analytics = {}",
                    "analytics = { sma_points = 3, ewma_alpha = 0.5 }",
                ),
        )
        .unwrap();
        let live = config.live_view();
        let mut dashboard = live.read();
        for ts in 0..4 {
            let mut p = point("a", ts);
            if let Record::Point(p) = &mut p {
                p.ewma = 0.0;
            }
            dashboard.apply(&p, Instant::now());
        }
        let chart: Vec<(Option<f64>, f64)> = dashboard.series[&key("a")]
            .recent
            .iter()
            .map(|p| (p.sma, p.ewma))
            .collect();
        // Values 0, 1, 2, 3: the SMA of 3 from the third point, the EWMA of 0.5 from 0.
        assert_eq!(
            chart,
            [
                (None, 0.0),
                (None, 0.5),
                (Some(1.0), 1.25),
                (Some(2.0), 2.125)
            ]
        );
    }

    #[test]
    fn a_recent_window_takes_64_bytes_and_keeps_what_the_page_shows() {
        assert_eq!(WINDOW_BYTES, 64);
        let mut record = crate::record::WindowRecord {
            stream: "s".into(),
            series: "a".into(),
            kind: WindowKind::Sliding,
            window_start: 60_000,
            window_end: 120_000,
            count: 3,
            sum: 6.0,
            mean: 2.0,
            min: 1.0,
            max: 3.0,
            stddev: Some(1.0),
            first: 1.0,
            last: 3.0,
            is_final: true,
        };
        let w = RecentWindow::from(&record);
        assert_eq!(
            (w.kind, w.window_start, w.window_end, w.count),
            (WindowKind::Sliding, 60_000, 120_000, 3)
        );
        assert_eq!(
            (w.mean, w.min, w.max, w.stddev()),
            (2.0, 1.0, 3.0, Some(1.0))
        );
        record.stddev = None;
        assert_eq!(RecentWindow::from(&record).stddev(), None);
    }

    #[test]
    fn recent_windows_take_their_share_at_once() {
        let mut dashboard = Dashboard::new(Limits::default());
        let now = Instant::now();
        dashboard.apply(&point("a", 0), now);
        for minute in 0..50 {
            let window = Record::Window(WindowRecord {
                stream: "s".into(),
                series: "a".into(),
                kind: crate::record::WindowKind::Tumbling,
                window_start: minute * 60_000,
                window_end: (minute + 1) * 60_000,
                count: 1,
                sum: 1.0,
                mean: 1.0,
                min: 1.0,
                max: 1.0,
                stddev: None,
                first: 1.0,
                last: 1.0,
                is_final: true,
            });
            dashboard.apply(&window, now);
            let windows = &dashboard.series[&key("a")].windows;
            assert_eq!(windows.len(), (minute as usize + 1).min(RECENT_WINDOWS));
            assert_eq!(
                windows.capacity(),
                RECENT_WINDOWS,
                "never grown by doubling"
            );
        }
    }

    #[test]
    fn recent_points_share_a_budget_and_keep_the_newest() {
        let limits = Limits {
            max_memory: 8 << 20,
            ..Limits::default()
        };
        let mut dashboard = Dashboard::new(limits);
        let now = Instant::now();
        for ts in 0..1_000 {
            dashboard.apply(&point("a", ts), now);
        }
        let a = &dashboard.series[&key("a")];
        assert_eq!(a.recent.len(), RECENT_POINTS);
        let newest = a.recent.iter().last().unwrap();
        assert_eq!(newest.ts, 999);
        assert_eq!((newest.lower, newest.upper), (Some(0.5), Some(1.5)));
        // As many series as the budget holds at the least share: every series keeps about
        // that, and the whole view stays within the budget.
        let many = limits.most_series() - 1;
        for i in 0..many {
            let series = format!("b{i}");
            for ts in 0..LEAST_POINTS as i64 + 5 {
                dashboard.apply(&point(&series, ts), now);
            }
        }
        assert_eq!(dashboard.series.len(), many + 1, "nobody evicted yet");
        let held: usize = dashboard.series.values().map(|v| v.recent.slots()).sum();
        assert_eq!(held, dashboard.points_held);
        assert!(
            dashboard.memory_bytes() <= limits.max_memory + limits.max_memory / 8,
            "{} bytes held",
            dashboard.memory_bytes()
        );
        let a = &dashboard.series[&key("a")];
        assert!(
            a.recent.len() < RECENT_POINTS,
            "the first series gave its excess back"
        );
        assert!(a.recent.len() >= LEAST_POINTS, "{}", a.recent.len());
        let last = &dashboard.series[&key("b0")];
        assert_eq!(last.sparkline_points(2), [(63, 63.0), (64, 64.0)]);
    }

    #[test]
    fn over_the_budget_the_least_recently_updated_series_leave() {
        let limits = Limits {
            max_memory: 1 << 20,
            ..Limits::default()
        };
        let most = limits.most_series();
        let mut dashboard = Dashboard::new(limits);
        let start = Instant::now();
        for i in 0..most {
            let at = start + Duration::from_millis(i as u64);
            dashboard.apply(&point(&format!("old{i}"), 1), at);
        }
        // The first series is updated again, so it is the most recent, not the oldest.
        let later = start + Duration::from_secs(1);
        dashboard.apply(&point("old0", 2), later);
        dashboard.apply(&point("new", 1), later);
        assert!(dashboard.series.len() < most, "{}", dashboard.series.len());
        assert!(dashboard.series.contains_key(&key("new")));
        assert!(dashboard.series.contains_key(&key("old0")));
        assert!(
            !dashboard.series.contains_key(&key("old1")),
            "the oldest left"
        );
        assert!(dashboard
            .series
            .contains_key(&key(&format!("old{}", most - 1))));
        assert_eq!(
            dashboard.evicted_total as usize,
            most + 1 - dashboard.series.len()
        );
        let held: usize = dashboard.series.values().map(|v| v.recent.slots()).sum();
        assert_eq!(held, dashboard.points_held);
        // An evicted series comes back with its next point.
        dashboard.apply(&point("old1", 2), later);
        assert_eq!(dashboard.series[&key("old1")].recent.len(), 1);
    }

    #[test]
    fn idle_series_leave_and_come_back_with_their_next_point() {
        let limits = Limits {
            idle_after: Duration::from_secs(60),
            ..Limits::default()
        };
        let mut dashboard = Dashboard::new(limits);
        let start = Instant::now();
        dashboard.apply(&point("idle", 1), start);
        dashboard.apply(&point("busy", 1), start);
        dashboard.sweep_idle(start);
        let later = start + Duration::from_secs(50);
        dashboard.apply(&point("busy", 2), later);
        dashboard.sweep_idle(later);
        assert_eq!(dashboard.series.len(), 2, "not idle for a minute yet");
        let later = start + Duration::from_secs(61);
        dashboard.sweep_idle(later);
        assert!(!dashboard.series.contains_key(&key("idle")));
        assert!(dashboard.series.contains_key(&key("busy")));
        assert_eq!(dashboard.evicted_total, 1);
        dashboard.apply(&point("idle", 2), later);
        assert!(dashboard.series.contains_key(&key("idle")));
    }
}
