//! Numeric building blocks with O(1) updates: Welford moments with removal, windowed
//! least-squares regression, a rolling median/MAD, and a sum over the last N values.
//!
//! Sliding statistics add the newest point and remove the oldest. Subtracting from running sums
//! drifts, so each type here either uses the numerically stable Welford/Chan updates or rebuilds
//! itself from its window every [`REBUILD_EVERY`] removals; the property tests compare every one
//! against a plain recomputation.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Removals after which a sliding statistic recomputes from scratch to shed rounding drift.
const REBUILD_EVERY: u32 = 4096;

/// Count, mean and sum of squared deviations, with add, remove and merge (Welford / Chan et al.).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    pub count: u64,
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl Moments {
    pub fn add(&mut self, x: f64) {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Removes a value previously added. Removing from an empty set is a no-op.
    pub fn remove(&mut self, x: f64) {
        match self.count {
            0 => {}
            1 => *self = Moments::default(),
            n => {
                let new_mean = (self.mean * n as f64 - x) / (n - 1) as f64;
                self.m2 -= (x - self.mean) * (x - new_mean);
                self.mean = new_mean;
                self.count = n - 1;
                if self.m2 < 0.0 {
                    self.m2 = 0.0;
                }
            }
        }
    }

    /// Combines two disjoint sets (Chan's parallel update): how sliding-window panes are joined.
    pub fn merge(&mut self, other: &Moments) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let n = self.count + other.count;
        let delta = other.mean - self.mean;
        self.mean += delta * other.count as f64 / n as f64;
        self.m2 += other.m2 + delta * delta * (self.count as f64 * other.count as f64) / n as f64;
        self.count = n;
    }

    /// Sample variance (n − 1); `None` below two values.
    pub fn sample_variance(&self) -> Option<f64> {
        (self.count >= 2).then(|| (self.m2 / (self.count - 1) as f64).max(0.0))
    }

    pub fn sample_stddev(&self) -> Option<f64> {
        self.sample_variance().map(f64::sqrt)
    }
}

/// [`Moments`] of values anywhere in the `f64` range: the window aggregates'.
///
/// Plain Welford overflows on values near `f64::MAX` (their squared deviations are beyond it;
/// a window of a few such values got an infinite mean and a standard deviation of 0). These
/// keep the moments in units of 2^`scale`, raised (exactly: powers of two) when a value would
/// take them near the edge. Until a value is that large the scale is 0 and the result is
/// [`Moments`]' bit for bit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct WideMoments {
    moments: Moments,
    scale: i16,
}

/// Largest magnitude a value has in [`WideMoments`] units: its squared deviations, times any
/// count, stay far below `f64::MAX` (2¹⁰²⁴).
const WIDE_LIMIT: f64 = 1.2e134; // about 2^445

impl WideMoments {
    pub fn count(&self) -> u64 {
        self.moments.count
    }

    pub fn add(&mut self, x: f64) {
        let unit = self.unit();
        if (x / unit).abs() > WIDE_LIMIT {
            self.rescale(Self::scale_for(x));
        }
        self.moments.add(x / self.unit());
    }

    pub fn merge(&mut self, other: &WideMoments) {
        let mut other = *other;
        let scale = self.scale.max(other.scale);
        self.rescale(scale);
        other.rescale(scale);
        self.moments.merge(&other.moments);
    }

    /// The mean, finite for any finite values.
    pub fn mean(&self) -> f64 {
        (self.moments.mean * self.unit()).clamp(-f64::MAX, f64::MAX)
    }

    /// Sample standard deviation; `None` below two values. Infinite only when the true one is
    /// beyond the f64 range.
    pub fn sample_stddev(&self) -> Option<f64> {
        self.moments.sample_stddev().map(|s| s * self.unit())
    }

    fn unit(&self) -> f64 {
        2f64.powi(i32::from(self.scale))
    }

    /// The scale that brings `x` well within [`WIDE_LIMIT`].
    fn scale_for(x: f64) -> i16 {
        ((x.abs() / WIDE_LIMIT).log2().ceil() as i16).saturating_add(32)
    }

    fn rescale(&mut self, scale: i16) {
        if scale <= self.scale {
            return;
        }
        let shift = i32::from(scale - self.scale);
        self.moments.mean *= 2f64.powi(-shift);
        self.moments.m2 *= 2f64.powi(-2 * shift);
        self.scale = scale;
    }
}

/// Least-squares line through the points of a sliding time range.
///
/// Times are taken in seconds relative to the first point ever added, so their squares stay
/// small: regressing on raw epoch seconds (~1.7e9, squared ~3e18) would cancel catastrophically.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SlidingRegression {
    points: VecDeque<(i64, f64)>,
    origin_ms: Option<i64>,
    n: f64,
    mean_x: f64,
    mean_y: f64,
    sxx: f64,
    sxy: f64,
    syy: f64,
    removals: u32,
}

/// The fitted line's slope and how sure we can be of its sign.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Units per second.
    pub slope: f64,
    /// `slope / standard error`; infinite for a perfect fit with a non-zero slope, `None` below
    /// three points (a line through two points has no residual to judge it by).
    pub t_stat: Option<f64>,
}

impl SlidingRegression {
    fn x_of(&self, ts: i64) -> f64 {
        (ts - self.origin_ms.unwrap_or(ts)) as f64 / 1000.0
    }

    pub fn push(&mut self, ts: i64, y: f64) {
        if self.origin_ms.is_none() {
            self.origin_ms = Some(ts);
        }
        self.points.push_back((ts, y));
        let x = self.x_of(ts);
        self.n += 1.0;
        let dx = x - self.mean_x;
        let dy = y - self.mean_y;
        self.mean_x += dx / self.n;
        self.mean_y += dy / self.n;
        self.sxx += dx * (x - self.mean_x);
        self.sxy += dx * (y - self.mean_y);
        self.syy += dy * (y - self.mean_y);
    }

    /// Drops points older than `min_ts` (points must have been pushed in time order).
    pub fn evict_before(&mut self, min_ts: i64) {
        while let Some(&(ts, y)) = self.points.front() {
            if ts >= min_ts {
                break;
            }
            self.points.pop_front();
            self.remove(self.x_of(ts), y);
        }
        if self.removals >= REBUILD_EVERY {
            self.rebuild();
        }
    }

    fn remove(&mut self, x: f64, y: f64) {
        self.removals += 1;
        if self.n <= 1.0 {
            self.reset_sums();
            return;
        }
        let n_new = self.n - 1.0;
        let mean_x_new = (self.mean_x * self.n - x) / n_new;
        let mean_y_new = (self.mean_y * self.n - y) / n_new;
        self.sxx -= (x - mean_x_new) * (x - self.mean_x);
        self.sxy -= (x - mean_x_new) * (y - self.mean_y);
        self.syy -= (y - mean_y_new) * (y - self.mean_y);
        self.n = n_new;
        self.mean_x = mean_x_new;
        self.mean_y = mean_y_new;
    }

    fn reset_sums(&mut self) {
        self.n = 0.0;
        self.mean_x = 0.0;
        self.mean_y = 0.0;
        self.sxx = 0.0;
        self.sxy = 0.0;
        self.syy = 0.0;
    }

    fn rebuild(&mut self) {
        let points = std::mem::take(&mut self.points);
        self.reset_sums();
        self.removals = 0;
        // Re-anchor the time origin on the oldest point so x stays small on long-running series.
        self.origin_ms = None;
        for (ts, y) in points {
            self.push(ts, y);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// `None` unless there are at least two distinct times.
    pub fn fit(&self) -> Option<Fit> {
        // Guard against a spread of pure rounding noise when all times are equal.
        let scale = self.mean_x.abs().max(1.0);
        if self.n < 2.0 || self.sxx <= 1e-12 * scale * scale {
            return None;
        }
        let mut slope = self.sxy / self.sxx;
        // Removals leave rounding residue: on a flat series a slope of ~1e-17 with a standard
        // error of exactly 0 would read as an infinitely certain trend. A slope that explains
        // nothing measurable against the values' own scale is zero.
        let scale = self.syy.max(0.0) + self.n * self.mean_y * self.mean_y;
        if slope * slope * self.sxx <= 1e-20 * scale {
            slope = 0.0;
        }
        let t_stat = (self.n >= 3.0).then(|| {
            let sse = (self.syy - slope * self.sxy).max(0.0);
            let se = (sse / (self.n - 2.0) / self.sxx).sqrt();
            if se > 0.0 {
                slope / se
            } else if slope == 0.0 {
                0.0
            } else {
                slope.signum() * f64::INFINITY
            }
        });
        Some(Fit { slope, t_stat })
    }
}

/// Mean of the last `capacity` values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MovingAverage {
    values: VecDeque<f64>,
    capacity: usize,
    sum: f64,
    removals: u32,
}

impl MovingAverage {
    pub fn new(capacity: usize) -> Self {
        MovingAverage {
            values: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
            sum: 0.0,
            removals: 0,
        }
    }

    /// Adds a value and returns the mean of the last `capacity` values, this one included.
    pub fn push(&mut self, x: f64) -> f64 {
        if self.values.len() == self.capacity {
            if let Some(old) = self.values.pop_front() {
                self.sum -= old;
                self.removals += 1;
            }
        }
        self.values.push_back(x);
        self.sum += x;
        if self.removals >= REBUILD_EVERY {
            self.sum = self.values.iter().sum();
            self.removals = 0;
        }
        self.sum / self.values.len() as f64
    }
}

/// Exponentially weighted moving average, seeded with the first value.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Ewma {
    alpha: f64,
    value: Option<f64>,
}

impl Ewma {
    /// The EWMA after `x`, from `previous`: public so that the live view's charts, which
    /// compute it again from their values, take it exactly as the records do.
    pub fn step(alpha: f64, previous: f64, x: f64) -> f64 {
        alpha * x + (1.0 - alpha) * previous
    }

    pub fn new(alpha: f64) -> Self {
        Ewma { alpha, value: None }
    }

    pub fn push(&mut self, x: f64) -> f64 {
        let next = match self.value {
            None => x,
            Some(prev) => Ewma::step(self.alpha, prev, x),
        };
        self.value = Some(next);
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values near the edge of the f64 range: a finite mean and the right standard deviation,
    /// also when merged; ordinary values as plain Welford has them, bit for bit.
    #[test]
    fn wide_moments_stay_finite_where_welford_overflows() {
        let big = f64::MAX / 2.0;
        let values = [big, big, -big, big, big];
        let mut wide = WideMoments::default();
        for &x in &values {
            wide.add(x);
        }
        // Exactly, in units of `big`: values 1, 1, -1, 1, 1: mean 0.6, sample variance 0.8.
        assert!((wide.mean() / big - 0.6).abs() < 1e-12, "{}", wide.mean());
        let stddev = wide.sample_stddev().unwrap();
        assert!((stddev / big - 0.8f64.sqrt()).abs() < 1e-12, "{stddev}");
        let mut plain = Moments::default();
        for &x in &values {
            plain.add(x);
        }
        assert!(!plain.mean.is_finite() || plain.sample_stddev() != Some(stddev));

        let (mut left, mut right) = (WideMoments::default(), WideMoments::default());
        for (i, &x) in values.iter().enumerate() {
            if i < 2 {
                left.add(x)
            } else {
                right.add(x)
            }
        }
        left.merge(&right);
        assert!((left.mean() / big - 0.6).abs() < 1e-12);
        assert!((left.sample_stddev().unwrap() / big - 0.8f64.sqrt()).abs() < 1e-12);

        let ordinary = [1.5, -2.25, 3.0e10, 7.0, 1e-300];
        let (mut wide, mut plain) = (WideMoments::default(), Moments::default());
        for &x in &ordinary {
            wide.add(x);
            plain.add(x);
        }
        assert_eq!(wide.mean().to_bits(), plain.mean.to_bits());
        assert_eq!(wide.sample_stddev(), plain.sample_stddev());
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn moments_add_remove_merge() {
        let mut m = Moments::default();
        for x in [1.0, 2.0, 4.0, 8.0] {
            m.add(x);
        }
        assert!(close(m.mean, 3.75));
        m.remove(1.0);
        assert!(close(m.mean, 14.0 / 3.0));
        // sample variance of 2,4,8: mean 14/3, ss = 0.444*... computed directly
        let direct: f64 = [2.0f64, 4.0, 8.0]
            .iter()
            .map(|x| (x - 14.0 / 3.0).powi(2))
            .sum::<f64>()
            / 2.0;
        assert!(close(m.sample_variance().unwrap(), direct));
        let mut a = Moments::default();
        a.add(2.0);
        let mut b = Moments::default();
        b.add(4.0);
        b.add(8.0);
        a.merge(&b);
        assert!(close(a.sample_variance().unwrap(), direct));
    }

    #[test]
    fn regression_slope_on_a_line_is_exact_and_certain() {
        let mut r = SlidingRegression::default();
        for i in 0..10 {
            r.push(1_700_000_000_000 + i * 1000, 5.0 + 2.0 * i as f64);
        }
        let fit = r.fit().unwrap();
        assert!(close(fit.slope, 2.0));
        assert_eq!(fit.t_stat, Some(f64::INFINITY));
        r.evict_before(1_700_000_000_000 + 8000);
        assert_eq!(r.len(), 2);
        assert!(close(r.fit().unwrap().slope, 2.0));
        r.evict_before(i64::MAX);
        assert!(r.fit().is_none());
    }

    #[test]
    fn moving_average_and_ewma() {
        let mut sma = MovingAverage::new(2);
        assert_eq!(sma.push(1.0), 1.0);
        assert_eq!(sma.push(3.0), 2.0);
        assert_eq!(sma.push(5.0), 4.0);
        let mut e = Ewma::new(0.5);
        assert_eq!(e.push(4.0), 4.0);
        assert_eq!(e.push(0.0), 2.0);
    }
}
