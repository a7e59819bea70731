//! Synthetic events: series with a level, a slow trend, daily-like seasonality and noise, plus
//! the faults a real feed has — injected anomalies, re-sent duplicates and late events.
//!
//! Deterministic for a seed, so the benchmark, `tidewatch produce` and tests can reproduce a data
//! set exactly. The caller supplies the clock, so the same generator serves a replay (fixed
//! start) and a live producer (wall clock).

/// Deterministic SplitMix64: a few lines, reproducible across platforms, good enough for
/// synthetic data.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, n)`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.next_f64() < p
    }
}

/// How often each fault is injected, and how disordered time is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Probability that an event is re-sent right after (same id, same payload).
    pub duplicate: f64,
    /// Probability that an event is stamped `late_by` behind: later than any sane lateness.
    pub late: f64,
    /// Probability that an event's value jumps by `anomaly_sigmas` noise deviations.
    pub anomaly: f64,
    /// Events are stamped up to this far before the clock (ordinary out-of-orderness).
    pub max_disorder_ms: i64,
    pub late_by_ms: i64,
    pub anomaly_sigmas: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            duplicate: 0.01,
            late: 0.001,
            anomaly: 0.0005,
            max_disorder_ms: 5_000,
            late_by_ms: 60_000,
            anomaly_sigmas: 8.0,
        }
    }
}

/// What kind of event a generated line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Normal,
    Duplicate,
    Late,
    Anomaly,
}

/// One generated event, as the JSON line a producer would send.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Series name: also the Kafka message key, so a series stays in one partition.
    pub series: String,
    /// Event time.
    pub ts: i64,
    pub line: Vec<u8>,
    pub kind: Kind,
}

struct SeriesModel {
    name: String,
    level: f64,
    trend_per_hour: f64,
    season_amplitude: f64,
    phase: f64,
    noise: f64,
    /// Events generated for this series so far.
    emitted: u64,
}

/// Generates events round-robin over its series. Fields: `ts` (epoch ms), `series`, `value`, `id`.
pub struct Generator {
    rng: SplitMix64,
    series: Vec<SeriesModel>,
    faults: Faults,
    next_series: usize,
    next_id: u64,
    pending_duplicate: Option<Generated>,
    start_ms: Option<i64>,
}

/// Length of the seasonal cycle: a "day" of ten minutes, so a demo shows it within minutes.
const SEASON_MS: f64 = 600_000.0;

/// Events of a series before the first anomaly is planted in it.
pub const ANOMALIES_AFTER_POINTS: u64 = 200;

impl Generator {
    pub fn new(series: usize, seed: u64, faults: Faults) -> Self {
        let mut rng = SplitMix64::new(seed);
        let series = (0..series.max(1))
            .map(|i| SeriesModel {
                name: format!("s{i:04}"),
                level: 50.0 + rng.next_f64() * 100.0,
                trend_per_hour: (rng.next_f64() - 0.5) * 10.0,
                season_amplitude: 1.0 + rng.next_f64() * 4.0,
                phase: rng.next_f64() * std::f64::consts::TAU,
                noise: 0.5 + rng.next_f64(),
                emitted: 0,
            })
            .collect();
        Generator {
            rng,
            series,
            faults,
            next_series: 0,
            next_id: 0,
            pending_duplicate: None,
            start_ms: None,
        }
    }

    /// The next event at clock time `now_ms`. A duplicate, when one is due, comes before the
    /// next fresh event and does not advance the round-robin.
    pub fn next_event(&mut self, now_ms: i64) -> Generated {
        if let Some(duplicate) = self.pending_duplicate.take() {
            return duplicate;
        }
        let start = *self.start_ms.get_or_insert(now_ms);
        let index = self.next_series;
        self.next_series = (self.next_series + 1) % self.series.len();
        let id = self.next_id;
        self.next_id += 1;

        let mut kind = Kind::Normal;
        let mut ts = now_ms - self.rng.below(self.faults.max_disorder_ms.max(0) as u64) as i64;
        // Late events only once there is a watermark to be late against.
        if now_ms - start > self.faults.late_by_ms && self.rng.chance(self.faults.late) {
            ts = now_ms
                - self.faults.late_by_ms
                - self.rng.below(self.faults.late_by_ms as u64) as i64;
            kind = Kind::Late;
        }
        let model = &self.series[index];
        let hours = (ts - start) as f64 / 3_600_000.0;
        let season = model.season_amplitude
            * ((ts - start) as f64 / SEASON_MS * std::f64::consts::TAU + model.phase).sin();
        let mut value =
            model.level + model.trend_per_hour * hours + season + model.noise * self.rng.normal();
        // Anomalies only once the series has a history: before it no detector has a baseline
        // to call a point anomalous against (Tidewatch's needs about 130 points).
        self.series[index].emitted += 1;
        let model = &self.series[index];
        if kind == Kind::Normal
            && model.emitted > ANOMALIES_AFTER_POINTS
            && self.rng.chance(self.faults.anomaly)
        {
            let sign = if self.rng.chance(0.5) { 1.0 } else { -1.0 };
            value += sign * self.faults.anomaly_sigmas * (model.noise + model.season_amplitude);
            kind = Kind::Anomaly;
        }
        let line = format!(
            r#"{{"ts":{ts},"series":"{}","value":{value:.4},"id":"e{id}"}}"#,
            model.name
        )
        .into_bytes();
        let event = Generated {
            series: model.name.clone(),
            ts,
            line,
            kind,
        };
        if self.rng.chance(self.faults.duplicate) {
            self.pending_duplicate = Some(Generated {
                kind: Kind::Duplicate,
                ..event.clone()
            });
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_events_and_faults_at_their_rates() {
        let faults = Faults {
            duplicate: 0.05,
            late: 0.02,
            anomaly: 0.02,
            ..Faults::default()
        };
        let mut a = Generator::new(10, 3, faults);
        let mut b = Generator::new(10, 3, faults);
        let mut kinds = std::collections::HashMap::new();
        // 2,000 events a series: anomalies after the first 200.
        for i in 0..20_000i64 {
            let now = 1_700_000_000_000 + i * 10;
            let (x, y) = (a.next_event(now), b.next_event(now));
            assert_eq!(x.line, y.line);
            *kinds.entry(x.kind).or_insert(0usize) += 1;
        }
        let share = |k| kinds.get(&k).copied().unwrap_or(0) as f64 / 20_000.0;
        assert!((0.03..0.07).contains(&share(Kind::Duplicate)), "{kinds:?}");
        assert!((0.005..0.03).contains(&share(Kind::Late)), "{kinds:?}");
        assert!((0.01..0.03).contains(&share(Kind::Anomaly)), "{kinds:?}");
    }
}
