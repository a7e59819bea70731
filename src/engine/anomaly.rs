//! Anomaly detection: the z-score baseline of a series (mean/stddev or median/MAD over a trailing
//! time range, anomalies excluded) and alert episodes with hysteresis.
//!
//! Points arrive here already in event-time order (the reorder buffer in `points.rs` sees to
//! that); this module owns what "normal" means, not when points are released.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::stats::{Moments, RollingMedian};
use crate::config::{ZScoreConfig, ZScoreMethod};
use crate::record::{AlertRecord, AlertState, Direction, Record, Severity};

/// MAD × 1.4826 estimates the standard deviation of normally distributed data.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// Removals after which the mean baseline recomputes its moments to shed rounding drift.
const REBUILD_EVERY: u32 = 4096;

/// How a point compares with its baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Baseline centre: mean, or median for the robust method.
    pub expected: f64,
    /// Baseline spread: sample stddev, or MAD × 1.4826.
    pub spread: f64,
    pub z: f64,
}

/// The normal points of `[t − window, t)` for the point at `t`.
///
/// Points at the current time are held in `pending` and join the baseline only when time moves
/// past them: a point is never part of its own baseline, nor of that of a tie at the same time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    config: ZScoreConfig,
    points: VecDeque<(i64, f64)>,
    moments: Moments,
    median: RollingMedian,
    pending_ts: i64,
    pending: Vec<f64>,
    removals: u32,
    /// Sliding minimum and maximum (monotonic deques of (time, value)): the exact test for
    /// zero spread. Welford's removals leave a rounding residue on a constant baseline, and
    /// dividing by that would turn noise-free data into enormous z-scores.
    minimum: VecDeque<(i64, f64)>,
    maximum: VecDeque<(i64, f64)>,
}

impl Baseline {
    pub fn new(config: ZScoreConfig) -> Self {
        Baseline {
            config,
            points: VecDeque::new(),
            moments: Moments::default(),
            median: RollingMedian::default(),
            pending_ts: i64::MIN,
            pending: Vec::new(),
            removals: 0,
            minimum: VecDeque::new(),
            maximum: VecDeque::new(),
        }
    }

    /// Scores `x` at time `t` (times must not decrease between calls). `None` when the baseline
    /// has fewer than `min_samples` points or zero spread.
    pub fn score(&mut self, t: i64, x: f64) -> Option<Score> {
        if t > self.pending_ts {
            // Index loop, not `mem::take`: the vector keeps its capacity (no allocation per point).
            for i in 0..self.pending.len() {
                let v = self.pending[i];
                self.insert(self.pending_ts, v);
            }
            self.pending.clear();
            self.pending_ts = t;
        }
        let oldest = t.saturating_sub(self.config.window_ms);
        while let Some(&(ts, v)) = self.points.front() {
            if ts >= oldest {
                break;
            }
            self.points.pop_front();
            self.erase(v);
        }
        for extreme in [&mut self.minimum, &mut self.maximum] {
            while extreme.front().is_some_and(|&(ts, _)| ts < oldest) {
                extreme.pop_front();
            }
        }
        if self.points.len() < self.config.min_samples {
            return None;
        }
        let constant = match (self.minimum.front(), self.maximum.front()) {
            (Some(min), Some(max)) => min.1 == max.1,
            _ => true,
        };
        if constant {
            return None;
        }
        let (expected, spread) = match self.config.method {
            ZScoreMethod::Mean => (self.moments.mean, self.moments.sample_stddev()?),
            ZScoreMethod::Robust => (self.median.median()?, self.median.mad()? * MAD_TO_SIGMA),
        };
        // NaN spreads fail `> 0.0` too.
        if spread.is_nan() || spread <= 0.0 || spread <= 1e-12 * expected.abs() {
            return None;
        }
        Some(Score {
            expected,
            spread,
            z: (x - expected) / spread,
        })
    }

    /// Whether a score crosses the threshold.
    pub fn is_anomalous(&self, score: Option<Score>) -> bool {
        score.is_some_and(|s| s.z.abs() >= self.config.threshold)
    }

    /// Adds a normal point (scored last) to the baseline of later points.
    pub fn admit(&mut self, t: i64, x: f64) {
        debug_assert_eq!(t, self.pending_ts);
        self.pending.push(x);
    }

    fn insert(&mut self, t: i64, x: f64) {
        self.points.push_back((t, x));
        while self.minimum.back().is_some_and(|&(_, v)| v >= x) {
            self.minimum.pop_back();
        }
        self.minimum.push_back((t, x));
        while self.maximum.back().is_some_and(|&(_, v)| v <= x) {
            self.maximum.pop_back();
        }
        self.maximum.push_back((t, x));
        match self.config.method {
            ZScoreMethod::Mean => self.moments.add(x),
            ZScoreMethod::Robust => self.median.insert(x),
        }
    }

    fn erase(&mut self, x: f64) {
        match self.config.method {
            ZScoreMethod::Mean => {
                self.moments.remove(x);
                self.removals += 1;
                if self.removals >= REBUILD_EVERY {
                    self.removals = 0;
                    self.moments = Moments::default();
                    for &(_, v) in &self.points {
                        self.moments.add(v);
                    }
                }
            }
            ZScoreMethod::Robust => self.median.remove(x),
        }
    }

    pub fn len(&self) -> usize {
        self.points.len() + self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The anomaly episode of one series: consecutive anomalous points, ended by `resolve_after`
/// normal points in a row. An anomalous point during that normal run continues the episode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Episodes {
    threshold: f64,
    resolve_after: u32,
    open: Option<Episode>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Episode {
    alert: AlertRecord,
    normal_run: u32,
}

impl Episodes {
    pub fn new(config: &ZScoreConfig) -> Self {
        Episodes {
            threshold: config.threshold,
            resolve_after: config.resolve_after,
            open: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Feeds one scored point; pushes an alert record when an episode opens, gets a more extreme
    /// point, or resolves.
    pub fn on_point(
        &mut self,
        stream: &Arc<str>,
        series: &Arc<str>,
        ts: i64,
        value: f64,
        anomaly: Option<Score>,
        out: &mut Vec<Record>,
    ) {
        match (anomaly, self.open.as_mut()) {
            (Some(score), Some(episode)) => {
                episode.normal_run = 0;
                if score.z.abs() > episode.alert.z.abs() {
                    fill_worst(&mut episode.alert, self.threshold, ts, value, score);
                    out.push(Record::Alert(episode.alert.clone()));
                }
            }
            (Some(score), None) => {
                let mut alert = AlertRecord {
                    id: alert_id(stream, series, ts),
                    stream: stream.clone(),
                    series: series.clone(),
                    ts,
                    value,
                    expected: score.expected,
                    stddev: score.spread,
                    z: score.z,
                    direction: Direction::High,
                    severity: Severity::Warning,
                    episode_start: ts,
                    state: AlertState::Open,
                    acked_by: None,
                    acked_at: None,
                    note: None,
                };
                fill_worst(&mut alert, self.threshold, ts, value, score);
                out.push(Record::Alert(alert.clone()));
                self.open = Some(Episode {
                    alert,
                    normal_run: 0,
                });
            }
            (None, Some(episode)) => {
                episode.normal_run += 1;
                if episode.normal_run >= self.resolve_after {
                    let mut alert = episode.alert.clone();
                    alert.state = AlertState::Resolved;
                    out.push(Record::Alert(alert));
                    self.open = None;
                }
            }
            (None, None) => {}
        }
    }
}

fn fill_worst(alert: &mut AlertRecord, threshold: f64, ts: i64, value: f64, score: Score) {
    alert.ts = ts;
    alert.value = value;
    alert.expected = score.expected;
    alert.stddev = score.spread;
    alert.z = score.z;
    alert.direction = if score.z >= 0.0 {
        Direction::High
    } else {
        Direction::Low
    };
    alert.severity = if score.z.abs() >= 2.0 * threshold {
        Severity::Critical
    } else {
        Severity::Warning
    };
}

/// A stable alert id: FNV-1a over (stream, series, episode start), so a replay of the same input
/// produces the same ids and sinks can upsert on them.
pub fn alert_id(stream: &str, series: &str, episode_start: i64) -> String {
    let bytes = stream
        .bytes()
        .chain([0xff])
        .chain(series.bytes())
        .chain([0xff])
        .chain(episode_start.to_le_bytes());
    format!("{:016x}", crate::checkpoint::fnv1a(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(method: ZScoreMethod) -> ZScoreConfig {
        ZScoreConfig {
            window_ms: 100,
            threshold: 3.0,
            min_samples: 3,
            method,
            resolve_after: 2,
        }
    }

    #[test]
    fn baseline_excludes_self_ties_and_anomalies() {
        let mut b = Baseline::new(config(ZScoreMethod::Mean));
        for (t, x) in [(1, 10.0), (2, 12.0), (3, 11.0)] {
            let s = b.score(t, x);
            assert!(s.is_none());
            b.admit(t, x);
        }
        // Baseline of t=4 is {10, 12, 11}: mean 11, sd 1.
        let s = b.score(4, 20.0).unwrap();
        assert_eq!((s.expected, s.spread, s.z), (11.0, 1.0, 9.0));
        assert!(b.is_anomalous(Some(s)));
        // Not admitted: the next point at the same time sees the same baseline.
        let s = b.score(4, 11.0).unwrap();
        assert_eq!(s.z, 0.0);
        b.admit(4, 11.0);
        // Out of the window: only t >= 5 - 100 count, all do; 4 joins now.
        assert_eq!(b.score(5, 11.0).unwrap().expected, 11.0);
        assert_eq!(b.len(), 4);
        // Far later, everything is evicted.
        assert!(b.score(1000, 11.0).is_none());
    }

    #[test]
    fn robust_baseline_uses_median_and_mad() {
        let mut b = Baseline::new(config(ZScoreMethod::Robust));
        for (t, x) in [(1, 1.0), (2, 2.0), (3, 3.0), (4, 100.0)] {
            let _ = b.score(t, x);
            b.admit(t, x);
        }
        let s = b.score(5, 2.5).unwrap();
        assert_eq!(s.expected, 2.5);
        // deviations 1.5, 0.5, 0.5, 97.5 -> MAD 1.0
        assert_eq!(s.spread, MAD_TO_SIGMA);
    }

    #[test]
    fn zero_spread_gives_no_score() {
        let mut b = Baseline::new(config(ZScoreMethod::Mean));
        for t in 0..5 {
            let _ = b.score(t, 7.0);
            b.admit(t, 7.0);
        }
        assert!(b.score(6, 100.0).is_none());
    }

    #[test]
    fn episodes_open_update_and_resolve_with_hysteresis() {
        let stream: Arc<str> = "s".into();
        let series: Arc<str> = "a".into();
        let mut e = Episodes::new(&config(ZScoreMethod::Mean));
        let mut out = Vec::new();
        let score = |z| {
            Some(Score {
                expected: 0.0,
                spread: 1.0,
                z,
            })
        };
        e.on_point(&stream, &series, 10, 4.0, score(4.0), &mut out);
        e.on_point(&stream, &series, 11, 3.5, score(3.5), &mut out); // less extreme: no record
        e.on_point(&stream, &series, 12, 0.0, None, &mut out);
        e.on_point(&stream, &series, 13, -7.0, score(-7.0), &mut out); // same episode
        e.on_point(&stream, &series, 14, 0.0, None, &mut out);
        e.on_point(&stream, &series, 15, 0.0, None, &mut out);
        assert!(!e.is_open());
        let alerts: Vec<_> = out
            .iter()
            .map(|r| match r {
                Record::Alert(a) => (a.ts, a.episode_start, a.state, a.direction, a.severity),
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            alerts,
            vec![
                (10, 10, AlertState::Open, Direction::High, Severity::Warning),
                (13, 10, AlertState::Open, Direction::Low, Severity::Critical),
                (
                    13,
                    10,
                    AlertState::Resolved,
                    Direction::Low,
                    Severity::Critical
                ),
            ]
        );
        let Record::Alert(first) = &out[0] else {
            panic!()
        };
        assert_eq!(first.id, alert_id("s", "a", 10));
        assert_ne!(alert_id("s", "a", 10), alert_id("s", "a", 11));
        assert_ne!(alert_id("sa", "", 10), alert_id("s", "a", 10));
    }
}
