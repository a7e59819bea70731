//! Per-point analytics: a reorder buffer per series that releases events in event-time order
//! once the watermark passes them, then SMA, EWMA, trend slope, z-score and alert episodes.
//!
//! Releasing in `(event time, partition, offset)` order is what makes these results independent of the
//! arrival order within the allowed lateness: by the time a point is computed, every event that
//! precedes it in event time has either arrived or is late.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::anomaly::ZScoreConfig;
use super::anomaly::{new_alert, Detection, Detector};
use super::reorder::{Buffered, ReorderBuffer};
use super::stats::{Ewma, MovingAverage, SlidingRegression};
use super::window::slot;
use super::{Accepted, Operator};
use crate::config::{Duration, Invalid};
use crate::record::{PointRecord, Record, Trend};

/// A stream's `analytics` table: what is computed per point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// Points in the simple moving average; default 20.
    pub sma_points: usize,
    /// Weight of the newest point in the EWMA; default 0.1.
    pub ewma_alpha: f64,
    /// Event time the trend slope is fitted over; default "5m".
    pub trend_window: Duration,
    pub zscore: ZScoreConfig,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            sma_points: 20,
            ewma_alpha: 0.1,
            trend_window: Duration::from_secs(300),
            zscore: ZScoreConfig::default(),
        }
    }
}

impl AnalyticsConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.sma_points == 0 || self.sma_points > 100_000 {
            return Err(Invalid::new("sma_points", "must be between 1 and 100000"));
        }
        if !(self.ewma_alpha > 0.0 && self.ewma_alpha <= 1.0) {
            return Err(Invalid::new(
                "ewma_alpha",
                format!("must be in (0, 1], got {}", self.ewma_alpha),
            ));
        }
        self.trend_window.positive("trend_window")?;
        self.zscore.validate().map_err(|e| e.under("zscore"))
    }
}

/// |t| of the slope above which a trend is called rising or falling: about 95 % confidence that
/// the sign of the slope is real, for a few dozen points.
pub const TREND_MIN_T: f64 = 2.0;

/// Points one watermark must release before they are computed on several threads: below it,
/// starting threads costs more than it saves. Large releases come at the end of input, after a
/// partition was idle, or when a backlog arrives with little spread in event time.
pub const PARALLEL_RELEASE: usize = 8192;

/// Points the release buffer keeps room for between releases (1 MiB).
const KEPT_RELEASE: usize = 32_768;

/// Points a thread takes at least when deferred releases are computed ([`PointAnalytics::settle`]):
/// below it, a thread's start costs a good share of what it computes.
pub const SETTLE_SHARE: usize = 512;

#[derive(Serialize, Deserialize)]
pub struct PointAnalytics {
    stream: Arc<str>,
    config: AnalyticsConfig,
    detection: Detection,
    series: Vec<Option<SeriesAnalytics>>,
    /// The reorder buffer of every series at once, released in (event time, partition, offset) order:
    /// one buffer for all series, where per-series buffers would also need a timer per series.
    /// Releasing in global order keeps each series in its own event-time order.
    buffer: ReorderBuffer,
    /// Threads points are computed on ([`PointAnalytics::set_threads`]); not state.
    #[serde(skip, default = "one_thread")]
    threads: usize,
    /// The points of the release being computed, reused.
    #[serde(skip)]
    released: Vec<Buffered>,
    /// While deferring ([`PointAnalytics::defer`]): the points released since, in release
    /// order, not computed yet. Empty whenever the engine is at rest (and so in a snapshot).
    #[serde(skip)]
    deferred: Option<Vec<Buffered>>,
    /// Deferred points already reported by [`PointAnalytics::newly_deferred`].
    #[serde(skip)]
    reported: usize,
}

fn one_thread() -> usize {
    1
}

#[derive(Serialize, Deserialize)]
struct SeriesAnalytics {
    label: Arc<str>,
    sma: MovingAverage,
    ewma: Ewma,
    trend: SlidingRegression,
    detector: Detector,
}

impl PointAnalytics {
    pub fn new(stream: Arc<str>, config: AnalyticsConfig) -> Self {
        PointAnalytics {
            stream,
            detection: Detection::new(config.zscore),
            config,
            series: Vec::new(),
            buffer: ReorderBuffer::default(),
            threads: 1,
            released: Vec::new(),
            deferred: None,
            reported: 0,
        }
    }

    /// Lets releases of at least [`PARALLEL_RELEASE`] points, and deferred points
    /// ([`PointAnalytics::settle`]), be computed on up to `threads` threads, each taking the
    /// series of one range of ids. The records are the same, in the same order, whatever the
    /// number.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// From now on, releases only queue their points: [`PointAnalytics::settle`] computes them
    /// all at once, on several threads. Per-point analytics are most of the engine's work, and
    /// one watermark step releases a handful of points: too few to share out, while the points
    /// of a whole batch of input are plenty.
    pub fn defer(&mut self) {
        if self.deferred.is_none() {
            self.deferred = Some(std::mem::take(&mut self.released));
        }
    }

    /// How many points have been deferred in all, when some were since the last call: the
    /// end of a release, for the engine to place its records.
    pub fn newly_deferred(&mut self) -> Option<usize> {
        let deferred = self.deferred.as_ref().map_or(0, Vec::len);
        (deferred > self.reported).then(|| {
            self.reported = deferred;
            deferred
        })
    }

    /// Computes the points released since [`PointAnalytics::defer`], in release order, and
    /// stops deferring. Returns their records and, per point, where its records end among
    /// them: the caller puts each release's records where one thread would have written them.
    pub fn settle(&mut self) -> (Vec<Record>, Vec<usize>) {
        let Some(mut points) = self.deferred.take() else {
            return (Vec::new(), Vec::new());
        };
        self.reported = 0;
        let mut records = Vec::with_capacity(points.len() + points.len() / 64);
        let mut ends = Vec::with_capacity(points.len());
        let threads = self.threads.min(points.len() / SETTLE_SHARE).max(1);
        let shared = Shared {
            stream: &self.stream,
            config: &self.config,
            detection: &self.detection,
        };
        let done = |end| ends.push(end);
        if threads > 1 {
            compute_in_parallel(
                &mut self.series,
                &points,
                threads,
                &shared,
                &mut records,
                done,
            );
        } else {
            compute_range(
                &mut self.series,
                0,
                points.iter(),
                &shared,
                &mut records,
                done,
            );
        }
        points.clear();
        if points.capacity() <= KEPT_RELEASE {
            self.released = points;
        }
        (records, ends)
    }
}

impl SeriesAnalytics {
    fn compute(
        &mut self,
        stream: &Arc<str>,
        config: &AnalyticsConfig,
        detection: &Detection,
        point: Buffered,
        out: &mut Vec<Record>,
    ) {
        let Buffered { ts, value, .. } = point;
        let sma = self.sma.push(value);
        let ewma = self.ewma.push(value);
        self.trend.push(ts, value);
        self.trend
            .evict_before(ts.saturating_sub(config.trend_window.ms()));
        let fit = self.trend.fit();
        let trend = match fit.and_then(|f| f.t_stat) {
            Some(t) if t >= TREND_MIN_T => Trend::Rising,
            Some(t) if t <= -TREND_MIN_T => Trend::Falling,
            _ => Trend::Flat,
        };
        let assessment = self.detector.assess(detection, ts, value);
        let finding = Detector::finding(detection, ts, value, &assessment);
        // Named only for anomalous points: it allocates.
        let expectation = match finding {
            Some(_) => self.detector.expectation_label(),
            None => String::new(),
        };
        let label = &self.label;
        self.detector.episodes().on_point(
            finding.as_ref(),
            |f| new_alert(stream, label, expectation, f),
            out,
        );
        out.push(Record::Point(PointRecord {
            stream: stream.clone(),
            series: self.label.clone(),
            ts,
            value,
            sma,
            ewma,
            slope: fit.map(|f| f.slope),
            trend,
            z: assessment.z,
            anomaly: assessment.anomaly(),
            expected: assessment.expected,
            spread: assessment.spread,
            lower: assessment.lower,
            upper: assessment.upper,
        }));
    }
}

impl Operator for PointAnalytics {
    fn on_event(&mut self, ev: &Accepted<'_>, _out: &mut Vec<Record>) {
        let config = &self.config;
        slot(&mut self.series, ev.series).get_or_insert_with(|| SeriesAnalytics {
            label: ev.label.clone(),
            sma: MovingAverage::new(config.sma_points),
            ewma: Ewma::new(config.ewma_alpha),
            trend: SlidingRegression::default(),
            detector: Detector::new(&config.zscore),
        });
        self.buffer.push(Buffered {
            ts: ev.ts,
            seq: ev.seq,
            series: ev.series,
            value: ev.value,
        });
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<Record>) {
        // Release what the watermark has passed: ts < watermark.
        if let Some(deferred) = self.deferred.as_mut() {
            self.buffer.release(watermark, |next| deferred.push(next));
            return;
        }
        let mut released = std::mem::take(&mut self.released);
        released.clear();
        self.buffer.release(watermark, |next| released.push(next));
        let threads = self
            .threads
            .min(released.len() / (PARALLEL_RELEASE / 2))
            .max(1);
        let shared = Shared {
            stream: &self.stream,
            config: &self.config,
            detection: &self.detection,
        };
        // A point makes a record, now and then an alert too: room for them at once, rather
        // than doubling (and copying) a large output as it grows.
        out.reserve(released.len());
        if threads > 1 && released.len() >= PARALLEL_RELEASE {
            compute_in_parallel(&mut self.series, &released, threads, &shared, out, |_| {});
        } else {
            compute_range(&mut self.series, 0, released.iter(), &shared, out, |_| {});
        }
        // Kept for the next release, unless an exceptional one (the end of input, a backlog)
        // grew it: that memory goes back.
        if released.capacity() <= KEPT_RELEASE {
            self.released = released;
        }
    }
}

/// What every series' computation reads.
struct Shared<'a> {
    stream: &'a Arc<str>,
    config: &'a AnalyticsConfig,
    detection: &'a Detection,
}

/// Computes `points` (all of series in `series`, which starts at id `first`) in order; calls
/// `done` with the length of `out` after each point.
fn compute_range<'p>(
    series: &mut [Option<SeriesAnalytics>],
    first: usize,
    points: impl Iterator<Item = &'p Buffered>,
    shared: &Shared<'_>,
    out: &mut Vec<Record>,
    mut done: impl FnMut(usize),
) {
    for &point in points {
        if let Some(state) = series
            .get_mut(point.series as usize - first)
            .and_then(Option::as_mut)
        {
            state.compute(shared.stream, shared.config, shared.detection, point, out);
        }
        done(out.len());
    }
}

/// Computes a release on `threads` threads, each owning a range of series ids (a series' state
/// is only ever touched by one of them, in its own event-time order), then puts their records
/// in the order of the release, as one thread would have written them; calls `done` with the
/// length of `out` after each point's records.
fn compute_in_parallel(
    series: &mut [Option<SeriesAnalytics>],
    points: &[Buffered],
    threads: usize,
    shared: &Shared<'_>,
    out: &mut Vec<Record>,
    mut done: impl FnMut(usize),
) {
    let per_thread = series.len().div_ceil(threads).max(1);
    let owner = |point: &Buffered| point.series as usize / per_thread;
    // Each thread's expected share of the points, a little over: ranges are rarely even.
    let share = points.len() / threads + points.len() / 16;
    // Each range's records, and where each of its points' records end among them.
    let shares: Vec<(Vec<Record>, Vec<usize>)> = std::thread::scope(|scope| {
        let mut ranges = series.chunks_mut(per_thread).enumerate();
        let first = ranges.next();
        let spawned: Vec<_> = ranges
            .map(|(k, range)| {
                scope.spawn(move || {
                    // The stream's name in a copy of its own: every point record holds it, and
                    // threads counting references to one copy pass its cache line back and
                    // forth on every point.
                    let stream: Arc<str> = Arc::from(&**shared.stream);
                    let shared = &Shared {
                        stream: &stream,
                        ..*shared
                    };
                    let mut records = Vec::with_capacity(share);
                    let mut ends = Vec::with_capacity(share);
                    let mine = points.iter().filter(|p| owner(p) == k);
                    compute_range(range, k * per_thread, mine, shared, &mut records, |end| {
                        ends.push(end)
                    });
                    (records, ends)
                })
            })
            .collect();
        let mut shares = Vec::with_capacity(threads);
        if let Some((_, range)) = first {
            let mut records = Vec::with_capacity(share);
            let mut ends = Vec::with_capacity(share);
            let mine = points.iter().filter(|p| owner(p) == 0);
            compute_range(range, 0, mine, shared, &mut records, |end| ends.push(end));
            shares.push((records, ends));
        }
        for handle in spawned {
            match handle.join() {
                Ok(share) => shares.push(share),
                // A panic in the analytics is a bug; let it surface as on one thread.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        shares
    });
    let mut cursors: Vec<_> = shares
        .into_iter()
        .map(|(records, ends)| (records.into_iter(), ends.into_iter(), 0usize))
        .collect();
    out.reserve(cursors.iter().map(|(records, ..)| records.len()).sum());
    for point in points {
        // A point of a series without state is computed by none, as on one thread.
        if let Some((records, ends, taken)) = cursors.get_mut(owner(point)) {
            let end = ends.next().unwrap_or(*taken);
            out.extend(records.by_ref().take(end - *taken));
            *taken = end;
        }
        done(out.len());
    }
}
