//! `/status`: per stream and partition where reading stands, the engine and checkpoints,
//! recent late events and dead letters.

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse};

use super::format::{byte_size, millis, seconds};
use super::overview::StreamRow;
use super::viewer::Viewer;
use crate::clock::{format_ms, now_ms};
use crate::pipeline::PipelineStatus;
use crate::web::error::PageError;
use crate::web::state::AppState;

#[derive(Template)]
#[template(path = "status.html")]
pub struct StatusPage {
    pub streams: Vec<StreamStatus>,
    pub late: Vec<LateRow>,
    pub dead_letters: Vec<DeadLetterRow>,
    pub open_alerts: usize,
    pub viewer: Viewer,
    /// Why the pipeline is paused; empty when it runs.
    pub paused: String,
    pub engine: EngineStatus,
}

/// Checkpoints, shards and sinks as the status page shows them (static/js/streams.js
/// `applyEngine` writes the same after a live update).
pub struct EngineStatus {
    pub checkpoint_age: String,
    pub checkpoint_took: String,
    pub checkpoint_pause: String,
    pub checkpoint_bytes: String,
    pub checkpoints: u64,
    pub shards: Vec<(u64, String)>,
    /// Kind, writes, mean write time.
    pub sinks: Vec<(String, u64, String)>,
}

impl EngineStatus {
    fn of(status: &PipelineStatus, now: i64) -> EngineStatus {
        let c = &status.checkpoints;
        let dash = || "–".to_string();
        let when = |ms: u64| c.written_at.map_or_else(dash, |_| millis(ms as f64));
        EngineStatus {
            checkpoint_age: c
                .written_at
                .map_or_else(dash, |at| format!("{} ago", seconds(now - at))),
            checkpoint_took: when(c.took_ms),
            checkpoint_pause: when(c.longest_pause_ms),
            checkpoint_bytes: c.written_at.map_or_else(dash, |_| byte_size(c.bytes)),
            checkpoints: c.count,
            shards: status
                .shards
                .iter()
                .map(|s| (s.queued, seconds(s.busy_ms as i64)))
                .collect(),
            sinks: status
                .sinks
                .iter()
                .map(|s| {
                    let mean = match s.writes {
                        0 => dash(),
                        n => millis(s.write_us as f64 / n as f64 / 1000.0),
                    };
                    (s.kind.clone(), s.writes, mean)
                })
                .collect(),
        }
    }
}

pub struct StreamStatus {
    pub row: StreamRow,
    pub partitions: Vec<PartitionRow>,
}

pub struct PartitionRow {
    pub split: u32,
    pub source: String,
    pub partition: u32,
    pub next_offset: String,
    pub lag: String,
    pub watermark: String,
    /// `active`, `idle`, or `waiting` (assigned, nothing read yet: holds the watermark back).
    pub state: &'static str,
}

pub struct LateRow {
    pub stream: String,
    pub series: String,
    pub time: String,
    pub watermark: String,
    pub late_by: String,
    pub source: String,
    pub partition: u32,
    pub offset: u64,
}

pub struct DeadLetterRow {
    pub stream: String,
    pub source: String,
    pub partition: u32,
    pub offset: u64,
    pub reason: String,
    pub payload: String,
}

/// `/status`: per stream and partition — offsets, lag, watermark, idle or not — and the recent
/// late events and dead letters with their reasons.
pub async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, PageError> {
    let viewer = Viewer::of(&state, &headers);
    let page = {
        let status = state.live.status().clone();
        let dashboard = state.live.read();
        let now = now_ms();
        let dash = || "–".to_string();
        StatusPage {
            streams: status
                .streams
                .iter()
                .map(|s| StreamStatus {
                    row: StreamRow::of(s, now),
                    partitions: s
                        .partitions
                        .iter()
                        .map(|p| PartitionRow {
                            split: p.split,
                            source: if p.source.is_empty() {
                                format!("split {}", p.split)
                            } else {
                                p.source.clone()
                            },
                            partition: p.partition,
                            next_offset: p.next_offset.map_or_else(dash, |o| o.to_string()),
                            lag: p.lag.map_or_else(dash, |l| l.to_string()),
                            watermark: p.watermark.map_or_else(dash, format_ms),
                            state: match (p.idle, p.watermark) {
                                (true, _) => "idle",
                                (false, None) => "waiting",
                                (false, Some(_)) => "active",
                            },
                        })
                        .collect(),
                })
                .collect(),
            late: dashboard
                .recent_late
                .iter()
                .rev()
                .map(|l| LateRow {
                    stream: l.stream.to_string(),
                    series: l.series.to_string(),
                    time: format_ms(l.ts),
                    watermark: format_ms(l.watermark),
                    late_by: seconds(l.lateness_ms),
                    source: l.source.to_string(),
                    partition: l.partition,
                    offset: l.offset,
                })
                .collect(),
            dead_letters: dashboard
                .recent_dead_letters
                .iter()
                .rev()
                .map(|d| DeadLetterRow {
                    stream: d.stream.to_string(),
                    source: d.source.to_string(),
                    partition: d.partition,
                    offset: d.offset,
                    reason: d.reason.clone(),
                    payload: d.payload.clone(),
                })
                .collect(),
            open_alerts: dashboard.open_alerts(),
            engine: EngineStatus::of(&status, now),
            paused: status.paused.unwrap_or_default(),
            viewer,
        }
    };
    Ok(Html(page.render()?))
}
