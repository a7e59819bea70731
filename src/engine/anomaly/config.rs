//! A stream's `analytics.zscore` table: how anomalies are detected and alerted.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::types::{Duration, Invalid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZScoreMethod {
    /// The robust z-score of the point against its (seasonal) baseline, calibrated per series
    /// by the anomaly likelihood: an alert when the recent deviations are improbable.
    Auto,
    /// Median and MAD × 1.4826, an alert at `|z| ≥ threshold`: not pulled along by the outliers
    /// it is looking for.
    Robust,
    /// Sample mean and standard deviation, an alert at `|z| ≥ threshold`.
    Mean,
}

/// Which seasonal pattern the expectation of a point follows: `"auto"`, `"none"` or a period
/// such as `"1d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Season {
    /// A day or a week, whichever predicts the series clearly better than a flat level, if any.
    Auto,
    /// A flat baseline.
    None,
    /// This period.
    Period(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZScoreConfig {
    /// Default "auto".
    pub method: ZScoreMethod,
    /// The baseline holds the last `points` points of the series (default 500)...
    pub points: usize,
    /// ...and, when set, only those of this much event time before the point.
    pub window: Option<Duration>,
    /// Points the baseline needs before it gives a z-score (default 30).
    pub min_samples: usize,
    /// `robust` and `mean`: |z| at or above this is anomalous (default 3.0).
    pub threshold: Option<f64>,
    /// Default "auto".
    pub season: Season,
    /// The spread is at least this share of the series' level (|EWMA|); default 0.
    pub floor: f64,
    /// `auto`: tail probability of the recent deviations below which a point is anomalous
    /// (default 1e-5).
    pub probability: Option<f64>,
    /// Consecutive normal points that resolve an alert (default 3).
    pub resolve_after: u32,
    /// Points after an episode's last anomalous point during which a new anomaly reopens it
    /// (default 100).
    pub refractory: u32,
}

impl Default for ZScoreConfig {
    fn default() -> Self {
        ZScoreConfig {
            method: ZScoreMethod::Auto,
            points: 500,
            window: None,
            min_samples: 30,
            threshold: None,
            season: Season::Auto,
            floor: 0.0,
            probability: None,
            resolve_after: 3,
            refractory: 100,
        }
    }
}

impl ZScoreConfig {
    /// |z| at or above which `robust` and `mean` call a point anomalous.
    pub fn threshold(&self) -> f64 {
        self.threshold.unwrap_or(3.0)
    }

    /// The tail probability below which `auto` calls a point anomalous.
    pub fn probability(&self) -> f64 {
        self.probability.unwrap_or(1e-5)
    }

    /// The window, in milliseconds of event time, if one is set.
    pub fn window_ms(&self) -> Option<i64> {
        self.window.map(Duration::ms)
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        // Each method has its own rule: a key of the other one would silently do nothing.
        match (self.method, self.threshold, self.probability) {
            (ZScoreMethod::Auto, Some(_), _) => {
                return Err(Invalid::new(
                    "threshold",
                    "method \"auto\" has no threshold (it alerts by `probability`); set \
                     method = \"robust\" or \"mean\" for a fixed |z| threshold",
                ))
            }
            (ZScoreMethod::Robust | ZScoreMethod::Mean, _, Some(_)) => {
                return Err(Invalid::new(
                    "probability",
                    "only method \"auto\" alerts by probability; \"robust\" and \"mean\" use \
                     `threshold`",
                ))
            }
            _ => {}
        }
        let threshold = self.threshold();
        if !(threshold.is_finite() && threshold > 0.0) {
            return Err(Invalid::new(
                "threshold",
                format!("must be a positive number, got {threshold}"),
            ));
        }
        if self.min_samples < 2 {
            return Err(Invalid::new(
                "min_samples",
                "must be at least 2 (a spread needs two points)",
            ));
        }
        if self.points < self.min_samples || self.points > 100_000 {
            return Err(Invalid::new(
                "points",
                format!(
                    "must be between min_samples ({}) and 100000, got {}",
                    self.min_samples, self.points
                ),
            ));
        }
        if !(self.floor.is_finite() && (0.0..1.0).contains(&self.floor)) {
            return Err(Invalid::new(
                "floor",
                format!("must be in [0, 1), got {}", self.floor),
            ));
        }
        let probability = self.probability();
        if !(probability > 0.0 && probability < 0.5) {
            return Err(Invalid::new(
                "probability",
                format!("must be in (0, 0.5), got {probability}"),
            ));
        }
        if self.resolve_after == 0 {
            return Err(Invalid::new("resolve_after", "must be at least 1"));
        }
        if let Season::Period(period) = self.season {
            period.positive("season")?;
        }
        if let Some(window) = self.window {
            window.positive("window")?;
        }
        Ok(())
    }
}

impl fmt::Display for Season {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Season::Auto => f.write_str("auto"),
            Season::None => f.write_str("none"),
            Season::Period(period) => period.fmt(f),
        }
    }
}

impl std::str::FromStr for Season {
    type Err = String;

    fn from_str(text: &str) -> Result<Season, String> {
        match text {
            "auto" => Ok(Season::Auto),
            "none" => Ok(Season::None),
            period => period.parse().map(Season::Period).map_err(|_| {
                format!("expected \"auto\", \"none\" or a period such as \"1d\", got {period:?}")
            }),
        }
    }
}

/// How a season is kept in an engine snapshot (binary formats have no text to parse).
#[derive(Serialize, Deserialize)]
enum StoredSeason {
    Auto,
    None,
    Period(Duration),
}

impl Serialize for Season {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            return serializer.collect_str(self);
        }
        match *self {
            Season::Auto => StoredSeason::Auto,
            Season::None => StoredSeason::None,
            Season::Period(period) => StoredSeason::Period(period),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Season {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Season, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            return text.parse().map_err(de::Error::custom);
        }
        Ok(match StoredSeason::deserialize(deserializer)? {
            StoredSeason::Auto => Season::Auto,
            StoredSeason::None => Season::None,
            StoredSeason::Period(period) => Season::Period(period),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_season_is_text_in_the_config_and_survives_a_snapshot() {
        for (text, season) in [
            ("auto", Season::Auto),
            ("none", Season::None),
            ("1d", Season::Period(Duration::from_secs(86_400))),
        ] {
            assert_eq!(text.parse(), Ok(season));
            let json = serde_json::to_string(&season).unwrap();
            assert_eq!(serde_json::from_str::<Season>(&json).unwrap(), season);
            let bytes = postcard::to_allocvec(&season).unwrap();
            assert_eq!(postcard::from_bytes::<Season>(&bytes).unwrap(), season);
        }
        assert!("yearly".parse::<Season>().unwrap_err().contains("\"1d\""));
    }
}
