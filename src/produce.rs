//! `tidewatch produce`: writes generated events (see [`crate::generator`]) to a Kafka topic at a
//! chosen rate, keyed by series, and reports what the broker acknowledged.
//!
//! Event times follow the wall clock, so a running Tidewatch sees a live stream. The rate is
//! held by pacing sends against a schedule (no sleep per message), and delivery is counted from
//! the broker's acknowledgements, not from what was handed to librdkafka.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientConfig;
use thiserror::Error;

use crate::generator::{Faults, Generator};

#[derive(Debug, Error)]
pub enum ProduceError {
    #[error("kafka")]
    Kafka(#[from] KafkaError),
    #[error("cannot start a runtime for the admin client")]
    Runtime(#[source] std::io::Error),
    #[error("cannot create topic {topic:?}: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error(
        "{undelivered} of {sent} messages were not acknowledged by the broker within {waited:?}"
    )]
    Undelivered {
        sent: u64,
        undelivered: u64,
        waited: Duration,
    },
}

/// What to produce, and how fast.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub brokers: String,
    pub topic: String,
    /// Events per second; `0` sends as fast as the broker takes them.
    pub rate: f64,
    pub series: usize,
    /// Stop after this many events (duplicates included) ...
    pub events: Option<u64>,
    /// ... or after this long, whichever comes first.
    pub duration: Option<Duration>,
    pub seed: u64,
    pub faults: Faults,
    /// Create the topic with this many partitions when it does not exist yet.
    pub partitions: Option<i32>,
    /// With `events`: stamp event `i` at `start − span + i × span / events`, spreading the
    /// events over this much event time ending at the start (a backfill), however fast they
    /// go out. `None`: each event carries the time it is sent.
    pub span: Option<Duration>,
}

/// What the broker acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct ProduceReport {
    pub delivered: u64,
    pub failed: u64,
    pub elapsed: Duration,
}

impl ProduceReport {
    pub fn rate(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Counts the broker's acknowledgements.
#[derive(Default)]
struct Acks {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = if result.is_ok() {
            &self.delivered
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// How long the final flush may wait for acknowledgements.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates `topic` with `partitions` partitions; an existing topic is left as it is.
fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), ProduceError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let runtime = crate::runtime::runtime().map_err(ProduceError::Runtime)?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = runtime.block_on(admin.create_topics(&[new], &AdminOptions::new()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(ProduceError::CreateTopic { topic, code }),
        }
    }
    Ok(())
}

pub fn produce(options: &ProduceOptions) -> Result<ProduceReport, ProduceError> {
    if let Some(partitions) = options.partitions {
        ensure_topic(&options.brokers, &options.topic, partitions)?;
    }
    let producer: ThreadedProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", &options.brokers)
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "30000")
        .create_with_context(Acks::default())?;
    let mut generator = Generator::new(options.series, options.seed, options.faults);
    let show_progress = std::io::stderr().is_terminal();
    let started = Instant::now();
    let start_ms = crate::clock::now_ms();
    let mut last_progress = started;
    let mut sent = 0u64;
    loop {
        if options.events.is_some_and(|n| sent >= n)
            || options.duration.is_some_and(|d| started.elapsed() >= d)
        {
            break;
        }
        if options.rate > 0.0 {
            let due = Duration::from_secs_f64(sent as f64 / options.rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait.min(Duration::from_millis(100)));
                continue;
            }
        }
        let clock = match (options.span, options.events) {
            (Some(span), Some(events)) if events > 0 => {
                let span = span.as_millis() as i64;
                start_ms - span + (i128::from(sent) * i128::from(span) / i128::from(events)) as i64
            }
            _ => crate::clock::now_ms(),
        };
        let event = generator.next_event(clock);
        let mut record = BaseRecord::to(&options.topic)
            .key(event.series.as_bytes())
            .payload(&event.line);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
        sent += 1;
        if show_progress && last_progress.elapsed() >= Duration::from_millis(250) {
            last_progress = Instant::now();
            let acked = producer.context().delivered.load(Ordering::Relaxed);
            let target = options.events.map_or(String::new(), |n| {
                format!("/{n} ({:.0}%)", 100.0 * sent as f64 / n as f64)
            });
            eprint!(
                "\rproduced {sent}{target}, acknowledged {acked}, {:.0} events/s   ",
                sent as f64 / started.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        }
    }
    producer.flush(FLUSH_TIMEOUT)?;
    if show_progress {
        eprintln!();
    }
    let acks = producer.context();
    let report = ProduceReport {
        delivered: acks.delivered.load(Ordering::Relaxed),
        failed: acks.failed.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    };
    if report.delivered < sent {
        return Err(ProduceError::Undelivered {
            sent,
            undelivered: sent - report.delivered,
            waited: FLUSH_TIMEOUT,
        });
    }
    Ok(report)
}
