//! Handing records to the sinks, and what happens when one fails.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{info, warn};

use super::{Mode, PipelineError};
use crate::record::{Record, RecordKind};
use crate::report::Report;
use crate::sink::Sink;

/// Longest wait between two attempts to write to a failed sink.
const MAX_SINK_BACKOFF: Duration = Duration::from_secs(30);
/// Attempts a stopping pipeline still makes for a failing sink before giving up.
const RETRIES_WHEN_STOPPING: u32 = 5;

/// Writes `records` to every sink, then counts them into `written` and clears them.
///
/// Following, a failing sink pauses the pipeline: the records are kept and the sink retried
/// with backoff (`on_pause` hears why, and `None` once it recovered) until it recovers or the
/// run is stopped. Sinks that already have the batch do not get it again. In a batch run the
/// error ends the run (which resumes later from its checkpoint).
pub fn deliver(
    records: &mut Vec<Record>,
    sinks: &mut [Box<dyn Sink>],
    written: &mut BTreeMap<RecordKind, u64>,
    mode: &Mode,
    mut on_pause: impl FnMut(Option<String>),
) -> Result<(), PipelineError> {
    if records.is_empty() {
        return Ok(());
    }
    let mut delivered = 0;
    let mut backoff = Duration::from_millis(100);
    let mut retries_after_stop = 0;
    let mut paused = false;
    while delivered < sinks.len() {
        let error = match sinks[delivered].write(records) {
            Ok(()) => {
                delivered += 1;
                continue;
            }
            Err(error) => error,
        };
        let Mode::Continuous { stop } = mode else {
            return Err(error.into());
        };
        if stop.load(Ordering::Relaxed) {
            retries_after_stop += 1;
            if retries_after_stop > RETRIES_WHEN_STOPPING {
                return Err(error.into());
            }
        }
        let error = Report(&error);
        warn!(%error, retry_in = ?backoff, "Sink failed; pipeline paused.");
        on_pause(Some(format!(
            "a sink failed, retrying every {backoff:?}: {error}"
        )));
        paused = true;
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_SINK_BACKOFF);
    }
    if paused {
        info!("Sinks recovered; pipeline resumed.");
        on_pause(None);
    }
    for record in records.iter() {
        *written.entry(record.kind()).or_default() += 1;
    }
    records.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::record::DeadLetterRecord;
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
    fn following_a_failing_sink_pauses_until_it_recovers_and_no_sink_gets_a_batch_twice() {
        let (mut sinks, log, mut out) = setup(2);
        let mut written = BTreeMap::new();
        let mode = Mode::Continuous {
            stop: Arc::new(AtomicBool::new(false)),
        };
        let pauses = log.clone();
        let on_pause = |reason: Option<String>| {
            let state = reason.map_or("resumed".to_owned(), |r| format!("paused ({r})"));
            pauses.lock().unwrap().push(state);
        };
        deliver(&mut out, &mut sinks, &mut written, &mode, on_pause).unwrap();
        let log = log.lock().unwrap();
        let reason = "paused (a sink failed, retrying every";
        assert_eq!(log[0], "a wrote 1");
        assert_eq!(log[1], "b failed");
        assert_eq!(
            log[2],
            format!("{reason} 100ms: cannot write lake/part-1.parquet: disk full)")
        );
        assert_eq!(log[3], "b failed");
        assert!(log[4].starts_with(&format!("{reason} 200ms")), "{}", log[4]);
        assert_eq!(log[5..], ["b wrote 1", "resumed"]);
        assert!(out.is_empty());
        assert_eq!(written[&RecordKind::DeadLetter], 1);
    }

    #[test]
    fn a_batch_run_fails_at_once_on_a_failing_sink() {
        let (mut sinks, log, mut out) = setup(1);
        let mut written = BTreeMap::new();
        let error = deliver(&mut out, &mut sinks, &mut written, &Mode::Once, |_| {}).unwrap_err();
        assert!(Report(&error).to_string().contains("disk full"), "{error}");
        assert_eq!(*log.lock().unwrap(), ["a wrote 1", "b failed"]);
        assert!(written.is_empty());
    }
}
