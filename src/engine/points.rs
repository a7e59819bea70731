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
use super::input::Accepted;
use super::operator::Operator;
use super::output::{Emitted, SubKey};
use super::reorder::{Buffered, ReorderBuffer};
use super::stats::{Ewma, MovingAverage, SlidingRegression};
use crate::record::{PointRecord, Record, Trend};
use crate::types::{Duration, Invalid};

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

/// Points the release buffer keeps room for between releases (1 MiB).
const KEPT_RELEASE: usize = 32_768;

#[derive(Serialize, Deserialize)]
pub struct PointAnalytics {
    stream: Arc<str>,
    config: AnalyticsConfig,
    detection: Detection,
    /// By the key group's series number.
    series: Vec<Option<SeriesAnalytics>>,
    /// The reorder buffer of every series of the key group at once, released in (event time,
    /// partition, offset) order: one buffer for all series, where per-series buffers would
    /// also need a timer per series. Releasing in that order keeps each series in its own
    /// event-time order.
    buffer: ReorderBuffer,
    /// The points of the release being computed, reused.
    #[serde(skip)]
    released: Vec<Buffered>,
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
            series: Vec::new(),
            buffer: ReorderBuffer::default(),
            released: Vec::new(),
        }
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

    /// Computes one point; its records (an alert, then the point) go to `out` under the
    /// point's place: `(event time, partition, offset)`.
    fn compute(
        &mut self,
        stream: &Arc<str>,
        config: &AnalyticsConfig,
        detection: &Detection,
        point: Buffered,
        out: &mut Emitted<'_>,
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
        let place = |d: u32| SubKey::new(ts, u64::from(point.seq.split), point.seq.offset, d);
        let mut alerts = Vec::new();
        self.detector.episodes().on_point(
            finding.as_ref(),
            |f| new_alert(stream, label, expectation, f),
            &mut alerts,
        );
        let made = alerts.len() as u32;
        for (d, alert) in alerts.into_iter().enumerate() {
            out.push(place(d as u32), alert);
        }
        out.push(
            place(made),
            Record::Point(PointRecord {
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
            }),
        );
    }
}

impl Operator for PointAnalytics {
    fn on_event(&mut self, ev: &Accepted<'_>, _out: &mut Emitted<'_>) {
        let config = &self.config;
        let slot = super::window::slot(&mut self.series, ev.series);
        slot.get_or_insert_with(|| SeriesAnalytics::new(ev.label.clone(), config));
        self.buffer.push(Buffered {
            ts: ev.ts,
            seq: ev.seq,
            series: ev.series,
            value: ev.value,
        });
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Emitted<'_>) {
        // Release what the watermark has passed: ts < watermark.
        let mut released = std::mem::take(&mut self.released);
        released.clear();
        self.buffer.release(watermark, |next| released.push(next));
        out.reserve(released.len());
        for &point in &released {
            let state = self
                .series
                .get_mut(point.series as usize)
                .and_then(Option::as_mut);
            if let Some(state) = state {
                state.compute(&self.stream, &self.config, &self.detection, point, out);
            }
        }
        released.clear();
        self.keep_release_room(released);
    }

    /// Just past the earliest point buffered: the lowest watermark that releases one.
    fn due(&mut self) -> Option<i64> {
        self.buffer.next_time().map(|ts| ts.saturating_add(1))
    }
}
