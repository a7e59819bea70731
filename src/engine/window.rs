//! Window operators: epoch-aligned tumbling and sliding windows (one pane-based implementation)
//! and session windows, each keeping per-series state and emitting a window once, when closed.
//!
//! Sliding windows aggregate each event into one pane of `gcd(size, slide)` and combine the
//! `size / pane` panes only when a window closes, so an event costs the same as in a tumbling
//! window however many windows overlap it. Tumbling is the case `slide == size` (one pane).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::input::{Accepted, LogOrder};
use super::operator::Operator;
use super::output::{Emitted, SubKey};
use super::stats::WideMoments;
use super::time::SeriesTimers;
use crate::record::{Record, WindowKind, WindowRecord};
use crate::types::{Duration, Invalid};

/// One entry of a stream's `windows` list, told apart by `kind` (see `config::tagged`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowSpec {
    Tumbling {
        size: Duration,
    },
    Sliding {
        size: Duration,
        slide: Duration,
    },
    Session {
        gap: Duration,
    },
    /// All time per series, re-emitted every `update` of event time (complete mode).
    Global {
        #[serde(default = "default_global_update")]
        update: Duration,
    },
}

fn default_global_update() -> Duration {
    Duration::from_secs(60)
}

/// Most panes a sliding window may combine: bounds per-window work and state.
const MAX_PANES: i64 = 10_000;

impl WindowSpec {
    pub fn validate(&self) -> Result<(), Invalid> {
        match *self {
            WindowSpec::Tumbling { size } => size.positive("size").map(drop),
            WindowSpec::Sliding { size, slide } => {
                size.positive("size")?;
                slide.positive("slide")?;
                if slide > size {
                    return Err(Invalid::new(
                        "slide",
                        format!(
                            "slide ({slide}) must not be longer than size ({size}); events \
                             would fall between windows"
                        ),
                    ));
                }
                let pane = gcd(size.ms(), slide.ms());
                if size.ms() / pane > MAX_PANES {
                    let pane = Duration::from_ms(pane).unwrap_or(Duration::ZERO);
                    return Err(Invalid::new(
                        "slide",
                        format!(
                            "a window of {size} sliding by {slide} is kept as {} panes of \
                             {pane} (the longest step both are multiples of), more than the \
                             {MAX_PANES} allowed: use a longer slide (at least {}) or a size \
                             and slide with a longer common step",
                            size.ms() / pane.ms().max(1),
                            Duration::from_ms((size.ms() + MAX_PANES - 1) / MAX_PANES)
                                .unwrap_or(size),
                        ),
                    ));
                }
                Ok(())
            }
            WindowSpec::Session { gap } => gap.positive("gap").map(drop),
            WindowSpec::Global { update } => update.positive("update").map(drop),
        }
    }
}

/// Count, sum, mean, min, max, sample stddev, first and last of a set of events.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    moments: WideMoments,
    sum: f64,
    min: f64,
    max: f64,
    /// (event time, place in the logs, value) of the earliest and latest event.
    first: (i64, LogOrder, f64),
    last: (i64, LogOrder, f64),
}

impl Aggregate {
    pub fn of(ts: i64, seq: LogOrder, value: f64) -> Self {
        let mut moments = WideMoments::default();
        moments.add(value);
        Aggregate {
            moments,
            sum: value,
            min: value,
            max: value,
            first: (ts, seq, value),
            last: (ts, seq, value),
        }
    }

    pub fn add(&mut self, ts: i64, seq: LogOrder, value: f64) {
        self.moments.add(value);
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if (ts, seq) < (self.first.0, self.first.1) {
            self.first = (ts, seq, value);
        }
        if (ts, seq) > (self.last.0, self.last.1) {
            self.last = (ts, seq, value);
        }
    }

    pub fn merge(&mut self, other: &Aggregate) {
        self.moments.merge(&other.moments);
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if (other.first.0, other.first.1) < (self.first.0, self.first.1) {
            self.first = other.first;
        }
        if (other.last.0, other.last.1) > (self.last.0, self.last.1) {
            self.last = other.last;
        }
    }

    fn record(
        &self,
        stream: &Arc<str>,
        series: &Arc<str>,
        kind: WindowKind,
        window_start: i64,
        window_end: i64,
        is_final: bool,
    ) -> Record {
        Record::Window(WindowRecord {
            stream: stream.clone(),
            series: series.clone(),
            kind,
            window_start,
            window_end,
            count: self.moments.count(),
            sum: self.sum,
            // The sum of finite values can overflow; their mean cannot.
            mean: match self.sum.is_finite() {
                true => self.sum / self.moments.count() as f64,
                false => self.moments.mean(),
            },
            min: self.min,
            max: self.max,
            stddev: self.moments.sample_stddev(),
            first: self.first.2,
            last: self.last.2,
            is_final,
        })
    }
}

/// Grows a per-series vector so `series` is a valid index, and returns its slot.
pub(crate) fn slot<T>(states: &mut Vec<Option<T>>, series: u32) -> &mut Option<T> {
    let index = series as usize;
    if index >= states.len() {
        states.resize_with(index + 1, || None);
    }
    &mut states[index]
}

/// Tumbling (`slide == size`) and sliding windows aligned to the Unix epoch: `[k·slide, k·slide + size)`.
#[derive(Serialize, Deserialize)]
pub struct AlignedWindows {
    stream: Arc<str>,
    kind: WindowKind,
    size: i64,
    slide: i64,
    pane: i64,
    series: Vec<Option<AlignedSeries>>,
    timers: SeriesTimers,
}

#[derive(Serialize, Deserialize)]
struct AlignedSeries {
    label: Arc<str>,
    /// The series' number in its stream: windows due at one time come out in its order.
    global: u32,
    /// `(pane start, aggregate of [start, start + pane))`, sorted by start. A deque searched
    /// from the back, not a map: nearly every event lands in the newest pane or the one before.
    panes: VecDeque<(i64, Aggregate)>,
    /// Windows starting before this have been emitted (or were empty).
    cursor: i64,
}

impl AlignedWindows {
    pub fn tumbling(stream: Arc<str>, size: i64) -> Self {
        Self::new(stream, WindowKind::Tumbling, size, size)
    }

    pub fn sliding(stream: Arc<str>, size: i64, slide: i64) -> Self {
        Self::new(stream, WindowKind::Sliding, size, slide)
    }

    fn new(stream: Arc<str>, kind: WindowKind, size: i64, slide: i64) -> Self {
        AlignedWindows {
            stream,
            kind,
            size,
            slide,
            pane: gcd(size, slide),
            series: Vec::new(),
            timers: SeriesTimers::default(),
        }
    }

    /// Start of the first window (a multiple of `slide`) that contains time `t`.
    fn first_window_containing(&self, t: i64) -> i64 {
        (t - self.size).div_euclid(self.slide) * self.slide + self.slide
    }

    /// End of the earliest window of the series that still has to be emitted.
    fn next_due(&self, state: &AlignedSeries) -> Option<i64> {
        let &(first_pane, _) = state.panes.front()?;
        let start = self.first_window_containing(first_pane).max(state.cursor);
        Some(start + self.size)
    }

    /// Emits the windows of `series` the watermark has closed, under `due` (when its timer
    /// was due) and the series' number, and sets its timer for the next one.
    fn emit_closed(&mut self, series: u32, due: i64, watermark: i64, out: &mut Emitted<'_>) {
        let (size, slide) = (self.size, self.slide);
        let Some(state) = self
            .series
            .get_mut(series as usize)
            .and_then(Option::as_mut)
        else {
            return;
        };
        let mut n = 0;
        loop {
            let Some(&(first_pane, _)) = state.panes.front() else {
                return;
            };
            let start = ((first_pane - size).div_euclid(slide) * slide + slide).max(state.cursor);
            let end = start + size;
            if end > watermark {
                self.timers.schedule(series, end);
                return;
            }
            let mut panes = state
                .panes
                .iter()
                .skip_while(|(pane, _)| *pane < start)
                .take_while(|(pane, _)| *pane < end)
                .map(|(_, agg)| agg);
            // The window holds `first_pane`, so it is never empty.
            if let Some(first) = panes.next() {
                let mut total = *first;
                panes.for_each(|agg| total.merge(agg));
                let record = total.record(&self.stream, &state.label, self.kind, start, end, true);
                out.push(SubKey::new(due, u64::from(state.global), n, 0), record);
                n += 1;
            }
            state.cursor = start + slide;
            // Panes before the next window's start belong to no window still open.
            while state
                .panes
                .front()
                .is_some_and(|(pane, _)| *pane < state.cursor)
            {
                state.panes.pop_front();
            }
        }
    }

    /// Open panes over all series (state stays bounded: see the tests).
    #[cfg(test)]
    pub fn open_panes(&self) -> usize {
        self.series.iter().flatten().map(|s| s.panes.len()).sum()
    }
}

impl Operator for AlignedWindows {
    /// The series' timer is due at [`AlignedWindows::next_due`], which only an earlier first
    /// pane can move (emitting moves it too, and sets the timer itself): an event that lands in
    /// a later pane leaves the timer as it is.
    fn on_event(&mut self, ev: &Accepted<'_>, _out: &mut Emitted<'_>) {
        let pane = self.pane;
        let state = slot(&mut self.series, ev.series).get_or_insert_with(|| AlignedSeries {
            label: ev.label.clone(),
            global: ev.global,
            panes: VecDeque::new(),
            cursor: i64::MIN,
        });
        // Most events land in the newest pane: no division, no search.
        if let Some((start, agg)) = state.panes.back_mut() {
            if ev.ts >= *start && ev.ts - *start < pane {
                agg.add(ev.ts, ev.seq, ev.value);
                return;
            }
        }
        let pane_start = ev.ts.div_euclid(pane) * pane;
        // Find the pane from the back; insert in order when it does not exist yet.
        let at = state
            .panes
            .iter()
            .rposition(|(pane, _)| *pane <= pane_start);
        match at {
            Some(i) if state.panes[i].0 == pane_start => {
                state.panes[i].1.add(ev.ts, ev.seq, ev.value)
            }
            Some(i) => state
                .panes
                .insert(i + 1, (pane_start, Aggregate::of(ev.ts, ev.seq, ev.value))),
            None => {
                state
                    .panes
                    .push_front((pane_start, Aggregate::of(ev.ts, ev.seq, ev.value)));
                let state = self.series[ev.series as usize].as_ref();
                if let Some(due) = state.and_then(|s| self.next_due(s)) {
                    self.timers.schedule(ev.series, due);
                }
            }
        }
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Emitted<'_>) {
        while let Some((due, series)) = self.timers.pop_due(watermark) {
            self.emit_closed(series, due, watermark, out);
        }
    }

    fn due(&mut self) -> Option<i64> {
        self.timers.next()
    }
}

/// Session windows: events of a series less than or exactly `gap` apart share a session.
///
/// A session spans `[first event, last event + gap)` and closes once the watermark passes its
/// end (`watermark > last + gap`): only then can no future event — at or after the watermark —
/// fall within `gap` of its last event. An out-of-order event can bridge two sessions into one.
#[derive(Serialize, Deserialize)]
pub struct SessionWindows {
    stream: Arc<str>,
    gap: i64,
    series: Vec<Option<SessionSeries>>,
    timers: SeriesTimers,
}

#[derive(Serialize, Deserialize)]
struct SessionSeries {
    label: Arc<str>,
    global: u32,
    /// Session start → session; sessions of a series are disjoint and more than `gap` apart.
    sessions: BTreeMap<i64, Session>,
}

#[derive(Serialize, Deserialize)]
struct Session {
    last: i64,
    agg: Aggregate,
}

impl SessionWindows {
    pub fn new(stream: Arc<str>, gap: i64) -> Self {
        SessionWindows {
            stream,
            gap,
            series: Vec::new(),
            timers: SeriesTimers::default(),
        }
    }

    #[cfg(test)]
    pub fn open_sessions(&self) -> usize {
        self.series.iter().flatten().map(|s| s.sessions.len()).sum()
    }
}

impl Operator for SessionWindows {
    fn on_event(&mut self, ev: &Accepted<'_>, _out: &mut Emitted<'_>) {
        let gap = self.gap;
        let state = slot(&mut self.series, ev.series).get_or_insert_with(|| SessionSeries {
            label: ev.label.clone(),
            global: ev.global,
            sessions: BTreeMap::new(),
        });
        let mut start = ev.ts;
        let mut merged = Session {
            last: ev.ts,
            agg: Aggregate::of(ev.ts, ev.seq, ev.value),
        };
        // Sessions are sorted and disjoint, so the ones this event touches are contiguous and
        // end with the last one starting within `gap` after it.
        let touching: Vec<i64> = state
            .sessions
            .range(..=ev.ts.saturating_add(gap))
            .rev()
            .take_while(|(_, s)| s.last.saturating_add(gap) >= ev.ts)
            .map(|(&start, _)| start)
            .collect();
        for key in touching {
            if let Some(session) = state.sessions.remove(&key) {
                start = start.min(key);
                merged.last = merged.last.max(session.last);
                merged.agg.merge(&session.agg);
            }
        }
        state.sessions.insert(start, merged);
        if let Some((_, first)) = state.sessions.first_key_value() {
            // Sessions are disjoint, so the first one also ends first.
            self.timers
                .schedule(ev.series, first.last.saturating_add(gap));
        }
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Emitted<'_>) {
        // A session closes when the watermark is strictly past its end.
        let limit = watermark.saturating_sub(1);
        while let Some((due, series)) = self.timers.pop_due(limit) {
            let Some(state) = self
                .series
                .get_mut(series as usize)
                .and_then(Option::as_mut)
            else {
                continue;
            };
            let mut n = 0;
            while let Some(entry) = state.sessions.first_entry() {
                let end = entry.get().last.saturating_add(self.gap);
                if end > limit {
                    self.timers.schedule(series, end);
                    break;
                }
                let start = *entry.key();
                let session = entry.remove();
                let record = session.agg.record(
                    &self.stream,
                    &state.label,
                    WindowKind::Session,
                    start,
                    end,
                    true,
                );
                out.push(SubKey::new(due, u64::from(state.global), n, 0), record);
                n += 1;
            }
        }
    }

    /// Past the end of the session that ends first.
    fn due(&mut self) -> Option<i64> {
        self.timers.next().map(|t| t.saturating_add(1))
    }
}

/// Start of the one window of a `global` window kind: the Unix epoch.
pub const GLOBAL_START: i64 = 0;
/// End of the one window of a `global` window kind: the end of time.
pub const GLOBAL_END: i64 = i64::MAX;

/// All-time aggregates per series: Spark's *complete* output mode.
///
/// Each series has one window, `[GLOBAL_START, GLOBAL_END)`. When an event changes a series,
/// the series is emitted with `final: false` once the watermark reaches the next multiple of
/// `update` after the watermark at that change (event time, so a replay emits the same
/// updates), and once more with `final: true` at the end of input. Sinks upsert on the window
/// key, so a database table holds the complete, current result at all times. State: one
/// aggregate per series.
#[derive(Serialize, Deserialize)]
pub struct GlobalWindows {
    stream: Arc<str>,
    update: i64,
    series: Vec<Option<GlobalSeries>>,
    /// Series changed since their last update, in the order they changed: each with the place
    /// of the event that changed it first and the watermark its update is due at.
    changed: VecDeque<Changed>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Changed {
    series: u32,
    pos: u64,
    due: i64,
}

#[derive(Serialize, Deserialize)]
struct GlobalSeries {
    label: Arc<str>,
    global: u32,
    agg: Aggregate,
    changed: bool,
}

impl GlobalWindows {
    pub fn new(stream: Arc<str>, update: i64) -> Self {
        GlobalWindows {
            stream,
            update,
            series: Vec::new(),
            changed: VecDeque::new(),
        }
    }

    fn record(&self, series: u32, is_final: bool) -> Option<(u32, Record)> {
        let state = self.series.get(series as usize).and_then(Option::as_ref)?;
        let record = state.agg.record(
            &self.stream,
            &state.label,
            WindowKind::Global,
            GLOBAL_START,
            GLOBAL_END,
            is_final,
        );
        Some((state.global, record))
    }
}

impl Operator for GlobalWindows {
    fn on_event(&mut self, ev: &Accepted<'_>, _out: &mut Emitted<'_>) {
        match slot(&mut self.series, ev.series) {
            Some(state) => state.agg.add(ev.ts, ev.seq, ev.value),
            empty => {
                *empty = Some(GlobalSeries {
                    label: ev.label.clone(),
                    global: ev.global,
                    agg: Aggregate::of(ev.ts, ev.seq, ev.value),
                    changed: false,
                })
            }
        }
        if let Some(state) = self.series[ev.series as usize].as_mut() {
            if !state.changed {
                state.changed = true;
                // The first multiple of `update` past the watermark now.
                let due = ev
                    .watermark
                    .div_euclid(self.update)
                    .saturating_add(1)
                    .saturating_mul(self.update);
                self.changed.push_back(Changed {
                    series: ev.series,
                    pos: ev.pos,
                    due,
                });
            }
        }
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Emitted<'_>) {
        if watermark == i64::MAX {
            for series in 0..self.series.len() as u32 {
                if let Some((global, record)) = self.record(series, true) {
                    out.push(SubKey::new(i64::from(global), 0, 0, 0), record);
                }
            }
            self.changed.clear();
            return;
        }
        // Changes come in watermark order, so those due are at the front.
        while let Some(&Changed { series, pos, due }) = self.changed.front() {
            if due > watermark {
                break;
            }
            self.changed.pop_front();
            if let Some((_, record)) = self.record(series, false) {
                out.push(SubKey::new(pos as i64, 0, 0, 0), record);
            }
            if let Some(state) = self.series[series as usize].as_mut() {
                state.changed = false;
            }
        }
    }

    fn due(&mut self) -> Option<i64> {
        self.changed.front().map(|c| c.due)
    }
}

/// Greatest common divisor: sliding windows are built from panes of `gcd(size, slide)`.
pub(crate) fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(op: &mut dyn Operator, events: &[(i64, f64)], out: &mut Vec<Record>) {
        feed_at(op, events, i64::MIN, out);
    }

    /// Feeds `events` of one series while the stream's watermark is `watermark`.
    fn feed_at(
        op: &mut dyn Operator,
        events: &[(i64, f64)],
        watermark: i64,
        out: &mut Vec<Record>,
    ) {
        let label: Arc<str> = "a".into();
        let mut keyed = Vec::new();
        let mut emitted = Emitted::new(&mut keyed, 0, 0);
        for (seq, &(ts, value)) in events.iter().enumerate() {
            op.on_event(
                &Accepted {
                    series: 0,
                    global: 0,
                    label: &label,
                    ts,
                    value,
                    seq: LogOrder {
                        split: 0,
                        offset: seq as u64,
                    },
                    pos: seq as u64,
                    watermark,
                },
                &mut emitted,
            );
        }
        out.extend(keyed.into_iter().map(|(_, r)| r));
    }

    /// Moves the operator's watermark to `watermark`; its records go to `out`, in order.
    fn advance(op: &mut dyn Operator, watermark: i64, out: &mut Vec<Record>) {
        let mut keyed = Vec::new();
        op.on_watermark(watermark, &mut Emitted::new(&mut keyed, 0, 0));
        out.extend(keyed.into_iter().map(|(_, r)| r));
    }

    fn windows(out: &[Record]) -> Vec<(i64, i64, u64, f64)> {
        out.iter()
            .map(|r| match r {
                Record::Window(w) => (w.window_start, w.window_end, w.count, w.sum),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    /// Finite values whose sum overflows: the sum is infinite (it is not representable), but
    /// the mean and the standard deviation are the values', not infinity and 0.
    #[test]
    fn a_window_whose_sum_overflows_keeps_a_finite_mean_and_the_right_stddev() {
        let mut op = AlignedWindows::tumbling("s".into(), 10);
        let mut out = Vec::new();
        let third = f64::MAX / 3.0;
        feed(
            &mut op,
            &[(1, f64::MAX), (2, f64::MAX), (3, third)],
            &mut out,
        );
        advance(&mut op, i64::MAX, &mut out);
        let Some(Record::Window(w)) = out.first() else {
            panic!("{out:?}")
        };
        assert_eq!(w.sum, f64::INFINITY);
        // In units of MAX / 3: 3, 3, 1: mean 7/3, sample variance 4/3.
        assert!((w.mean / third - 7.0 / 3.0).abs() < 1e-12, "{}", w.mean);
        let stddev = w.stddev.unwrap();
        assert!(
            (stddev / third - (4.0f64 / 3.0).sqrt()).abs() < 1e-12,
            "{stddev}"
        );
    }

    #[test]
    fn tumbling_emits_each_window_once_when_the_watermark_reaches_its_end() {
        let mut op = AlignedWindows::tumbling("s".into(), 10);
        let mut out = Vec::new();
        feed(
            &mut op,
            &[(1, 1.0), (12, 2.0), (9, 3.0), (-3, 4.0)],
            &mut out,
        );
        advance(&mut op, -1, &mut out);
        assert!(out.is_empty());
        advance(&mut op, 9, &mut out);
        assert_eq!(windows(&out), vec![(-10, 0, 1, 4.0)]);
        advance(&mut op, 10, &mut out);
        assert_eq!(windows(&out), vec![(-10, 0, 1, 4.0), (0, 10, 2, 4.0)]);
        advance(&mut op, 10, &mut out);
        advance(&mut op, i64::MAX, &mut out);
        assert_eq!(windows(&out)[2..], [(10, 20, 1, 2.0)]);
        assert_eq!(op.open_panes(), 0);
    }

    #[test]
    fn sliding_windows_combine_panes_and_skip_empty_ranges() {
        let mut op = AlignedWindows::sliding("s".into(), 30, 10);
        let mut out = Vec::new();
        feed(&mut op, &[(5, 1.0), (15, 2.0), (1000, 5.0)], &mut out);
        advance(&mut op, i64::MAX, &mut out);
        assert_eq!(
            windows(&out),
            vec![
                (-20, 10, 1, 1.0),
                (-10, 20, 2, 3.0),
                (0, 30, 2, 3.0),
                (10, 40, 1, 2.0),
                (980, 1010, 1, 5.0),
                (990, 1020, 1, 5.0),
                (1000, 1030, 1, 5.0),
            ]
        );
    }

    #[test]
    fn sessions_merge_within_gap_and_bridge_out_of_order() {
        let mut op = SessionWindows::new("s".into(), 10);
        let mut out = Vec::new();
        feed(&mut op, &[(0, 1.0), (25, 2.0), (10, 3.0)], &mut out);
        // 0 and 10 are exactly `gap` apart: one session [0, 20); 25 is 15 after 10: its own.
        advance(&mut op, 20, &mut out);
        assert!(
            out.is_empty(),
            "closes only when the watermark passes the end"
        );
        advance(&mut op, 21, &mut out);
        assert_eq!(windows(&out), vec![(0, 20, 2, 4.0)]);
        feed(&mut op, &[(30, 1.0), (44, 1.0), (36, 1.0)], &mut out);
        advance(&mut op, i64::MAX, &mut out);
        assert_eq!(windows(&out)[1..], [(25, 54, 4, 5.0)]);
        assert_eq!(op.open_sessions(), 0);
    }

    #[test]
    fn first_and_last_follow_event_time_then_arrival() {
        let mut op = AlignedWindows::tumbling("s".into(), 100);
        let mut out = Vec::new();
        feed(
            &mut op,
            &[(50, 1.0), (10, 2.0), (50, 3.0), (10, 4.0)],
            &mut out,
        );
        advance(&mut op, i64::MAX, &mut out);
        let Record::Window(w) = &out[0] else { panic!() };
        assert_eq!((w.first, w.last), (2.0, 3.0));
        assert_eq!(
            w.stddev.map(|s| (s * 1e9).round()),
            Some((1.2909944487358056f64 * 1e9).round())
        );
    }

    fn updates(out: &[Record]) -> Vec<(u64, f64, bool)> {
        out.iter()
            .map(|r| match r {
                Record::Window(w) => {
                    assert_eq!(
                        (w.kind, w.window_start, w.window_end),
                        (WindowKind::Global, GLOBAL_START, GLOBAL_END)
                    );
                    (w.count, w.sum, w.is_final)
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn global_windows_update_when_the_watermark_crosses_the_interval_then_end_final() {
        let mut op = GlobalWindows::new("s".into(), 100);
        let mut out = Vec::new();
        feed(&mut op, &[(5, 1.0), (50, 2.0)], &mut out);
        advance(&mut op, 40, &mut out);
        assert_eq!(
            updates(&out),
            [(2, 3.0, false)],
            "the first watermark emits"
        );
        out.clear();
        feed_at(&mut op, &[(60, 4.0)], 40, &mut out);
        advance(&mut op, 99, &mut out);
        assert!(out.is_empty(), "no update before the next multiple of 100");
        advance(&mut op, 100, &mut out);
        assert_eq!(updates(&out), [(3, 7.0, false)]);
        out.clear();
        advance(&mut op, 250, &mut out);
        assert!(out.is_empty(), "nothing changed, nothing emitted");
        advance(&mut op, i64::MAX, &mut out);
        assert_eq!(
            updates(&out),
            [(3, 7.0, true)],
            "one final record at the end"
        );
    }
}
