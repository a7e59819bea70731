//! What librdkafka calls back into during `poll`: statistics (each partition's high watermark,
//! whether a broker is up) and the consumer group's rebalances, kept for the pipeline.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList};
use tracing::{debug, warn};

/// A rebalance librdkafka announced, waiting for the pipeline.
#[derive(Debug)]
pub(super) enum PendingRebalance {
    Assign(Vec<(String, i32)>),
    Revoke {
        partitions: Vec<(String, i32)>,
        lost: bool,
    },
}

/// Keeps the newest high watermark librdkafka reports per partition, and the group's
/// rebalances until the pipeline takes them. Both arrive during `poll`, on the pipeline thread,
/// so the locks are never contended.
#[derive(Default)]
pub struct LagContext {
    pub(super) high_watermarks: Mutex<HashMap<(String, i32), i64>>,
    /// When statistics last showed a broker connection up: clears a reported outage on an
    /// idle topic, where no message would.
    pub(super) broker_up_at: Mutex<Option<Instant>>,
    pub(super) rebalances: Mutex<VecDeque<PendingRebalance>>,
    /// Set when the consumer is being dropped: rebalances (the revocation of leaving the group)
    /// are applied at once, the state having been checkpointed already.
    pub(super) closing: AtomicBool,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        let mut high = lock(&self.high_watermarks);
        if statistics.brokers.values().any(|b| b.state == "UP") {
            *lock(&self.broker_up_at) = Some(Instant::now());
        }
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                // librdkafka lists an internal partition -1 and reports -1 before it knows.
                if partition >= 0 && p.hi_offset >= 0 {
                    high.insert((topic.clone(), partition), p.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for LagContext {
    /// Queues the rebalance for the pipeline instead of applying it: librdkafka waits for the
    /// assign/unassign call that [`KafkaSource::assign`] / [`KafkaSource::revoke`] make.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        if self.closing.load(Ordering::Relaxed) {
            let applied = match err {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => apply_assign(consumer, tpl),
                _ => apply_revoke(consumer, tpl),
            };
            if let Err(error) = applied {
                debug!(%error, "Rebalance while closing.");
            }
            return;
        }
        let event = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                PendingRebalance::Assign(partitions)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => PendingRebalance::Revoke {
                partitions,
                lost: consumer.assignment_lost(),
            },
            other => {
                // librdkafka asks to drop the assignment; whoever gets the partitions next
                // resumes from their last checkpoint.
                warn!(error = ?other, "Consumer group rebalance failed; dropping the assignment.");
                PendingRebalance::Revoke {
                    partitions,
                    lost: true,
                }
            }
        };
        debug!(?event, "Consumer group rebalance.");
        lock(&self.rebalances).push_back(event);
    }
}

pub(super) fn apply_assign(
    consumer: &BaseConsumer<LagContext>,
    tpl: &TopicPartitionList,
) -> Result<(), KafkaError> {
    match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
        _ => consumer.assign(tpl),
    }
}

pub(super) fn apply_revoke(
    consumer: &BaseConsumer<LagContext>,
    tpl: &TopicPartitionList,
) -> Result<(), KafkaError> {
    match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
        _ => consumer.unassign(),
    }
}
