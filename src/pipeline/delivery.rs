//! Handing records to the sinks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tracing::warn;

use super::error::PipelineError;
use crate::record::{Record, RecordKind};
use crate::sink::Sink;

/// A sink write taking this long is logged.
const SLOW_WRITE: Duration = Duration::from_secs(1);

/// The sinks, what was written to them, and how long their writes took.
pub struct Delivery {
    pub sinks: Vec<Box<dyn Sink>>,
    /// Records written, per kind.
    pub written: BTreeMap<RecordKind, u64>,
    /// Per sink: writes, and the time they took.
    timings: Vec<(u64, Duration)>,
}

impl Delivery {
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Self {
        let timings = vec![(0, Duration::ZERO); sinks.len()];
        Delivery {
            sinks,
            written: BTreeMap::new(),
            timings,
        }
    }

    /// Writes `records` to every sink, then counts them and clears them.
    ///
    /// A failing sink fails the delivery and keeps the records; the pipeline then goes back to
    /// its last checkpoint (following) or ends (batch), see `Pipeline::recover`. It never
    /// retries a write in place: a sink that failed half-way may hold part of the batch.
    pub fn deliver(&mut self, records: &mut Vec<Record>) -> Result<(), PipelineError> {
        if records.is_empty() {
            return Ok(());
        }
        for (index, (sink, timing)) in self.sinks.iter_mut().zip(&mut self.timings).enumerate() {
            fail::fail_point!("sink-write", |_| Err(PipelineError::Injected {
                point: "sink-write"
            }));
            let started = Instant::now();
            sink.write(records)?;
            let took = started.elapsed();
            if took >= SLOW_WRITE {
                // Intake waits meanwhile: the operator should hear of it.
                warn!(
                    sink = index,
                    records = records.len(),
                    took_ms = took.as_millis() as u64,
                    "Slow sink write."
                );
            }
            *timing = (timing.0 + 1, timing.1 + took);
        }
        for record in records.iter() {
            *self.written.entry(record.kind()).or_default() += 1;
        }
        records.clear();
        Ok(())
    }

    /// Per sink, in order: the writes so far and the time they took.
    pub fn timings(&self) -> &[(u64, Duration)] {
        &self.timings
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::record::DeadLetterRecord;
    use crate::report::Report;
    use crate::sink::SinkError;

    type Log = Arc<Mutex<Vec<String>>>;

    /// Fails its first `failures` writes; logs what happens to it.
    struct Flaky {
        name: &'static str,
        failures: usize,
        log: Log,
    }

    impl Sink for Flaky {
        fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
            let mut log = self.log.lock().unwrap();
            if self.failures > 0 {
                self.failures -= 1;
                log.push(format!("{} failed", self.name));
                return Err(SinkError::Io {
                    path: "lake/part-1.parquet".into(),
                    source: std::io::Error::other("disk full"),
                });
            }
            log.push(format!("{} wrote {}", self.name, records.len()));
            Ok(())
        }

        fn flush(&mut self, _epoch: u64) -> Result<(), SinkError> {
            Ok(())
        }
    }

    /// Sink "a" that works, sink "b" that fails `b_failures` times, their log, one record.
    fn setup(b_failures: usize) -> (Vec<Box<dyn Sink>>, Log, Vec<Record>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sinks: Vec<Box<dyn Sink>> = vec![
            Box::new(Flaky {
                name: "a",
                failures: 0,
                log: log.clone(),
            }),
            Box::new(Flaky {
                name: "b",
                failures: b_failures,
                log: log.clone(),
            }),
        ];
        let record = Record::DeadLetter(DeadLetterRecord {
            stream: "s".into(),
            source: "f".into(),
            partition: 0,
            offset: 1,
            reason: "bad".into(),
            payload: String::new(),
        });
        (sinks, log, vec![record])
    }

    #[test]
    fn a_delivery_reaches_every_sink_and_is_counted_once() {
        let (sinks, log, mut out) = setup(0);
        let mut delivery = Delivery::new(sinks);
        delivery.deliver(&mut out).unwrap();
        assert_eq!(*log.lock().unwrap(), ["a wrote 1", "b wrote 1"]);
        assert!(out.is_empty());
        assert_eq!(delivery.written[&RecordKind::DeadLetter], 1);
        let writes: Vec<u64> = delivery.timings().iter().map(|t| t.0).collect();
        assert_eq!(writes, [1, 1], "each sink's write is timed");
    }

    #[test]
    fn a_failing_sink_fails_the_delivery_and_keeps_the_records() {
        let (sinks, log, mut out) = setup(1);
        let mut delivery = Delivery::new(sinks);
        let error = delivery.deliver(&mut out).unwrap_err();
        assert!(Report(&error).to_string().contains("disk full"), "{error}");
        assert_eq!(*log.lock().unwrap(), ["a wrote 1", "b failed"]);
        assert_eq!(out.len(), 1);
        assert!(delivery.written.is_empty());
    }
}
