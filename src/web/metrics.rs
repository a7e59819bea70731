//! `GET /metrics`: the pipeline's counters in the Prometheus text exposition format.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::state::AppState;
use crate::pipeline::{PipelineStatus, StreamProgress};

/// Every metric: name, type and help, in the order they are declared.
const FAMILIES: [(&str, &str, &str); 25] = [
    (
        "tidewatch_messages_total",
        "counter",
        "Messages read, per stream.",
    ),
    (
        "tidewatch_events_total",
        "counter",
        "Events accepted by the engine, per stream.",
    ),
    (
        "tidewatch_late_events_total",
        "counter",
        "Events behind the watermark, per stream.",
    ),
    (
        "tidewatch_duplicates_total",
        "counter",
        "Duplicate events dropped, per stream.",
    ),
    (
        "tidewatch_dead_letters_total",
        "counter",
        "Inputs that could not be decoded, per stream.",
    ),
    (
        "tidewatch_source_up",
        "gauge",
        "1 while the stream's source reads, 0 while it cannot (e.g. every broker down).",
    ),
    (
        "tidewatch_watermark_seconds",
        "gauge",
        "Event-time watermark, Unix seconds, per stream.",
    ),
    (
        "tidewatch_records_total",
        "counter",
        "Records written, per kind.",
    ),
    (
        "tidewatch_consumer_lag",
        "gauge",
        "Messages behind the newest offset, per source partition.",
    ),
    (
        "tidewatch_partition_watermark_seconds",
        "gauge",
        "Watermark of a source partition (its max event time - lateness), Unix seconds.",
    ),
    (
        "tidewatch_partition_idle",
        "gauge",
        "1 when the partition is idle and not holding the watermark back.",
    ),
    (
        "tidewatch_pipeline_paused",
        "gauge",
        "1 while the pipeline, after a failed write, flush, checkpoint or commit, waits to replay from its last checkpoint.",
    ),
    ("tidewatch_open_alerts", "gauge", "Alerts open now."),
    ("tidewatch_series", "gauge", "Series in the live view."),
    (
        "tidewatch_live_memory_bytes",
        "gauge",
        "Estimated bytes the live view's series hold (bounded by live.max_memory).",
    ),
    (
        "tidewatch_live_evicted_total",
        "counter",
        "Series that left the live view, idle or over live.max_memory (they return with their next point).",
    ),
    (
        "tidewatch_events_per_second",
        "gauge",
        "Accepted events per second since start.",
    ),
    (
        "tidewatch_checkpoints_total",
        "counter",
        "Checkpoints stored since start.",
    ),
    (
        "tidewatch_checkpoint_age_seconds",
        "gauge",
        "Time since the last stored checkpoint was taken.",
    ),
    (
        "tidewatch_checkpoint_duration_seconds",
        "gauge",
        "The last checkpoint, from taking it to its last part stored (intake goes on meanwhile).",
    ),
    (
        "tidewatch_checkpoint_pause_seconds",
        "gauge",
        "The longest the last checkpoint held the pipeline at once.",
    ),
    (
        "tidewatch_checkpoint_bytes",
        "gauge",
        "Engine state bytes the last checkpoint wrote.",
    ),
    (
        "tidewatch_shard_queued_items",
        "gauge",
        "Events (and other items) sent to an engine shard and not yet run.",
    ),
    (
        "tidewatch_shard_busy_seconds_total",
        "counter",
        "Time an engine shard spent running rounds.",
    ),
    (
        "tidewatch_sink_write_seconds",
        "summary",
        "Time writes of records to a sink took (sink: its index in the config).",
    ),
];

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let events_per_second = state.live.events_per_second();
    let status = state.live.status().clone();
    let mut text = String::new();
    for (name, kind, help) in FAMILIES {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    for stream in &status.streams {
        write_stream(&mut text, stream);
    }
    let dashboard = state.live.read();
    for (kind, n) in &dashboard.records {
        let _ = writeln!(text, "tidewatch_records_total{{kind=\"{kind}\"}} {n}");
    }
    let paused = u8::from(status.paused.is_some());
    let _ = writeln!(text, "tidewatch_pipeline_paused {paused}");
    let _ = writeln!(text, "tidewatch_open_alerts {}", dashboard.open_alerts());
    let _ = writeln!(text, "tidewatch_series {}", dashboard.series.len());
    let _ = writeln!(
        text,
        "tidewatch_live_memory_bytes {}",
        dashboard.memory_bytes()
    );
    let _ = writeln!(
        text,
        "tidewatch_live_evicted_total {}",
        dashboard.evicted_total
    );
    let _ = writeln!(text, "tidewatch_events_per_second {events_per_second:.3}");
    drop(dashboard);
    write_engine(&mut text, &status, crate::clock::now_ms());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// One stream's counters, and its partitions'.
fn write_stream(text: &mut String, s: &StreamProgress) {
    let stream = escape_label(&s.name);
    for (name, value) in [
        ("tidewatch_messages_total", s.messages),
        ("tidewatch_events_total", s.accepted),
        ("tidewatch_late_events_total", s.late),
        ("tidewatch_duplicates_total", s.duplicates),
        ("tidewatch_dead_letters_total", s.dead_letters),
    ] {
        let _ = writeln!(text, "{name}{{stream=\"{stream}\"}} {value}");
    }
    let up = u8::from(s.source_error.is_none());
    let _ = writeln!(text, "tidewatch_source_up{{stream=\"{stream}\"}} {up}");
    if let Some(watermark) = s.watermark {
        let _ = writeln!(
            text,
            "tidewatch_watermark_seconds{{stream=\"{stream}\"}} {}",
            seconds(watermark)
        );
    }
    for p in &s.partitions {
        let labels = format!(
            "stream=\"{stream}\",source=\"{}\",partition=\"{}\"",
            escape_label(&p.source),
            p.partition
        );
        if let Some(lag) = p.lag {
            let _ = writeln!(text, "tidewatch_consumer_lag{{{labels}}} {lag}");
        }
        if let Some(watermark) = p.watermark {
            let _ = writeln!(
                text,
                "tidewatch_partition_watermark_seconds{{{labels}}} {}",
                seconds(watermark)
            );
        }
        let idle = u8::from(p.idle);
        let _ = writeln!(text, "tidewatch_partition_idle{{{labels}}} {idle}");
    }
}

/// Checkpoints, shards and sinks.
fn write_engine(text: &mut String, status: &PipelineStatus, now: i64) {
    let checkpoints = &status.checkpoints;
    let _ = writeln!(text, "tidewatch_checkpoints_total {}", checkpoints.count);
    if let Some(written_at) = checkpoints.written_at {
        let age = seconds((now - written_at).max(0));
        let _ = writeln!(text, "tidewatch_checkpoint_age_seconds {age}");
        for (name, ms) in [
            ("tidewatch_checkpoint_duration_seconds", checkpoints.took_ms),
            (
                "tidewatch_checkpoint_pause_seconds",
                checkpoints.longest_pause_ms,
            ),
        ] {
            let _ = writeln!(text, "{name} {}", seconds(ms as i64));
        }
        let _ = writeln!(text, "tidewatch_checkpoint_bytes {}", checkpoints.bytes);
    }
    for (i, shard) in status.shards.iter().enumerate() {
        let _ = writeln!(
            text,
            "tidewatch_shard_queued_items{{shard=\"{i}\"}} {}\n\
             tidewatch_shard_busy_seconds_total{{shard=\"{i}\"}} {}",
            shard.queued,
            seconds(shard.busy_ms as i64)
        );
    }
    for (i, sink) in status.sinks.iter().enumerate() {
        let labels = format!("sink=\"{i}\",kind=\"{}\"", escape_label(&sink.kind));
        let _ = writeln!(
            text,
            "tidewatch_sink_write_seconds_sum{{{labels}}} {:.6}\n\
             tidewatch_sink_write_seconds_count{{{labels}}} {}",
            sink.write_us as f64 / 1e6,
            sink.writes
        );
    }
}

/// Epoch milliseconds as Prometheus' base unit, exactly (no float rounding of the digits).
fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    format!("{sign}{}.{:03}", ms / 1000, ms % 1000)
}

/// Label values escape backslash, double quote and newline (Prometheus text format).
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_shards_and_sinks_are_written_in_base_units() {
        use crate::pipeline::{CheckpointProgress, ShardProgress, SinkProgress};
        let mut status = PipelineStatus::default();
        let mut text = String::new();
        write_engine(&mut text, &status, 10_000);
        assert_eq!(
            text, "tidewatch_checkpoints_total 0\n",
            "no figures before the first"
        );
        status.checkpoints = CheckpointProgress {
            count: 3,
            written_at: Some(7_500),
            took_ms: 140,
            longest_pause_ms: 21,
            bytes: 2_000_000,
        };
        status.shards = vec![ShardProgress {
            queued: 8_192,
            busy_ms: 61_250,
        }];
        status.sinks = vec![SinkProgress {
            kind: "db".into(),
            writes: 12,
            write_us: 1_500_000,
        }];
        text.clear();
        write_engine(&mut text, &status, 10_000);
        for line in [
            "tidewatch_checkpoints_total 3",
            "tidewatch_checkpoint_age_seconds 2.500",
            "tidewatch_checkpoint_duration_seconds 0.140",
            "tidewatch_checkpoint_pause_seconds 0.021",
            "tidewatch_checkpoint_bytes 2000000",
            "tidewatch_shard_queued_items{shard=\"0\"} 8192",
            "tidewatch_shard_busy_seconds_total{shard=\"0\"} 61.250",
            "tidewatch_sink_write_seconds_sum{sink=\"0\",kind=\"db\"} 1.500000",
            "tidewatch_sink_write_seconds_count{sink=\"0\",kind=\"db\"} 12",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn milliseconds_become_exact_seconds() {
        assert_eq!(seconds(1_764_000_893_486), "1764000893.486");
        assert_eq!(seconds(5), "0.005");
        assert_eq!(seconds(-1_500), "-1.500");
    }
}
