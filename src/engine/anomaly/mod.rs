//! Anomaly detection, per series, one point at a time in event-time order.
//!
//! For each point the detector
//!
//! 1. subtracts what the point is **expected** to be when the series has a daily or weekly
//!    pattern ([`expectation`]), leaving a residual;
//! 2. computes the **z-score** of that residual against the residuals of the series' last
//!    `points` points ([`baseline`]): median and MAD × 1.4826 (`robust`, and `auto`) or mean and
//!    standard deviation (`mean`). The spread has a floor — a share of the series' long-run
//!    absolute deviation (and, with `floor`, of its level) — so flat and quantised series
//!    (MAD = 0) get finite, meaningful z-scores instead of infinite ones;
//! 3. decides whether the point is **anomalous**: with `method = "auto"` when the anomaly
//!    likelihood of the recent z-scores is below `probability`, or this one z-score is far
//!    beyond the series' usual ones ([`likelihood`]); with `robust` or `mean` when
//!    `|z| ≥ threshold`;
//! 4. feeds the **episode** of the series ([`episodes`]): one alert per incident, with a
//!    refractory period.
//!
//! Every choice above was measured on the labelled series of the Numenta Anomaly Benchmark
//! (see the README, "Anomaly detection"). Everything is deterministic and its state is bounded
//! per series; a checkpoint restores it exactly.

pub mod baseline;
mod config;
pub mod episodes;
pub mod expectation;
pub mod likelihood;

use serde::{Deserialize, Serialize};

use self::baseline::{ResidualWindow, Statistic};
use self::episodes::{Episodes, Finding};
use self::expectation::{EwMean, Expectation};
use self::likelihood::{Calibrated, Likelihood, Test};
use crate::record::AlertMethod;

pub use self::config::{ZScoreConfig, ZScoreMethod};

pub use self::episodes::new_alert;

/// The spread is at least this share of the long-run mean absolute deviation of the residuals.
const DEVIATION_FLOOR: f64 = 0.3;
/// Points over which that long-run deviation is averaged.
const DEVIATION_POINTS: f64 = 500.0;
/// The spread is never below this share of the series' magnitude: z stays finite.
const RELATIVE_EPSILON: f64 = 1e-9;

/// What the detector needs of a stream's config, with what can be derived once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub config: ZScoreConfig,
    /// The likelihood score at which `probability` is reached.
    critical: f64,
}

impl Detection {
    pub fn new(config: ZScoreConfig) -> Self {
        Detection {
            config,
            critical: likelihood::critical_score(config.probability()),
        }
    }

    /// The score at which a test fires; twice that marks an alert critical.
    fn firing_score(&self, method: AlertMethod) -> f64 {
        match method {
            AlertMethod::Likelihood => self.critical,
            AlertMethod::Spike => likelihood::SPIKE_SCORE,
            AlertMethod::Threshold => self.config.threshold(),
        }
    }
}

/// How one point compares with what the series usually does.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Assessment {
    /// `null` while the baseline has fewer than `min_samples` points.
    pub z: Option<f64>,
    /// The model's expectation plus the baseline's centre.
    pub expected: Option<f64>,
    pub spread: Option<f64>,
    /// The band of values that would not have been anomalous here (`null`: unbounded, or the
    /// detector is still learning the series).
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// The test that made it anomalous, if one did.
    pub trigger: Option<AlertMethod>,
    /// The score of that test (`auto`: the likelihood score of the recent deviations, or of
    /// this point alone for a spike; `robust`/`mean`: |z|).
    pub score: Option<f64>,
    /// Its tail probability (two-sided normal for |z|). Only for anomalous points.
    pub probability: Option<f64>,
}

impl Assessment {
    pub fn anomaly(&self) -> bool {
        self.trigger.is_some()
    }
}

/// The anomaly detector of one series.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Detector {
    window: ResidualWindow,
    expectation: Expectation,
    /// Long-run mean absolute deviation of the residuals from the baseline's centre.
    deviation: EwMean,
    likelihood: Likelihood,
    episodes: Episodes,
}

impl Detector {
    pub fn new(config: &ZScoreConfig) -> Self {
        let statistic = match config.method {
            ZScoreMethod::Mean => Statistic::Mean,
            ZScoreMethod::Auto | ZScoreMethod::Robust => Statistic::Robust,
        };
        Detector {
            window: ResidualWindow::new(statistic, config.points, config.window_ms()),
            expectation: Expectation::new(config.season),
            deviation: EwMean::default(),
            likelihood: Likelihood::default(),
            episodes: Episodes::new(config.resolve_after, config.refractory),
        }
    }

    pub fn episodes(&mut self) -> &mut Episodes {
        &mut self.episodes
    }

    /// What the expectation followed, as the alert shows it: `"flat"` or a seasonal period
    /// (`"1d"`, `"1w"`).
    pub fn expectation_label(&self) -> String {
        self.expectation
            .active_period_ms()
            .map_or_else(|| "flat".to_owned(), period_label)
    }

    /// Scores the point `x` at `t` (times must not decrease between calls), then learns from it.
    pub fn assess(&mut self, detection: &Detection, t: i64, x: f64) -> Assessment {
        let config = &detection.config;
        let prior = self.expectation.expect(t);
        let residual = x - prior;
        let mut assessment = Assessment::default();
        if let Some((centre, spread)) = self.baseline(config) {
            let z = (residual - centre) / spread;
            let expected = prior + centre;
            let (limit, score, trigger) = self.decide(detection, z);
            // An `erfc` per point is measurable in the engine benchmark: only for anomalies.
            let probability = trigger.zip(score).map(|(method, s)| match method {
                AlertMethod::Threshold => 2.0 * likelihood::tail_probability(s),
                AlertMethod::Likelihood | AlertMethod::Spike => likelihood::tail_probability(s),
            });
            assessment = Assessment {
                z: Some(z),
                expected: Some(expected),
                spread: Some(spread),
                lower: limit.map(|l| expected - l * spread),
                upper: limit.map(|l| expected + l * spread),
                trigger,
                score,
                probability,
            };
            self.deviation
                .add((residual - centre).abs(), DEVIATION_POINTS);
        }
        self.window.push(t, residual);
        if self
            .expectation
            .learn(t, x, assessment.spread, config.min_samples)
        {
            // Residuals against the old model say nothing about the new one.
            self.window.clear();
        }
        assessment
    }

    /// The baseline's centre and floored spread, once it holds `min_samples` points.
    fn baseline(&self, config: &ZScoreConfig) -> Option<(f64, f64)> {
        if self.window.len() < config.min_samples {
            return None;
        }
        let (centre, raw_spread) = self.window.centre_and_spread()?;
        let level = self.expectation.level().unwrap_or(centre).abs();
        let mut spread = raw_spread
            .max(config.floor * level)
            .max(RELATIVE_EPSILON * level.max(centre.abs()).max(1.0));
        if self.deviation.count > 0 {
            spread = spread.max(DEVIATION_FLOOR * self.deviation.value);
        }
        Some((centre, spread))
    }

    /// What a z-score decides under the stream's method: the |z| limit of the band, the score,
    /// and the test that fired, if one did.
    fn decide(
        &mut self,
        detection: &Detection,
        z: f64,
    ) -> (Option<f64>, Option<f64>, Option<AlertMethod>) {
        let config = &detection.config;
        match config.method {
            ZScoreMethod::Auto => {
                let Calibrated {
                    score,
                    spike_score,
                    z_limit,
                    fired,
                } = self.likelihood.observe(z, detection.critical);
                match fired {
                    Some(Test::Spike) => (z_limit, spike_score, Some(AlertMethod::Spike)),
                    Some(Test::Recent) => (z_limit, score, Some(AlertMethod::Likelihood)),
                    None => (z_limit, score, None),
                }
            }
            ZScoreMethod::Robust | ZScoreMethod::Mean => (
                Some(config.threshold()),
                Some(z.abs()),
                (z.abs() >= config.threshold()).then_some(AlertMethod::Threshold),
            ),
        }
    }

    /// What an anomalous assessment contributes to its alert.
    pub fn finding(detection: &Detection, t: i64, x: f64, a: &Assessment) -> Option<Finding> {
        let method = a.trigger?;
        Some(Finding {
            method,
            ts: t,
            value: x,
            expected: a.expected?,
            spread: a.spread?,
            lower: a.lower,
            upper: a.upper,
            z: a.z?,
            score: a.score?,
            probability: a.probability?,
            critical_at: 2.0 * detection.firing_score(method),
        })
    }
}

/// A period as people write it: `"1w"`, `"1d"`, `"12h"`, `"90s"`.
pub fn period_label(ms: i64) -> String {
    const UNITS: [(i64, &str); 5] = [
        (expectation::WEEK_MS, "w"),
        (expectation::DAY_MS, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    UNITS.iter().find(|(unit, _)| ms % unit == 0).map_or_else(
        || format!("{ms}ms"),
        |(unit, name)| format!("{}{name}", ms / unit),
    )
}

#[cfg(test)]
mod tests {
    use super::baseline::MAD_TO_SIGMA;
    use super::config::Season;
    use super::*;

    fn config(method: ZScoreMethod) -> ZScoreConfig {
        ZScoreConfig {
            method,
            points: 50,
            window: None,
            min_samples: 10,
            threshold: Some(3.0),
            season: Season::None,
            floor: 0.0,
            probability: None,
            resolve_after: 3,
            refractory: 20,
        }
    }

    #[test]
    fn the_robust_z_of_a_point_against_the_points_before_it() {
        let detection = Detection::new(config(ZScoreMethod::Robust));
        let mut d = Detector::new(&detection.config);
        // min_samples 10: the baseline has them at the second refresh, after 16 points.
        for i in 0..16 {
            let a = d.assess(&detection, i, 10.0 + (i % 3) as f64);
            assert_eq!(a.z, None, "no z below min_samples");
        }
        // Baseline 10, 11, 12, 10, ...: median 11, MAD 1.
        let a = d.assess(&detection, 16, 20.0);
        assert_eq!(a.expected, Some(11.0));
        assert_eq!(a.spread, Some(MAD_TO_SIGMA));
        assert!((a.z.unwrap() - 9.0 / MAD_TO_SIGMA).abs() < 1e-12);
        assert!(a.anomaly());
        assert_eq!(a.lower, Some(11.0 - 3.0 * MAD_TO_SIGMA));
        let f = Detector::finding(&detection, 16, 20.0, &a).unwrap();
        assert_eq!(f.score, a.z.unwrap());
    }

    #[test]
    fn a_flat_series_gets_a_finite_z_and_alerts_when_it_moves() {
        for method in [ZScoreMethod::Auto, ZScoreMethod::Robust, ZScoreMethod::Mean] {
            let detection = Detection::new(config(method));
            let mut d = Detector::new(&detection.config);
            for i in 0..200 {
                let a = d.assess(&detection, i, 5.0);
                assert!(!a.anomaly());
                assert!(a.z.is_none_or(|z| z == 0.0));
            }
            let a = d.assess(&detection, 200, 6.0);
            assert!(a.z.unwrap().is_finite(), "{method:?}");
            assert!(a.anomaly(), "{method:?}: {a:?}");
        }
    }

    #[test]
    fn a_level_shift_is_absorbed_within_half_the_baseline() {
        let detection = Detection::new(config(ZScoreMethod::Auto));
        let mut d = Detector::new(&detection.config);
        let noise = |i: i64| ((i * 7919) % 13) as f64 / 13.0;
        for i in 0..500 {
            d.assess(&detection, i, 10.0 + noise(i));
        }
        let mut anomalous = Vec::new();
        for i in 500..700 {
            let a = d.assess(&detection, i, 30.0 + noise(i));
            anomalous.push(a.anomaly());
        }
        assert!(anomalous[0], "the shift itself is anomalous");
        // Half of the 50-point baseline later (and a refresh), 30 is normal again.
        assert!(anomalous[35..].iter().all(|a| !a), "{anomalous:?}");
    }

    #[test]
    fn periods_read_as_people_write_them() {
        assert_eq!(period_label(expectation::WEEK_MS), "1w");
        assert_eq!(period_label(expectation::DAY_MS), "1d");
        assert_eq!(period_label(12 * 3_600_000), "12h");
        assert_eq!(period_label(90_000), "90s");
        assert_eq!(period_label(1_500), "1500ms");
    }
}
