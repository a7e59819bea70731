//! The console sink: closed windows and alert changes as readable lines on standard output, like
//! Spark's console sink. For watching a pipeline by eye, not for machines (use `ndjson`).

use std::io::{BufWriter, Stdout, Write};

use super::interface::{Sink, SinkError};
use crate::clock::format_ms;
use crate::record::{AlertState, Record};

/// A `console` sink table: it has no settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {}

pub struct ConsoleSink {
    out: BufWriter<Stdout>,
}

impl ConsoleSink {
    pub fn new() -> Self {
        ConsoleSink {
            out: BufWriter::new(std::io::stdout()),
        }
    }
}

impl Default for ConsoleSink {
    fn default() -> Self {
        Self::new()
    }
}

fn line(record: &Record) -> Option<String> {
    Some(match record {
        Record::Window(w) => format!(
            "window {}/{} {:?} [{} .. {})  count {}  mean {:.4}  min {:.4}  max {:.4}  stddev {}",
            w.stream,
            w.series,
            w.kind,
            format_ms(w.window_start),
            format_ms(w.window_end),
            w.count,
            w.mean,
            w.min,
            w.max,
            w.stddev.map_or("-".to_owned(), |s| format!("{s:.4}"))
        ),
        Record::Alert(a) => format!(
            "ALERT {} {}/{} at {}  value {:.4}  expected {:.4} ± {:.4}  z {:+.2}  {:?} {:?}  \
             ({}{}){}",
            match a.state {
                AlertState::Open => "open    ",
                AlertState::Acknowledged => "acked   ",
                AlertState::Resolved => "resolved",
            },
            a.stream,
            a.series,
            format_ms(a.ts),
            a.value,
            a.expected,
            a.stddev,
            a.z,
            a.direction,
            a.severity,
            a.method.as_str(),
            a.probability
                .map_or(String::new(), |p| format!(", p {p:.1e}")),
            if a.ts == a.episode_start {
                String::new()
            } else {
                format!("  (episode since {})", format_ms(a.episode_start))
            }
        ),
        Record::Late(l) => format!(
            "late {}/{} at {}  {} ms behind the watermark  ({} partition {} offset {})",
            l.stream,
            l.series,
            format_ms(l.ts),
            l.lateness_ms,
            l.source,
            l.partition,
            l.offset
        ),
        Record::DeadLetter(d) => format!(
            "dead letter {} ({} partition {} offset {}): {}",
            d.stream, d.source, d.partition, d.offset, d.reason
        ),
        Record::Point(_) | Record::Join(_) => return None,
    })
}

impl Sink for ConsoleSink {
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        for text in records.iter().filter_map(line) {
            writeln!(self.out, "{text}").map_err(|source| SinkError::Io {
                path: "stdout".into(),
                source,
            })?;
        }
        Ok(())
    }

    fn flush(&mut self, _epoch: u64) -> Result<(), SinkError> {
        self.out.flush().map_err(|source| SinkError::Io {
            path: "stdout".into(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(format_ms(1_764_000_000_000), "2025-11-24T16:00:00Z");
        assert_eq!(format_ms(i64::MAX), i64::MAX.to_string());
    }
}
