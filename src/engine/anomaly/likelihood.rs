//! The anomaly likelihood: turns a series' raw deviations into a calibrated, rare event.
//!
//! Numenta's idea (Ahmad et al., "Unsupervised real-time anomaly detection for streaming
//! data", 2017): keep the mean of the last few raw scores, compare it with the long-run
//! distribution of that mean on the same series (modelled as a Gaussian), and call a point
//! anomalous only when the recent mean is improbably high. A series whose deviations are always
//! large (spiky counts, noisy CPU) learns that they are, so one probability threshold means the
//! same on every series whatever its scale or noise; one outlier in a quiet series stands out.
//!
//! Here the raw score is `min(|z|, SCORE_CAP)`, the robust z-score of the point against its
//! (seasonal) baseline; the short mean covers [`SHORT_POINTS`] points and the long-run mean and
//! variance are exponentially weighted over about [`LONG_POINTS`].
//!
//! A mean over ten points lets one lone spike count a tenth: on a series whose deviations swing
//! (a cycle the baseline lags behind) even a huge one is lost in it. So a single point also
//! fires on its own when its raw score is [`SPIKE_SCORE`] long-run standard deviations above the
//! series' usual raw score: far beyond anything its own noise produces. On the labelled
//! benchmark series this caught the planted spikes of Tidewatch's own generator without costing
//! detections (real metrics whose spikes are routine, tweet counts say, learn that they are).

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

/// Raw scores averaged into the recent deviation.
pub const SHORT_POINTS: usize = 10;
/// Points over which the long-run distribution of the recent deviation is estimated.
pub const LONG_POINTS: f64 = 4000.0;
/// Raw scores are capped here so one enormous point does not dominate a series' history.
pub const SCORE_CAP: f64 = 20.0;
/// Scored points before the likelihood may fire: the long-run estimate needs some history.
pub const WARMUP_POINTS: u64 = 100;
/// Smallest long-run standard deviation: on a perfectly steady series any change is rare, but
/// its probability stays a number.
const SIGMA_FLOOR: f64 = 0.05;
/// Long-run standard deviations above the usual raw score at which one point fires alone: a
/// Gaussian tail of about 10⁻³⁰ (10⁻²⁰ and 10⁻⁴⁰ did worse on the benchmark corpus).
pub const SPIKE_SCORE: f64 = 11.5;

/// `Φ⁻¹(1 − probability)`: the score (in long-run standard deviations) at which the tail
/// probability is `probability`.
pub fn critical_score(probability: f64) -> f64 {
    match Normal::new(0.0, 1.0) {
        Ok(normal) => normal.inverse_cdf(1.0 - probability),
        Err(_) => f64::INFINITY,
    }
}

/// The upper tail probability of a standard normal score.
pub fn tail_probability(score: f64) -> f64 {
    0.5 * statrs::function::erf::erfc(score / std::f64::consts::SQRT_2)
}

/// The likelihood state of one series.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Likelihood {
    /// The last raw scores (capped |z|; `f32` is plenty and keeps the state small).
    recent: [f32; SHORT_POINTS],
    /// Where the next raw score goes in `recent`, and how many it holds.
    next: usize,
    filled: usize,
    /// Their sum, recomputed exactly each time `next` comes round to 0.
    sum: f64,
    long_mean: f64,
    long_variance: f64,
    /// The same for single raw scores, for the spike test.
    raw_mean: f64,
    raw_variance: f64,
    count: u64,
}

/// How unusual the recent deviations of a series are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibrated {
    /// The recent deviation in long-run standard deviations above its long-run mean.
    pub score: Option<f64>,
    /// This point's raw score in long-run standard deviations above the usual one.
    pub spike_score: Option<f64>,
    /// The |z| at or above which this point would have fired, given the points before it:
    /// the band the detector used. `None` while warming up or when no single point could.
    pub z_limit: Option<f64>,
    /// Which test fired, if any: the recent deviations, else this point alone.
    pub fired: Option<Test>,
}

/// The two tests of the likelihood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// The mean of the recent raw scores is improbable.
    Recent,
    /// This one raw score is far beyond the series' usual ones.
    Spike,
}

impl Likelihood {
    /// Adds the z-score of the next point; `critical` is [`critical_score`] of the threshold.
    pub fn observe(&mut self, z: f64, critical: f64) -> Calibrated {
        let raw = if z.is_nan() {
            0.0
        } else {
            z.abs().min(SCORE_CAP)
        };
        let raw = raw as f32;
        let replaced = std::mem::replace(&mut self.recent[self.next], raw);
        let raw = f64::from(raw);
        self.next = (self.next + 1) % SHORT_POINTS;
        self.filled = (self.filled + 1).min(SHORT_POINTS);
        self.sum = if self.next == 0 {
            self.recent.iter().map(|&v| f64::from(v)).sum()
        } else {
            self.sum - f64::from(replaced) + raw
        };
        let (sum, held) = (self.sum, self.filled as f64);
        let recent = sum / held;

        let mut result = Calibrated {
            score: None,
            spike_score: None,
            z_limit: None,
            fired: None,
        };
        if self.count >= WARMUP_POINTS {
            let sigma = self.long_variance.sqrt().max(SIGMA_FLOOR);
            let score = (recent - self.long_mean) / sigma;
            let raw_sigma = self.raw_variance.sqrt().max(SIGMA_FLOOR);
            let spike_score = (raw - self.raw_mean) / raw_sigma;
            // The raw score this point needed to fire each test, given the points before it.
            let needed = (held * (self.long_mean + critical * sigma) - (sum - raw))
                .min(self.raw_mean + SPIKE_SCORE * raw_sigma);
            result = Calibrated {
                score: Some(score),
                spike_score: Some(spike_score),
                z_limit: (needed <= SCORE_CAP).then_some(needed.max(0.0)),
                fired: if score >= critical {
                    Some(Test::Recent)
                } else if spike_score >= SPIKE_SCORE {
                    Some(Test::Spike)
                } else {
                    None
                },
            };
        }
        self.count += 1;
        let n = self.count as f64;
        let weight = if n < LONG_POINTS {
            1.0 / n
        } else {
            1.0 / LONG_POINTS
        };
        let delta = recent - self.long_mean;
        self.long_mean += weight * delta;
        self.long_variance = (1.0 - weight) * (self.long_variance + weight * delta * delta);
        let delta = raw - self.raw_mean;
        self.raw_mean += weight * delta;
        self.raw_variance = (1.0 - weight) * (self.raw_variance + weight * delta * delta);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_critical_score_is_the_normal_quantile() {
        assert!((critical_score(1e-5) - 4.264_890_8).abs() < 1e-6);
        assert!((tail_probability(critical_score(1e-3)) - 1e-3).abs() < 1e-12);
    }

    #[test]
    fn a_quiet_series_fires_on_one_outlier_and_a_noisy_one_learns_its_noise() {
        let critical = critical_score(1e-5);
        let mut quiet = Likelihood::default();
        for i in 0..300 {
            let c = quiet.observe(if i % 2 == 0 { 0.5 } else { -0.5 }, critical);
            assert_eq!(c.fired, None);
            assert_eq!(c.z_limit.is_some(), i >= WARMUP_POINTS as usize);
        }
        // The recent mean jumps by 1.5 (one z of 15 among ten): dozens of sigmas above.
        let c = quiet.observe(15.0, critical);
        assert_eq!(c.fired, Some(Test::Recent));
        assert!(tail_probability(c.score.unwrap()) < 1e-5);

        let mut spiky = Likelihood::default();
        for i in 0..2000 {
            let z = if i % 7 == 0 { 15.0 } else { 0.5 };
            spiky.observe(z, critical);
        }
        let c = spiky.observe(15.0, critical);
        assert_eq!(c.fired, None, "{c:?}");
        // Not even the largest raw score can fire here on its own.
        assert_eq!(c.z_limit, None);
    }

    #[test]
    fn a_lone_spike_fires_where_deviations_swing() {
        // Raw scores swinging slowly between 0 and 3 (a cycle the baseline lags behind): the
        // mean of ten moves with them, so one spike barely shows in it, but it is far beyond
        // any single score the series has had.
        let critical = critical_score(1e-5);
        let mut l = Likelihood::default();
        for i in 0..3000 {
            let swing = 1.5 + 1.5 * (i as f64 / 300.0 * std::f64::consts::TAU).sin();
            assert_eq!(l.observe(swing, critical).fired, None, "point {i}");
        }
        let c = l.observe(20.0, critical);
        assert!(
            c.score.unwrap() < critical,
            "the mean of ten alone would not fire: {c:?}"
        );
        assert_eq!(c.fired, Some(Test::Spike));
        assert!(c.spike_score.unwrap() >= SPIKE_SCORE);
    }
}
