//! The Kafka sink: records as JSON to output topics, one topic per record kind, keyed by series
//! (dead letters by their source), so every record of a series lands in one partition in order.
//!
//! Kafka topics are logs, not tables: a replay after a crash appends what was written after the
//! last checkpoint again (at-least-once). Keys and stable ids (window bounds, alert ids) let a
//! compacted topic or an upserting consumer converge to exactly the rows of the `db` sink. The
//! producer is idempotent, so librdkafka's own retries never duplicate.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientConfig;
use thiserror::Error;

use super::interface::{Sink, SinkError};
use crate::record::{Record, RecordKind};
use crate::types::Invalid;

/// A `kafka` sink table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Record kind (`windows`, `alerts`, `points`, `late`, `dead_letters`, `joins`) → topic;
    /// kinds not listed are not sent.
    pub topics: BTreeMap<String, String>,
    /// Extra librdkafka properties, passed through as they are.
    #[serde(default, rename = "kafka")]
    pub properties: BTreeMap<String, String>,
}

impl KafkaSinkConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.brokers.trim().is_empty() {
            return Err(Invalid::new("brokers", "must list at least one broker"));
        }
        if self.topics.is_empty() {
            return Err(Invalid::new(
                "topics",
                "name at least one record kind's topic, e.g. { alerts = \"tidewatch.alerts\" }",
            ));
        }
        for (name, topic) in &self.topics {
            if RecordKind::from_collection(name).is_none() {
                return Err(Invalid::new(
                    format!("topics.{name}"),
                    "unknown record kind; expected one of windows, points, alerts, late, \
                     dead_letters, joins",
                ));
            }
            if topic.trim().is_empty() {
                return Err(Invalid::new(
                    format!("topics.{name}"),
                    "topic name must not be empty",
                ));
            }
        }
        Ok(())
    }

    /// The topic of each record kind that has one.
    fn topics_by_kind(&self) -> BTreeMap<RecordKind, String> {
        self.topics
            .iter()
            .filter_map(|(name, topic)| Some((RecordKind::from_collection(name)?, topic.clone())))
            .collect()
    }
}

#[derive(Debug, Error)]
pub enum KafkaSinkError {
    #[error("cannot create the producer")]
    Create(#[source] KafkaError),
    #[error("cannot encode a record as JSON")]
    Encode(#[source] serde_json::Error),
    #[error("cannot send to topic {topic:?}")]
    Send {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("the broker did not acknowledge everything within {FLUSH_TIMEOUT:?}")]
    Flush(#[source] KafkaError),
    #[error("{failed} record(s) were not delivered")]
    Undelivered {
        failed: u64,
        /// The first delivery error (the others are usually alike).
        #[source]
        first: Option<KafkaError>,
    },
}

/// How long a flush waits for the broker to acknowledge everything sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Counts failed deliveries and keeps the first error, reported at the next flush.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<KafkaError>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut first) = self.first_error.lock() {
                first.get_or_insert_with(|| error.clone());
            }
        }
    }
}

pub struct KafkaSink {
    producer: ThreadedProducer<Deliveries>,
    topics: BTreeMap<RecordKind, String>,
    buffer: Vec<u8>,
}

impl KafkaSink {
    /// A producer to the configured brokers; kinds without a topic are not sent.
    pub fn create(config: &KafkaSinkConfig) -> Result<Self, SinkError> {
        let mut client = ClientConfig::new();
        for (key, value) in &config.properties {
            client.set(key, value);
        }
        let producer = client
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .create_with_context(Deliveries::default())
            .map_err(KafkaSinkError::Create)?;
        Ok(KafkaSink {
            producer,
            topics: config.topics_by_kind(),
            buffer: Vec::with_capacity(512),
        })
    }
}

fn key_of(record: &Record) -> &str {
    match record {
        Record::Window(r) => &r.series,
        Record::Point(r) => &r.series,
        Record::Alert(r) => &r.series,
        Record::Late(r) => &r.series,
        Record::DeadLetter(r) => &r.source,
        Record::Join(r) => &r.key,
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        for record in records {
            let Some(topic) = self.topics.get(&record.kind()) else {
                continue;
            };
            self.buffer.clear();
            let encoded = match record {
                Record::Window(r) => serde_json::to_writer(&mut self.buffer, r),
                Record::Point(r) => serde_json::to_writer(&mut self.buffer, r),
                Record::Alert(r) => serde_json::to_writer(&mut self.buffer, r),
                Record::Late(r) => serde_json::to_writer(&mut self.buffer, r),
                Record::DeadLetter(r) => serde_json::to_writer(&mut self.buffer, r),
                Record::Join(r) => serde_json::to_writer(&mut self.buffer, r),
            };
            encoded.map_err(KafkaSinkError::Encode)?;
            let mut message = BaseRecord::to(topic)
                .key(key_of(record))
                .payload(&self.buffer[..]);
            loop {
                match self.producer.send(message) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // Backpressure: wait for acknowledgements to free the local queue.
                        message = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((source, _)) => {
                        return Err(KafkaSinkError::Send {
                            topic: topic.clone(),
                            source,
                        }
                        .into())
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits until the broker acknowledged everything; a failed delivery fails the flush, so the
    /// checkpoint is not written and the records are sent again on restart.
    fn flush(&mut self, _epoch: u64) -> Result<(), SinkError> {
        self.producer
            .flush(FLUSH_TIMEOUT)
            .map_err(KafkaSinkError::Flush)?;
        let context = self.producer.context();
        let failed = context.failed.swap(0, Ordering::Relaxed);
        if failed > 0 {
            let first = context.first_error.lock().ok().and_then(|mut e| e.take());
            return Err(KafkaSinkError::Undelivered { failed, first }.into());
        }
        Ok(())
    }

    /// The pipeline replays from its checkpoint: records of this epoch are sent again, whether
    /// or not they reached the broker (at least once). Failures counted so far belong to
    /// records the replay resends, so they are forgotten; a message still queued is delivered
    /// or counted against the next flush.
    fn rewind(&mut self, _resume: Option<u64>) -> Result<(), SinkError> {
        let context = self.producer.context();
        context.failed.store(0, Ordering::Relaxed);
        if let Ok(mut first) = context.first_error.lock() {
            first.take();
        }
        Ok(())
    }
}

impl From<KafkaSinkError> for SinkError {
    fn from(error: KafkaSinkError) -> Self {
        SinkError::Failed {
            kind: "kafka",
            source: Box::new(error),
        }
    }
}
