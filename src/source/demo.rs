//! The demo source: the built-in generator (see [`crate::generator`]) at a steady rate on the
//! wall clock — series with trend, seasonality and noise, plus anomalies, duplicates and late
//! events — so Tidewatch shows something alive with no input of its own.

use std::time::{Duration, Instant};

use super::interface::{Polled, RawMessage, Source, SourceError, SplitStatus};
use crate::checkpoint::SplitPosition;
use crate::generator::{Faults, Generator};
use crate::types::Invalid;

/// A `demo` source: the generator's settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// Events per second (default 50).
    pub rate: f64,
    /// Distinct series (default 6).
    pub series: usize,
    pub seed: u64,
    /// Share of events whose value jumps by 8 noise deviations.
    pub anomaly_rate: f64,
    /// Share of events stamped a minute or more in the past.
    pub late_rate: f64,
    /// Share of events sent twice.
    pub dup_rate: f64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            rate: 50.0,
            series: 6,
            seed: 1,
            // One event in 2,000: at the default rate an anomaly every 40 s over the six
            // series, rare enough per series to be an anomaly (at 0.003 spikes came often
            // enough that the detector, rightly, began to treat them as the series' usual
            // behaviour).
            anomaly_rate: 0.0005,
            late_rate: 0.002,
            dup_rate: 0.01,
        }
    }
}

impl DemoConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(self.rate > 0.0 && self.rate <= 1_000_000.0) {
            return Err(Invalid::new(
                "rate",
                "must be between 0 and 1000000 events per second",
            ));
        }
        if self.series == 0 || self.series > 100_000 {
            return Err(Invalid::new("series", "must be between 1 and 100000"));
        }
        for (name, value) in [
            ("anomaly_rate", self.anomaly_rate),
            ("late_rate", self.late_rate),
            ("dup_rate", self.dup_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(Invalid::new(name, "must be a share between 0 and 1"));
            }
        }
        Ok(())
    }

    /// What the generator plants besides the signal.
    pub fn faults(&self) -> Faults {
        Faults {
            duplicate: self.dup_rate,
            late: self.late_rate,
            anomaly: self.anomaly_rate,
            ..Faults::default()
        }
    }
}

/// How far ahead of its schedule the demo may run.
const SLICE: Duration = Duration::from_millis(10);

pub struct DemoSource {
    generator: Generator,
    rate: f64,
    started: Instant,
    sent: u64,
    line: Vec<u8>,
}

impl DemoSource {
    pub fn new(config: &DemoConfig) -> Self {
        DemoSource {
            generator: Generator::new(config.series, config.seed, config.faults()),
            rate: config.rate.max(0.001),
            started: Instant::now(),
            sent: 0,
            line: Vec::new(),
        }
    }

    fn emit(&mut self) -> RawMessage<'_> {
        self.line = self.generator.next_event(crate::clock::now_ms()).line;
        self.sent += 1;
        RawMessage {
            source: "demo",
            split: 0,
            partition: 0,
            offset: self.sent,
            payload: &self.line,
        }
    }
}

impl Source for DemoSource {
    /// The demo never ends; batch mode gets nothing from it.
    fn next_message(&mut self) -> Result<Option<RawMessage<'_>>, SourceError> {
        Ok(None)
    }

    /// Releases events in slices of up to [`SLICE`] worth: sleeping before every single event
    /// would cap the demo at a few thousand events/s (each sleep costs more than it asks for).
    fn poll_message(&mut self, timeout: Duration) -> Result<Polled<'_>, SourceError> {
        let due = Duration::from_secs_f64(self.sent as f64 / self.rate);
        let ahead = |elapsed: Duration| due.saturating_sub(elapsed + SLICE);
        let wait = ahead(self.started.elapsed());
        if !wait.is_zero() {
            std::thread::sleep(wait.min(timeout));
            if !ahead(self.started.elapsed()).is_zero() {
                return Ok(Polled::Idle);
            }
        }
        Ok(Polled::Message(self.emit()))
    }

    /// Nothing to resume from (the generator follows the wall clock), so no positions; the
    /// status page still shows how many events it made.
    fn positions(&self) -> Vec<SplitPosition> {
        Vec::new()
    }

    fn split_status(&self) -> Vec<SplitStatus> {
        vec![SplitStatus {
            split: 0,
            position: SplitPosition {
                source: "demo".into(),
                partition: 0,
                next_offset: self.sent + 1,
            },
            lag: None,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DEFAULT_PIPELINE};
    use crate::engine::{Engine, Origin};
    use crate::event::Decoder;
    use crate::generator::Kind;
    use crate::record::Record;
    use crate::source::SourceConfig;

    /// An hour of the default pipeline's demo, simulated: its detector flags every anomaly the
    /// generator plants, whatever the series does around it.
    #[test]
    fn the_default_pipeline_flags_every_planted_anomaly_of_the_demo() {
        let config = Config::from_toml_str(DEFAULT_PIPELINE).unwrap();
        let SourceConfig::Demo(demo) = config.streams[0].source else {
            panic!("the default pipeline runs the demo");
        };
        let decoder = Decoder::new(config.streams[0].fields.clone());
        let mut engine = Engine::new(config.engine_plan());
        let mut generator = Generator::new(demo.series, demo.seed, demo.faults());
        let mut planted = Vec::new();
        let mut flagged = std::collections::HashSet::new();
        let mut out = Vec::new();
        let events = (demo.rate * 3600.0) as u64;
        let mut flag = |out: &mut Vec<Record>| {
            for record in out.drain(..) {
                if let Record::Point(p) = record {
                    if p.anomaly {
                        flagged.insert((p.series.to_string(), p.ts));
                    }
                }
            }
        };
        for offset in 0..events {
            let now = 1_700_000_000_000 + (offset as f64 * 1000.0 / demo.rate) as i64;
            let event = generator.next_event(now);
            if event.kind == Kind::Anomaly {
                planted.push((event.series.clone(), event.ts));
            }
            let decoded = decoder.decode(&event.line).unwrap();
            let origin = Origin {
                source: "demo",
                split: 0,
                partition: 0,
                offset,
            };
            let _ = engine.process(0, &decoded, origin, 0, &mut out);
            flag(&mut out);
        }
        engine.finish(&mut out);
        flag(&mut out);
        assert!(planted.len() > 50, "{} planted", planted.len());
        let missed: Vec<_> = planted.iter().filter(|p| !flagged.contains(*p)).collect();
        assert!(missed.is_empty(), "missed {missed:?} of {}", planted.len());
    }
}
