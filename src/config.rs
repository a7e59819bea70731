//! Pipeline configuration: the TOML file a user writes, validated once into typed values.
//!
//! Two layers, like ripgrep's low/high args: `raw` mirrors the file (serde, unknown keys
//! rejected) and [`Config`] holds what the rest of the program uses (durations in milliseconds,
//! checked ranges, cross-references resolved). Every error names the key it is about, as a path
//! such as `streams[0].windows[1].slide`, so `tidewatch check-config` can point at the line.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::event::{FieldMapping, TimeFormat};
use crate::record::RecordKind;

/// Longest duration any setting accepts: a year. Keeps every `time + duration` far from overflow.
const MAX_DURATION_MS: i64 = 366 * 24 * 3600 * 1000;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or a key has the wrong shape; `key` is empty for syntax errors.
    #[error("{}{message}", key_prefix(key))]
    Parse { key: String, message: String },
    /// The file parsed, but a value is not acceptable.
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

/// A stream whose partitions a consumer group moves between instances hands its state over
/// through the checkpoint store, so it needs a `db` sink; the Parquet sink's exactly-once files
/// belong to one instance's checkpoints, which a group does not have.
fn check_group_sinks(streams: &[StreamConfig], sinks: &[SinkConfig]) -> Result<(), ConfigError> {
    let Some(index) = streams.iter().position(StreamConfig::is_group_assigned) else {
        return Ok(());
    };
    if !sinks.iter().any(|s| matches!(s, SinkConfig::Db { .. })) {
        return Err(ConfigError::invalid(
            format!("streams[{index}].source.assignment"),
            "\"group\" needs a db sink: partition state moves between instances through its \
             checkpoints table (PostgreSQL for instances on several hosts)",
        ));
    }
    if let Some(parquet) = sinks
        .iter()
        .position(|s| matches!(s, SinkConfig::Parquet { .. }))
    {
        return Err(ConfigError::invalid(
            format!("sinks[{parquet}]"),
            format!(
                "the parquet sink cannot be used with assignment = \"group\" (streams[{index}]) \
                 yet: its files are exactly-once per instance, not per partition; a pipeline \
                 with a lake needs assignment = \"static\" (or partitions = [...] per instance)"
            ),
        ));
    }
    Ok(())
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() || key == "." {
        String::new()
    } else {
        format!("{key}: ")
    }
}

impl ConfigError {
    fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The pipeline `tidewatch` serves when given no command: the demo generator into SQLite
/// (`./tidewatch.db`), shown on the dashboard.
pub const DEFAULT_PIPELINE: &str = r#"
[[streams]]
name = "demo"
source = { kind = "demo", rate = 50, series = 6 }
fields = { time = "ts", series = "series", value = "value", id = "id" }
watermark = { lateness = "6s", idle_timeout = "30s" }
dedup = { horizon = "5m" }
windows = [{ kind = "tumbling", size = "1m" }]
analytics = {}

[[sinks]]
kind = "db"
url = "sqlite://tidewatch.db"
"#;

/// A validated pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub streams: Vec<StreamConfig>,
    pub joins: Vec<JoinConfig>,
    pub sinks: Vec<SinkConfig>,
    pub checkpoint: CheckpointConfig,
    pub auth: AuthConfig,
}

/// Who may use the dashboard (`serve`); the token may also come from `TIDEWATCH_AUTH_TOKEN`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// What acknowledging needs (login form or `Authorization: Bearer`).
    pub token: Option<String>,
    /// Reading (pages, API, WebSocket, metrics) needs it too.
    pub read: bool,
}

/// When and under which name checkpoints are written (to the first `db` sink).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointConfig {
    pub interval_ms: i64,
    /// Checkpoint row name: two pipelines sharing a database need different names.
    pub pipeline: String,
}

impl StreamConfig {
    /// Whether a consumer group assigns this stream's partitions (state per partition).
    pub fn is_group_assigned(&self) -> bool {
        matches!(&self.source, SourceConfig::Kafka(k) if k.assignment == Assignment::Group)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    pub name: String,
    pub source: SourceConfig,
    pub fields: FieldMapping,
    pub watermark: WatermarkConfig,
    pub dedup: Option<DedupConfig>,
    pub windows: Vec<WindowSpec>,
    pub analytics: Option<AnalyticsConfig>,
    /// Most distinct series the stream tracks; events of further series become dead letters.
    pub max_series: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    /// A `.ndjson`/`.jsonl` file, or every such file of a directory in name order.
    File {
        path: PathBuf,
    },
    Kafka(KafkaSourceConfig),
    /// Newline-delimited JSON over TCP.
    Socket {
        listen: String,
    },
    /// The built-in generator.
    Demo {
        rate: f64,
        series: usize,
        seed: u64,
        faults: crate::generator::Faults,
    },
}

/// A Kafka consumer in a consumer group.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSourceConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub topics: Vec<String>,
    /// Consumer group; default `tidewatch-<stream name>`.
    pub group: String,
    /// Where a partition without a committed offset starts.
    pub start: StartFrom,
    /// Only these partitions of each topic; `None`: all of them.
    pub partitions: Option<Vec<i32>>,
    /// Who decides which partitions this instance reads.
    pub assignment: Assignment,
    /// Extra librdkafka properties (SASL/SSL, ...), passed through as they are.
    pub properties: BTreeMap<String, String>,
}

/// How a Kafka stream gets its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Assignment {
    /// This instance reads every partition (or those `partitions` lists) with one engine state
    /// for the stream: series may span partitions; the watermark is the minimum over them.
    #[default]
    Static,
    /// The consumer group shares the partitions among the instances that join it and moves them
    /// when one comes or goes. State is kept per partition and handed over through the
    /// checkpoint store, so each series must come from one partition (messages keyed by series).
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    Earliest,
    Latest,
}

/// librdkafka properties Tidewatch sets itself: overriding them would break delivery guarantees.
const MANAGED_KAFKA_PROPERTIES: [&str; 5] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
];

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WatermarkConfig {
    pub lateness_ms: i64,
    pub idle_timeout_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DedupConfig {
    pub horizon_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WindowSpec {
    Tumbling {
        size_ms: i64,
    },
    Sliding {
        size_ms: i64,
        slide_ms: i64,
    },
    Session {
        gap_ms: i64,
    },
    /// All time per series, re-emitted every `update_ms` of event time (complete mode).
    Global {
        update_ms: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsConfig {
    pub sma_points: usize,
    pub ewma_alpha: f64,
    pub trend_window_ms: i64,
    pub zscore: ZScoreConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZScoreMethod {
    /// The robust z-score of the point against its (seasonal) baseline, calibrated per series
    /// by the anomaly likelihood: an alert when the recent deviations are improbable.
    Auto,
    /// Median and MAD × 1.4826, an alert at `|z| ≥ threshold`: not pulled along by the outliers
    /// it is looking for.
    Robust,
    /// Sample mean and standard deviation, an alert at `|z| ≥ threshold`.
    Mean,
}

/// Which seasonal pattern the expectation of a point follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Season {
    /// A day or a week, whichever predicts the series clearly better than a flat level, if any.
    Auto,
    /// A flat baseline.
    None,
    /// This period (ms).
    Period(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ZScoreConfig {
    pub method: ZScoreMethod,
    /// The baseline holds the last `points` points of the series...
    pub points: usize,
    /// ...and, when set, only those of this much event time before the point.
    pub window_ms: Option<i64>,
    pub min_samples: usize,
    /// `robust` and `mean`: |z| at or above this is anomalous.
    pub threshold: f64,
    pub season: Season,
    /// The spread is at least this share of the series' level (|EWMA|).
    pub floor: f64,
    /// `auto`: tail probability of the recent deviations below which a point is anomalous.
    pub probability: f64,
    /// Consecutive normal points that resolve an alert.
    pub resolve_after: u32,
    /// Points after an episode's last anomalous point during which a new anomaly reopens it.
    pub refractory: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinConfig {
    pub name: String,
    /// Index into [`Config::streams`].
    pub left: usize,
    pub right: usize,
    pub on: JoinOn,
    pub within_ms: i64,
    pub kind: JoinKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOn {
    Series,
    Field(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinKind {
    Inner,
    LeftOuter,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkConfig {
    /// One NDJSON file per record kind in a directory.
    Ndjson { path: PathBuf },
    /// SQLite (`sqlite://PATH`) or PostgreSQL (`postgres://...`).
    Db { url: String },
    /// Records as JSON to Kafka topics, one per record kind.
    Kafka {
        brokers: String,
        topics: BTreeMap<RecordKind, String>,
        properties: BTreeMap<String, String>,
    },
    /// Closed windows and alerts as readable lines on standard output.
    Console,
    /// Parquet files partitioned by kind, date and hour on an object store.
    Parquet { url: String, max_rows: usize },
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml_str(&text)
    }

    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let deserializer = toml::Deserializer::new(text);
        let raw: raw::Config =
            serde_path_to_error::deserialize(deserializer).map_err(|err| ConfigError::Parse {
                key: err.path().to_string(),
                message: err.into_inner().message().trim().to_owned(),
            })?;
        raw.validate()
    }
}

/// Parses a human duration (`500ms`, `10s`, `5m`, `1h 30m`) into milliseconds, within `min..=1y`.
fn duration_ms(key: &str, text: &str, allow_zero: bool) -> Result<i64, ConfigError> {
    let parsed = humantime::parse_duration(text).map_err(|e| {
        ConfigError::invalid(
            key,
            format!(
                "invalid duration {text:?} ({e}); write e.g. \"500ms\", \"10s\", \"5m\", \"1h\""
            ),
        )
    })?;
    let ms = parsed.as_millis();
    if parsed.subsec_nanos() % 1_000_000 != 0 {
        return Err(ConfigError::invalid(
            key,
            format!("duration {text:?} is finer than a millisecond"),
        ));
    }
    if ms == 0 && !allow_zero {
        return Err(ConfigError::invalid(key, "must be greater than zero"));
    }
    if ms > MAX_DURATION_MS as u128 {
        return Err(ConfigError::invalid(
            key,
            format!("duration {text:?} is longer than the maximum of one year"),
        ));
    }
    Ok(ms as i64)
}

/// The file's shape. Field doc comments are the user documentation of each key.
mod raw {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Config {
        #[serde(default)]
        pub streams: Vec<Stream>,
        #[serde(default)]
        pub joins: Vec<Join>,
        #[serde(default)]
        pub sinks: Vec<Sink>,
        #[serde(default)]
        pub checkpoint: Checkpoint,
        #[serde(default)]
        pub auth: Auth,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Auth {
        /// Token that acknowledging needs; TIDEWATCH_AUTH_TOKEN overrides it.
        pub token: Option<String>,
        /// Reading needs the token too; default false.
        #[serde(default)]
        pub read: bool,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Checkpoint {
        /// How often (processing time) to checkpoint; default "10s".
        #[serde(default = "default_checkpoint_interval")]
        pub interval: String,
        /// Name of this pipeline's checkpoint row; default "default".
        #[serde(default = "default_pipeline_name")]
        pub pipeline: String,
    }

    impl Default for Checkpoint {
        fn default() -> Self {
            Checkpoint {
                interval: default_checkpoint_interval(),
                pipeline: default_pipeline_name(),
            }
        }
    }

    fn default_checkpoint_interval() -> String {
        "10s".into()
    }
    fn default_pipeline_name() -> String {
        "default".into()
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Stream {
        /// Unique name; appears as `stream` in every record.
        pub name: String,
        pub source: Source,
        pub fields: Fields,
        #[serde(default)]
        pub watermark: Watermark,
        pub dedup: Option<Dedup>,
        #[serde(default)]
        pub windows: Vec<Window>,
        pub analytics: Option<Analytics>,
        /// Cap on distinct series (default 100000): bounds memory against a runaway key.
        pub max_series: Option<usize>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
    pub enum Source {
        File {
            path: PathBuf,
        },
        Kafka {
            brokers: String,
            topics: Vec<String>,
            group: Option<String>,
            #[serde(default = "default_start")]
            start: String,
            /// Only these partitions of each topic (default: all), to split a topic between
            /// instances by hand.
            partitions: Option<Vec<i32>>,
            /// "static" (default: read the partitions named or all) or "group" (the consumer
            /// group shares them among instances).
            assignment: Option<String>,
            /// librdkafka properties, e.g. `{ "security.protocol" = "SASL_SSL" }`.
            #[serde(default)]
            kafka: BTreeMap<String, String>,
        },
        Socket {
            listen: String,
        },
        Demo {
            #[serde(default = "default_demo_rate")]
            rate: f64,
            #[serde(default = "default_demo_series")]
            series: usize,
            #[serde(default = "default_demo_seed")]
            seed: u64,
            #[serde(default = "default_demo_anomaly_rate")]
            anomaly_rate: f64,
            #[serde(default = "default_demo_late_rate")]
            late_rate: f64,
            #[serde(default = "default_demo_dup_rate")]
            dup_rate: f64,
        },
    }

    fn default_demo_rate() -> f64 {
        50.0
    }
    fn default_demo_series() -> usize {
        6
    }
    fn default_demo_seed() -> u64 {
        1
    }
    /// One event in 2,000: at the default rate an anomaly every 40 s over the six series, rare
    /// enough per series to be an anomaly (at 0.003 spikes came often enough that the
    /// detector, rightly, began to treat them as the series' usual behaviour).
    fn default_demo_anomaly_rate() -> f64 {
        0.0005
    }
    fn default_demo_late_rate() -> f64 {
        0.002
    }
    fn default_demo_dup_rate() -> f64 {
        0.01
    }

    fn default_start() -> String {
        "earliest".into()
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Fields {
        pub time: String,
        #[serde(default = "default_time_format")]
        pub time_format: String,
        pub series: Option<String>,
        #[serde(default)]
        pub group_by: Vec<String>,
        pub value: Option<String>,
        pub id: Option<String>,
    }

    fn default_time_format() -> String {
        "epoch_ms".into()
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Watermark {
        #[serde(default = "default_lateness")]
        pub lateness: String,
        #[serde(default = "default_idle_timeout")]
        pub idle_timeout: String,
    }

    impl Default for Watermark {
        fn default() -> Self {
            Watermark {
                lateness: default_lateness(),
                idle_timeout: default_idle_timeout(),
            }
        }
    }

    fn default_lateness() -> String {
        "5s".into()
    }
    fn default_idle_timeout() -> String {
        "30s".into()
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Dedup {
        pub horizon: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
    pub enum Window {
        Tumbling {
            size: String,
        },
        Sliding {
            size: String,
            slide: String,
        },
        Session {
            gap: String,
        },
        Global {
            #[serde(default = "default_global_update")]
            update: String,
        },
    }

    fn default_global_update() -> String {
        "1m".into()
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Analytics {
        #[serde(default = "default_sma_points")]
        pub sma_points: usize,
        #[serde(default = "default_ewma_alpha")]
        pub ewma_alpha: f64,
        #[serde(default = "default_five_minutes")]
        pub trend_window: String,
        #[serde(default)]
        pub zscore: ZScore,
    }

    fn default_sma_points() -> usize {
        20
    }
    fn default_ewma_alpha() -> f64 {
        0.1
    }
    fn default_five_minutes() -> String {
        "5m".into()
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ZScore {
        /// "auto" (default), "robust" or "mean".
        #[serde(default = "default_method")]
        pub method: String,
        /// Baseline size in points of the series (default 500).
        #[serde(default = "default_points")]
        pub points: usize,
        /// Also drop baseline points older than this (default: no limit).
        pub window: Option<String>,
        #[serde(default = "default_min_samples")]
        pub min_samples: usize,
        /// "robust"/"mean" only (default 3.0).
        pub threshold: Option<f64>,
        /// "auto" (default), "none" or a period such as "1d".
        #[serde(default = "default_season")]
        pub season: String,
        #[serde(default)]
        pub floor: f64,
        /// "auto" only (default 1e-5).
        pub probability: Option<f64>,
        #[serde(default = "default_resolve_after")]
        pub resolve_after: u32,
        #[serde(default = "default_refractory")]
        pub refractory: u32,
    }

    impl Default for ZScore {
        fn default() -> Self {
            ZScore {
                method: default_method(),
                points: default_points(),
                window: None,
                min_samples: default_min_samples(),
                threshold: None,
                season: default_season(),
                floor: 0.0,
                probability: None,
                resolve_after: default_resolve_after(),
                refractory: default_refractory(),
            }
        }
    }

    fn default_points() -> usize {
        500
    }
    fn default_season() -> String {
        "auto".into()
    }
    fn default_refractory() -> u32 {
        100
    }
    fn default_min_samples() -> usize {
        30
    }
    fn default_method() -> String {
        "auto".into()
    }
    fn default_resolve_after() -> u32 {
        3
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Join {
        pub name: String,
        pub left: String,
        pub right: String,
        #[serde(default = "default_join_on")]
        pub on: String,
        pub within: String,
        #[serde(default = "default_join_kind")]
        pub kind: String,
    }

    fn default_join_on() -> String {
        "series".into()
    }
    fn default_join_kind() -> String {
        "inner".into()
    }

    #[derive(Debug, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
    pub enum Sink {
        Ndjson {
            path: PathBuf,
        },
        Db {
            #[serde(default = "default_db_url")]
            url: String,
        },
        Kafka {
            brokers: String,
            /// Record kind (`windows`, `alerts`, `points`, `late`, `dead_letters`, `joins`) →
            /// topic; kinds not listed are not sent.
            topics: BTreeMap<String, String>,
            #[serde(default)]
            kafka: BTreeMap<String, String>,
        },
        Console {},
        Parquet {
            /// `file:///abs/path`, a plain (relative) directory, or `s3://bucket/prefix`.
            url: String,
            /// Rows per partition after which a file is written before the next checkpoint.
            #[serde(default = "default_max_rows")]
            max_rows: usize,
        },
    }

    fn default_max_rows() -> usize {
        1_000_000
    }

    fn default_db_url() -> String {
        "sqlite://tidewatch.db".into()
    }
}

impl raw::Config {
    fn validate(self) -> Result<Config, ConfigError> {
        if self.streams.is_empty() {
            return Err(ConfigError::invalid(
                "streams",
                "at least one [[streams]] table is required",
            ));
        }
        let mut names = HashSet::new();
        let mut streams = Vec::with_capacity(self.streams.len());
        for (i, stream) in self.streams.into_iter().enumerate() {
            let key = format!("streams[{i}]");
            if !names.insert(stream.name.clone()) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    format!("stream name {:?} is used twice", stream.name),
                ));
            }
            streams.push(stream.validate(&key)?);
        }

        let mut joins = Vec::with_capacity(self.joins.len());
        let mut join_names = HashSet::new();
        for (i, join) in self.joins.into_iter().enumerate() {
            let key = format!("joins[{i}]");
            if !join_names.insert(join.name.clone()) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    format!("join name {:?} is used twice", join.name),
                ));
            }
            let config = join.validate(&key, &streams)?;
            // A join on a named field needs that field decoded from both sides.
            if let JoinOn::Field(field) = &config.on {
                for side in [config.left, config.right] {
                    let stream = &mut streams[side];
                    if let Some(existing) = stream.fields.join_key.as_ref().filter(|f| *f != field)
                    {
                        return Err(ConfigError::invalid(
                            format!("{key}.on"),
                            format!(
                                "stream {:?} is already joined on field {existing:?}; one join key field per stream",
                                stream.name
                            ),
                        ));
                    }
                    stream.fields.join_key = Some(field.clone());
                }
            }
            joins.push(config);
        }

        if self.sinks.is_empty() {
            return Err(ConfigError::invalid(
                "sinks",
                "at least one [[sinks]] table is required, e.g. { kind = \"ndjson\", path = \"out/\" }",
            ));
        }
        let sinks: Vec<SinkConfig> = self
            .sinks
            .into_iter()
            .enumerate()
            .map(|(i, sink)| match sink {
                raw::Sink::Ndjson { path } => Ok(SinkConfig::Ndjson { path }),
                raw::Sink::Console {} => Ok(SinkConfig::Console),
                raw::Sink::Parquet { url, max_rows } => {
                    if max_rows == 0 {
                        return Err(ConfigError::invalid(
                            format!("sinks[{i}].max_rows"),
                            "must be at least 1",
                        ));
                    }
                    Ok(SinkConfig::Parquet {
                        url: lake_url(&url).map_err(|message| {
                            ConfigError::invalid(format!("sinks[{i}].url"), message)
                        })?,
                        max_rows,
                    })
                }
                raw::Sink::Kafka {
                    brokers,
                    topics,
                    kafka,
                } => {
                    if brokers.trim().is_empty() {
                        return Err(ConfigError::invalid(
                            format!("sinks[{i}].brokers"),
                            "must list at least one broker",
                        ));
                    }
                    if topics.is_empty() {
                        return Err(ConfigError::invalid(
                            format!("sinks[{i}].topics"),
                            "name at least one record kind's topic, e.g. { alerts = \"tidewatch.alerts\" }",
                        ));
                    }
                    let mut by_kind = BTreeMap::new();
                    for (name, topic) in topics {
                        let kind = *RecordKind::ALL
                            .iter()
                            .find(|k| k.collection() == name)
                            .ok_or_else(|| {
                                ConfigError::invalid(
                                    format!("sinks[{i}].topics.{name}"),
                                    "unknown record kind; expected one of windows, points, alerts, late, dead_letters, joins",
                                )
                            })?;
                        if topic.trim().is_empty() {
                            return Err(ConfigError::invalid(
                                format!("sinks[{i}].topics.{name}"),
                                "topic name must not be empty",
                            ));
                        }
                        by_kind.insert(kind, topic);
                    }
                    Ok(SinkConfig::Kafka {
                        brokers,
                        topics: by_kind,
                        properties: kafka,
                    })
                }
                raw::Sink::Db { url } => {
                    let known = ["sqlite:", "postgres://", "postgresql://"];
                    if known.iter().any(|prefix| url.starts_with(prefix)) {
                        Ok(SinkConfig::Db { url })
                    } else {
                        Err(ConfigError::invalid(
                            format!("sinks[{i}].url"),
                            "expected sqlite://PATH or postgres://USER:PASSWORD@HOST/DB",
                        ))
                    }
                }
            })
            .collect::<Result<_, _>>()?;
        check_group_sinks(&streams, &sinks)?;
        if self.checkpoint.pipeline.trim().is_empty() {
            return Err(ConfigError::invalid(
                "checkpoint.pipeline",
                "must not be empty",
            ));
        }
        let checkpoint = CheckpointConfig {
            interval_ms: duration_ms("checkpoint.interval", &self.checkpoint.interval, false)?,
            pipeline: self.checkpoint.pipeline,
        };
        Ok(Config {
            streams,
            joins,
            sinks,
            checkpoint,
            auth: AuthConfig {
                token: self.auth.token.filter(|t| !t.is_empty()),
                read: self.auth.read,
            },
        })
    }
}

impl raw::Stream {
    fn validate(self, key: &str) -> Result<StreamConfig, ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.name"),
                "must not be empty",
            ));
        }
        let source = match self.source {
            raw::Source::File { path } => SourceConfig::File { path },
            raw::Source::Socket { listen } => {
                if listen.parse::<std::net::SocketAddr>().is_err() {
                    return Err(ConfigError::invalid(
                        format!("{key}.source.listen"),
                        format!("expected an address such as \"127.0.0.1:9999\", got {listen:?}"),
                    ));
                }
                SourceConfig::Socket { listen }
            }
            raw::Source::Demo {
                rate,
                series,
                seed,
                anomaly_rate,
                late_rate,
                dup_rate,
            } => {
                let skey = format!("{key}.source");
                if !(rate > 0.0 && rate <= 1_000_000.0) {
                    return Err(ConfigError::invalid(
                        format!("{skey}.rate"),
                        "must be between 0 and 1000000 events per second",
                    ));
                }
                if series == 0 || series > 100_000 {
                    return Err(ConfigError::invalid(
                        format!("{skey}.series"),
                        "must be between 1 and 100000",
                    ));
                }
                for (name, value) in [
                    ("anomaly_rate", anomaly_rate),
                    ("late_rate", late_rate),
                    ("dup_rate", dup_rate),
                ] {
                    if !(0.0..=1.0).contains(&value) {
                        return Err(ConfigError::invalid(
                            format!("{skey}.{name}"),
                            "must be a share between 0 and 1",
                        ));
                    }
                }
                SourceConfig::Demo {
                    rate,
                    series,
                    seed,
                    faults: crate::generator::Faults {
                        duplicate: dup_rate,
                        late: late_rate,
                        anomaly: anomaly_rate,
                        ..crate::generator::Faults::default()
                    },
                }
            }
            raw::Source::Kafka {
                brokers,
                topics,
                group,
                start,
                partitions,
                assignment,
                kafka,
            } => {
                let skey = format!("{key}.source");
                let assignment = match assignment.as_deref() {
                    None | Some("static") => Assignment::Static,
                    Some("group") if partitions.is_some() => {
                        return Err(ConfigError::invalid(
                            format!("{skey}.partitions"),
                            "cannot be used with assignment = \"group\": the group assigns the partitions",
                        ))
                    }
                    Some("group") => Assignment::Group,
                    Some(other) => {
                        return Err(ConfigError::invalid(
                            format!("{skey}.assignment"),
                            format!("unknown assignment {other:?}; expected \"static\" or \"group\""),
                        ))
                    }
                };
                if let Some(list) = &partitions {
                    let distinct: std::collections::BTreeSet<_> = list.iter().collect();
                    if list.is_empty()
                        || list.iter().any(|&p| p < 0)
                        || distinct.len() != list.len()
                    {
                        return Err(ConfigError::invalid(
                            format!("{skey}.partitions"),
                            "must list distinct partition numbers (0 or more), e.g. [0, 2]",
                        ));
                    }
                }
                if brokers.trim().is_empty() {
                    return Err(ConfigError::invalid(
                        format!("{skey}.brokers"),
                        "must list at least one broker, e.g. \"localhost:9092\"",
                    ));
                }
                if topics.is_empty() || topics.iter().any(|t| t.trim().is_empty()) {
                    return Err(ConfigError::invalid(
                        format!("{skey}.topics"),
                        "must list at least one non-empty topic name",
                    ));
                }
                let start = match start.as_str() {
                    "earliest" => StartFrom::Earliest,
                    "latest" => StartFrom::Latest,
                    other => {
                        return Err(ConfigError::invalid(
                            format!("{skey}.start"),
                            format!("unknown start {other:?}; expected \"earliest\" or \"latest\""),
                        ))
                    }
                };
                if let Some(managed) = kafka
                    .keys()
                    .find(|k| MANAGED_KAFKA_PROPERTIES.contains(&k.as_str()))
                {
                    return Err(ConfigError::invalid(
                        format!("{skey}.kafka.\"{managed}\""),
                        "Tidewatch sets this property itself (use brokers, group and start)",
                    ));
                }
                SourceConfig::Kafka(KafkaSourceConfig {
                    brokers,
                    topics,
                    group: group.unwrap_or_else(|| format!("tidewatch-{}", self.name)),
                    start,
                    partitions,
                    assignment,
                    properties: kafka,
                })
            }
        };
        let fields = self.fields.validate(&format!("{key}.fields"))?;
        let watermark = WatermarkConfig {
            lateness_ms: duration_ms(
                &format!("{key}.watermark.lateness"),
                &self.watermark.lateness,
                true,
            )?,
            idle_timeout_ms: duration_ms(
                &format!("{key}.watermark.idle_timeout"),
                &self.watermark.idle_timeout,
                false,
            )?,
        };
        let dedup = match self.dedup {
            None => None,
            Some(d) => {
                if fields.id.is_none() {
                    return Err(ConfigError::invalid(
                        format!("{key}.dedup"),
                        "dedup needs an id field: set fields.id",
                    ));
                }
                Some(DedupConfig {
                    horizon_ms: duration_ms(&format!("{key}.dedup.horizon"), &d.horizon, false)?,
                })
            }
        };
        let windows = self
            .windows
            .into_iter()
            .enumerate()
            .map(|(i, w)| w.validate(&format!("{key}.windows[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let analytics = match self.analytics {
            None => None,
            Some(a) => {
                if fields.value.is_none() {
                    return Err(ConfigError::invalid(
                        format!("{key}.analytics"),
                        "analytics need a value field: set fields.value",
                    ));
                }
                Some(a.validate(&format!("{key}.analytics"))?)
            }
        };
        let max_series = self.max_series.unwrap_or(100_000);
        if max_series == 0 {
            return Err(ConfigError::invalid(
                format!("{key}.max_series"),
                "must be at least 1",
            ));
        }
        Ok(StreamConfig {
            name: self.name,
            source,
            fields,
            watermark,
            dedup,
            windows,
            analytics,
            max_series,
        })
    }
}

impl raw::Fields {
    fn validate(self, key: &str) -> Result<FieldMapping, ConfigError> {
        let time_format = match self.time_format.as_str() {
            "epoch_ms" => TimeFormat::EpochMillis,
            "epoch_s" => TimeFormat::EpochSeconds,
            "rfc3339" => TimeFormat::Rfc3339,
            other => {
                return Err(ConfigError::invalid(
                    format!("{key}.time_format"),
                    format!("unknown time format {other:?}; expected one of \"epoch_ms\", \"epoch_s\", \"rfc3339\""),
                ))
            }
        };
        let mut named = vec![("time", &self.time)];
        named.extend(self.series.as_ref().map(|s| ("series", s)));
        named.extend(self.value.as_ref().map(|s| ("value", s)));
        named.extend(self.id.as_ref().map(|s| ("id", s)));
        named.extend(self.group_by.iter().map(|s| ("group_by", s)));
        for (name, field) in &named {
            if field.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.{name}"),
                    "field name must not be empty",
                ));
            }
        }
        let mut seen = HashSet::new();
        for field in &self.group_by {
            if !seen.insert(field) || Some(field) == self.series.as_ref() {
                return Err(ConfigError::invalid(
                    format!("{key}.group_by"),
                    format!("field {field:?} is listed twice as a grouping key"),
                ));
            }
        }
        Ok(FieldMapping {
            time: self.time,
            time_format,
            series: self.series,
            group_by: self.group_by,
            value: self.value,
            id: self.id,
            join_key: None,
        })
    }
}

impl raw::Window {
    fn validate(self, key: &str) -> Result<WindowSpec, ConfigError> {
        Ok(match self {
            raw::Window::Tumbling { size } => WindowSpec::Tumbling {
                size_ms: duration_ms(&format!("{key}.size"), &size, false)?,
            },
            raw::Window::Sliding { size, slide } => {
                let size_ms = duration_ms(&format!("{key}.size"), &size, false)?;
                let slide_ms = duration_ms(&format!("{key}.slide"), &slide, false)?;
                if slide_ms > size_ms {
                    return Err(ConfigError::invalid(
                        format!("{key}.slide"),
                        format!("slide ({slide}) must not be longer than size ({size}); events would fall between windows"),
                    ));
                }
                if size_ms / crate::engine::window::gcd(size_ms, slide_ms) > 10_000 {
                    return Err(ConfigError::invalid(
                        format!("{key}.slide"),
                        "size and slide share too small a common step (over 10000 panes per window); make size a multiple of slide",
                    ));
                }
                WindowSpec::Sliding { size_ms, slide_ms }
            }
            raw::Window::Session { gap } => WindowSpec::Session {
                gap_ms: duration_ms(&format!("{key}.gap"), &gap, false)?,
            },
            raw::Window::Global { update } => WindowSpec::Global {
                update_ms: duration_ms(&format!("{key}.update"), &update, false)?,
            },
        })
    }
}

impl raw::Analytics {
    fn validate(self, key: &str) -> Result<AnalyticsConfig, ConfigError> {
        if self.sma_points == 0 || self.sma_points > 100_000 {
            return Err(ConfigError::invalid(
                format!("{key}.sma_points"),
                "must be between 1 and 100000",
            ));
        }
        if !(self.ewma_alpha > 0.0 && self.ewma_alpha <= 1.0) {
            return Err(ConfigError::invalid(
                format!("{key}.ewma_alpha"),
                format!("must be in (0, 1], got {}", self.ewma_alpha),
            ));
        }
        let trend_window_ms =
            duration_ms(&format!("{key}.trend_window"), &self.trend_window, false)?;
        let z = self.zscore;
        let zkey = format!("{key}.zscore");
        let method = match z.method.as_str() {
            "auto" => ZScoreMethod::Auto,
            "mean" => ZScoreMethod::Mean,
            "robust" => ZScoreMethod::Robust,
            other => {
                return Err(ConfigError::invalid(
                    format!("{zkey}.method"),
                    format!("unknown method {other:?}; expected \"auto\", \"robust\" or \"mean\""),
                ))
            }
        };
        // Each method has its own rule: a key of the other one would silently do nothing.
        let (threshold, probability) = match (method, z.threshold, z.probability) {
            (ZScoreMethod::Auto, Some(_), _) => {
                return Err(ConfigError::invalid(
                    format!("{zkey}.threshold"),
                    "method \"auto\" has no threshold (it alerts by `probability`); set \
                     method = \"robust\" or \"mean\" for a fixed |z| threshold",
                ))
            }
            (ZScoreMethod::Robust | ZScoreMethod::Mean, _, Some(_)) => {
                return Err(ConfigError::invalid(
                    format!("{zkey}.probability"),
                    "only method \"auto\" alerts by probability; \"robust\" and \"mean\" use \
                     `threshold`",
                ))
            }
            (_, threshold, probability) => (threshold.unwrap_or(3.0), probability.unwrap_or(1e-5)),
        };
        if !(threshold.is_finite() && threshold > 0.0) {
            return Err(ConfigError::invalid(
                format!("{zkey}.threshold"),
                format!("must be a positive number, got {threshold}"),
            ));
        }
        if z.min_samples < 2 {
            return Err(ConfigError::invalid(
                format!("{zkey}.min_samples"),
                "must be at least 2 (a spread needs two points)",
            ));
        }
        if z.points < z.min_samples || z.points > 100_000 {
            return Err(ConfigError::invalid(
                format!("{zkey}.points"),
                format!(
                    "must be between min_samples ({}) and 100000, got {}",
                    z.min_samples, z.points
                ),
            ));
        }
        let floor = z.floor;
        if !(floor.is_finite() && (0.0..1.0).contains(&floor)) {
            return Err(ConfigError::invalid(
                format!("{zkey}.floor"),
                format!("must be in [0, 1), got {floor}"),
            ));
        }
        if !(probability > 0.0 && probability < 0.5) {
            return Err(ConfigError::invalid(
                format!("{zkey}.probability"),
                format!("must be in (0, 0.5), got {probability}"),
            ));
        }
        if z.resolve_after == 0 {
            return Err(ConfigError::invalid(
                format!("{zkey}.resolve_after"),
                "must be at least 1",
            ));
        }
        let season = match z.season.as_str() {
            "auto" => Season::Auto,
            "none" => Season::None,
            period => Season::Period(duration_ms(&format!("{zkey}.season"), period, false).map_err(
                |_| {
                    ConfigError::invalid(
                        format!("{zkey}.season"),
                        format!("expected \"auto\", \"none\" or a period such as \"1d\", got {period:?}"),
                    )
                },
            )?),
        };
        let window_ms = z
            .window
            .as_deref()
            .map(|w| duration_ms(&format!("{zkey}.window"), w, false))
            .transpose()?;
        Ok(AnalyticsConfig {
            sma_points: self.sma_points,
            ewma_alpha: self.ewma_alpha,
            trend_window_ms,
            zscore: ZScoreConfig {
                method,
                points: z.points,
                window_ms,
                min_samples: z.min_samples,
                threshold,
                season,
                floor,
                probability,
                resolve_after: z.resolve_after,
                refractory: z.refractory,
            },
        })
    }
}

impl raw::Join {
    fn validate(self, key: &str, streams: &[StreamConfig]) -> Result<JoinConfig, ConfigError> {
        let find = |side: &str, name: &str| {
            let index = streams.iter().position(|s| s.name == name).ok_or_else(|| {
                ConfigError::invalid(format!("{key}.{side}"), format!("no stream named {name:?}"))
            })?;
            if streams[index].is_group_assigned() {
                return Err(ConfigError::invalid(
                    format!("{key}.{side}"),
                    format!(
                        "stream {name:?} uses assignment = \"group\", which keeps state per \
                         partition; a join needs both streams in one state: use assignment = \
                         \"static\""
                    ),
                ));
            }
            Ok(index)
        };
        let left = find("left", &self.left)?;
        let right = find("right", &self.right)?;
        if left == right {
            return Err(ConfigError::invalid(
                format!("{key}.right"),
                "a stream cannot be joined with itself",
            ));
        }
        let on = match self.on.as_str() {
            "series" => JoinOn::Series,
            "" => {
                return Err(ConfigError::invalid(
                    format!("{key}.on"),
                    "must be \"series\" or a field name",
                ))
            }
            field => JoinOn::Field(field.to_owned()),
        };
        let kind = match self.kind.as_str() {
            "inner" => JoinKind::Inner,
            "left" | "left_outer" => JoinKind::LeftOuter,
            other => {
                return Err(ConfigError::invalid(
                    format!("{key}.kind"),
                    format!("unknown join kind {other:?}; expected \"inner\" or \"left\""),
                ))
            }
        };
        Ok(JoinConfig {
            name: self.name,
            left,
            right,
            on,
            within_ms: duration_ms(&format!("{key}.within"), &self.within, true)?,
            kind,
        })
    }
}

/// A lake location as a URL: URLs pass through, a plain path becomes an absolute `file://` URL.
fn lake_url(text: &str) -> Result<String, String> {
    if text.contains("://") {
        return url::Url::parse(text)
            .map(|u| u.to_string())
            .map_err(|e| format!("invalid URL {text:?}: {e}"));
    }
    let absolute = std::path::absolute(text).map_err(|e| format!("{text:?}: {e}"))?;
    url::Url::from_directory_path(&absolute)
        .map(|u| u.to_string())
        .map_err(|()| format!("{text:?} is not a usable directory path"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_EXAMPLE: &str = r#"
[[streams]]
name = "sensors"
source = { kind = "file", path = "data/" }
fields = { time = "ts", time_format = "epoch_ms", series = "series", value = "value", id = "id" }
watermark = { lateness = "10s", idle_timeout = "30s" }
dedup = { horizon = "5m" }
windows = [
  { kind = "tumbling", size = "1m" },
  { kind = "sliding", size = "1m", slide = "10s" },
  { kind = "session", gap = "30s" },
]
analytics = { sma_points = 20, ewma_alpha = 0.1, trend_window = "5m", zscore = { window = "5m", threshold = 3.0, min_samples = 30, method = "mean" } }

[[sinks]]
kind = "ndjson"
path = "out/"
"#;

    #[test]
    fn the_default_pipeline_is_valid() {
        let config = Config::from_toml_str(DEFAULT_PIPELINE).unwrap();
        assert!(matches!(
            config.streams[0].source,
            SourceConfig::Demo { .. }
        ));
    }

    #[test]
    fn the_documented_shape_parses() {
        let config = Config::from_toml_str(ISSUE_EXAMPLE).unwrap();
        let s = &config.streams[0];
        assert_eq!(s.watermark.lateness_ms, 10_000);
        assert_eq!(s.dedup.unwrap().horizon_ms, 300_000);
        assert_eq!(
            s.windows,
            vec![
                WindowSpec::Tumbling { size_ms: 60_000 },
                WindowSpec::Sliding {
                    size_ms: 60_000,
                    slide_ms: 10_000
                },
                WindowSpec::Session { gap_ms: 30_000 },
            ]
        );
        assert_eq!(s.analytics.unwrap().zscore.method, ZScoreMethod::Mean);
    }

    fn error_of(toml: &str) -> String {
        Config::from_toml_str(toml).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key() {
        let bad_slide = ISSUE_EXAMPLE.replace("slide = \"10s\"", "slide = \"10 parsecs\"");
        assert!(
            error_of(&bad_slide).starts_with("streams[0].windows[1].slide: invalid duration"),
            "{}",
            error_of(&bad_slide)
        );
        let unknown = ISSUE_EXAMPLE.replace("lateness = \"10s\"", "latenes = \"10s\"");
        let msg = error_of(&unknown);
        assert!(msg.contains("streams[0].watermark"), "{msg}");
        assert!(msg.contains("latenes"), "{msg}");
        let kind = ISSUE_EXAMPLE.replace("kind = \"file\"", "kind = \"ftp\"");
        let msg = error_of(&kind);
        assert!(msg.contains("streams[0].source"), "{msg}");
        let alpha = ISSUE_EXAMPLE.replace("ewma_alpha = 0.1", "ewma_alpha = 1.5");
        assert!(error_of(&alpha).starts_with("streams[0].analytics.ewma_alpha:"));
        let no_id = ISSUE_EXAMPLE.replace(", id = \"id\"", "");
        assert!(error_of(&no_id).starts_with("streams[0].dedup:"));
        let fmt = ISSUE_EXAMPLE.replace("\"epoch_ms\"", "\"julian\"");
        assert!(error_of(&fmt).starts_with("streams[0].fields.time_format:"));
        let wide = ISSUE_EXAMPLE.replace("slide = \"10s\"", "slide = \"2m\"");
        assert!(error_of(&wide).starts_with("streams[0].windows[1].slide:"));
        let method = ISSUE_EXAMPLE.replace("\"mean\"", "\"median\"");
        assert!(error_of(&method).starts_with("streams[0].analytics.zscore.method:"));
        // Each method's own rule: a key of the other one would silently do nothing.
        let auto = ISSUE_EXAMPLE.replace("\"mean\"", "\"auto\"");
        assert!(error_of(&auto).starts_with("streams[0].analytics.zscore.threshold:"));
        let probability = ISSUE_EXAMPLE.replace("threshold = 3.0", "probability = 1e-6");
        assert!(error_of(&probability).starts_with("streams[0].analytics.zscore.probability:"));
        let season = ISSUE_EXAMPLE.replace(
            "method = \"mean\"",
            "method = \"mean\", season = \"yearly\"",
        );
        let msg = error_of(&season);
        assert!(
            msg.starts_with("streams[0].analytics.zscore.season:") && msg.contains("\"1d\""),
            "{msg}"
        );
        let points = ISSUE_EXAMPLE.replace("min_samples = 30", "min_samples = 30, points = 10");
        assert!(error_of(&points).starts_with("streams[0].analytics.zscore.points:"));
        assert!(error_of("streams = 3").starts_with("streams:"));
        assert!(
            error_of("[[streams]\n").contains("TOML parse error")
                || !error_of("[[streams]\n").is_empty()
        );
    }

    #[test]
    fn kafka_sources_validate_their_keys() {
        let kafka = ISSUE_EXAMPLE.replace(
            "source = { kind = \"file\", path = \"data/\" }",
            "source = { kind = \"kafka\", brokers = \"127.0.0.1:9092\", topics = [\"events\"], kafka = { \"client.id\" = \"tw\" } }",
        );
        let config = Config::from_toml_str(&kafka).unwrap();
        let SourceConfig::Kafka(k) = &config.streams[0].source else {
            panic!("not kafka")
        };
        assert_eq!(k.group, "tidewatch-sensors");
        assert_eq!(k.start, StartFrom::Earliest);
        assert_eq!(k.properties["client.id"], "tw");
        let managed = kafka.replace("\"client.id\"", "\"group.id\"");
        assert!(error_of(&managed).starts_with("streams[0].source.kafka.\"group.id\":"));
        let no_topics = kafka.replace("[\"events\"]", "[]");
        assert!(error_of(&no_topics).starts_with("streams[0].source.topics:"));
        let start = kafka.replace("topics = [", "start = \"middle\", topics = [");
        assert!(error_of(&start).starts_with("streams[0].source.start:"));
        assert_eq!(k.partitions, None);
        let some = kafka.replace("topics = [", "partitions = [2, 0], topics = [");
        let config = Config::from_toml_str(&some).unwrap();
        let SourceConfig::Kafka(k) = &config.streams[0].source else {
            panic!("not kafka")
        };
        assert_eq!(k.partitions, Some(vec![2, 0]));
        for bad in ["[]", "[1, 1]", "[-1]"] {
            let config = kafka.replace("topics = [", &format!("partitions = {bad}, topics = ["));
            assert!(
                error_of(&config).starts_with("streams[0].source.partitions:"),
                "{bad}: {}",
                error_of(&config)
            );
        }
    }

    #[test]
    fn group_assignment_needs_a_db_sink_no_parquet_no_join_and_no_partition_list() {
        let group = ISSUE_EXAMPLE.replace(
            "source = { kind = \"file\", path = \"data/\" }",
            "source = { kind = \"kafka\", brokers = \"127.0.0.1:9092\", topics = [\"events\"], assignment = \"group\" }",
        );
        assert_ne!(group, ISSUE_EXAMPLE);
        assert!(
            error_of(&group).starts_with("streams[0].source.assignment: \"group\" needs a db sink"),
            "{}",
            error_of(&group)
        );
        let with_db = format!("{group}\n[[sinks]]\nkind = \"db\"\nurl = \"sqlite://t.db\"\n");
        let config = Config::from_toml_str(&with_db).unwrap();
        assert!(config.streams[0].is_group_assigned());
        let SourceConfig::Kafka(k) = &config.streams[0].source else {
            panic!("not kafka")
        };
        assert_eq!(k.assignment, Assignment::Group);

        let parquet = format!("{with_db}\n[[sinks]]\nkind = \"parquet\"\nurl = \"lake/\"\n");
        assert!(error_of(&parquet).starts_with("sinks[2]: the parquet sink cannot"));
        let listed = with_db.replace("topics = [", "partitions = [0], topics = [");
        assert!(error_of(&listed).starts_with("streams[0].source.partitions: cannot be used"));
        let unknown = with_db.replace("\"group\"", "\"roundrobin\"");
        assert!(error_of(&unknown).starts_with("streams[0].source.assignment: unknown"));
        let joined = format!(
            "{}\n[[joins]]\nname = \"j\"\nleft = \"other\"\nright = \"sensors\"\nwithin = \"30s\"\n",
            with_db.replacen(
                "[[sinks]]",
                "[[streams]]\nname = \"other\"\nsource = { kind = \"file\", path = \"o/\" }\nfields = { time = \"ts\", series = \"s\" }\n\n[[sinks]]",
                1
            )
        );
        assert!(
            error_of(&joined)
                .starts_with("joins[0].right: stream \"sensors\" uses assignment = \"group\""),
            "{}",
            error_of(&joined)
        );
    }

    #[test]
    fn joins_resolve_streams_and_key_fields() {
        let two = format!(
            "{ISSUE_EXAMPLE}\n{}",
            ISSUE_EXAMPLE
                .replace("\"sensors\"", "\"other\"")
                .replace("[[sinks]]\nkind = \"ndjson\"\npath = \"out/\"", "")
        );
        let joined = format!(
            "{two}\n[[joins]]\nname = \"j\"\nleft = \"sensors\"\nright = \"other\"\non = \"order_id\"\nwithin = \"30s\"\nkind = \"left\"\n"
        );
        let config = Config::from_toml_str(&joined).unwrap();
        assert_eq!(config.joins[0].on, JoinOn::Field("order_id".into()));
        assert_eq!(config.joins[0].kind, JoinKind::LeftOuter);
        assert_eq!(
            config.streams[1].fields.join_key.as_deref(),
            Some("order_id")
        );
        let missing = joined.replace("right = \"other\"", "right = \"nope\"");
        assert!(error_of(&missing).starts_with("joins[0].right: no stream named \"nope\""));
    }
}
