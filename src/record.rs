//! Output records: the public contract every sink writes (see ARCHITECTURE.md, "Output records").
//!
//! Field names here are the NDJSON/Kafka field names and the DB/Parquet column names, so renaming
//! one is a breaking change. Times are epoch milliseconds. Stream and series names are `Arc<str>`
//! because the engine emits a point record per event and must not allocate a label for each.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::names::named;

/// One output of the engine or of decoding, routed by kind to the sinks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    Window(WindowRecord),
    Point(PointRecord),
    /// Boxed: alerts are rare and large, and every record is as big as the largest kind (the
    /// engine writes one point record per event).
    Alert(Box<AlertRecord>),
    Late(LateRecord),
    DeadLetter(DeadLetterRecord),
    Join(JoinRecord),
}

impl Record {
    /// The record kind as a plain name: the NDJSON file stem and, later, the table name.
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Window(_) => RecordKind::Window,
            Record::Point(_) => RecordKind::Point,
            Record::Alert(_) => RecordKind::Alert,
            Record::Late(_) => RecordKind::Late,
            Record::DeadLetter(_) => RecordKind::DeadLetter,
            Record::Join(_) => RecordKind::Join,
        }
    }
}

named! {
    /// The kinds of record, in the order sinks list them. The name is a record's `record` tag
    /// (`{"record": "window", ...}`) and its Parquet directory.
    #[derive(PartialOrd, Ord)]
    pub enum RecordKind as "record kind" {
        Window = "window",
        Point = "point",
        Alert = "alert",
        Late = "late",
        DeadLetter = "dead_letter",
        Join = "join",
    }
}

impl RecordKind {
    /// The kind whose [`collection`](Self::collection) is `name`.
    pub fn from_collection(name: &str) -> Option<RecordKind> {
        RecordKind::ALL
            .iter()
            .copied()
            .find(|k| k.collection() == name)
    }

    /// Name of a collection of such records: NDJSON file stem (`windows.ndjson`), key of the
    /// Kafka sink's `topics` table, the dashboard's record counters.
    pub const fn collection(self) -> &'static str {
        match self {
            RecordKind::Window => "windows",
            RecordKind::Point => "points",
            RecordKind::Alert => "alerts",
            RecordKind::Late => "late",
            RecordKind::DeadLetter => "dead_letters",
            RecordKind::Join => "joins",
        }
    }
}

/// Record counts for a summary line: `windows 3, points 10, ...`.
pub fn describe_counts(counts: impl IntoIterator<Item = (RecordKind, u64)>) -> String {
    counts
        .into_iter()
        .map(|(kind, n)| format!("{} {n}", kind.collection()))
        .collect::<Vec<_>>()
        .join(", ")
}

named! {
    pub enum WindowKind as "window kind" {
        Tumbling = "tumbling",
        Sliding = "sliding",
        Session = "session",
        /// All time, updated as it goes (Spark's complete mode).
        Global = "global",
    }
}

/// The aggregate of one closed window of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRecord {
    pub stream: Arc<str>,
    pub series: Arc<str>,
    pub kind: WindowKind,
    pub window_start: i64,
    pub window_end: i64,
    pub count: u64,
    pub sum: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// Sample standard deviation; `null` for a window of one event.
    pub stddev: Option<f64>,
    /// Value of the earliest event by event time (ties: first to arrive).
    pub first: f64,
    /// Value of the latest event by event time (ties: last to arrive).
    pub last: f64,
    /// Always true today: windows are emitted once, when the watermark closes them.
    #[serde(rename = "final")]
    pub is_final: bool,
}

named! {
    pub enum Trend as "trend" {
        Rising = "rising",
        Falling = "falling",
        Flat = "flat",
    }
}

/// Per-event analytics, computed in event-time order once the watermark passes the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointRecord {
    pub stream: Arc<str>,
    pub series: Arc<str>,
    pub ts: i64,
    pub value: f64,
    pub sma: f64,
    pub ewma: f64,
    /// Least-squares slope in units per second; `null` with fewer than two distinct times.
    pub slope: Option<f64>,
    pub trend: Trend,
    /// `null` when the baseline is too small or has zero spread.
    pub z: Option<f64>,
    pub anomaly: bool,
    /// Expected value (the model's expectation plus the baseline's centre) and the spread the
    /// z-score used (`null` with `z`).
    pub expected: Option<f64>,
    pub spread: Option<f64>,
    /// The band of values that would not have been anomalous at this point: the band the
    /// detector used (`null` while it learns the series, or when no single value could have
    /// been anomalous here).
    pub lower: Option<f64>,
    pub upper: Option<f64>,
}

named! {
    /// Which side of the expectation an alert's point lies on.
    pub enum Direction as "direction" {
        High = "high",
        Low = "low",
    }
}

named! {
    pub enum Severity as "severity" {
        Warning = "warning",
        Critical = "critical",
    }
}

named! {
    pub enum AlertState as "alert state" {
        Open = "open",
        Acknowledged = "acknowledged",
        Resolved = "resolved",
    }
}

named! {
    /// What decided that a point was anomalous.
    pub enum AlertMethod as "alert method" {
        /// The anomaly likelihood of the recent z-scores fell below `zscore.probability`.
        Likelihood = "likelihood",
        /// One point alone was far beyond anything the series' own deviations produce.
        Spike = "spike",
        /// `|z|` reached `zscore.threshold` (methods `robust` and `mean`).
        Threshold = "threshold",
    }
}

named! {
    /// A person's judgement of an alert, recorded with its acknowledgement.
    pub enum Verdict as "verdict" {
        Real = "real",
        FalseAlarm = "false_alarm",
    }
}

/// One anomaly episode of a series. Emitted when it opens, each time a more extreme point joins
/// it, when it resolves and when it reopens: consumers upsert on `id` (the last record of an id
/// is its state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Stable across replays: derived from (stream, series, episode_start).
    pub id: String,
    pub stream: Arc<str>,
    pub series: Arc<str>,
    /// Time of the most extreme point of the episode so far.
    pub ts: i64,
    pub value: f64,
    /// What the series was expected to do at that point: the model's expectation plus the
    /// baseline's centre.
    pub expected: f64,
    /// Spread of the baseline (MAD × 1.4826 or standard deviation, with its floor).
    pub stddev: f64,
    /// The band of values that would not have been anomalous there (`null`: unbounded).
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub z: f64,
    /// How far past normal: the likelihood score (long-run standard deviations of the recent
    /// deviation), or |z| for a threshold alert. `null` for alerts stored before it existed.
    pub score: Option<f64>,
    /// The tail probability of that score.
    pub probability: Option<f64>,
    pub method: AlertMethod,
    /// What the expectation followed: `"flat"` (the median of the series' recent points) or a
    /// seasonal period (`"1d"`, `"1w"`). `null` for alerts stored before it existed.
    pub expectation: Option<String>,
    pub direction: Direction,
    pub severity: Severity,
    pub episode_start: i64,
    pub state: AlertState,
    pub acked_by: Option<String>,
    pub acked_at: Option<i64>,
    pub note: Option<String>,
    /// Set by whoever acknowledged it: was it a real problem?
    pub verdict: Option<Verdict>,
}

/// An event that arrived behind the watermark: it went to no window and no analytics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LateRecord {
    pub stream: Arc<str>,
    pub series: Arc<str>,
    pub ts: i64,
    pub watermark: i64,
    pub lateness_ms: i64,
    pub source: Arc<str>,
    pub partition: u32,
    pub offset: u64,
}

/// Input that could not become an event, kept with the reason so nothing is lost silently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    pub stream: Arc<str>,
    pub source: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    pub reason: String,
    /// The raw input, lossily decoded as UTF-8 and cut at [`DEAD_LETTER_PAYLOAD_LIMIT`] bytes.
    pub payload: String,
}

/// How much of a bad payload a dead letter keeps: enough to see what went wrong, bounded so a
/// flood of huge bad messages cannot fill the store.
pub const DEAD_LETTER_PAYLOAD_LIMIT: usize = 1024;

impl DeadLetterRecord {
    pub fn new(
        stream: Arc<str>,
        source: Arc<str>,
        partition: u32,
        offset: u64,
        reason: String,
        payload: &[u8],
    ) -> Self {
        let cut = &payload[..payload.len().min(DEAD_LETTER_PAYLOAD_LIMIT)];
        let mut text = String::from_utf8_lossy(cut).into_owned();
        if payload.len() > DEAD_LETTER_PAYLOAD_LIMIT {
            text.push('…');
        }
        DeadLetterRecord {
            stream,
            source,
            partition,
            offset,
            reason,
            payload: text,
        }
    }
}

/// One result of a stream-stream interval join. The right side is `null` for a left-outer row
/// whose left event found no match before the watermark passed `left_ts + within`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinRecord {
    pub join: Arc<str>,
    pub key: Arc<str>,
    pub left_stream: Arc<str>,
    pub right_stream: Arc<str>,
    pub left_ts: i64,
    pub left_value: f64,
    pub left_id: Option<Arc<str>>,
    pub right_ts: Option<i64>,
    pub right_value: Option<f64>,
    pub right_id: Option<Arc<str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_payload_is_cut_on_bytes_and_marked() {
        let long = vec![b'x'; DEAD_LETTER_PAYLOAD_LIMIT + 10];
        let dl = DeadLetterRecord::new("s".into(), "f".into(), 0, 1, "bad".into(), &long);
        assert_eq!(dl.payload.chars().count(), DEAD_LETTER_PAYLOAD_LIMIT + 1);
        assert!(dl.payload.ends_with('…'));
        let short = DeadLetterRecord::new("s".into(), "f".into(), 0, 1, "bad".into(), b"\xff{");
        assert_eq!(short.payload, "\u{fffd}{");
    }

    #[test]
    fn window_record_uses_contract_field_names() {
        let rec = WindowRecord {
            stream: "s".into(),
            series: "a".into(),
            kind: WindowKind::Tumbling,
            window_start: 0,
            window_end: 60_000,
            count: 1,
            sum: 2.0,
            mean: 2.0,
            min: 2.0,
            max: 2.0,
            stddev: None,
            first: 2.0,
            last: 2.0,
            is_final: true,
        };
        let json = serde_json::to_value(&rec).unwrap();
        assert_eq!(json["final"], true);
        assert_eq!(json["kind"], "tumbling");
        assert!(json["stddev"].is_null());
    }
}
