//! The streaming engine: pure, synchronous and deterministic.
//!
//! It takes decoded events (with the source partition they came from) and explicit processing-time
//! ticks, and returns records. It does no I/O and never reads a clock, so the same input in the
//! same order always gives the same output — which is what lets it be tested against brute-force
//! models, replayed from a checkpoint, and benchmarked without Kafka.
//!
//! # Semantics
//!
//! Times are epoch milliseconds. Each event passes, in this order:
//!
//! 1. **Watermark and lateness**: per source partition, `max event time seen − lateness`. A
//!    stream's watermark is the minimum over its partitions that are not idle; a partition with
//!    no event for `idle_timeout` of processing time (measured by the ticks) is idle and ignored
//!    until it sends again; when all are idle, the maximum over all. A partition that has been
//!    seen but sent no event time yet holds the watermark at its start. The watermark never goes
//!    backwards. An event is *late* when its time is below **its own partition's** watermark
//!    (Kafka Streams' rule: each task judges grace by its own stream time), or below the
//!    stream's when that is further on (only for a partition that was idle while the others
//!    moved on). A late event goes to no dedup, window, analytics or join, but becomes a `late`
//!    record (with the watermark it missed and by how much) and is counted per series. Never
//!    dropped silently — a re-sent late event is reported late again. Windows, points and joins
//!    still move on the stream's watermark, which is never ahead of a partition's own, so an
//!    accepted event can never reach a closed window, and which events are late depends on each
//!    partition's log alone, not on how the partitions interleave: a replay gives the same
//!    records.
//! 2. **Dedup** (when the stream has `dedup`), for events that are not late: an event whose `id`
//!    was already accepted for an event at most `horizon` away in event time is a duplicate:
//!    dropped and counted per series. It still counts as activity of its partition. Because
//!    only events at or after the watermark are checked, state can be evicted by the watermark
//!    exactly (see [`dedup::Dedup`]), so it stays bounded. Events without an id are never
//!    duplicates.
//! 3. **Windows**, per (stream, series): tumbling and sliding windows aligned to the Unix epoch,
//!    half-open `[start, end)`, sliding built from `gcd(size, slide)` panes; session windows in
//!    which events at most `gap` apart share a session `[first, last + gap)`. Aggregates: count,
//!    sum, mean, min, max, sample stddev (`null` for one event), first and last (by event time,
//!    ties by (partition, offset): [`LogOrder`]). An aligned window is emitted once, as `final`, when the watermark reaches
//!    its end (`watermark ≥ end`); a session when the watermark passes its end
//!    (`watermark > last + gap`). Windows with no events are not emitted. A `global` window
//!    (Spark's complete mode) holds a series' whole history, `[0, i64::MAX)`: it is re-emitted
//!    with `final: false` when the watermark crosses a multiple of its `update` interval and
//!    the series changed since, and once as `final` at end of input; sinks upsert it.
//! 4. **Per-point analytics**, per series, in event-time order: events wait in a reorder buffer
//!    until the watermark passes them (`ts < watermark`), ties broken by (partition, offset). For each
//!    point, in that order: the mean of the last `sma_points` values including itself; EWMA with
//!    `ewma_alpha`, seeded with the first value; the least-squares slope (units/second) over the
//!    points in `[ts − trend_window, ts]` released so far, labelled rising/falling when its
//!    t-statistic is at least [`points::TREND_MIN_T`] in size, else flat; the z-score of the
//!    point's residual (value minus the seasonal expectation, when a daily or weekly profile is
//!    in use) against the baseline — the residuals of the series' last `zscore.points` points,
//!    none older than `zscore.window` before the newest, as of the last refresh every
//!    [`anomaly::baseline::REFRESH_EVERY`] points — by median/MAD × 1.4826 or sample
//!    mean/stddev, the spread floored; no z below `min_samples` baseline points. Every point
//!    joins the baseline. The point is anomalous, with `method = "auto"`, when the anomaly
//!    likelihood of the recent z-scores (or of this one alone) is improbable for the series,
//!    else when `|z| ≥ threshold`. The details are in [`anomaly`].
//! 5. **Alerts**: anomalous points of a series form one episode, one alert with a stable id,
//!    re-emitted when a more extreme point joins; `resolve_after` normal points in a row resolve
//!    it; an anomaly within `refractory` points of its last anomalous point reopens it, a later
//!    one starts a new episode and a new alert.
//! 6. **Interval joins** between two streams on the series label or a named field: pairs with
//!    `|t_left − t_right| ≤ within`, emitted as soon as the second one arrives; inner or
//!    left-outer. Rows are evicted once the joint watermark (the minimum of both streams') is
//!    past `t + within`; an unmatched left row is then emitted with an empty right side.
//!
//! **End of input** ([`Engine::finish`]): every watermark moves to +∞, so every window closes,
//! every buffered point is released and every join row is evicted. Open alert episodes stay open.
//!
//! # Threads
//!
//! Everything but the per-point analytics runs on the caller's thread. Those, most of the work,
//! can also run on others ([`Engine::set_threads`]): a large release at once, and with
//! [`Engine::defer_points`] every release of a round of input together, by shards of series
//! that whichever thread is free takes (`point_shards`); with [`Engine::settle_overlapped`]
//! while the caller goes on with the next round, and helps ([`Engine::help`]) when it would
//! wait. A series' points are always computed in order by one thread, and their records go
//! where one thread would have written them: the output does not depend on the threads.
//!
//! # Memory
//!
//! Per series and stream: the series label and counters (~100 B); per aligned window spec, one
//! pane (~90 B) per `gcd(size, slide)` of event time within `size + lateness`; per session spec,
//! one open session (~80 B) per gap-separated burst within `gap + lateness`; for analytics,
//! `sma_points` values (8 B each), the points of `trend_window` (16 B each), the anomaly
//! detector's baseline (8 B per point of `zscore.points`, 16 with a `zscore.window`), its
//! seasonal profiles with `season = "auto"` (two of at most 168 bins, 8 B each: 2.7 KB), about
//! 200 B of running statistics, an open alert episode (~300 B, only while one is open), and the
//! reorder buffer (32 B per event within `lateness`). Dedup keeps each id of the last
//! `horizon + lateness` of event time, at most about twice that between its sweeps (~25 B per
//! id whatever its length: a 128-bit hash of it, see [`dedup::IdKey`]). Nothing grows with the
//! length of the stream; the number of series is capped by `max_series`.

pub mod anomaly;
pub mod dedup;
pub mod join;
mod point_shards;
pub mod points;
pub mod reorder;
pub mod stats;
pub mod time;
pub mod window;

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::{Config, StreamConfig};
use crate::event::Event;
use crate::record::{LateRecord, Record};

use self::dedup::Dedup;
use self::join::{IntervalJoin, JoinConfig, JoinInput, JoinOn, Side};
use self::points::PointAnalytics;
use self::time::WatermarkTracker;
use self::window::{AlignedWindows, GlobalWindows, SessionWindows, WindowSpec};

/// An event that reached the operators: deduplicated, not late, its series interned.
pub struct Accepted<'a> {
    pub series: u32,
    pub label: &'a Arc<str>,
    pub ts: i64,
    pub value: f64,
    /// Where the event sits in its stream's logs: the tie-breaker for equal event times, so
    /// their order does not depend on how partitions interleave.
    pub seq: LogOrder,
}

/// An event's place in its stream's input: its split (partition) and offset in it. Ordering
/// equal event times by it, rather than by arrival, makes every result a function of each
/// partition's log alone.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogOrder {
    pub split: u32,
    pub offset: u64,
}

impl LogOrder {
    pub const MIN: LogOrder = LogOrder {
        split: 0,
        offset: 0,
    };
    pub const MAX: LogOrder = LogOrder {
        split: u32::MAX,
        offset: u64::MAX,
    };
}

impl From<Origin<'_>> for LogOrder {
    fn from(origin: Origin<'_>) -> Self {
        LogOrder {
            split: origin.split,
            offset: origin.offset,
        }
    }
}

/// A per-stream operator. Hooks are synchronous and never fail on data.
pub trait Operator: Send {
    fn on_event(&mut self, event: &Accepted<'_>, out: &mut Vec<Record>);
    /// The stream's watermark advanced to `watermark` (`i64::MAX` at end of input).
    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<Record>);
}

/// The operators a stream can run. An enum rather than trait objects so the whole engine state
/// can be checkpointed with serde.
#[derive(Serialize, Deserialize)]
enum StreamOperator {
    Aligned(AlignedWindows),
    Session(SessionWindows),
    Global(GlobalWindows),
    /// Boxed: one per stream, and far larger than the window operators.
    Points(Box<PointAnalytics>),
}

impl StreamOperator {
    fn as_operator(&mut self) -> &mut dyn Operator {
        match self {
            StreamOperator::Aligned(op) => op,
            StreamOperator::Session(op) => op,
            StreamOperator::Global(op) => op,
            StreamOperator::Points(op) => op.as_mut(),
        }
    }
}

/// Where an event came from, for late records and dead letters.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub source: &'a str,
    /// What the watermark is tracked per: a file, a Kafka topic-partition.
    pub split: u32,
    pub partition: u32,
    pub offset: u64,
}

/// Why the engine refused an event. The caller turns it into a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RejectError {
    #[error("stream {stream:?} already tracks its maximum of {max} series (max_series); new series are refused")]
    TooManySeries { stream: String, max: usize },
    #[error("no stream with index {0}")]
    UnknownStream(usize),
}

/// A checkpoint could not be written or read back.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("engine snapshot")]
    Encoding(#[source] postcard::Error),
    #[error(
        "engine snapshot in state format {found}, but this Tidewatch reads format \
         {SNAPSHOT_FORMAT}: it was written by another version; start afresh under a new \
         checkpoint.pipeline name (or remove the old checkpoint row)"
    )]
    Format { found: u8 },
    #[error("engine snapshot taken while a round's points were still being computed (a bug: the pipeline lands them first)")]
    Busy,
    #[error(
        "engine snapshot is damaged (its checksum does not match): start afresh under a new \
         checkpoint.pipeline name (or remove the checkpoint row)"
    )]
    Damaged,
}

/// Version of the layout of [`Engine::snapshot`]: bumped whenever a state type changes shape,
/// so an old checkpoint is refused with a clear message instead of misread.
pub const SNAPSHOT_FORMAT: u8 = 9;

/// Bytes of the CRC-32 that ends a snapshot.
const CHECKSUM_BYTES: usize = 4;

/// Counters of one stream, for the status page and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCounters {
    pub accepted: u64,
    pub late: u64,
    pub duplicates: u64,
}

/// Counters of one series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesCounters {
    pub late: u64,
    pub duplicates: u64,
}

/// Labels of a stream's series, interned to dense ids so operators index vectors, not maps.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SeriesRegistry {
    /// Rebuilt from `labels` after a restore rather than stored twice.
    #[serde(skip)]
    ids: HashMap<Arc<str>, u32, foldhash::fast::RandomState>,
    labels: Vec<Arc<str>>,
    counters: Vec<SeriesCounters>,
}

impl SeriesRegistry {
    fn rebuild_index(&mut self) {
        self.ids = self
            .labels
            .iter()
            .enumerate()
            .map(|(i, label)| (label.clone(), i as u32))
            .collect();
    }

    fn intern(&mut self, label: &str, max: usize) -> Option<u32> {
        if let Some(&id) = self.ids.get(label) {
            return Some(id);
        }
        if self.labels.len() >= max {
            return None;
        }
        let id = self.labels.len() as u32;
        let label: Arc<str> = Arc::from(label);
        self.ids.insert(label.clone(), id);
        self.labels.push(label);
        self.counters.push(SeriesCounters::default());
        Some(id)
    }
}

#[derive(Serialize, Deserialize)]
struct StreamRuntime {
    name: Arc<str>,
    max_series: usize,
    watermark: WatermarkTracker,
    dedup: Option<Dedup>,
    series: SeriesRegistry,
    operators: Vec<StreamOperator>,
    /// Joins this stream feeds, with its side and whether the join keys on a named field.
    joins: Vec<(usize, Side, bool)>,
    counters: StreamCounters,
}

impl StreamRuntime {
    /// A stream with no state yet: no partition seen, no series, every operator empty.
    fn new(s: &StreamConfig) -> Self {
        let name: Arc<str> = Arc::from(s.name.as_str());
        let mut operators: Vec<StreamOperator> = Vec::new();
        for spec in &s.windows {
            operators.push(match *spec {
                WindowSpec::Tumbling { size } => {
                    StreamOperator::Aligned(AlignedWindows::tumbling(name.clone(), size.ms()))
                }
                WindowSpec::Sliding { size, slide } => StreamOperator::Aligned(
                    AlignedWindows::sliding(name.clone(), size.ms(), slide.ms()),
                ),
                WindowSpec::Session { gap } => {
                    StreamOperator::Session(SessionWindows::new(name.clone(), gap.ms()))
                }
                WindowSpec::Global { update } => {
                    StreamOperator::Global(GlobalWindows::new(name.clone(), update.ms()))
                }
            });
        }
        if let Some(analytics) = s.analytics {
            operators.push(StreamOperator::Points(Box::new(PointAnalytics::new(
                name.clone(),
                analytics,
            ))));
        }
        StreamRuntime {
            name,
            max_series: s.max_series,
            watermark: WatermarkTracker::new(
                s.watermark.lateness.ms(),
                s.watermark.idle_timeout.ms(),
            ),
            dedup: s.dedup.map(|d| Dedup::new(d.horizon.ms())),
            series: SeriesRegistry::default(),
            operators,
            joins: Vec::new(),
            counters: StreamCounters::default(),
        }
    }

    /// Counts an event behind `watermark` (its partition's, see [`WatermarkTracker::late_bound`])
    /// and describes it: late events never reach an operator, but they still move their
    /// partition's watermark.
    fn late(
        &mut self,
        series: u32,
        ts: i64,
        watermark: i64,
        origin: Origin<'_>,
        now: i64,
    ) -> LateRecord {
        self.watermark.observe(origin.split, ts, now);
        self.counters.late += 1;
        self.series.counters[series as usize].late += 1;
        LateRecord {
            stream: self.name.clone(),
            series: self.series.labels[series as usize].clone(),
            ts,
            watermark,
            lateness_ms: watermark.saturating_sub(ts),
            source: Arc::from(origin.source),
            partition: origin.partition,
            offset: origin.offset,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct JoinRuntime {
    join: IntervalJoin,
    left: usize,
    right: usize,
    watermark: i64,
}

impl JoinRuntime {
    /// A join of `config` between two of `streams`, with no rows yet.
    fn new(config: &JoinConfig, streams: &[StreamRuntime]) -> Self {
        let (left, right) = config.sides;
        JoinRuntime {
            join: IntervalJoin::new(
                Arc::from(config.name.as_str()),
                streams[left].name.clone(),
                streams[right].name.clone(),
                config.within.ms(),
                config.kind,
            ),
            left,
            right,
            watermark: time::WATERMARK_MIN,
        }
    }
}

/// The engine of a whole pipeline: every stream and join of a [`Config`].
#[derive(Serialize, Deserialize)]
pub struct Engine {
    streams: Vec<StreamRuntime>,
    joins: Vec<JoinRuntime>,
    /// Threads per-point analytics may use ([`Engine::set_threads`]); not state.
    #[serde(skip, default = "one_thread")]
    threads: usize,
    /// While deferring ([`Engine::defer_points`]): where each deferred release's records go.
    #[serde(skip)]
    deferred: Option<Vec<DeferredRelease>>,
    /// While deferring: the length of the output when the round began.
    #[serde(skip)]
    round_start: usize,
    /// The round whose points are computed on other threads ([`Engine::settle_overlapped`]).
    #[serde(skip)]
    in_flight: Option<InFlight>,
}

/// A round held back until its points are computed ([`Engine::settle_overlapped`]).
struct InFlight {
    /// Its records other than the points', in order.
    records: Vec<Record>,
    /// Where its points' records go among them.
    releases: Vec<DeferredRelease>,
}

fn one_thread() -> usize {
    1
}

/// The records of one operator's deferred points, handed out release by release.
struct Settled {
    /// (stream, operator) indexes.
    operator: (usize, usize),
    records: std::vec::IntoIter<Record>,
    /// Per point, where its records end.
    ends: Vec<usize>,
    /// Records handed out so far.
    taken: usize,
}

impl Settled {
    fn new(operator: (usize, usize), records: Vec<Record>, ends: Vec<usize>) -> Self {
        Settled {
            operator,
            records: records.into_iter(),
            ends,
            taken: 0,
        }
    }

    /// Appends to `out` the records of the points up to the `points`th.
    fn take_until(&mut self, points: usize, out: &mut Vec<Record>) {
        let end = match points.checked_sub(1) {
            Some(last) => self.ends.get(last).copied().unwrap_or(self.taken),
            None => self.taken,
        };
        out.extend(self.records.by_ref().take(end.saturating_sub(self.taken)));
        self.taken = self.taken.max(end);
    }
}

/// A release of per-point analytics queued while deferring: its records belong at `at` in the
/// round's output, after whatever was there when it happened.
#[derive(Debug, Clone, Copy)]
struct DeferredRelease {
    at: usize,
    stream: usize,
    operator: usize,
    /// The operator's deferred points up to the end of this release.
    end: usize,
}

/// Appends to `out` a round's `records` with its points' records (`computed`) put in at each
/// of its `releases`.
fn splice(
    out: &mut Vec<Record>,
    records: Vec<Record>,
    releases: &[DeferredRelease],
    mut computed: Vec<Settled>,
) {
    out.reserve(records.len() + computed.iter().map(|c| c.records.len()).sum::<usize>());
    let mut records = records.into_iter();
    let mut copied = 0;
    for release in releases {
        out.extend(records.by_ref().take(release.at.saturating_sub(copied)));
        copied = copied.max(release.at);
        let operator = (release.stream, release.operator);
        if let Some(settled) = computed.iter_mut().find(|c| c.operator == operator) {
            settled.take_until(release.end, out);
        }
    }
    out.extend(records);
}

impl Engine {
    pub fn new(config: &Config) -> Self {
        let mut streams: Vec<StreamRuntime> =
            config.streams.iter().map(StreamRuntime::new).collect();
        let joins = config
            .joins
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let (left, right) = j.sides;
                let by_field = matches!(j.on, JoinOn::Field(_));
                streams[left].joins.push((i, Side::Left, by_field));
                streams[right].joins.push((i, Side::Right, by_field));
                JoinRuntime::new(j, &streams)
            })
            .collect();
        let mut engine = Engine {
            streams,
            joins,
            threads: 1,
            deferred: None,
            round_start: 0,
            in_flight: None,
        };
        engine.set_threads(config.engine.threads());
        engine
    }

    /// Forgets everything stream `stream` of `config` holds: the watermark of each of its
    /// partitions, dedup, windows not yet closed, the per-point analytics and open alert
    /// episodes, its series and counters; and the rows of the joins it feeds, which start
    /// afresh on both sides. The way out of a watermark an event moved too far on; what the
    /// stream reads next is taken as from a new start. Returns whether there is such a stream.
    pub fn reset_stream(&mut self, stream: usize, config: &Config) -> bool {
        let Some(fresh) = config.streams.get(stream).map(StreamRuntime::new) else {
            return false;
        };
        if stream >= self.streams.len() {
            return false;
        }
        let joins = std::mem::take(&mut self.streams[stream].joins);
        self.streams[stream] = StreamRuntime { joins, ..fresh };
        for (i, join) in config.joins.iter().enumerate() {
            if join.sides.0 == stream || join.sides.1 == stream {
                self.joins[i] = JoinRuntime::new(join, &self.streams);
            }
        }
        self.set_threads(self.threads);
        true
    }

    /// Lets per-point analytics run on up to `threads` threads: large releases (see
    /// [`PointAnalytics::set_threads`]) and what [`Engine::defer_points`] queues. Not part of
    /// the state, so a restored engine is told again. The records do not depend on it.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
        for stream in &mut self.streams {
            for op in &mut stream.operators {
                if let StreamOperator::Points(points) = op {
                    points.set_threads(threads);
                }
            }
        }
    }

    /// Until [`Engine::settle`], per-point analytics only queue the points the watermark
    /// releases, and `settle` computes them all on the engine's threads (a series' points on
    /// one of them, in order) and puts their records where one thread would have written them.
    /// `out` is the output the round appends to; in between, the caller may only append to it:
    /// records are inserted by position. Does nothing with one thread.
    pub fn defer_points(&mut self, out: &[Record]) {
        if self.threads <= 1 || self.deferred.is_some() {
            return;
        }
        self.deferred = Some(Vec::new());
        self.round_start = out.len();
        for stream in &mut self.streams {
            for op in &mut stream.operators {
                if let StreamOperator::Points(points) = op {
                    points.defer();
                }
            }
        }
    }

    /// Computes what [`Engine::defer_points`] queued and inserts its records into `out` (the
    /// output every call since was given), in the order one thread gives them. A round still
    /// in flight ([`Engine::settle_overlapped`]) lands first.
    pub fn settle(&mut self, out: &mut Vec<Record>) {
        let Some((records, releases)) = self.take_round(out) else {
            return;
        };
        let mut computed = Vec::new();
        for (s, stream) in self.streams.iter_mut().enumerate() {
            for (o, op) in stream.operators.iter_mut().enumerate() {
                if let StreamOperator::Points(points) = op {
                    let (records, ends) = points.settle();
                    computed.push(Settled::new((s, o), records, ends));
                }
            }
        }
        splice(out, records, &releases, computed);
    }

    /// Like [`Engine::settle`], but this round's points are computed on other threads while
    /// the caller goes on with the next round, and `out` gets the previous round's records
    /// instead, complete: records come out a round late (a round with few points is not held
    /// back), in the order one thread gives them. Until the next `defer_points` or
    /// [`Engine::land`], the caller appends nothing to `out` (it may hand it on and clear it).
    ///
    /// The barrier of [`Engine::settle`] (while the points are computed, nothing else is) is
    /// gone: the engine thread's own work (dedup, watermarks, windows, the reorder buffer)
    /// runs beside the points of the round before.
    pub fn settle_overlapped(&mut self, out: &mut Vec<Record>) {
        let Some((records, releases)) = self.take_round(out) else {
            return;
        };
        let mut away = false;
        for stream in &mut self.streams {
            for op in &mut stream.operators {
                if let StreamOperator::Points(points) = op {
                    away |= points.launch();
                }
            }
        }
        self.in_flight = Some(InFlight { records, releases });
        if !away {
            self.land(out);
        }
    }

    /// Computes a share of the points of the round in flight, when any is left: for a caller
    /// that would otherwise wait (for decoded input). Returns whether it did.
    pub fn help(&self) -> bool {
        self.in_flight.is_some()
            && self.streams.iter().any(|stream| {
                stream.operators.iter().any(|op| match op {
                    StreamOperator::Points(points) => points.help(),
                    _ => false,
                })
            })
    }

    /// Points of the round [`Engine::settle_overlapped`] left in flight: work a rewind throws
    /// away (the replay computes them again).
    pub fn points_in_flight(&self) -> usize {
        if self.in_flight.is_none() {
            return 0;
        }
        let operators = self.streams.iter().flat_map(|s| &s.operators);
        operators
            .map(|op| match op {
                StreamOperator::Points(points) => points.points_in_flight(),
                _ => 0,
            })
            .sum()
    }

    /// Appends to `out` the records of the round [`Engine::settle_overlapped`] left in flight,
    /// once its points are computed. Nothing without one. Everything that reads or computes
    /// points lands first: a snapshot needs it (see [`SnapshotError::Busy`]).
    pub fn land(&mut self, out: &mut Vec<Record>) {
        let Some(flight) = self.in_flight.take() else {
            return;
        };
        let mut computed = Vec::new();
        for (s, stream) in self.streams.iter_mut().enumerate() {
            let labels = &stream.series.labels;
            for (o, op) in stream.operators.iter_mut().enumerate() {
                if let StreamOperator::Points(points) = op {
                    let (records, ends) = points.land(labels);
                    computed.push(Settled::new((s, o), records, ends));
                }
            }
        }
        splice(out, flight.records, &flight.releases, computed);
    }

    /// Stops deferring: takes the round's records out of `out`, with where its points' records
    /// go among them, and lands the round before it in their place.
    fn take_round(&mut self, out: &mut Vec<Record>) -> Option<(Vec<Record>, Vec<DeferredRelease>)> {
        let mut releases = self.deferred.take()?;
        debug_assert!(
            self.round_start <= out.len(),
            "the output was drained while deferring"
        );
        let start = self.round_start.min(out.len());
        let records = out.split_off(start);
        for release in &mut releases {
            release.at = release.at.saturating_sub(start);
        }
        self.land(out);
        Some((records, releases))
    }

    /// Processes one event of stream `stream` at processing time `now`, appending to `out`.
    pub fn process(
        &mut self,
        stream: usize,
        event: &Event<'_>,
        origin: Origin<'_>,
        now: i64,
        out: &mut Vec<Record>,
    ) -> Result<(), RejectError> {
        self.land_unless_deferring(out);
        let s = self
            .streams
            .get_mut(stream)
            .ok_or(RejectError::UnknownStream(stream))?;
        let series = s
            .series
            .intern(&event.series, s.max_series)
            .ok_or_else(|| RejectError::TooManySeries {
                stream: s.name.to_string(),
                max: s.max_series,
            })?;
        let seq = LogOrder::from(origin);

        let bound = s.watermark.late_bound(origin.split);
        if event.ts < bound {
            out.push(Record::Late(s.late(series, event.ts, bound, origin, now)));
            return Ok(());
        }

        if let (Some(dedup), Some(id)) = (s.dedup.as_mut(), event.id.as_deref()) {
            if dedup.check_and_insert(id, event.ts) {
                s.watermark.touch(origin.split, now);
                s.counters.duplicates += 1;
                s.series.counters[series as usize].duplicates += 1;
                return Ok(());
            }
        }

        s.counters.accepted += 1;
        let advanced = s.watermark.observe(origin.split, event.ts, now);
        let accepted = Accepted {
            series,
            label: &s.series.labels[series as usize],
            ts: event.ts,
            value: event.value,
            seq,
        };
        for op in &mut s.operators {
            op.as_operator().on_event(&accepted, out);
        }
        for &(join, side, by_field) in &s.joins {
            let key = if by_field {
                event.join_key.as_deref().unwrap_or_default()
            } else {
                &event.series
            };
            let input = JoinInput {
                key,
                ts: event.ts,
                seq,
                value: event.value,
                id: event.id.as_deref(),
            };
            self.joins[join].join.on_event(side, &input, out);
        }
        if advanced {
            self.advance(stream, out);
        }
        Ok(())
    }

    /// Declares a split (source partition) of a stream before it delivers anything: until its
    /// first event it holds the stream's watermark where it is.
    pub fn assign_split(&mut self, stream: usize, split: u32, now: i64) {
        if let Some(s) = self.streams.get_mut(stream) {
            s.watermark.touch(split, now);
        }
    }

    /// Advances processing time: idle partitions stop holding watermarks back.
    pub fn tick(&mut self, now: i64, out: &mut Vec<Record>) {
        self.land_unless_deferring(out);
        for stream in 0..self.streams.len() {
            if self.streams[stream].watermark.tick(now) {
                self.advance(stream, out);
            }
        }
    }

    /// End of input: closes every window, releases every point, evicts every join row.
    pub fn finish(&mut self, out: &mut Vec<Record>) {
        self.land_unless_deferring(out);
        for stream in 0..self.streams.len() {
            self.streams[stream].watermark.finish();
            self.advance(stream, out);
        }
    }

    /// Outside a round, records come in order: the round in flight first.
    fn land_unless_deferring(&mut self, out: &mut Vec<Record>) {
        if self.in_flight.is_some() && self.deferred.is_none() {
            self.land(out);
        }
    }

    /// Lets the operators, dedup and joins of a stream catch up with its new watermark.
    fn advance(&mut self, stream: usize, out: &mut Vec<Record>) {
        let s = &mut self.streams[stream];
        let watermark = s.watermark.current();
        for (operator, op) in s.operators.iter_mut().enumerate() {
            op.as_operator().on_watermark(watermark, out);
            if let (Some(releases), StreamOperator::Points(points)) = (&mut self.deferred, op) {
                if let Some(end) = points.newly_deferred() {
                    releases.push(DeferredRelease {
                        at: out.len(),
                        stream,
                        operator,
                        end,
                    });
                }
            }
        }
        if let Some(dedup) = s.dedup.as_mut() {
            dedup.evict(watermark);
        }
        for k in 0..self.streams[stream].joins.len() {
            let join = self.streams[stream].joins[k].0;
            let j = &mut self.joins[join];
            let joint = self.streams[j.left]
                .watermark
                .current()
                .min(self.streams[j.right].watermark.current());
            if joint > j.watermark {
                j.watermark = joint;
                j.join.on_watermark(joint, out);
            }
        }
    }

    /// The whole engine state, for a checkpoint. Binary (postcard), not JSON: compact, and
    /// floats round-trip bit for bit, which a restored engine needs to give identical results.
    ///
    /// Sized first and written once into a buffer of exactly that size: at 100,000 series the
    /// state is hundreds of megabytes, and growing a buffer by doubling, then copying it behind
    /// the format byte, held up to three times that at once.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let size =
            postcard::experimental::serialized_size(self).map_err(SnapshotError::Encoding)?;
        let mut bytes = Vec::with_capacity(1 + size + CHECKSUM_BYTES);
        self.write_snapshot(&mut bytes)?;
        Ok(bytes)
    }

    /// Writes the bytes of [`Engine::snapshot`] to `out` as they are produced, in small
    /// writes (buffer `out`): a store can keep them in parts without ever holding them whole.
    /// Fails with [`SnapshotError::Encoding`] when `out` does (the caller knows why).
    ///
    /// The layout: the format byte, the postcard body, and the body's CRC-32 (little endian).
    /// The checksum is there because a restored engine trusts its state (series ids index its
    /// tables): a damaged row must be refused, not panic on the first event after it.
    pub fn write_snapshot(&self, mut out: impl std::io::Write) -> Result<(), SnapshotError> {
        // The points released since would be lost, or the series' states are away.
        if self.deferred.is_some() || self.in_flight.is_some() {
            return Err(SnapshotError::Busy);
        }
        let failed = |_| SnapshotError::Encoding(postcard::Error::SerializeBufferFull);
        out.write_all(&[SNAPSHOT_FORMAT]).map_err(failed)?;
        let mut body = Checksummed::new(out);
        postcard::to_io(self, &mut body).map_err(SnapshotError::Encoding)?;
        let (mut out, crc) = body.finish();
        out.write_all(&crc.to_le_bytes()).map_err(failed)?;
        Ok(())
    }

    /// An engine exactly as [`Engine::snapshot`] left it.
    pub fn restore(snapshot: &[u8]) -> Result<Engine, SnapshotError> {
        let (&format, body) = snapshot
            .split_first()
            .ok_or(SnapshotError::Format { found: 0 })?;
        if format != SNAPSHOT_FORMAT {
            return Err(SnapshotError::Format { found: format });
        }
        let split = body
            .len()
            .checked_sub(CHECKSUM_BYTES)
            .ok_or(SnapshotError::Damaged)?;
        let (body, crc) = body.split_at(split);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(SnapshotError::Damaged);
        }
        let mut engine: Engine = postcard::from_bytes(body).map_err(SnapshotError::Encoding)?;
        for stream in &mut engine.streams {
            stream.series.rebuild_index();
        }
        Ok(engine)
    }

    /// The stream's current watermark (`i64::MIN` before any event).
    pub fn watermark(&self, stream: usize) -> Option<i64> {
        self.streams.get(stream).map(|s| s.watermark.current())
    }

    /// Each source partition's watermark contribution, for the status page.
    pub fn partition_watermarks(&self, stream: usize) -> Vec<(u32, time::PartitionWatermark)> {
        self.streams
            .get(stream)
            .map(|s| s.watermark.partitions().collect())
            .unwrap_or_default()
    }

    pub fn counters(&self, stream: usize) -> Option<StreamCounters> {
        self.streams.get(stream).map(|s| s.counters)
    }

    /// Per-series counters of a stream, by label.
    pub fn series_counters(
        &self,
        stream: usize,
    ) -> impl Iterator<Item = (&Arc<str>, SeriesCounters)> + '_ {
        self.streams.get(stream).into_iter().flat_map(|s| {
            s.series
                .labels
                .iter()
                .zip(s.series.counters.iter().copied())
        })
    }

    /// Ids the dedup of a stream remembers now (0 without dedup): to check it stays bounded.
    pub fn dedup_entries(&self, stream: usize) -> usize {
        self.streams
            .get(stream)
            .and_then(|s| s.dedup.as_ref())
            .map_or(0, Dedup::len)
    }

    /// Rows buffered in all joins.
    pub fn join_rows(&self) -> usize {
        self.joins.iter().map(|j| j.join.buffered()).sum()
    }
}

/// A writer that passes bytes through to `out` as they come (the writes keep their sizes,
/// which a store's parts depend on) and keeps their CRC-32. postcard writes a field at a
/// time, so the bytes are checksummed in blocks of [`Checksummed::BLOCK`], not per write.
struct Checksummed<W> {
    out: W,
    crc: crc32fast::Hasher,
    pending: Vec<u8>,
}

impl<W: std::io::Write> Checksummed<W> {
    const BLOCK: usize = 64 * 1024;

    fn new(out: W) -> Self {
        Checksummed {
            out,
            crc: crc32fast::Hasher::new(),
            pending: Vec::with_capacity(Self::BLOCK),
        }
    }

    /// The writer, and the CRC-32 of everything written through it.
    fn finish(mut self) -> (W, u32) {
        self.crc.update(&self.pending);
        (self.out, self.crc.finalize())
    }
}

impl<W: std::io::Write> std::io::Write for Checksummed<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.out.write(bytes)?;
        self.pending.extend_from_slice(&bytes[..written]);
        if self.pending.len() >= Self::BLOCK {
            self.crc.update(&self.pending);
            self.pending.clear();
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        Engine::new(&Config::from_toml_str(crate::bench::BENCH_CONFIG).unwrap())
    }

    /// Where a test's event comes from: partition 0 of source "x", at `offset`.
    fn origin(offset: u64) -> Origin<'static> {
        Origin {
            source: "x",
            split: 0,
            partition: 0,
            offset,
        }
    }

    #[test]
    fn a_snapshot_restores_and_another_format_is_refused_by_name() {
        let snapshot = engine().snapshot().unwrap();
        assert_eq!(snapshot[0], SNAPSHOT_FORMAT);
        let restored = Engine::restore(&snapshot).unwrap();
        assert_eq!(restored.snapshot().unwrap(), snapshot);

        let mut old = snapshot.clone();
        old[0] = SNAPSHOT_FORMAT - 1;
        let refused = Engine::restore(&old).err().unwrap().to_string();
        assert!(
            refused.contains(&format!("format {}", SNAPSHOT_FORMAT - 1))
                && refused.contains("checkpoint.pipeline"),
            "{refused}"
        );
        assert!(Engine::restore(&[]).is_err());
        assert!(Engine::restore(&[SNAPSHOT_FORMAT]).is_err());
    }

    /// Any byte changed after the format byte is caught by the checksum, before decoding.
    #[test]
    fn a_damaged_snapshot_is_refused_by_its_checksum() {
        let mut engine = engine();
        let mut out = Vec::new();
        for i in 0..100 {
            let event = Event {
                ts: 1_700_000_000_000 + i * 1_000,
                series: format!("s{}", i % 7).into(),
                value: i as f64,
                id: Some(format!("e{i}").into()),
                join_key: None,
            };
            let _ = engine.process(0, &event, origin(i as u64), 0, &mut out);
        }
        let snapshot = engine.snapshot().unwrap();
        let mut streamed = Vec::new();
        engine.write_snapshot(&mut streamed).unwrap();
        assert_eq!(streamed, snapshot, "both ways write the same bytes");
        for at in [1, snapshot.len() / 2, snapshot.len() - 1] {
            let mut damaged = snapshot.clone();
            damaged[at] ^= 0x10;
            let refused = Engine::restore(&damaged).err().unwrap();
            assert!(
                matches!(refused, SnapshotError::Damaged),
                "byte {at}: {refused}"
            );
        }
    }

    /// One stream `s` with default analytics and a watermark `lateness` behind.
    fn one_stream_with_analytics(lateness: &str) -> Config {
        Config::from_toml_str(&format!(
            "[[streams]]\nname = \"s\"\nsource = {{ kind = \"file\", path = \"x\" }}\n\
             fields = {{ time = \"ts\", series = \"series\", value = \"value\" }}\n\
             watermark = {{ lateness = \"{lateness}\" }}\nanalytics = {{}}\n\
             [[sinks]]\nkind = \"ndjson\"\npath = \"x\"\n",
        ))
        .unwrap()
    }

    /// A checkpoint of an engine whose round is in flight would miss the series' states (they
    /// are with the points being computed): refused, and fine once the round landed.
    #[test]
    fn no_snapshot_while_a_round_is_in_flight() {
        let config = one_stream_with_analytics("1s");
        let mut engine = Engine::new(&config);
        engine.set_threads(2);
        let mut out = Vec::new();
        engine.defer_points(&out);
        for i in 0..5_000i64 {
            let event = Event {
                ts: 1_700_000_000_000 + i * 10,
                series: format!("s{}", i % 50).into(),
                value: (i % 7) as f64,
                id: None,
                join_key: None,
            };
            engine
                .process(0, &event, origin(i as u64), 0, &mut out)
                .unwrap();
        }
        engine.settle_overlapped(&mut out);
        assert!(out.is_empty(), "a round of 4,899 points was not held back");
        assert!(matches!(engine.snapshot(), Err(SnapshotError::Busy)));
        engine.land(&mut out);
        assert_eq!(out.len(), 4_899, "the points the watermark passed");
        let restored = Engine::restore(&engine.snapshot().unwrap()).unwrap();
        assert_eq!(restored.counters(0), engine.counters(0));
    }

    /// Large releases of points (a backlog released by a watermark jump, then the end of input)
    /// computed on several threads give the records of one thread, in the same order: alerts
    /// between their points, series in every shard, on 2, 3 and 7 threads.
    #[test]
    fn large_releases_on_several_threads_give_the_records_of_one() {
        let config = Config::from_toml_str(
            "[[streams]]\nname = \"s\"\nsource = { kind = \"file\", path = \"x\" }\n\
             fields = { time = \"ts\", series = \"series\", value = \"value\" }\n\
             watermark = { lateness = \"1h\" }\nanalytics = { zscore = { points = 60, method = \"robust\" } }\n\
             [[sinks]]\nkind = \"ndjson\"\npath = \"x\"\n",
        )
        .unwrap();
        let run = |threads: usize| {
            let mut engine = Engine::new(&config);
            engine.set_threads(threads);
            let mut out = Vec::new();
            let start = 1_700_000_000_000i64;
            let mut offset = 0;
            // 301 series × 40 points a second apart: all within the lateness, released at once
            // by a point two hours on, then 301 × 30 more released by the end of input.
            for (round, points) in [(0i64, 40i64), (1, 30)] {
                for i in 0..points {
                    for s in 0..301i64 {
                        let planted = (round, i) == (0, 35) || (round, i) == (1, 20);
                        let spike = if planted && s % 3 == 0 { 1_000.0 } else { 0.0 };
                        let event = Event {
                            ts: start + round * 7_300_000 + i * 1_000 + s,
                            series: format!("s{s}").into(),
                            value: ((s + i * 13) % 17) as f64 + spike,
                            id: None,
                            join_key: None,
                        };
                        engine
                            .process(0, &event, origin(offset), 0, &mut out)
                            .unwrap();
                        offset += 1;
                    }
                }
            }
            engine.finish(&mut out);
            out
        };
        let one = run(1);
        let points = one.iter().filter(|r| matches!(r, Record::Point(_))).count();
        let alerts = one.iter().filter(|r| matches!(r, Record::Alert(_))).count();
        assert_eq!(points, 301 * 70);
        assert!(
            alerts > 0,
            "no alerts: the order of alerts among points is untested"
        );
        for threads in [2, 3, 7] {
            assert!(run(threads) == one, "{threads} threads");
        }
    }

    /// Points deferred over rounds of input and computed together on several threads give the
    /// records of one thread, in the same order: two streams with analytics (their releases
    /// interleaved), window records and late records between them, records the caller
    /// appends (as it does dead letters), alerts between their points, and output that was
    /// there before the round. Also when a round's points are computed while the next round
    /// is processed (overlapped, the engine thread helping now and then), with new series
    /// arriving meanwhile.
    #[test]
    fn deferred_points_on_several_threads_give_the_records_of_one() {
        let config = Config::from_toml_str(
            "[[streams]]\nname = \"a\"\nsource = { kind = \"file\", path = \"x\" }\n\
             fields = { time = \"ts\", series = \"series\", value = \"value\" }\n\
             watermark = { lateness = \"3s\" }\nwindows = [{ kind = \"tumbling\", size = \"10s\" }]\n\
             analytics = { zscore = { points = 60, method = \"robust\" } }\n\
             [[streams]]\nname = \"b\"\nsource = { kind = \"file\", path = \"y\" }\n\
             fields = { time = \"ts\", series = \"series\", value = \"value\" }\n\
             watermark = { lateness = \"1s\" }\nanalytics = {}\n\
             [[sinks]]\nkind = \"ndjson\"\npath = \"x\"\n",
        )
        .unwrap();
        let run = |threads: usize, round: usize, overlapped: bool| {
            let mut engine = Engine::new(&config);
            engine.set_threads(threads);
            let mut out = Vec::new();
            let start = 1_700_000_000_000i64;
            engine.defer_points(&out);
            for i in 0..12_000i64 {
                let stream = (i % 5 == 0) as usize;
                // New series keep coming, also while a round's points are away.
                let s = (i * 7919) % (100 + i / 200);
                // Out of order within the lateness, now and then late, now and then a spike.
                let jitter = (i * 31) % 2_500 - if i % 997 == 0 { 9_000 } else { 0 };
                let spike = if i % 1_301 == 0 { 500.0 } else { 0.0 };
                let event = Event {
                    ts: start + i * 10 + jitter,
                    series: format!("s{s}").into(),
                    value: ((s + i / 157) % 11) as f64 + spike,
                    id: None,
                    join_key: None,
                };
                engine
                    .process(stream, &event, origin(i as u64), 0, &mut out)
                    .unwrap();
                // As the pipeline does while it waits for decoded input.
                if overlapped && i % 50 == 0 {
                    engine.help();
                }
                if i % 409 == 0 {
                    out.push(Record::Late(LateRecord {
                        stream: Arc::from("caller"),
                        series: Arc::from("appended"),
                        ts: i,
                        watermark: 0,
                        lateness_ms: 0,
                        source: Arc::from("x"),
                        partition: 0,
                        offset: i as u64,
                    }));
                }
                if i as usize % round == round - 1 {
                    if overlapped {
                        engine.settle_overlapped(&mut out);
                    } else {
                        engine.settle(&mut out);
                    }
                    engine.defer_points(&out);
                }
            }
            engine.settle(&mut out);
            engine.finish(&mut out);
            out
        };
        let one = run(1, 1_000, false);
        let count = |kind: fn(&Record) -> bool| one.iter().filter(|r| kind(r)).count();
        assert!(count(|r| matches!(r, Record::Point(p) if &*p.stream == "a")) > 9_000);
        assert!(count(|r| matches!(r, Record::Point(p) if &*p.stream == "b")) > 1_000);
        assert!(count(|r| matches!(r, Record::Alert(_))) > 0, "no alerts");
        assert!(count(|r| matches!(r, Record::Late(l) if &*l.stream != "caller")) > 0);
        assert!(count(|r| matches!(r, Record::Window(_))) > 0);
        for (threads, round) in [(2, 1_000), (2, 5_000), (3, 12_000), (7, 333)] {
            for overlapped in [false, true] {
                let got = run(threads, round, overlapped);
                let case = format!("{threads} threads, rounds of {round}, overlapped {overlapped}");
                assert_eq!(got.len(), one.len(), "{case}");
                assert!(got == one, "{case}");
            }
        }
    }

    /// A month of an hourly series with a daily pattern and two anomalies: the default
    /// detector picks up the pattern and alerts. Run straight through, or snapshotted and
    /// restored at any of several points (before and after the pattern is found, between the
    /// anomalies), it writes the same records.
    #[test]
    fn a_restored_detector_continues_exactly() {
        let config = one_stream_with_analytics("0s");
        let hour = 3_600_000i64;
        let values: Vec<(i64, f64)> = (0..24 * 30)
            .map(|i| {
                let daily = if (8..20).contains(&(i % 24)) {
                    50.0
                } else {
                    10.0
                };
                let noise = ((i * 7919) % 11) as f64 / 11.0;
                let planted = match i {
                    600 => 40.0,
                    661 => -30.0,
                    _ => 0.0,
                };
                (1_700_000_000_000 + i * hour, daily + noise + planted)
            })
            .collect();
        let feed = |engine: &mut Engine, range: std::ops::Range<usize>, out: &mut Vec<Record>| {
            for i in range {
                let (ts, value) = values[i];
                let event = Event {
                    ts,
                    series: "a".into(),
                    value,
                    id: None,
                    join_key: None,
                };
                engine.process(0, &event, origin(i as u64), 0, out).unwrap();
            }
        };
        let mut straight = Vec::new();
        let mut engine = Engine::new(&config);
        feed(&mut engine, 0..values.len(), &mut straight);
        engine.finish(&mut straight);
        let alerts: Vec<&crate::record::AlertRecord> = straight
            .iter()
            .filter_map(|r| match r {
                Record::Alert(a) => Some(&**a),
                _ => None,
            })
            .collect();
        assert!(
            alerts
                .iter()
                .any(|a| a.expectation.as_deref() == Some("1d")),
            "the daily pattern was in use: {alerts:?}"
        );
        assert!(alerts.iter().any(|a| a.ts == values[600].0));
        // The second, within the refractory period, reopens the same alert.
        assert!(straight.iter().any(|r| matches!(r,
            Record::Point(p) if p.ts == values[661].0 && p.anomaly)));
        for cut in [50, 130, 599, 630] {
            let mut resumed = Vec::new();
            let mut first = Engine::new(&config);
            feed(&mut first, 0..cut, &mut resumed);
            let mut second = Engine::restore(&first.snapshot().unwrap()).unwrap();
            feed(&mut second, cut..values.len(), &mut resumed);
            second.finish(&mut resumed);
            assert_eq!(resumed, straight, "restored after {cut} points");
        }
    }
}
