//! The baseline of a series: the residuals (value minus seasonal expectation) of its last
//! `points` points, optionally only those of the last `window` of event time, with their centre
//! and spread — median and MAD × 1.4826, or mean and sample standard deviation.
//!
//! Every point joins the baseline, anomalous ones too: after a persistent change (a level
//! shift) the median has moved to the new level within `points / 2` points, so the detector
//! adapts instead of alerting for as long as the change lasts.
//!
//! The centre and spread are taken every [`REFRESH_EVERY`] points: the baseline a point is
//! scored against is the one of the last refresh — the last `points` points up to then, none
//! more than `window` older than the newest of them — which leaves out at most the
//! `REFRESH_EVERY − 1` points just before it. Finding the MAD for every point was a large part of
//! the detector's cost in `tidewatch bench`; on the labelled benchmark series the alerts were
//! the same either way (refreshing every 1, 4, 8 and 16 points scored within 0.3 of each other).
//!
//! Residuals are kept as `f32` offsets from a reference value (re-centred on the median when
//! it strays far from it): with thousands of series the windows do not fit in cache, and half
//! the bytes to stream through measurably speeds up the engine. Offsets within thousands of
//! spreads of the median, which decide it and the MAD, resolve a thousandth of a spread
//! whatever the series' level.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::engine::stats::Moments;

/// MAD × 1.4826 estimates the standard deviation of normally distributed data.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// Points scored between two refreshes of the baseline.
pub const REFRESH_EVERY: usize = 8;

/// Removals after which the mean baseline recomputes its moments to shed rounding drift.
const REBUILD_EVERY: u32 = 4096;

/// Offsets are re-taken from the centre once it is this many spreads from their reference:
/// closer, an `f32` offset resolves a thousandth of a spread.
const RECENTRE_AFTER: f64 = 16384.0;

/// Which centre and spread the baseline keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Statistic {
    /// Median and MAD: not pulled along by the outliers it is looking for.
    Robust,
    /// Mean and sample standard deviation.
    Mean,
}

/// The residuals of the last `capacity` points (and, with a window, of the last `window_ms`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResidualWindow {
    statistic: Statistic,
    capacity: usize,
    window_ms: Option<i64>,
    /// What the stored residuals are offsets from.
    reference: f64,
    /// Arrival order, oldest first: `residual − reference`.
    residuals: VecDeque<f32>,
    /// Their event times, kept only with a window.
    times: VecDeque<i64>,
    /// The same residuals in ascending order (robust statistic only).
    sorted: Vec<f32>,
    /// Their moments (mean statistic only).
    moments: Moments,
    removals: u32,
    /// Points pushed since the last refresh.
    since_refresh: usize,
    /// Residuals, centre and spread as of the last refresh (`None` while empty).
    refreshed_len: usize,
    stats: Option<(f64, f64)>,
    /// Where the MAD was found last time: a search hint, not state (see [`mad_of_sorted`]).
    #[serde(skip)]
    mad_hint: usize,
}

impl ResidualWindow {
    pub fn new(statistic: Statistic, capacity: usize, window_ms: Option<i64>) -> Self {
        ResidualWindow {
            statistic,
            capacity: capacity.max(1),
            window_ms,
            reference: 0.0,
            residuals: VecDeque::new(),
            times: VecDeque::new(),
            sorted: Vec::new(),
            moments: Moments::default(),
            removals: 0,
            since_refresh: 0,
            refreshed_len: 0,
            stats: None,
            mad_hint: 0,
        }
    }

    /// Residuals in the baseline as of the last refresh.
    pub fn len(&self) -> usize {
        self.refreshed_len
    }

    /// Centre and spread (before any floor) as of the last refresh; `None` when empty. The
    /// spread of a single point is 0.
    pub fn centre_and_spread(&self) -> Option<(f64, f64)> {
        self.stats
    }

    /// Adds the residual of the point just scored, dropping the oldest beyond the capacity;
    /// every [`REFRESH_EVERY`] points, takes the centre and spread afresh.
    pub fn push(&mut self, t: i64, residual: f64) {
        if self.residuals.is_empty() {
            self.reference = residual;
        }
        let mut stored = (residual - self.reference) as f32;
        if !stored.is_finite() {
            // Beyond the range of an offset (some 10^38 from the rest): start again from here.
            self.clear();
            self.reference = residual;
            stored = 0.0;
        }
        self.allocate_whole();
        if self.window_ms.is_some() {
            self.times.push_back(t);
        }
        self.residuals.push_back(stored);
        let oldest = if self.residuals.len() > self.capacity {
            if self.window_ms.is_some() {
                self.times.pop_front();
            }
            self.residuals.pop_front()
        } else {
            None
        };
        match (self.statistic, oldest) {
            (Statistic::Robust, Some(oldest)) => {
                if !replace_sorted(&mut self.sorted, oldest, stored) {
                    // Cannot happen (every residual in the window is in `sorted`); if it did,
                    // rebuilding keeps the statistics right.
                    self.sorted = self.residuals.iter().copied().collect();
                    self.sorted.sort_by(f32::total_cmp);
                }
            }
            (Statistic::Robust, None) => {
                let at = self.sorted.partition_point(|&v| v < stored);
                self.sorted.insert(at, stored);
            }
            (Statistic::Mean, oldest) => {
                self.moments.add(f64::from(stored));
                if let Some(oldest) = oldest {
                    self.forget_moment(oldest);
                }
            }
        }
        self.since_refresh += 1;
        if self.since_refresh >= REFRESH_EVERY {
            self.refresh(t);
        }
    }

    /// Gives the window its whole capacity at once (on the first point, and the first after a
    /// restore): its memory is then what it will be, instead of creeping up by doubling while
    /// the window fills, which at one point a minute takes hours, and ending up to twice the
    /// capacity. A few hundred points of `f32`, only for series that have points.
    fn allocate_whole(&mut self) {
        let room = self.capacity + 1;
        if self.residuals.capacity() < room {
            self.residuals.reserve_exact(room - self.residuals.len());
            if self.window_ms.is_some() {
                self.times.reserve_exact(room - self.times.len());
            }
            if self.statistic == Statistic::Robust {
                self.sorted.reserve_exact(self.capacity - self.sorted.len());
            }
        }
    }

    /// Drops what the window no longer holds at `newest` and takes the centre and spread.
    fn refresh(&mut self, newest: i64) {
        if let Some(window) = self.window_ms {
            let oldest = newest.saturating_sub(window);
            while self.times.front().is_some_and(|&ts| ts < oldest) {
                self.times.pop_front();
                if let Some(r) = self.residuals.pop_front() {
                    match self.statistic {
                        Statistic::Robust => {
                            if let Ok(at) = self.sorted.binary_search_by(|v| v.total_cmp(&r)) {
                                self.sorted.remove(at);
                            }
                        }
                        Statistic::Mean => self.forget_moment(r),
                    }
                }
            }
        }
        self.recompute();
    }

    /// Empties the window: the seasonal model changed, and residuals against the old one are
    /// not comparable with those against the new.
    pub fn clear(&mut self) {
        self.residuals.clear();
        self.times.clear();
        self.sorted.clear();
        self.moments = Moments::default();
        self.removals = 0;
        self.since_refresh = 0;
        self.refreshed_len = 0;
        self.stats = None;
    }

    /// Recomputes the centre and spread, re-centring the offsets if the centre has strayed.
    fn recompute(&mut self) {
        self.since_refresh = 0;
        self.refreshed_len = self.residuals.len();
        self.stats = match self.statistic {
            Statistic::Robust => median_of_sorted(&self.sorted).map(|median| {
                let mad = mad_of_sorted(&self.sorted, median, &mut self.mad_hint);
                (median, mad * MAD_TO_SIGMA)
            }),
            Statistic::Mean => (self.moments.count > 0).then(|| {
                (
                    self.moments.mean,
                    self.moments.sample_stddev().unwrap_or(0.0),
                )
            }),
        };
        if let Some((offset, spread)) = self.stats {
            let centre = self.reference + offset;
            if offset.abs() > RECENTRE_AFTER * spread {
                self.recentre(centre);
            }
            self.stats = Some((centre, spread));
        }
    }

    /// Takes a residual that has left the window out of the moments, recomputing them now and
    /// then to shed the rounding drift of removals.
    fn forget_moment(&mut self, r: f32) {
        self.moments.remove(f64::from(r));
        self.removals += 1;
        if self.removals >= REBUILD_EVERY {
            self.rebuild_moments();
        }
    }

    fn rebuild_moments(&mut self) {
        self.removals = 0;
        self.moments = Moments::default();
        for &v in &self.residuals {
            self.moments.add(f64::from(v));
        }
    }

    /// Makes `reference` the value offsets are taken from. The same rounding applies to both
    /// copies of every residual, so they stay equal, and it keeps their order.
    fn recentre(&mut self, reference: f64) {
        let shift = reference - self.reference;
        let moved = |v: f32| (f64::from(v) - shift) as f32;
        for v in self.residuals.iter_mut().chain(self.sorted.iter_mut()) {
            *v = moved(*v);
        }
        self.reference = reference;
        if self.statistic == Statistic::Mean {
            self.rebuild_moments();
        }
    }
}

/// Replaces `old` by `new` in a sorted slice, moving only the values between the two places:
/// in a full window every new point replaces the oldest, so this is one shift instead of a
/// removal and an insertion that each move half the window. `false` if `old` is not there.
fn replace_sorted(sorted: &mut [f32], old: f32, new: f32) -> bool {
    let at = sorted.partition_point(|&v| v < old);
    if sorted.get(at) != Some(&old) {
        return false;
    }
    let to = sorted.partition_point(|&v| v < new);
    if to > at {
        // Everything in (at, to) is below `new`: shift it down over `old`.
        sorted.copy_within(at + 1..to, at);
        sorted[to - 1] = new;
    } else {
        // Everything in [to, at) is at or above `new`: shift it up over `old`.
        sorted.copy_within(to..at, to + 1);
        sorted[to] = new;
    }
    true
}

fn median_of_sorted(sorted: &[f32]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(f64::from(sorted[n / 2])),
        _ => Some((f64::from(sorted[n / 2 - 1]) + f64::from(sorted[n / 2])) / 2.0),
    }
}

/// The median absolute deviation from `median` of a sorted slice.
///
/// The `k + 1` smallest deviations (`k = (n − 1) / 2`) are the values of some run of `k + 1`
/// consecutive ranks around the median, and the MAD is the largest deviation in the run that
/// makes it smallest (the middle of two, for an even count). `hint` is where that run started
/// last time; the search walks from it: a few steps when the window moved a little, exact
/// whatever the hint.
pub fn mad_of_sorted(sorted: &[f32], median: f64, hint: &mut usize) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    // Values below the median: all of the lower half, unless some equal the median.
    let half = n / 2;
    let split = if half > 0 && f64::from(sorted[half - 1]) < median {
        half
    } else {
        sorted[..half].partition_point(|&v| f64::from(v) < median)
    };
    let k = (n - 1) / 2;
    // The run [start, start + k] holds `split - start` values below the median and the rest at
    // or above it.
    let lowest = split.saturating_sub(k + 1);
    let highest = split.min(n - k - 1);
    let deviation = |i: usize| (f64::from(sorted[i]) - median).abs();
    let mut start = (*hint).clamp(lowest, highest);
    loop {
        if start > lowest && deviation(start - 1) < deviation(start + k) {
            start -= 1;
        } else if start < highest && deviation(start + k + 1) < deviation(start) {
            start += 1;
        } else {
            break;
        }
    }
    *hint = start;
    let kth = deviation(start).max(deviation(start + k));
    if n % 2 == 1 {
        return kth;
    }
    let below = if start > 0 {
        deviation(start - 1)
    } else {
        f64::INFINITY
    };
    let above = if start + k + 1 < n {
        deviation(start + k + 1)
    } else {
        f64::INFINITY
    };
    (kth + below.min(above)) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_median(sorted: &[f64]) -> f64 {
        let n = sorted.len();
        if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        }
    }

    fn brute_mad(values: &[f64]) -> f64 {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let m = brute_median(&v);
        let mut d: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
        d.sort_by(f64::total_cmp);
        brute_median(&d)
    }

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    #[test]
    fn the_mad_is_exact_whatever_the_hint() {
        let mut seed = 17u64;
        for n in 1..80 {
            for spread in [3, 1000] {
                let mut v: Vec<f32> = (0..n)
                    .map(|_| {
                        let x = lcg(&mut seed);
                        (x % spread) as f32 + if x % 5 == 0 { 1e6 } else { 0.0 }
                    })
                    .collect();
                v.sort_by(f32::total_cmp);
                let wide: Vec<f64> = v.iter().map(|&x| f64::from(x)).collect();
                let m = median_of_sorted(&v).unwrap();
                for mut hint in [0, n / 3, n / 2, n, usize::MAX] {
                    assert_eq!(mad_of_sorted(&v, m, &mut hint), brute_mad(&wide), "{v:?}");
                }
            }
        }
        assert_eq!(mad_of_sorted(&[1.0, 2.0, 3.0, 100.0], 2.5, &mut 0), 1.0);
        assert_eq!(median_of_sorted(&[1.0, 2.0]), Some(1.5));
        assert_eq!(mad_of_sorted(&[7.0; 5], 7.0, &mut 0), 0.0);
    }

    #[test]
    fn the_baseline_is_the_last_points_as_of_the_last_refresh() {
        let mut seed = 5u64;
        for (capacity, spread) in [(7, 9), (300, 4), (300, 1_000_000)] {
            for statistic in [Statistic::Robust, Statistic::Mean] {
                let mut w = ResidualWindow::new(statistic, capacity, None);
                let mut all = Vec::new();
                for t in 0..2000 {
                    // Whole numbers: exact as offsets too.
                    let r = (lcg(&mut seed) % spread) as f64;
                    all.push(r);
                    w.push(t, r);
                    let joined = all.len() / REFRESH_EVERY * REFRESH_EVERY;
                    let mut expected: Vec<f64> =
                        all[joined.saturating_sub(capacity)..joined].to_vec();
                    expected.sort_by(f64::total_cmp);
                    assert_eq!(w.len(), expected.len());
                    let Some((centre, spread)) = w.centre_and_spread() else {
                        assert!(expected.is_empty());
                        continue;
                    };
                    if statistic == Statistic::Robust {
                        let mut held: Vec<f64> = all[all.len().saturating_sub(capacity)..].to_vec();
                        held.sort_by(f64::total_cmp);
                        let stored: Vec<f64> = w
                            .sorted
                            .iter()
                            .map(|&v| w.reference + f64::from(v))
                            .collect();
                        assert_eq!(stored, held, "after {t}");
                        assert_eq!(centre, brute_median(&expected));
                        assert_eq!(spread, brute_mad(&expected) * MAD_TO_SIGMA);
                    } else {
                        let n = expected.len() as f64;
                        let mean = expected.iter().sum::<f64>() / n;
                        let sd = (expected.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
                            / (n - 1.0).max(1.0))
                        .sqrt();
                        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * (1.0 + b.abs());
                        assert!(close(centre, mean) && (n < 2.0 || close(spread, sd)));
                    }
                }
            }
        }
    }

    #[test]
    fn a_series_far_from_zero_keeps_its_precision() {
        // Around 1e9 with a spread of about 1: f32 values themselves would be 64 apart.
        let mut w = ResidualWindow::new(Statistic::Robust, 96, None);
        let mut m = ResidualWindow::new(Statistic::Mean, 96, None);
        for t in 0..96 {
            let r = 1e9 + (t % 5) as f64 * 0.5;
            w.push(t, r);
            m.push(t, r);
        }
        assert_eq!(w.centre_and_spread(), Some((1e9 + 1.0, 0.5 * MAD_TO_SIGMA)));
        let (mean, sd) = m.centre_and_spread().unwrap();
        assert!(
            (mean - (1e9 + 95.0 / 96.0)).abs() < 1e-6 && (sd - 0.7106).abs() < 1e-2,
            "{mean} {sd}"
        );
        // A shift of 10,000 spreads is still exact as offsets.
        for t in 96..296 {
            w.push(t, 1e9 + 5000.0 + (t % 5) as f64 * 0.5);
        }
        assert_eq!(
            w.centre_and_spread(),
            Some((1e9 + 5001.0, 0.5 * MAD_TO_SIGMA))
        );
        // Twenty million spreads: the offsets of the new level are coarse until the centre has
        // moved there and the window has turned over once; then exact again.
        for t in 296..696 {
            w.push(t, 1e9 + 1e7 + (t % 5) as f64 * 0.5);
        }
        assert_eq!(
            w.centre_and_spread(),
            Some((1e9 + 1e7 + 1.0, 0.5 * MAD_TO_SIGMA))
        );
    }

    #[test]
    fn the_window_holds_the_last_points_and_respects_its_duration() {
        let mut w = ResidualWindow::new(Statistic::Robust, 12, Some(120));
        for t in 0..16 {
            w.push(t * 10, t as f64);
        }
        // Capacity 12 of 16 pushed, all within 120 ms of the newest (150): 4..=15.
        assert_eq!(w.len(), 12);
        assert_eq!(w.centre_and_spread(), Some((9.5, 3.0 * MAD_TO_SIGMA)));
        // Eight more, the newest at 1000: only it is within 120 ms of itself.
        for t in [200, 300, 400, 500, 600, 700, 800, 1000] {
            w.push(t, t as f64);
        }
        assert_eq!(w.len(), 1);
        assert_eq!(w.centre_and_spread(), Some((1000.0, 0.0)));
        w.clear();
        assert_eq!(w.centre_and_spread(), None);
    }
}
