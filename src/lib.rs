//! Tidewatch: real-time analytics for event streams in one binary.
//!
//! Modules, in the order data flows through them:
//!
//! - `config`: the pipeline's TOML file; each component's own table lives beside it.
//! - `source`: where raw messages come from (files, Kafka, a TCP socket, the demo generator).
//! - `event`: decoding JSON bytes into events with a field mapping; bad input is a typed error.
//! - `engine`: the pure, deterministic event-time core — watermarks, dedup, windows,
//!   per-point analytics, anomaly alerts, joins. Its module doc states the semantics.
//! - [`record`]: the output records every sink writes (the public contract).
//! - `sink`: where records go (NDJSON, the database, Kafka, Parquet, the console).
//! - `db`: the database (SQLite or PostgreSQL): schema, checkpoints, the dashboard's store.
//! - `checkpoint`: engine state plus source positions, stored atomically for exact restarts.
//! - `pipeline`: wires sources → decode → engine → sinks, with checkpoints.
//! - `live`: the in-memory view of a running pipeline and the update hub the dashboard reads.
//! - [`web`]: the dashboard server (axum): pages, JSON API, WebSocket, alert acknowledgement.
//! - `generator`, `produce`, `bench`: synthetic events, the Kafka load generator, and the
//!   throughput benchmark behind `tidewatch bench`.
//! - `clock`, `digest`, `names`, `report`: wall-clock time, stable ids, one spelling per enum
//!   value, errors as people read them.
//!
//! The modules are private; what the binary, the tests and the benchmarks use is exported
//! below, so the compiler can tell what nothing uses.

mod bench;
mod checkpoint;
mod clock;
mod config;
mod db;
mod digest;
mod engine;
mod event;
mod generator;
mod live;
mod names;
mod notify;
mod pipeline;
mod produce;
pub mod record;
mod report;
mod runtime;
mod shutdown;
mod sink;
mod source;
mod types;
pub mod web;

pub use bench::{run as run_bench, BenchReport, Workload};
pub use checkpoint::{Checkpoint, CheckpointError, CheckpointStore, Outgoing, SplitPosition};
pub use config::{Config, ConfigError, Duration, DEFAULT_PIPELINE};
pub use db::{
    Acknowledgement, AlertCursor, AlertFilter, DbCheckpoints, DbError, Store, VerdictFilter,
    VerdictShare,
};
pub use engine::plan::EnginePlan;
pub use engine::reorder::{Buffered, ReorderBuffer};
pub use engine::{Engine, LogOrder, Origin, StateDelta, StoredState};
pub use event::{Decoder, Event, FieldMapping, TimeFormat};
pub use generator::{Faults, Generator, Kind, SplitMix64};
pub use live::{Limits as LiveLimits, LiveConfig, LiveSink, LiveState, Update};
pub use notify::outbox::Delivery as NotificationDelivery;
pub use notify::{Notifier, NotifyConfig, NotifyError};
pub use pipeline::{
    reset_streams, run, run_once, Mode, Outputs, PartitionProgress, Pipeline, PipelineError,
    PipelineStatus, RunSummary, StreamProgress,
};
pub use produce::{produce, ProduceOptions};
pub use report::Report;
pub use runtime::runtime;
pub use shutdown::Shutdown;
pub use sink::{DbSink, NdjsonConfig, Sink, SinkConfig, SinkError};
pub use source::{
    Assignment, KafkaSource, KafkaSourceConfig, Polled, Rebalance, Source, SourceConfig, StartFrom,
};
