//! A real Kafka broker process per test: Apache Kafka itself, a single-node KRaft broker (broker
//! and controller in one JVM) from the jars `scripts/test.sh` copies from Maven Central into
//! `.test-deps/kafka/libs` (`tests/kafka/pom.xml`). It starts in a few seconds; unlike the
//! re-implementations tried before (noida-db), its group coordinator expires a member that
//! stops heartbeating, and a new cluster's coordinator is not ready at once.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
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
    /// The KRaft controller's port.
    controller_port: u16,
    _data: tempfile::TempDir,
}

/// Any valid KRaft cluster id: each broker has a data directory of its own.
const CLUSTER_ID: &str = "MkU3OEVBNTcwNTJENDM2Qk";

fn spawn(port: u16, controller_port: u16, data: &Path) -> Child {
    spawn_apache_kafka(port, controller_port, data)
}

fn kafka_libs() -> PathBuf {
    let libs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".test-deps/kafka/libs");
    assert!(
        libs.join("kafka_2.13-4.4.0.jar").exists(),
        "Apache Kafka's jars are not in {}: run ./scripts/test.sh, which copies them from Maven \
         Central (tests/kafka/pom.xml)",
        libs.display()
    );
    libs
}

fn java(libs: &Path) -> Command {
    let mut java = Command::new("java");
    java.args(["-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-cp"])
        .arg(format!("{}/*", libs.display()));
    java
}

/// A single-node KRaft broker (broker and controller in one process); its storage is
/// formatted on the first start only, so a restart keeps the topics and offsets.
fn spawn_apache_kafka(port: u16, controller_port: u16, data: &Path) -> Child {
    let libs = kafka_libs();
    let properties = data.join("server.properties");
    if !properties.exists() {
        std::fs::write(
            &properties,
            format!(
                "process.roles=broker,controller\n\
                 node.id=1\n\
                 controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}\n\
                 listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
                 controller.listener.names=CONTROLLER\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
                 log.dirs={}\n\
                 offsets.topic.replication.factor=1\n\
                 offsets.topic.num.partitions=1\n\
                 transaction.state.log.replication.factor=1\n\
                 transaction.state.log.min.isr=1\n\
                 share.coordinator.state.topic.replication.factor=1\n\
                 share.coordinator.state.topic.min.isr=1\n\
                 group.initial.rebalance.delay.ms=0\n",
                data.join("logs").display()
            ),
        )
        .unwrap();
        let format = java(&libs)
            .args(["kafka.tools.StorageTool", "format", "-t", CLUSTER_ID, "-c"])
            .arg(&properties)
            .arg("--standalone")
            .output()
            .expect("java runs (the JDK that maven brings)");
        assert!(
            format.status.success(),
            "formatting the broker's storage failed: {}",
            String::from_utf8_lossy(&format.stdout)
        );
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("kafka.log"))
        .unwrap();
    java(&libs)
        .arg("kafka.Kafka")
        .arg(&properties)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("java starts Apache Kafka")
}

impl Broker {
    /// Starts a single-node broker on a free loopback port and waits until it answers metadata.
    pub fn start() -> Broker {
        let data = tempfile::tempdir().expect("a temporary data dir");
        let (port, controller_port) = (free_port(), free_port());
        let broker = Broker {
            child: spawn(port, controller_port, data.path()),
            bootstrap: format!("127.0.0.1:{port}"),
            controller_port,
            _data: data,
        };
        broker.wait_until_ready();
        broker
    }

    /// Stops the broker (an outage) with SIGTERM, a clean shutdown; its data stays for
    /// [`Broker::restart`].
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the broker again on the same ports with the same data.
    pub fn restart(&mut self) {
        let port: u16 = self.bootstrap.rsplit(':').next().unwrap().parse().unwrap();
        self.child = spawn(port, self.controller_port, self._data.path());
        self.wait_until_ready();
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while TcpStream::connect(&self.bootstrap).is_err() {
            assert!(
                Instant::now() < deadline,
                "broker did not listen within 90 s; its log: {}",
                std::fs::read_to_string(self._data.path().join("kafka.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let consumer: BaseConsumer = self.client().create().expect("a metadata client");
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(30));
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
