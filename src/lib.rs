//! Tidewatch: real-time analytics for event streams in one binary.
//!
//! Modules, in the order data flows through them:
//!
//! - [`config`]: the pipeline's TOML file, validated into typed values; errors name the key.
//! - [`source`]: where raw messages come from (files, Kafka; socket and demo next).
//! - [`event`]: decoding JSON bytes into events with a field mapping; bad input is a typed error.
//! - [`engine`]: the pure, deterministic event-time core — watermarks, dedup, windows,
//!   per-point analytics, anomaly alerts, joins. Its module doc states the semantics.
//! - [`record`]: the output records every sink writes (the public contract).
//! - [`store`]: the database as the web server reads it (alerts, acknowledgements).
//! - [`sink`]: where records go (NDJSON files today).
//! - [`checkpoint`]: engine state plus source positions, stored atomically for exact restarts.
//! - [`live`]: the in-memory view of a running pipeline and the update hub the dashboard reads.
//! - [`pipeline`]: wires sources → decode → engine → sinks.
//! - [`generator`]: synthetic events with anomalies, duplicates and late data (bench, produce).
//! - [`produce`]: `tidewatch produce`, the load generator that writes to Kafka.
//! - [`web`]: the dashboard server (axum): pages, JSON API, alert acknowledgement.
//! - [`bench`]: the generated workload and throughput measurement behind `tidewatch bench`.

pub mod bench;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod db;
pub mod digest;
pub mod engine;
pub mod event;
pub mod generator;
pub mod live;
pub mod names;
pub mod pipeline;
pub mod produce;
pub mod record;
pub mod report;
pub mod sink;
pub mod source;
pub mod web;
