//! The yardstick for Tidewatch's Kafka paths: how fast a plain rdkafka consumer, doing nothing
//! with the messages but touching their payloads, reads a topic from the beginning to its end
//! offsets. `scripts/bench-kafka.sh` runs it beside `tidewatch run --once` on the same topic.
//!
//!     cargo bench --bench kafka_consume -- --brokers 127.0.0.1:9092 --topic events
//!
//! It consumes with the same librdkafka build and settings as Tidewatch's source (partitions
//! assigned, no group rebalance, one `poll` per message), so the difference between the two is
//! what Tidewatch does with a message.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

fn arg(name: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| panic!("usage: kafka_consume --brokers HOST:PORT --topic TOPIC"))
}

fn main() {
    if !std::env::args().any(|a| a == "--brokers") {
        // `cargo test --all-targets` runs bench targets too, with no broker to read.
        eprintln!("kafka_consume: a benchmark; scripts/bench-kafka.sh runs it against a broker");
        return;
    }
    let brokers = arg("--brokers");
    let topic = arg("--topic");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "kafka-consume-bench")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // As Tidewatch's source sets it (src/source/kafka/mod.rs, FETCH_QUEUE_BACKOFF).
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("a consumer");
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(&topic), timeout)
        .expect("topic metadata");
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut assignment = TopicPartitionList::new();
    // A partition is read once the offset before its high watermark arrives.
    let mut ends = Vec::new();
    let mut to_read = 0i64;
    for &partition in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, timeout)
            .expect("watermarks");
        assignment
            .add_partition_offset(&topic, partition, Offset::Beginning)
            .unwrap();
        ends.push(if high > low { high } else { 0 });
        to_read += high - low;
    }
    consumer.assign(&assignment).expect("assign");

    let started = Instant::now();
    let (mut messages, mut bytes, mut checksum) = (0u64, 0u64, 0u64);
    let mut done: Vec<bool> = ends.iter().map(|&end| end <= 0).collect();
    while done.iter().any(|d| !d) {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not at the end offsets within 10 minutes"
        );
        let Some(result) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = result.expect("a message");
        let payload = message.payload().unwrap_or_default();
        messages += 1;
        bytes += payload.len() as u64;
        checksum = checksum.wrapping_add(payload.first().copied().unwrap_or(0).into());
        let index = partitions
            .iter()
            .position(|&p| p == message.partition())
            .expect("an assigned partition");
        if message.offset() + 1 >= ends[index] {
            done[index] = true;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "raw consume: {messages} messages ({to_read} expected, {:.1} MB, checksum {checksum}) in \
         {seconds:.2} s: {:.0} messages/s",
        bytes as f64 / 1e6,
        messages as f64 / seconds
    );
}
