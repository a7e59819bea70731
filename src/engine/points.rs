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
use super::point_shards::{compute_in_order, compute_in_parallel, Context, RoundJob, SeriesStates};
use super::reorder::{Buffered, ReorderBuffer};
use super::stats::{Ewma, MovingAverage, SlidingRegression};
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

/// Deferred points worth computing on a thread of their own while the engine goes on
/// ([`PointAnalytics::launch`]); fewer are computed at once, and their round is not held back.
pub const BACKGROUND_POINTS: usize = 1024;

#[derive(Serialize, Deserialize)]
pub struct PointAnalytics {
    stream: Arc<str>,
    config: AnalyticsConfig,
    detection: Detection,
    series: SeriesStates,
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
    /// The last deferred points, computed ([`PointAnalytics::launch`]) and not yet handed
    /// over ([`PointAnalytics::land`]). While they are computed on other threads, the series'
    /// states are there with them.
    #[serde(skip)]
    launched: Option<Launched>,
    /// Series of the events that came while the states were away: theirs is made when they
    /// come back.
    #[serde(skip)]
    arrivals: Vec<u32>,
}

/// Deferred points after [`PointAnalytics::launch`].
enum Launched {
    /// Computed already: their records and, per point, where its records end among them.
    Done(Vec<Record>, Vec<usize>),
    /// Being computed by helper threads (and by whoever calls [`PointAnalytics::help`]).
    Running {
        job: Arc<RoundJob>,
        helpers: Vec<std::thread::JoinHandle<()>>,
    },
}

fn one_thread() -> usize {
    1
}

#[derive(Serialize, Deserialize)]
pub(super) struct SeriesAnalytics {
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
            series: SeriesStates::default(),
            buffer: ReorderBuffer::default(),
            threads: 1,
            released: Vec::new(),
            deferred: None,
            reported: 0,
            launched: None,
            arrivals: Vec::new(),
        }
    }

    /// Lets releases of at least [`PARALLEL_RELEASE`] points, and deferred points
    /// ([`PointAnalytics::settle`], [`PointAnalytics::launch`]), be computed on up to
    /// `threads` threads, which take the shards of series in turn. The records are the same,
    /// in the same order, whatever the number.
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

    fn context(&self) -> Context {
        Context {
            stream: self.stream.clone(),
            config: self.config,
            detection: self.detection,
        }
    }

    /// Computes the points released since [`PointAnalytics::defer`], in release order, and
    /// stops deferring. Returns their records and, per point, where its records end among
    /// them: the caller puts each release's records where one thread would have written them.
    pub fn settle(&mut self) -> (Vec<Record>, Vec<usize>) {
        debug_assert!(
            self.launched.is_none(),
            "settled before the last launch landed"
        );
        let Some(mut points) = self.deferred.take() else {
            return (Vec::new(), Vec::new());
        };
        self.reported = 0;
        let mut records = Vec::new();
        let mut ends = Vec::with_capacity(points.len());
        let threads = self.threads.min(points.len() / SETTLE_SHARE).max(1);
        let context = self.context();
        let done = |end| ends.push(end);
        if threads > 1 {
            // Reserves exactly what the shards computed.
            compute_in_parallel(
                &mut self.series,
                points,
                threads,
                &context,
                &mut records,
                done,
            );
        } else {
            records.reserve(points.len() + points.len() / 64);
            compute_in_order(
                &mut self.series,
                points.iter(),
                &context,
                &mut records,
                done,
            );
            points.clear();
            self.keep_release_room(points);
        }
        (records, ends)
    }

    /// Like [`PointAnalytics::settle`], but when there are enough points to be worth it, they
    /// are computed by helper threads (the series' states with them) while the engine goes on
    /// with the next round of input, which may help ([`PointAnalytics::help`]);
    /// [`PointAnalytics::land`] hands over their records. Until then the operator only buffers
    /// what it is given. Returns whether the points are being computed (else they are already).
    pub fn launch(&mut self) -> bool {
        debug_assert!(
            self.launched.is_none(),
            "launched before the last one landed"
        );
        let many = self
            .deferred
            .as_ref()
            .is_some_and(|points| points.len() >= BACKGROUND_POINTS);
        if !many {
            let (records, ends) = self.settle();
            self.launched = Some(Launched::Done(records, ends));
            return false;
        }
        let points = self.deferred.take().unwrap_or_default();
        self.reported = 0;
        let context = self.context();
        let job = Arc::new(RoundJob::new(&mut self.series, points, context));
        // The engine thread goes on meanwhile: one helper fewer than threads, at least one.
        let helpers = (1..self.threads.max(2))
            .map_while(|_| {
                let job = job.clone();
                let spawned = std::thread::Builder::new()
                    .name("tidewatch-points".into())
                    .spawn(move || job.work());
                // Without a thread, whoever lands the points computes them.
                spawned
                    .inspect_err(|error| tracing::warn!(%error, "Could not start a thread for per-point analytics."))
                    .ok()
            })
            .collect();
        self.launched = Some(Launched::Running { job, helpers });
        true
    }

    /// Computes a share of the points being computed by helper threads, when any is left:
    /// for a thread that would otherwise wait. Returns whether it did.
    pub fn help(&self) -> bool {
        match &self.launched {
            Some(Launched::Running { job, .. }) => job.help(),
            _ => false,
        }
    }

    /// Points of the last [`PointAnalytics::launch`] not landed yet.
    pub fn points_in_flight(&self) -> usize {
        match &self.launched {
            None => 0,
            Some(Launched::Done(_, ends)) => ends.len(),
            Some(Launched::Running { job, .. }) => job.len(),
        }
    }

    /// The records of the points of the last [`PointAnalytics::launch`] (helping compute
    /// them, then waiting for the helpers, if they are not done), and, per point, where its
    /// records end among them. Makes the state of the series whose first events came
    /// meanwhile; `labels` are the stream's, by series id.
    pub fn land(&mut self, labels: &[Arc<str>]) -> (Vec<Record>, Vec<usize>) {
        let landed = match self.launched.take() {
            None => (Vec::new(), Vec::new()),
            Some(Launched::Done(records, ends)) => (records, ends),
            Some(Launched::Running { job, helpers }) => {
                job.work();
                for helper in helpers {
                    if let Err(panic) = helper.join() {
                        // A panic in the analytics is a bug; let it surface as on one thread.
                        std::panic::resume_unwind(panic);
                    }
                }
                // `finish` reserves exactly what the shards computed.
                let (mut records, mut ends) = (Vec::new(), Vec::with_capacity(job.len()));
                job.finish(&mut self.series, &mut records, |end| ends.push(end));
                (records, ends)
            }
        };
        let config = &self.config;
        for id in self.arrivals.drain(..) {
            if let Some(label) = labels.get(id as usize) {
                self.series
                    .get_or_insert_with(id, || SeriesAnalytics::new(label.clone(), config));
            }
        }
        landed
    }

    /// Keeps `points` (empty) to release into next time, unless an exceptional release (the
    /// end of input, a backlog) grew it: that memory goes back.
    fn keep_release_room(&mut self, points: Vec<Buffered>) {
        if points.capacity() <= KEPT_RELEASE && points.capacity() > self.released.capacity() {
            self.released = points;
        }
    }
}

impl SeriesAnalytics {
    fn new(label: Arc<str>, config: &AnalyticsConfig) -> Self {
        SeriesAnalytics {
            label,
            sma: MovingAverage::new(config.sma_points),
            ewma: Ewma::new(config.ewma_alpha),
            trend: SlidingRegression::default(),
            detector: Detector::new(&config.zscore),
        }
    }

    pub(super) fn compute(
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
        if matches!(self.launched, Some(Launched::Running { .. })) {
            // The series' states are away with the points being computed.
            self.arrivals.push(ev.series);
        } else {
            let config = &self.config;
            self.series
                .get_or_insert_with(ev.series, || SeriesAnalytics::new(ev.label.clone(), config));
        }
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
        debug_assert!(
            !matches!(self.launched, Some(Launched::Running { .. })),
            "points computed while the series' states are away"
        );
        let mut released = std::mem::take(&mut self.released);
        released.clear();
        self.buffer.release(watermark, |next| released.push(next));
        let threads = self
            .threads
            .min(released.len() / (PARALLEL_RELEASE / 2))
            .max(1);
        let context = self.context();
        if threads > 1 && released.len() >= PARALLEL_RELEASE {
            // Makes room for exactly the records it computed: reserving a guess first would
            // have it grow a full output, and a reallocation copies all of its capacity (a
            // release at the end of input is the whole input's points).
            compute_in_parallel(&mut self.series, released, threads, &context, out, |_| {});
        } else {
            // A point makes a record, now and then an alert too: room for them at once, rather
            // than doubling (and copying) a large output as it grows.
            out.reserve(released.len());
            compute_in_order(&mut self.series, released.iter(), &context, out, |_| {});
            released.clear();
            self.keep_release_room(released);
        }
    }
}
