//! What a point is expected to be, before the baseline judges how far it is from that.
//!
//! The models:
//! - **flat**: nothing to subtract; the baseline's median is the expectation.
//! - **seasonal**: what the series usually does at this time of day or week. Each candidate
//!   period keeps a profile, one expected value per phase bin (the point's time modulo the
//!   period), an exponentially weighted average over periods of the values in that bin (clipped
//!   to a few spreads, so one spike does not move it far). A bin is at least the series'
//!   cadence wide and a profile has at most [`MAX_BINS`].
//!
//! With `season = "auto"` the detector uses whichever model has predicted the series best
//! lately (the lowest mean absolute error), provided it beats the flat level clearly; the model
//! in use keeps a small advantage so that two about as good do not take turns. (A third model,
//! the level of the last few points, was tried for series that wander smoothly and dropped: on
//! the labelled benchmark series it changed nothing, and the spike test of the likelihood
//! already catches what it was meant to.)

use serde::{Deserialize, Serialize};

use super::config::Season;

pub const DAY_MS: i64 = 86_400_000;
pub const WEEK_MS: i64 = 7 * DAY_MS;

/// Most phase bins per profile: hourly bins for a week, 8.6 minutes for a day.
pub const MAX_BINS: i64 = 168;
/// A profile with fewer bins than this (a period barely longer than the cadence) says nothing.
const MIN_BINS: i64 = 4;
/// Share of a profile's bins that must have been seen before it may be used (a point arriving
/// a little late can skip a bin).
const READY_SHARE: f64 = 0.9;
/// Weight of a new value in its bin: about the average of the last three periods.
const PROFILE_WEIGHT: f64 = 0.3;
/// How far (in spreads) one value may pull its bin.
const PROFILE_CLIP: f64 = 4.0;
/// Points over which the prediction errors are averaged (exponential weights).
const ERROR_POINTS: f64 = 500.0;
/// A seasonal model is chosen only if its error is below this share of the flat level's.
const SEASONAL_MARGIN: f64 = 0.7;
/// The model in use counts its error times this when compared with the others.
const INCUMBENT_ADVANTAGE: f64 = 0.8;
/// Points over which the flat level (an EWMA) is taken.
const LEVEL_POINTS: f64 = 100.0;
/// Points between two comparisons of the models.
const CHOOSE_EVERY: u32 = 8;

/// A mean with exponential weights after a plain mean over the first `1 / floor` values.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct EwMean {
    pub value: f64,
    pub count: u64,
}

impl EwMean {
    pub fn add(&mut self, x: f64, points: f64) {
        self.count += 1;
        let n = self.count as f64;
        let weight = if n < points { 1.0 / n } else { 1.0 / points };
        self.value += weight * (x - self.value);
    }
}

/// The expected value per phase bin of one candidate period.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    period_ms: i64,
    bin_ms: i64,
    /// Expected value per bin; NaN for a bin no point has fallen in yet.
    values: Vec<f64>,
    filled: usize,
    error: EwMean,
    /// The bin the latest points fell in.
    visit: Option<Visit>,
}

/// A stay in one bin: consecutive points in it update its value once, with their mean, when
/// the series moves on. A fast series puts hundreds of points in a bin, and the profile should
/// average over periods, not over the last few points; it also keeps the profile's array out
/// of the way of every point.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Visit {
    bin: usize,
    /// The times the bin covers in this period.
    from: i64,
    to: i64,
    /// The bin's value when the visit began (NaN if it had none).
    expected: f64,
    sum: f64,
    count: u32,
    /// The latest spread the points were scored with: how far the visit may pull the bin.
    spread: Option<f64>,
}

impl Profile {
    fn new(period_ms: i64, cadence_ms: i64) -> Option<Profile> {
        let bin_ms = cadence_ms.max(period_ms / MAX_BINS).max(1);
        let bins = (period_ms + bin_ms - 1) / bin_ms;
        (bins >= MIN_BINS).then(|| Profile {
            period_ms,
            bin_ms,
            values: vec![f64::NAN; bins as usize],
            filled: 0,
            error: EwMean::default(),
            visit: None,
        })
    }

    /// The bin of `t` and the times it covers in `t`'s period.
    fn bin(&self, t: i64) -> (usize, i64, i64) {
        let phase = t.rem_euclid(self.period_ms);
        let period_start = t - phase;
        let bin = ((phase / self.bin_ms) as usize).min(self.values.len() - 1);
        let from = period_start + bin as i64 * self.bin_ms;
        let to = (from + self.bin_ms).min(period_start + self.period_ms);
        (bin, from, to)
    }

    /// The expectation at `t`: its bin's value, or the nearest seen bin before it.
    pub fn expect(&self, t: i64) -> f64 {
        if let Some(v) = self.visit.filter(|v| (v.from..v.to).contains(&t)) {
            if !v.expected.is_nan() {
                return v.expected;
            }
        }
        let n = self.values.len();
        let (bin, _, _) = self.bin(t);
        (0..n)
            .map(|back| (bin + n - back) % n)
            .find(|&b| !self.values[b].is_nan())
            .map_or(0.0, |b| self.values[b])
    }

    fn ready(&self, min_samples: usize) -> bool {
        self.filled as f64 >= READY_SHARE * self.values.len() as f64
            && self.error.count >= min_samples as u64
    }

    fn learn(&mut self, t: i64, x: f64, spread: Option<f64>) {
        if !self.visit.is_some_and(|v| (v.from..v.to).contains(&t)) {
            self.close_visit();
            let (bin, from, to) = self.bin(t);
            self.visit = Some(Visit {
                bin,
                from,
                to,
                expected: self.values[bin],
                sum: 0.0,
                count: 0,
                spread: None,
            });
        }
        let Some(visit) = self.visit.as_mut() else {
            return;
        };
        visit.sum += x;
        visit.count += 1;
        if spread.is_some() {
            visit.spread = spread;
        }
        if !visit.expected.is_nan() {
            let error = (x - visit.expected).abs();
            self.error.add(error, ERROR_POINTS);
        }
    }

    /// Folds the visit that ended into its bin.
    fn close_visit(&mut self) {
        let Some(v) = self.visit.take() else {
            return;
        };
        let mean = v.sum / f64::from(v.count.max(1));
        let value = &mut self.values[v.bin];
        if value.is_nan() {
            self.filled += 1;
            *value = mean;
            return;
        }
        let error = mean - *value;
        let pull = match v.spread {
            Some(s) => error.clamp(-PROFILE_CLIP * s, PROFILE_CLIP * s),
            None => error,
        };
        *value += PROFILE_WEIGHT * pull;
    }

    /// Heap bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.values.len() * 8
    }
}

/// Which expectation a series' points are compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Model {
    Flat,
    /// A candidate seasonal profile.
    Seasonal(usize),
}

/// The expectation part of a series' detector: the candidate models and which one is in use.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Expectation {
    season: Season,
    /// Positive gaps between the first points, until the cadence is known.
    gaps: Vec<i64>,
    last_ts: Option<i64>,
    cadence_ms: Option<i64>,
    candidates: Vec<Profile>,
    active: Model,
    /// The flat level (EWMA) and how far the values stray from it.
    level: Option<f64>,
    flat_error: EwMean,
    /// Points learned since the models were last compared.
    since_choice: u32,
}

impl Expectation {
    pub fn new(season: Season) -> Self {
        Expectation {
            season,
            gaps: Vec::new(),
            last_ts: None,
            cadence_ms: None,
            candidates: Vec::new(),
            active: Model::Flat,
            level: None,
            flat_error: EwMean::default(),
            since_choice: 0,
        }
    }

    /// What the model in use expects at `t` (0 with the flat model: the baseline's median is
    /// the whole expectation then).
    pub fn expect(&self, t: i64) -> f64 {
        match self.active {
            Model::Flat => 0.0,
            Model::Seasonal(m) => self.candidates[m].expect(t),
        }
    }

    #[cfg(test)]
    pub fn active(&self) -> Model {
        self.active
    }

    /// The period of the seasonal model in use, if one is.
    pub fn active_period_ms(&self) -> Option<i64> {
        match self.active {
            Model::Seasonal(m) => Some(self.candidates[m].period_ms),
            Model::Flat => None,
        }
    }

    /// The flat level before this point: the reference of the spread floor.
    pub fn level(&self) -> Option<f64> {
        self.level
    }

    /// Learns from a point once it has been scored (`spread`: the spread it was scored with).
    /// `true` when the model in use changed: residuals against the old one are then not
    /// comparable with those against the new.
    pub fn learn(&mut self, t: i64, x: f64, spread: Option<f64>, min_samples: usize) -> bool {
        let previous_level = self.level.unwrap_or(x);
        self.level = Some(previous_level + 2.0 / (LEVEL_POINTS + 1.0) * (x - previous_level));
        if self.season == Season::None {
            return false;
        }
        self.flat_error
            .add((x - previous_level).abs(), ERROR_POINTS);
        self.learn_cadence(t, min_samples);
        for profile in &mut self.candidates {
            profile.learn(t, x, spread);
        }
        // Errors move slowly (averaged over hundreds of points): comparing the models every few
        // points decides as well and costs less.
        self.since_choice += 1;
        if self.since_choice < CHOOSE_EVERY {
            return false;
        }
        self.since_choice = 0;
        let weight = |m: Model| {
            if m == self.active {
                INCUMBENT_ADVANTAGE
            } else {
                1.0
            }
        };
        let mut best = Model::Flat;
        let mut best_error = self.flat_error.value * SEASONAL_MARGIN * weight(Model::Flat);
        for (m, profile) in self.candidates.iter().enumerate() {
            let error = profile.error.value * weight(Model::Seasonal(m));
            if profile.ready(min_samples) && error < best_error {
                best = Model::Seasonal(m);
                best_error = error;
            }
        }
        let changed = best != self.active;
        self.active = best;
        changed
    }

    fn learn_cadence(&mut self, t: i64, min_samples: usize) {
        if self.cadence_ms.is_some() {
            return;
        }
        if let Some(last) = self.last_ts.replace(t) {
            if t > last {
                self.gaps.push(t - last);
            }
        }
        if self.gaps.len() < min_samples.max(1) {
            return;
        }
        self.gaps.sort_unstable();
        let cadence = self.gaps[self.gaps.len() / 2];
        self.cadence_ms = Some(cadence);
        self.gaps = Vec::new();
        let periods: &[i64] = match self.season {
            Season::None => &[],
            Season::Auto => &[DAY_MS, WEEK_MS],
            Season::Period(period) => &[period.ms()][..],
        };
        self.candidates = periods
            .iter()
            .filter_map(|&p| Profile::new(p, cadence))
            .collect();
    }

    /// Heap bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.gaps.capacity() * 8 + self.candidates.iter().map(Profile::bytes).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    /// A daily square wave: 10 by night, 50 from 08:00 to 20:00, hourly points.
    fn daily(t: i64) -> f64 {
        let hour = t.rem_euclid(DAY_MS) / HOUR;
        if (8..20).contains(&hour) {
            50.0
        } else {
            10.0
        }
    }

    #[test]
    fn a_daily_pattern_is_found_and_predicted() {
        let mut s = Expectation::new(Season::Auto);
        let mut switched_at = None;
        for i in 0..24 * 10 {
            let t = i * HOUR;
            if s.learn(t, daily(t), Some(1.0), 10) {
                assert_eq!(s.active_period_ms(), Some(DAY_MS));
                switched_at.get_or_insert(i);
            }
        }
        // The cadence is known after 10 points, the day profile complete a day later.
        let at = switched_at.expect("the daily model was chosen");
        assert!((24..24 * 3).contains(&at), "switched at point {at}");
        assert_eq!(s.active_period_ms(), Some(DAY_MS));
        let noon = 20 * DAY_MS + 12 * HOUR;
        assert_eq!(s.expect(noon), 50.0);
        assert_eq!(s.expect(noon + 12 * HOUR), 10.0);
    }

    #[test]
    fn bins_cover_their_period_and_a_visit_updates_its_bin_once() {
        // 7 bins of a 100 ms period: 15 ms wide, the last one 10 ms.
        let mut p = Profile::new(100, 15).unwrap();
        assert_eq!(p.values.len(), 7);
        assert_eq!(p.bin(-1), (6, -10, 0));
        assert_eq!(p.bin(214), (0, 200, 215));
        assert_eq!(p.bin(229), (1, 215, 230));
        // Three points in bin 1, then one in bin 2: bin 1 gets their mean.
        for (t, x) in [(15, 1.0), (20, 2.0), (29, 6.0), (30, 10.0)] {
            p.learn(t, x, None);
        }
        assert_eq!(p.values[1], 3.0);
        assert!(p.values[2].is_nan(), "bin 2's visit is still open");
        assert_eq!(p.expect(16), 3.0);
        // A period later: the error is measured against 3, and the bin moves 30 % of the way.
        p.learn(115, 13.0, Some(100.0));
        p.learn(130, 0.0, None);
        assert_eq!(p.error.value, 10.0);
        assert_eq!(p.values[1], 6.0);
        assert_eq!(p.values[2], 10.0);
    }

    #[test]
    fn noise_without_a_season_keeps_the_flat_level() {
        let mut s = Expectation::new(Season::Auto);
        let mut seed = 3u64;
        for i in 0..24 * 15 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let x = 100.0 + ((seed >> 40) % 20) as f64;
            assert!(!s.learn(i * HOUR, x, Some(5.0), 10));
        }
        assert_eq!(s.active(), Model::Flat);
        assert_eq!(s.expect(0), 0.0);
        let none = Expectation::new(Season::None);
        assert_eq!(none.bytes(), 0);
    }
}
