//! `tidewatch bench`: engine throughput on a deterministic, generated workload.
//!
//! The workload is built in memory before the clock starts (see [`generate`]). The timed part is
//! everything a real event costs: decode from JSON bytes, dedup, watermark, a tumbling 1 m and a
//! sliding 1 m / 10 s window, and per-point SMA/EWMA/slope and the default anomaly detector.
//! It runs twice: on one shard, then as the pipeline runs a stream on a machine with cores to
//! spare (messages decoded a batch ahead on a thread of their own, the series split over
//! `engine.threads` keyed shards), and checks both give the same record counts, flagged
//! anomalies and alert ids (the tests compare the records themselves). It also checks that the detector flags every planted anomaly.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::engine::{Engine, Origin, StreamCounters};
use crate::event::{Decoder, Event};
use crate::generator::{Faults, Generator, Kind};
use crate::pipeline::decoding::{DecodeAhead, MessageBatch};
use crate::pipeline::BATCH;
use crate::record::{describe_counts, Record, RecordKind};
use crate::source::RawMessage;

/// The pipeline the benchmark runs (the file source path is never opened).
pub const BENCH_CONFIG: &str = r#"
[[streams]]
name = "bench"
source = { kind = "file", path = "unused.ndjson" }
fields = { time = "ts", series = "series", value = "value", id = "id" }
watermark = { lateness = "10s", idle_timeout = "30s" }
dedup = { horizon = "5m" }
windows = [
  { kind = "tumbling", size = "1m" },
  { kind = "sliding", size = "1m", slide = "10s" },
]
analytics = {}

[[sinks]]
kind = "ndjson"
path = "unused/"
"#;

/// Shape of the generated workload.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub events: usize,
    pub series: usize,
    pub seed: u64,
}

/// What the generator planted, to check the engine found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Planted {
    pub duplicates: u64,
    pub late: u64,
    pub anomalies: u64,
    /// `(series, event time)` of each planted anomaly.
    pub anomaly_points: Vec<(String, i64)>,
}

/// Event time of the first round of the generated data: 2023-11-14T22:13:20Z.
pub const WORKLOAD_START_MS: i64 = 1_700_000_000_000;

/// Generates the workload as NDJSON lines: one event per series per second of event time, up to
/// 5 s out of order, 1 % duplicates, 0.1 % events 30–60 s late, about ten +8σ anomalies. The
/// counts of what was planted follow the engine's rules (a re-sent late event is late).
pub fn generate(workload: Workload) -> (Vec<Vec<u8>>, Planted) {
    let series = workload.series.max(1);
    let faults = Faults {
        duplicate: 0.01,
        late: 0.001,
        anomaly: 10.0 / workload.events.max(1) as f64,
        max_disorder_ms: 5_000,
        late_by_ms: 30_000,
        anomaly_sigmas: 8.0,
    };
    let mut generator = Generator::new(series, workload.seed, faults);
    let mut lines = Vec::with_capacity(workload.events);
    let mut planted = Planted::default();
    let mut fresh = 0i64;
    let mut previous = Kind::Normal;
    while lines.len() < workload.events {
        let (round, slot) = (fresh / series as i64, fresh % series as i64);
        let now = WORKLOAD_START_MS + round * 1000 + slot * 1000 / series as i64;
        let event = generator.next_event(now);
        match event.kind {
            // A re-sent late event is late again (lateness is checked before dedup).
            Kind::Duplicate if previous == Kind::Late => planted.late += 1,
            Kind::Duplicate => planted.duplicates += 1,
            Kind::Late => planted.late += 1,
            Kind::Anomaly => {
                planted.anomalies += 1;
                planted
                    .anomaly_points
                    .push((event.series.clone(), event.ts));
            }
            Kind::Normal => {}
        }
        if event.kind != Kind::Duplicate {
            fresh += 1;
            previous = event.kind;
        }
        lines.push(event.line);
    }
    (lines, planted)
}

/// Measured figures of one run.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub events: usize,
    pub decode_only: Duration,
    /// The whole engine on one thread.
    pub engine: Duration,
    /// The same on `engine.threads` shards; `None` when that is 1.
    pub engine_ahead: Option<(Duration, usize)>,
    pub records: Vec<(RecordKind, u64)>,
    pub late: u64,
    pub duplicates: u64,
    pub planted: Planted,
    /// Planted anomalies whose point the detector marked anomalous.
    pub anomalies_flagged: u64,
    /// Alert episodes opened (distinct alert ids).
    pub alert_episodes: u64,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = |d: Duration| self.events as f64 / d.as_secs_f64();
        writeln!(f, "events:            {}", self.events)?;
        writeln!(
            f,
            "decode only:       {:>10.0} events/s ({:.3} s)",
            rate(self.decode_only),
            self.decode_only.as_secs_f64()
        )?;
        writeln!(
            f,
            "whole engine:      {:>10.0} events/s ({:.3} s, one shard)",
            rate(self.engine),
            self.engine.as_secs_f64()
        )?;
        if let Some((ahead, threads)) = self.engine_ahead {
            writeln!(
                f,
                "on {threads} shards:       {:>10.0} events/s ({:.3} s, engine.threads = {threads}, \
                 decoding a batch ahead on a thread of its own)",
                rate(ahead),
                ahead.as_secs_f64()
            )?;
        }
        writeln!(
            f,
            "late:              {} (planted {})",
            self.late, self.planted.late
        )?;
        writeln!(
            f,
            "duplicates:        {} (planted {})",
            self.duplicates, self.planted.duplicates
        )?;
        writeln!(
            f,
            "anomalies:         {} of {} planted flagged, {} alert episodes",
            self.anomalies_flagged, self.planted.anomalies, self.alert_episodes
        )?;
        write!(
            f,
            "records:           {}",
            describe_counts(self.records.iter().copied())
        )
    }
}

/// Runs the benchmark: generation (untimed), a decode-only pass, then the whole engine.
pub fn run(workload: Workload) -> BenchReport {
    let config = Config::from_toml_str(BENCH_CONFIG).expect("the built-in bench config is valid");
    let decoder = Decoder::new(config.streams[0].fields.clone());
    let (lines, planted) = generate(workload);

    let started = Instant::now();
    let mut decoded = 0usize;
    for line in &lines {
        decoded += usize::from(decoder.decode(line).is_ok());
    }
    let decode_only = started.elapsed();
    assert_eq!(decoded, lines.len(), "generated lines must all decode");

    let one = run_engine(&config, &decoder, &lines, 1);
    let threads = config.engine.threads();
    let ahead = (threads > 1).then(|| {
        let ahead = run_engine(&config, &decoder, &lines, threads);
        // The tests compare the records themselves; here what the report shows.
        assert!(
            (ahead.counts, &ahead.flagged, &ahead.alert_ids)
                == (one.counts, &one.flagged, &one.alert_ids),
            "{threads} shards gave other records than one"
        );
        ahead.elapsed
    });
    let Observed {
        elapsed: engine_time,
        counters,
        counts,
        mut flagged,
        mut alert_ids,
    } = one;
    flagged.sort_unstable();
    let anomalies_flagged = planted
        .anomaly_points
        .iter()
        .filter(|(series, ts)| {
            flagged
                .binary_search_by(|(s, t)| (&**s, *t).cmp(&(series.as_str(), *ts)))
                .is_ok()
        })
        .count() as u64;
    alert_ids.sort_unstable();
    alert_ids.dedup();

    BenchReport {
        events: lines.len(),
        decode_only,
        engine: engine_time,
        engine_ahead: ahead.map(|elapsed| (elapsed, threads)),
        records: RecordKind::ALL
            .iter()
            .map(|&kind| (kind, counts[kind as usize]))
            .collect(),
        late: counters.late,
        duplicates: counters.duplicates,
        planted,
        anomalies_flagged,
        alert_episodes: alert_ids.len() as u64,
    }
}

/// What one timed pass of the engine saw.
struct Observed {
    elapsed: Duration,
    counters: StreamCounters,
    counts: [u64; RecordKind::ALL.len()],
    flagged: Vec<(std::sync::Arc<str>, i64)>,
    alert_ids: Vec<String>,
}

/// Hands the event at `offset` (if it decoded) to the engine.
fn process(engine: &mut Engine, offset: usize, event: Option<Event<'_>>, out: &mut Vec<Record>) {
    let origin = Origin {
        source: "bench",
        split: 0,
        partition: 0,
        offset: offset as u64,
    };
    if let Some(event) = event {
        let _ = engine.process(0, &event, origin, 0, out);
    }
}

/// Hands a batch the decoding thread gave back to the engine, in order.
fn process_batch(engine: &mut Engine, decoded: &MessageBatch, out: &mut Vec<Record>) {
    for message in decoded.iter() {
        process(engine, message.raw.offset as usize, message.event.ok(), out);
    }
}

/// Batches of messages per round of the engine, as the pipeline reads them at most.
const ROUND_BATCHES: usize = 8;

/// Runs the engine over `lines`, timed, on `threads` shards: as the pipeline does, a round of
/// up to eight batches at a time, each round run by the shards while the next is read, and
/// with more than one thread the messages decoded a batch ahead on a thread of their own.
fn run_engine(config: &Config, decoder: &Decoder, lines: &[Vec<u8>], threads: usize) -> Observed {
    let mut engine = Engine::new(config.engine_plan().with_threads(threads));
    let mut out: Vec<Record> = Vec::with_capacity(1 << 14);
    let mut counts = [0u64; RecordKind::ALL.len()];
    // Checked against what was planted once the clock has stopped.
    let mut flagged: Vec<(std::sync::Arc<str>, i64)> = Vec::new();
    let mut alert_ids: Vec<String> = Vec::new();
    let mut count = |out: &mut Vec<Record>| {
        for record in out.drain(..) {
            counts[record.kind() as usize] += 1;
            match record {
                Record::Point(p) if p.anomaly => flagged.push((p.series, p.ts)),
                Record::Alert(a) => alert_ids.push(a.id),
                _ => {}
            }
        }
    };
    let started = Instant::now();
    if threads == 1 {
        for (offset, line) in lines.iter().enumerate() {
            process(&mut engine, offset, decoder.decode(line).ok(), &mut out);
            if offset % (BATCH * ROUND_BATCHES) == BATCH * ROUND_BATCHES - 1 {
                engine.end_round(&mut out);
                count(&mut out);
            }
        }
    } else {
        let ahead = DecodeAhead::spawn(decoder.clone(), "bench").expect("a decoding thread");
        let mut spare: Vec<MessageBatch> = Vec::new();
        let mut in_flight = false;
        for (chunk, batch_lines) in lines.chunks(BATCH).enumerate() {
            let mut batch = spare.pop().unwrap_or_default();
            batch.clear();
            for (i, line) in batch_lines.iter().enumerate() {
                batch.push(&RawMessage {
                    source: "bench",
                    split: 0,
                    partition: 0,
                    offset: (chunk * BATCH + i) as u64,
                    payload: line,
                });
            }
            ahead.send(batch).expect("the decoding thread runs");
            if in_flight {
                let decoded = ahead.recv().expect("the decoding thread runs");
                process_batch(&mut engine, &decoded, &mut out);
                spare.push(decoded);
                if chunk % ROUND_BATCHES == 0 {
                    engine.end_round(&mut out);
                    count(&mut out);
                }
            }
            in_flight = true;
        }
        if in_flight {
            let decoded = ahead.recv().expect("the decoding thread runs");
            process_batch(&mut engine, &decoded, &mut out);
        }
    }
    engine.finish(&mut out);
    count(&mut out);
    let elapsed = started.elapsed();
    Observed {
        elapsed,
        counters: engine.counters(0).unwrap_or_default(),
        counts,
        flagged,
        alert_ids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_workload_finds_what_was_planted() {
        let report = run(Workload {
            events: 60_000,
            series: 50,
            seed: 7,
        });
        assert_eq!(report.late, report.planted.late);
        assert_eq!(report.duplicates, report.planted.duplicates);
        assert!(report.planted.late > 0 && report.planted.duplicates > 0);
        let points = report
            .records
            .iter()
            .find(|(k, _)| *k == RecordKind::Point)
            .map(|(_, n)| *n);
        let unique = 60_000 - report.planted.duplicates - report.planted.late;
        assert_eq!(points, Some(unique));
        // The default detector flags the planted anomalies. A few may stay inside what their
        // series do when its own deviations swing widely (the generator's 10-minute cycle
        // against the baseline); the full benchmark flags all of its own, and the demo test
        // checks every one of an hour of the demo.
        assert!(report.planted.anomalies >= 5, "{:?}", report.planted);
        assert!(
            report.anomalies_flagged * 10 >= report.planted.anomalies * 8,
            "{} of {} flagged",
            report.anomalies_flagged,
            report.planted.anomalies
        );
    }
}
