//! Handing records to the sinks.

use std::collections::BTreeMap;

use super::PipelineError;
use crate::record::{Record, RecordKind};
use crate::sink::Sink;

/// Writes `records` to every sink, then counts them into `written` and clears them.
///
/// A failing sink fails the delivery and keeps the records; the pipeline then goes back to its
/// last checkpoint (following) or ends (batch), see `Pipeline::recover`. It never retries a
/// write in place: a sink that failed half-way may hold part of the batch.
pub fn deliver(
    records: &mut Vec<Record>,
    sinks: &mut [Box<dyn Sink>],
    written: &mut BTreeMap<RecordKind, u64>,
) -> Result<(), PipelineError> {
    if records.is_empty() {
        return Ok(());
    }
    for sink in sinks.iter_mut() {
        fail::fail_point!("sink-write", |_| Err(PipelineError::Injected {
            point: "sink-write"
        }));
        sink.write(records)?;
    }
    for record in records.iter() {
        *written.entry(record.kind()).or_default() += 1;
    }
    records.clear();
    Ok(())
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
        let (mut sinks, log, mut out) = setup(0);
        let mut written = BTreeMap::new();
        deliver(&mut out, &mut sinks, &mut written).unwrap();
        assert_eq!(*log.lock().unwrap(), ["a wrote 1", "b wrote 1"]);
        assert!(out.is_empty());
        assert_eq!(written[&RecordKind::DeadLetter], 1);
    }

    #[test]
    fn a_failing_sink_fails_the_delivery_and_keeps_the_records() {
        let (mut sinks, log, mut out) = setup(1);
        let mut written = BTreeMap::new();
        let error = deliver(&mut out, &mut sinks, &mut written).unwrap_err();
        assert!(Report(&error).to_string().contains("disk full"), "{error}");
        assert_eq!(*log.lock().unwrap(), ["a wrote 1", "b failed"]);
        assert_eq!(out.len(), 1);
        assert!(written.is_empty());
    }
}
