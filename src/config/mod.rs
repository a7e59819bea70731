//! The pipeline's TOML file: read once, checked, then used as it is by the components.
//!
//! Each component keeps its own configuration beside it, as Vector does: the sources' in
//! `source::*`, the sinks' in `sink::*`, the engine's (watermark, dedup, windows, analytics,
//! joins) beside the operators. Serde reads the file into those types (typed durations, enums
//! by name, defaults in `Default` impls, unknown keys refused); each type then checks what
//! serde cannot (ranges, keys that only make sense together) in a `validate` method. This
//! module holds the [`Config`] of a whole pipeline, its cross-checks (stream names, joins, sinks
//! a consumer group needs) and its errors; the leaf types the components' configs share
//! ([`Duration`], [`ByteSize`], [`Invalid`]) live in `crate::types`, and what the components
//! are built from (the engine's plan, the live view) in `plans`.
//!
//! Every error names the key it is about, as a path such as `streams[0].windows[1].slide`, so
//! `tidewatch check-config` can point at the line.

mod plans;
pub mod tagged;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::engine::dedup::DedupConfig;
use crate::engine::join::{JoinConfig, JoinOn};
use crate::engine::points::AnalyticsConfig;
use crate::engine::time::WatermarkConfig;
use crate::engine::window::WindowSpec;
use crate::event::FieldMapping;
use crate::sink::SinkConfig;
use crate::source::SourceConfig;
pub use crate::types::{ByteSize, Duration, Invalid};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or a key has the wrong shape; `key` is empty for syntax errors.
    #[error("{}{message}", key_prefix(key))]
    Parse { key: String, message: String },
    /// The file parsed, but a value is not acceptable.
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() || key == "." {
        String::new()
    } else {
        format!("{key}: ")
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

/// A whole pipeline: its streams, the joins between them, where records go, checkpoints and
/// who may use the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub streams: Vec<StreamConfig>,
    #[serde(default)]
    pub joins: Vec<JoinConfig>,
    #[serde(default, deserialize_with = "tagged::many")]
    pub sinks: Vec<SinkConfig>,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    /// How the dashboard is served: host names, cookies, connection limits.
    #[serde(default)]
    pub web: crate::web::config::WebConfig,
    #[serde(default)]
    pub live: crate::live::LiveConfig,
    #[serde(default)]
    pub engine: EngineConfig,
    /// Who hears of alerts besides the dashboard (see `notify`).
    #[serde(default, deserialize_with = "tagged::many")]
    pub notify: Vec<crate::notify::NotifyConfig>,
}

/// One stream: where its events come from, how they are read, and what is computed from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Unique; appears as `stream` in every record.
    pub name: String,
    #[serde(deserialize_with = "tagged::one")]
    pub source: SourceConfig,
    pub fields: FieldMapping,
    #[serde(default)]
    pub watermark: WatermarkConfig,
    pub dedup: Option<DedupConfig>,
    #[serde(default, deserialize_with = "tagged::many")]
    pub windows: Vec<WindowSpec>,
    pub analytics: Option<AnalyticsConfig>,
    /// Most distinct series the stream tracks (bounds memory against a runaway key); events of
    /// further series become dead letters.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Longest series label (the series field and the grouping fields joined), in bytes;
    /// events with a longer one become dead letters. Default 1024.
    #[serde(default = "default_max_label_bytes")]
    pub max_label_bytes: usize,
}

fn default_max_series() -> usize {
    100_000
}

fn default_max_label_bytes() -> usize {
    crate::event::DEFAULT_MAX_LABEL_BYTES
}

/// Longest series label a config may allow: labels go into URLs, which servers and browsers
/// cap at tens of kilobytes.
const MAX_LABEL_BYTES_LIMIT: usize = 16 * 1024;

/// When, where and under which name checkpoints are written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// How often (processing time) to flush the sinks and store a checkpoint.
    pub interval: Duration,
    /// Checkpoint row name: two pipelines sharing a database need different names.
    pub pipeline: String,
    /// Engine state one round writes at most while a checkpoint is written: a larger
    /// checkpoint is written over several rounds, intake going on between them. Smaller holds
    /// intake for less at a time; larger finishes each checkpoint sooner.
    pub bytes_per_round: ByteSize,
    /// The URL of the `db` sink whose database keeps the checkpoints, the notification outbox
    /// and answers the dashboard; default: the first `db` sink's.
    pub store: Option<String>,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval: Duration::from_secs(10),
            pipeline: "default".into(),
            bytes_per_round: ByteSize(2 << 20),
            store: None,
        }
    }
}

/// How the engine's work is spread over threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Shards the engine runs on, each on a thread of its own, each owning the state of the
    /// series that hash to its key groups; default: the machine's cores. Above 1, messages are
    /// also decoded on a thread of their own. The records are the same whatever the number,
    /// and it may change between runs: a checkpoint restores on any number.
    pub threads: Option<usize>,
}

/// Most engine threads a config may ask for: far beyond any host's cores, a typo's guard.
const MAX_ENGINE_THREADS: usize = 1024;

impl EngineConfig {
    /// The threads to use: the configured number, or the machine's cores.
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    fn validate(&self) -> Result<(), Invalid> {
        match self.threads {
            Some(n) if n == 0 || n > MAX_ENGINE_THREADS => Err(Invalid::new(
                "threads",
                format!("must be between 1 and {MAX_ENGINE_THREADS}, not {n}"),
            )),
            _ => Ok(()),
        }
    }
}

/// Who may use the dashboard (`serve`); the token may also come from `TIDEWATCH_AUTH_TOKEN`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// What acknowledging needs (login form or `Authorization: Bearer`); empty means none.
    pub token: Option<String>,
    /// Reading (pages, API, WebSocket, metrics) needs it too.
    pub read: bool,
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
        let mut config: Config =
            serde_path_to_error::deserialize(deserializer).map_err(|error| {
                let path = error.path().to_string();
                let message = error.into_inner().message().trim().to_owned();
                match tagged::split_key(&message) {
                    Some((inner, message)) if !inner.is_empty() => ConfigError::Parse {
                        key: format!("{path}.{inner}"),
                        message: message.trim().to_owned(),
                    },
                    Some((_, message)) => ConfigError::Parse {
                        key: path,
                        message: message.trim().to_owned(),
                    },
                    None => ConfigError::Parse { key: path, message },
                }
            })?;
        config.validate()?;
        config.resolve();
        Ok(config)
    }

    /// Every check serde cannot make, each component's and those across components.
    fn validate(&self) -> Result<(), Invalid> {
        if self.streams.is_empty() {
            return Err(Invalid::new(
                "streams",
                "at least one [[streams]] table is required",
            ));
        }
        let mut names = HashSet::new();
        for (i, stream) in self.streams.iter().enumerate() {
            let key = format!("streams[{i}]");
            if !names.insert(stream.name.as_str()) {
                return Err(Invalid::new(
                    format!("{key}.name"),
                    format!("stream name {:?} is used twice", stream.name),
                ));
            }
            stream.validate().map_err(|e| e.under(&key))?;
        }
        self.validate_joins()?;
        if self.sinks.is_empty() {
            return Err(Invalid::new(
                "sinks",
                "at least one [[sinks]] table is required, e.g. { kind = \"ndjson\", path = \"out/\" }",
            ));
        }
        for (i, sink) in self.sinks.iter().enumerate() {
            sink.validate()
                .map_err(|e| e.under(format!("sinks[{i}]")))?;
        }
        self.validate_group_sinks()?;
        self.checkpoint
            .interval
            .positive("interval")
            .map_err(|e| e.under("checkpoint"))?;
        if self.checkpoint.pipeline.trim().is_empty() {
            return Err(Invalid::new("checkpoint.pipeline", "must not be empty"));
        }
        if let Some(store) = &self.checkpoint.store {
            let urls: Vec<&str> = self.db_sink_urls().collect();
            if !urls.contains(&store.as_str()) {
                return Err(Invalid::new(
                    "checkpoint.store",
                    match urls.is_empty() {
                        true => "names no db sink: the pipeline has none; add a [[sinks]] \
                                 table of kind \"db\""
                            .to_owned(),
                        false => format!(
                            "{store:?} is not the url of a db sink; the db sinks are {}",
                            urls.iter()
                                .map(|u| format!("{u:?}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    },
                ));
            }
        }
        self.live.validate()?;
        self.web.validate().map_err(|e| e.under("web"))?;
        self.engine.validate().map_err(|e| e.under("engine"))?;
        self.validate_notify()
    }

    fn validate_notify(&self) -> Result<(), Invalid> {
        let mut names = HashSet::new();
        for (i, notify) in self.notify.iter().enumerate() {
            let key = format!("notify[{i}]");
            notify.validate().map_err(|e| e.under(&key))?;
            if !names.insert(notify.name()) {
                return Err(Invalid::new(
                    format!("{key}.name"),
                    format!(
                        "receiver name {:?} is used twice; give each [[notify]] its own name",
                        notify.name()
                    ),
                ));
            }
            if self.database_url().is_none() {
                return Err(Invalid::new(
                    key,
                    "notifications need a db sink: their outbox is a table of the store, so \
                     none is lost while a receiver is down",
                ));
            }
        }
        Ok(())
    }

    /// What is allowed but probably a mistake or a risk, each as `key: why`, for
    /// `check-config` to print and a run to log.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (i, stream) in self.streams.iter().enumerate() {
            if let SourceConfig::Socket(socket) = &stream.source {
                if !socket.listen.ip().is_loopback() {
                    warnings.push(format!(
                        "streams[{i}].source.listen: {} is reachable beyond this machine, and \
                         the socket source takes events from anyone who connects (it has no \
                         authentication); listen on 127.0.0.1, or firewall the port",
                        socket.listen
                    ));
                }
            }
        }
        warnings
    }

    /// The names of the `[[notify]]` receivers.
    pub fn notify_targets(&self) -> Vec<String> {
        self.notify.iter().map(|n| n.name().to_owned()).collect()
    }

    /// Joins name existing streams, other than each other, of one state (not group-assigned),
    /// and a stream is joined on one key field at most.
    fn validate_joins(&self) -> Result<(), Invalid> {
        let mut names = HashSet::new();
        let mut key_fields: Vec<Option<&str>> = vec![None; self.streams.len()];
        for (i, join) in self.joins.iter().enumerate() {
            let key = format!("joins[{i}]");
            if !names.insert(join.name.as_str()) {
                return Err(Invalid::new(
                    format!("{key}.name"),
                    format!("join name {:?} is used twice", join.name),
                ));
            }
            join.validate().map_err(|e| e.under(&key))?;
            let left = self
                .joinable("left", &join.left)
                .map_err(|e| e.under(&key))?;
            let right = self
                .joinable("right", &join.right)
                .map_err(|e| e.under(&key))?;
            if left == right {
                return Err(Invalid::new(
                    format!("{key}.right"),
                    "a stream cannot be joined with itself",
                ));
            }
            // A join on a named field needs that field decoded from both sides.
            if let JoinOn::Field(field) = &join.on {
                for side in [left, right] {
                    match key_fields[side] {
                        Some(existing) if existing != field => {
                            return Err(Invalid::new(
                                format!("{key}.on"),
                                format!(
                                    "stream {:?} is already joined on field {existing:?}; one \
                                     join key field per stream",
                                    self.streams[side].name
                                ),
                            ))
                        }
                        _ => key_fields[side] = Some(field),
                    }
                }
            }
        }
        Ok(())
    }

    /// The index of the stream a join's `side` names, if it can be joined.
    fn joinable(&self, side: &str, name: &str) -> Result<usize, Invalid> {
        let index = self
            .stream_index(name)
            .ok_or_else(|| Invalid::new(side, format!("no stream named {name:?}")))?;
        if self.streams[index].is_group_assigned() {
            return Err(Invalid::new(
                side,
                format!(
                    "stream {name:?} uses assignment = \"group\", which keeps state per \
                     partition; a join needs both streams in one state: use assignment = \
                     \"static\""
                ),
            ));
        }
        Ok(index)
    }

    /// A stream whose partitions a consumer group moves between instances hands its state over
    /// through the checkpoint store, so it needs a `db` sink; the Parquet sink's exactly-once
    /// files belong to one instance's checkpoints, which a group does not have.
    fn validate_group_sinks(&self) -> Result<(), Invalid> {
        let Some(index) = self
            .streams
            .iter()
            .position(StreamConfig::is_group_assigned)
        else {
            return Ok(());
        };
        if !self.sinks.iter().any(|s| matches!(s, SinkConfig::Db(_))) {
            return Err(Invalid::new(
                format!("streams[{index}].source.assignment"),
                "\"group\" needs a db sink: partition state moves between instances through its \
                 checkpoints table (PostgreSQL for instances on several hosts)",
            ));
        }
        if let Some(parquet) = self
            .sinks
            .iter()
            .position(|s| matches!(s, SinkConfig::Parquet(_)))
        {
            return Err(Invalid::new(
                format!("sinks[{parquet}]"),
                format!(
                    "the parquet sink cannot be used with assignment = \"group\" \
                     (streams[{index}]) yet: its files are exactly-once per instance, not per \
                     partition; a pipeline with a lake needs assignment = \"static\" (or \
                     partitions = [...] per instance)"
                ),
            ));
        }
        Ok(())
    }

    /// Fills in what depends on other keys, once everything is known to be valid: the Kafka
    /// consumer group named after its stream, the join key fields and stream indices of joins.
    fn resolve(&mut self) {
        for stream in &mut self.streams {
            stream.source.resolve(&stream.name);
        }
        for i in 0..self.joins.len() {
            let sides = [
                self.stream_index(&self.joins[i].left),
                self.stream_index(&self.joins[i].right),
            ];
            let [Some(left), Some(right)] = sides else {
                continue; // refused by validate_joins
            };
            self.joins[i].sides = (left, right);
            if let JoinOn::Field(field) = &self.joins[i].on {
                for side in [left, right] {
                    self.streams[side].fields.join_key = Some(field.clone());
                }
            }
        }
        self.auth.token = self.auth.token.take().filter(|t| !t.is_empty());
    }

    /// The database that keeps checkpoints and the notification outbox and that the dashboard
    /// reads: `checkpoint.store`, or else the first `db` sink's.
    pub fn database_url(&self) -> Option<&str> {
        match &self.checkpoint.store {
            Some(store) => Some(store.as_str()),
            None => self.db_sink_urls().next(),
        }
    }

    fn db_sink_urls(&self) -> impl Iterator<Item = &str> {
        self.sinks.iter().filter_map(|sink| match sink {
            SinkConfig::Db(db) => Some(db.url.as_str()),
            _ => None,
        })
    }

    pub fn stream_index(&self, name: &str) -> Option<usize> {
        self.streams.iter().position(|s| s.name == name)
    }
}

impl StreamConfig {
    /// Whether a consumer group assigns this stream's partitions (state per partition).
    pub fn is_group_assigned(&self) -> bool {
        self.source.is_group_assigned()
    }

    fn validate(&self) -> Result<(), Invalid> {
        if self.name.trim().is_empty() {
            return Err(Invalid::new("name", "must not be empty"));
        }
        self.source.validate().map_err(|e| e.under("source"))?;
        self.fields.validate().map_err(|e| e.under("fields"))?;
        self.watermark
            .validate()
            .map_err(|e| e.under("watermark"))?;
        if let Some(dedup) = &self.dedup {
            if self.fields.id.is_none() {
                return Err(Invalid::new(
                    "dedup",
                    "dedup needs an id field: set fields.id",
                ));
            }
            dedup.validate().map_err(|e| e.under("dedup"))?;
        }
        for (i, window) in self.windows.iter().enumerate() {
            window
                .validate()
                .map_err(|e| e.under(format!("windows[{i}]")))?;
        }
        if let Some(analytics) = &self.analytics {
            if self.fields.value.is_none() {
                return Err(Invalid::new(
                    "analytics",
                    "analytics need a value field: set fields.value",
                ));
            }
            analytics.validate().map_err(|e| e.under("analytics"))?;
        }
        if self.max_series == 0 {
            return Err(Invalid::new("max_series", "must be at least 1"));
        }
        if !(1..=MAX_LABEL_BYTES_LIMIT).contains(&self.max_label_bytes) {
            return Err(Invalid::new(
                "max_label_bytes",
                format!("must be between 1 and {MAX_LABEL_BYTES_LIMIT}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::anomaly::ZScoreMethod;
    use crate::engine::join::JoinKind;
    use crate::source::{Assignment, StartFrom};

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
        assert!(matches!(config.streams[0].source, SourceConfig::Demo(_)));
    }

    #[test]
    fn the_documented_shape_parses() {
        let config = Config::from_toml_str(ISSUE_EXAMPLE).unwrap();
        let s = &config.streams[0];
        assert_eq!(s.watermark.lateness.ms(), 10_000);
        assert_eq!(s.dedup.unwrap().horizon.ms(), 300_000);
        let seconds = Duration::from_secs;
        assert_eq!(
            s.windows,
            vec![
                WindowSpec::Tumbling { size: seconds(60) },
                WindowSpec::Sliding {
                    size: seconds(60),
                    slide: seconds(10)
                },
                WindowSpec::Session { gap: seconds(30) },
            ]
        );
        assert_eq!(s.analytics.unwrap().zscore.method, ZScoreMethod::Mean);
    }

    fn error_of(toml: &str) -> String {
        Config::from_toml_str(toml).unwrap_err().to_string()
    }

    #[test]
    fn the_checkpoint_store_is_a_db_sink_named_by_its_url() {
        let two = "[[streams]]\nname = \"s\"\nsource = { kind = \"file\", path = \"x\" }\n\
                   fields = { time = \"ts\" }\n\
                   [[sinks]]\nkind = \"db\"\nurl = \"sqlite://a.db\"\n\
                   [[sinks]]\nkind = \"db\"\nurl = \"sqlite://b.db\"\n";
        let first = Config::from_toml_str(two).unwrap();
        assert_eq!(first.database_url(), Some("sqlite://a.db"));
        let named =
            Config::from_toml_str(&format!("{two}[checkpoint]\nstore = \"sqlite://b.db\"\n"))
                .unwrap();
        assert_eq!(named.database_url(), Some("sqlite://b.db"));
        let stray = error_of(&format!("{two}[checkpoint]\nstore = \"sqlite://c.db\"\n"));
        assert!(
            stray.starts_with("checkpoint.store: \"sqlite://c.db\" is not the url of a db sink")
                && stray.contains("\"sqlite://a.db\", \"sqlite://b.db\""),
            "{stray}"
        );
    }

    #[test]
    fn live_limits_read_sizes_and_name_their_keys() {
        let config = Config::from_toml_str(&format!(
            "{ISSUE_EXAMPLE}\n[live]\nmax_memory = \"2GiB\"\nevict_idle_after = \"30m\"\n"
        ))
        .unwrap();
        let limits = config.live.limits();
        assert_eq!(limits.max_memory, 2 << 30);
        assert_eq!(limits.idle_after, std::time::Duration::from_secs(1800));
        let garbled = format!("{ISSUE_EXAMPLE}\n[live]\nmax_memory = \"lots\"\n");
        assert!(
            error_of(&garbled).starts_with("live.max_memory: invalid size \"lots\""),
            "{}",
            error_of(&garbled)
        );
        let tiny = format!("{ISSUE_EXAMPLE}\n[live]\nmax_memory = \"90kB\"\n");
        assert!(
            error_of(&tiny).starts_with("live.max_memory: 90000B is too small"),
            "{}",
            error_of(&tiny)
        );
    }

    #[test]
    fn engine_threads_default_to_the_cores_and_are_checked() {
        let config = Config::from_toml_str(ISSUE_EXAMPLE).unwrap();
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(config.engine.threads(), cores);
        let three = format!("{ISSUE_EXAMPLE}\n[engine]\nthreads = 3\n");
        assert_eq!(Config::from_toml_str(&three).unwrap().engine.threads(), 3);
        let none = format!("{ISSUE_EXAMPLE}\n[engine]\nthreads = 0\n");
        assert!(
            error_of(&none).starts_with("engine.threads: must be between 1 and 1024, not 0"),
            "{}",
            error_of(&none)
        );
    }

    #[test]
    fn a_socket_listening_beyond_loopback_is_warned_about() {
        let socket = |listen: &str| {
            ISSUE_EXAMPLE.replace(
                "source = { kind = \"file\", path = \"data/\" }",
                &format!("source = {{ kind = \"socket\", listen = \"{listen}\" }}"),
            )
        };
        let local = Config::from_toml_str(&socket("127.0.0.1:9999")).unwrap();
        assert!(local.warnings().is_empty());
        let open = Config::from_toml_str(&socket("0.0.0.0:9999")).unwrap();
        let warnings = open.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("streams[0].source.listen: 0.0.0.0:9999 is reachable"),
            "{warnings:?}"
        );
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
        assert!(
            msg.starts_with("streams[0].watermark.latenes: unknown field `latenes`"),
            "{msg}"
        );
        let kind = ISSUE_EXAMPLE.replace("kind = \"file\"", "kind = \"ftp\"");
        let msg = error_of(&kind);
        assert!(
            msg.starts_with("streams[0].source.kind: unknown variant `ftp`"),
            "{msg}"
        );
        let inside = ISSUE_EXAMPLE.replace("path = \"data/\"", "path = \"data/\", glob = \"*\"");
        let msg = error_of(&inside);
        assert!(
            msg.starts_with("streams[0].source.glob: unknown field `glob`"),
            "{msg}"
        );
        let alpha = ISSUE_EXAMPLE.replace("ewma_alpha = 0.1", "ewma_alpha = 1.5");
        assert!(error_of(&alpha).starts_with("streams[0].analytics.ewma_alpha:"));
        let no_id = ISSUE_EXAMPLE.replace(", id = \"id\"", "");
        assert!(error_of(&no_id).starts_with("streams[0].dedup:"));
        let fmt = ISSUE_EXAMPLE.replace("\"epoch_ms\"", "\"julian\"");
        assert!(error_of(&fmt).starts_with("streams[0].fields.time_format:"));
        let fine = ISSUE_EXAMPLE.replace(
            "size = \"1m\", slide = \"10s\"",
            "size = \"365d\", slide = \"1ms\"",
        );
        let msg = error_of(&fine);
        assert!(
            msg.starts_with("streams[0].windows[1].slide: a window of 365d sliding by 1ms is kept as 31536000000 panes of 1ms")
                && msg.contains("at least 52m 33s 600ms")
                && !msg.contains("multiple of slide"),
            "{msg}"
        );
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
        // A syntax error has no key to name: the message is the parser's.
        let syntax = error_of("[[streams]\n");
        assert!(syntax.starts_with("invalid table header"), "{syntax}");
        let none = error_of(
            "[[streams]]\nname = \"s\"\nsource = { kind = \"demo\" }\nfields = { time = \"ts\" }\n",
        );
        assert!(
            none.starts_with("sinks: at least one [[sinks]] table"),
            "{none}"
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
        assert_eq!(k.group_id(), "tidewatch-sensors");
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
