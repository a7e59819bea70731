//! A real Kafka-protocol broker process per test: noida-db (see shared/TESTING.md), installed by
//! `scripts/test.sh` into `.test-deps/`, or the binary named by `TIDEWATCH_TEST_BROKER_BIN`.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

use super::free_port;

pub struct Broker {
    child: Child,
    pub bootstrap: String,
    _data: tempfile::TempDir,
}

fn spawn(port: u16, data: &std::path::Path) -> Child {
    let binary = broker_binary();
    assert!(
        binary.exists(),
        "Kafka test broker not found at {}: run ./scripts/test.sh, which installs noida-db \
         there, or set TIDEWATCH_TEST_BROKER_BIN to a noida-db binary",
        binary.display()
    );
    Command::new(&binary)
        .args([
            "start",
            "--host",
            "127.0.0.1",
            "--only",
            "kafka",
            "--kafka-port",
        ])
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()))
}

fn broker_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TIDEWATCH_TEST_BROKER_BIN") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".test-deps/noida-db/noida-db")
}

impl Broker {
    /// Starts a single-node broker on a free loopback port and waits until it answers metadata.
    pub fn start() -> Broker {
        let data = tempfile::tempdir().expect("a temporary data dir");
        let port = free_port();
        let broker = Broker {
            child: spawn(port, data.path()),
            bootstrap: format!("127.0.0.1:{port}"),
            _data: data,
        };
        broker.wait_until_ready();
        broker
    }

    /// Stops the broker (an outage); its data stays for [`Broker::restart`]. SIGTERM, so it
    /// writes its metadata down (the test broker keeps topics only across a clean stop).
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the broker again on the same port with the same data.
    pub fn restart(&mut self) {
        let port: u16 = self.bootstrap.rsplit(':').next().unwrap().parse().unwrap();
        self.child = spawn(port, self._data.path());
        self.wait_until_ready();
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&self.bootstrap).is_err() {
            assert!(
                Instant::now() < deadline,
                "broker did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let consumer: BaseConsumer = self.client().create().expect("a metadata client");
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(20));
        assert!(
            metadata.is_ok(),
            "broker does not answer metadata: {metadata:?}"
        );
    }

    pub fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }

    /// Creates a topic with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let results =
            futures_executor::block_on(admin.create_topics(&[topic], &AdminOptions::new()))
                .expect("create_topics request");
        for result in results {
            result.unwrap_or_else(|(topic, code)| panic!("cannot create {topic}: {code:?}"));
        }
    }

    /// Produces `(key, payload)` messages and waits until the broker has acknowledged them.
    pub fn produce(&self, topic: &str, messages: &[(String, Vec<u8>)]) {
        produce_to(&self.bootstrap, topic, messages);
    }

    /// Produces `(partition, key, payload)` messages, each to the partition it names.
    pub fn produce_to_partitions(&self, topic: &str, messages: &[(i32, String, Vec<u8>)]) {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "5")
            .create()
            .unwrap();
        for (partition, key, payload) in messages {
            let mut record = BaseRecord::to(topic)
                .partition(*partition)
                .key(key.as_bytes())
                .payload(payload);
            while let Err((_, back)) = producer.send(record) {
                record = back;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        producer
            .flush(Duration::from_secs(30))
            .expect("all messages acknowledged");
    }

    /// Every message of a topic as (key, payload), partition by partition.
    pub fn read_all(&self, topic: &str) -> Vec<(String, Vec<u8>)> {
        use rdkafka::message::Message;
        use rdkafka::{Offset, TopicPartitionList};
        let consumer: BaseConsumer = self.client().set("group.id", "reader").create().unwrap();
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let partitions: Vec<i32> = metadata.topics()[0]
            .partitions()
            .iter()
            .map(|p| p.id())
            .collect();
        let mut assignment = TopicPartitionList::new();
        let mut remaining = 0;
        for &p in &partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap();
            remaining += high - low;
            assignment
                .add_partition_offset(topic, p, Offset::Offset(low))
                .unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let mut messages = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while remaining > 0 {
            assert!(
                Instant::now() < deadline,
                "{remaining} messages of {topic} not read within 30 s"
            );
            if let Some(result) = consumer.poll(Duration::from_millis(200)) {
                let m = result.expect("a message");
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                messages.push((key, m.payload().unwrap_or_default().to_vec()));
                remaining -= 1;
            }
        }
        messages
    }

    /// Sum of the partitions' high watermarks: how many messages the topic holds.
    pub fn message_count(&self, topic: &str, partitions: i32) -> i64 {
        let consumer: BaseConsumer = self.client().create().unwrap();
        (0..partitions)
            .map(|p| {
                let (low, high) = consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .unwrap();
                high - low
            })
            .sum()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Test data is thrown away, so no graceful snapshot is needed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Produces `(key, payload)` messages to any Kafka-protocol cluster (the test broker,
/// librdkafka's mock cluster) and waits until they are acknowledged.
pub fn produce_to(bootstrap: &str, topic: &str, messages: &[(String, Vec<u8>)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for (key, payload) in messages {
        let mut record = BaseRecord::to(topic).key(key.as_bytes()).payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("all messages acknowledged");
}
