//! The demo source: the built-in generator (see [`crate::generator`]) at a steady rate on the
//! wall clock — series with trend, seasonality and noise, plus anomalies, duplicates and late
//! events — so Tidewatch shows something alive with no input of its own.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Polled, RawMessage, Source, SourceError, SplitStatus};
use crate::checkpoint::SplitPosition;
use crate::generator::{Faults, Generator};

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
    pub fn new(rate: f64, series: usize, seed: u64, faults: Faults) -> Self {
        DemoSource {
            generator: Generator::new(series, seed, faults),
            rate: rate.max(0.001),
            started: Instant::now(),
            sent: 0,
            line: Vec::new(),
        }
    }

    fn emit(&mut self) -> RawMessage<'_> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.line = self.generator.next_event(now_ms).line;
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
