//! Against a real Kafka-protocol broker: `run --once` from a 3-partition topic gives the same
//! records as the same events read from a file; offsets are committed; `produce` delivers.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use tidewatch::{Faults, Generator, Kind};

use crate::support::broker::Broker;
use crate::support::{assert_success, read_ndjson, tidewatch, unique_name};

const PIPELINE: &str = r#"
[[streams]]
name = "sensors"
source = SOURCE
fields = { time = "ts", series = "series", value = "value", id = "id" }
watermark = { lateness = "10s" }
dedup = { horizon = "5m" }
windows = [
  { kind = "tumbling", size = "1m" },
  { kind = "sliding", size = "1m", slide = "20s" },
  { kind = "session", gap = "30s" },
]
analytics = { sma_points = 10, trend_window = "2m", zscore = { window = "3m", min_samples = 20 } }

[[sinks]]
kind = "ndjson"
path = "out"
"#;

/// A directory holding `p.toml`: [`PIPELINE`] reading `topic` from the broker in `group`, with
/// `extra` source keys (`, partitions = [0]`, ...).
fn kafka_pipeline(broker: &Broker, topic: &str, group: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        r#"{{ kind = "kafka", brokers = "{}", topics = ["{topic}"], group = "{group}"{extra} }}"#,
        broker.bootstrap
    );
    std::fs::write(
        dir.path().join("p.toml"),
        PIPELINE.replace("SOURCE", &source),
    )
    .unwrap();
    dir
}

/// Records of one kind as sorted JSON texts (Kafka interleaves partitions differently from the
/// file, so the order across series differs; the records themselves must not).
fn sorted(dir: &Path, file: &str, drop_fields: &[&str]) -> Vec<String> {
    let mut lines: Vec<String> = read_ndjson(&dir.join("out").join(file))
        .into_iter()
        .map(|mut v| {
            if let Value::Object(map) = &mut v {
                for field in drop_fields {
                    map.remove(*field);
                }
            }
            v.to_string()
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn run_once_from_three_partitions_equals_the_file_run_and_commits() {
    let broker = Broker::start();
    let topic = unique_name("events");
    broker.create_topic(&topic, 3);

    // Six series keyed to partitions, 3 s out of order (lateness is 10 s, so nothing is late in
    // either run), duplicates, anomalies, and malformed messages.
    let faults = Faults {
        duplicate: 0.02,
        late: 0.0,
        anomaly: 0.003,
        max_disorder_ms: 3_000,
        ..Faults::default()
    };
    let mut generator = Generator::new(6, 5, faults);
    let mut messages = Vec::new();
    let mut duplicates = 0;
    for i in 0..4_000i64 {
        let event = generator.next_event(1_764_000_000_000 + i * 250);
        duplicates += usize::from(event.kind == Kind::Duplicate);
        messages.push((event.series, event.line));
        if i % 997 == 3 {
            messages.push(("bad".to_string(), b"{\"ts\": oops}".to_vec()));
        }
    }
    broker.produce(&topic, &messages);
    assert_eq!(broker.message_count(&topic, 3), messages.len() as i64);

    let group = unique_name("group");
    let kafka_dir = kafka_pipeline(
        &broker,
        &topic,
        &group,
        r#", kafka = { "session.timeout.ms" = "6000" }"#,
    );
    let stdout = assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        kafka_dir.path(),
    ));
    assert!(
        stdout.contains(&format!("{} messages", messages.len())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{duplicates} duplicates")),
        "{stdout}"
    );

    let file_dir = tempfile::tempdir().unwrap();
    let text: Vec<u8> = messages
        .iter()
        .flat_map(|(_, line)| line.iter().copied().chain([b'\n']))
        .collect();
    std::fs::write(file_dir.path().join("events.ndjson"), text).unwrap();
    let file_source = r#"{ kind = "file", path = "events.ndjson" }"#;
    std::fs::write(
        file_dir.path().join("p.toml"),
        PIPELINE.replace("SOURCE", file_source),
    )
    .unwrap();
    assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        file_dir.path(),
    ));

    for file in [
        "windows.ndjson",
        "points.ndjson",
        "alerts.ndjson",
        "late.ndjson",
    ] {
        let from_kafka = sorted(kafka_dir.path(), file, &[]);
        let from_file = sorted(file_dir.path(), file, &[]);
        assert_eq!(from_kafka.len(), from_file.len(), "{file}");
        assert!(
            from_kafka == from_file,
            "{file} differs between the Kafka and the file run"
        );
    }
    assert!(
        !sorted(kafka_dir.path(), "alerts.ndjson", &[]).is_empty(),
        "anomalies were planted"
    );
    // Dead letters carry Kafka's position instead of the file's; the reasons are the same.
    let position = ["source", "partition", "offset"];
    assert_eq!(
        sorted(kafka_dir.path(), "dead_letters.ndjson", &position),
        sorted(file_dir.path(), "dead_letters.ndjson", &position)
    );
    let dead = read_ndjson(&kafka_dir.path().join("out/dead_letters.ndjson"));
    assert!(dead.iter().all(|d| d["source"] == topic.as_str()));

    // The group's committed offsets are the end offsets: a second run reads nothing.
    let consumer: BaseConsumer = broker.client().set("group.id", &group).create().unwrap();
    let mut wanted = TopicPartitionList::new();
    for p in 0..3 {
        wanted
            .add_partition_offset(&topic, p, Offset::Invalid)
            .unwrap();
    }
    let committed = consumer
        .committed_offsets(wanted, Duration::from_secs(10))
        .unwrap();
    let mut by_partition = BTreeMap::new();
    for element in committed.elements() {
        let (_, high) = consumer
            .fetch_watermarks(&topic, element.partition(), Duration::from_secs(10))
            .unwrap();
        by_partition.insert(element.partition(), (element.offset(), high));
    }
    drop(committed);
    for (partition, (offset, high)) in &by_partition {
        assert_eq!(*offset, Offset::Offset(*high), "partition {partition}");
    }
    let again = assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        kafka_dir.path(),
    ));
    assert!(again.contains("0 messages"), "{again}");
}

#[test]
fn produce_delivers_the_requested_events_keyed_by_series() {
    let broker = Broker::start();
    let topic = unique_name("produced");
    broker.create_topic(&topic, 3);
    let dir = tempfile::tempdir().unwrap();
    let stdout = assert_success(&tidewatch(
        &[
            "produce",
            "--brokers",
            &broker.bootstrap,
            "--topic",
            &topic,
            "--events",
            "750",
            "--rate",
            "0",
            "--series",
            "4",
            "--dup-rate",
            "0.05",
            "--span",
            "1h",
        ],
        dir.path(),
    ));
    assert!(stdout.starts_with("produced 750 events"), "{stdout}");
    assert_eq!(broker.message_count(&topic, 3), 750);
    // --span spreads the event times over the hour before the start, however fast they went.
    let times: Vec<i64> = broker
        .read_all(&topic)
        .iter()
        .map(|(_, payload)| {
            serde_json::from_slice::<serde_json::Value>(payload).unwrap()["ts"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let (first, last) = (times.iter().min().unwrap(), times.iter().max().unwrap());
    assert!(
        last - first > 50 * 60_000,
        "event times span {} ms",
        last - first
    );
}

#[test]
fn a_missing_topic_is_a_clear_error() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        r#"{{ kind = "kafka", brokers = "{}", topics = ["no-such-topic"] }}"#,
        broker.bootstrap
    );
    std::fs::write(
        dir.path().join("p.toml"),
        PIPELINE.replace("SOURCE", &source),
    )
    .unwrap();
    let output = tidewatch(&["run", "--once", "--config", "p.toml"], dir.path());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no-such-topic"), "{stderr}");
}

#[test]
fn kafka_sink_sends_each_record_kind_to_its_topic_keyed_by_series() {
    let broker = Broker::start();
    let windows_topic = unique_name("windows");
    let alerts_topic = unique_name("alerts");
    let dead_topic = unique_name("dead");
    for topic in [&windows_topic, &alerts_topic, &dead_topic] {
        broker.create_topic(topic, 2);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[[streams]]
name = "sensors"
source = {{ kind = "file", path = "{root}/config/data/sensors.ndjson" }}
fields = {{ time = "ts", series = "series", value = "value", id = "id" }}
watermark = {{ lateness = "10s" }}
windows = [{{ kind = "tumbling", size = "1m" }}]
analytics = {{}}

[[sinks]]
kind = "ndjson"
path = "out"

[[sinks]]
kind = "kafka"
brokers = "{brokers}"
topics = {{ windows = "{windows_topic}", alerts = "{alerts_topic}", dead_letters = "{dead_topic}" }}
"#,
        root = env!("CARGO_MANIFEST_DIR"),
        brokers = broker.bootstrap,
    );
    std::fs::write(dir.path().join("p.toml"), config).unwrap();
    assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        dir.path(),
    ));

    for (topic, file) in [
        (&windows_topic, "windows.ndjson"),
        (&alerts_topic, "alerts.ndjson"),
        (&dead_topic, "dead_letters.ndjson"),
    ] {
        let mut expected: Vec<String> = read_ndjson(&dir.path().join("out").join(file))
            .iter()
            .map(Value::to_string)
            .collect();
        let sent = broker.read_all(topic);
        for (key, payload) in &sent {
            let record: Value = serde_json::from_slice(payload).unwrap();
            let owner = record
                .get("series")
                .or_else(|| record.get("source"))
                .unwrap();
            assert_eq!(
                owner.as_str(),
                Some(key.as_str()),
                "{topic}: key is the series"
            );
        }
        let mut actual: Vec<String> = sent
            .iter()
            .map(|(_, p)| serde_json::from_slice::<Value>(p).unwrap().to_string())
            .collect();
        expected.sort();
        actual.sort();
        assert!(!expected.is_empty(), "{file}");
        assert_eq!(actual, expected, "{topic} holds the records of {file}");
    }
}

/// Messages `(key, payload)` spread over keys, so every partition gets some.
fn keyed_messages(range: std::ops::Range<i64>) -> Vec<(String, Vec<u8>)> {
    range
        .map(|i| {
            let line = format!(
                r#"{{"ts":{},"series":"s{}","value":1.0,"id":"m{i}"}}"#,
                1_000 + i,
                i % 7
            );
            (format!("s{}", i % 7), line.into_bytes())
        })
        .collect()
}

fn total_lag(source: &dyn tidewatch::Source) -> u64 {
    source.split_status().iter().filter_map(|s| s.lag).sum()
}

/// Lag per partition: exact from the start (the end offsets found on opening), then kept up
/// to date while following from librdkafka's statistics, so messages produced after the start
/// show up as lag before they are read.
#[test]
fn consumer_lag_is_tracked_per_partition_while_following() {
    use tidewatch::{KafkaSource, Polled, Source};
    use tidewatch::{KafkaSourceConfig, StartFrom};

    let broker = Broker::start();
    let topic = unique_name("lag");
    broker.create_topic(&topic, 2);
    broker.produce(&topic, &keyed_messages(0..100));
    let config = KafkaSourceConfig {
        brokers: broker.bootstrap.clone(),
        topics: vec![topic.clone()],
        group: Some(unique_name("lag-group")),
        start: StartFrom::Earliest,
        partitions: None,
        assignment: Default::default(),
        properties: [("statistics.interval.ms".to_owned(), "200".to_owned())].into(),
    };
    let mut source = KafkaSource::open_following(&config, &[]).unwrap();
    assert_eq!(source.split_status().len(), 2, "one status per partition");
    assert_eq!(total_lag(&source), 100, "lag known before the first read");

    let mut read = 0u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while read < 30 {
        assert!(
            std::time::Instant::now() < deadline,
            "read only {read} messages"
        );
        if let Polled::Message(_) = source.poll_message(Duration::from_millis(200)).unwrap() {
            read += 1;
        }
    }
    assert_eq!(total_lag(&source), 70);

    // New messages: the statistics report the new high watermarks while we read on slowly.
    broker.produce(&topic, &keyed_messages(100..150));
    let mut seen = false;
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        if let Polled::Message(_) = source.poll_message(Duration::from_millis(200)).unwrap() {
            read += 1;
        }
        if total_lag(&source) == 150 - read {
            seen = true;
            break;
        }
    }
    assert!(
        seen,
        "lag {} after reading {read} of 150 messages",
        total_lag(&source)
    );
}

/// `/api/status` of a running dashboard, once `check` accepts it (polled for up to `wait`).
fn status_when(port: u16, wait: Duration, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + wait;
    loop {
        if let Some(body) = crate::support::http_get(port, "/api/status") {
            let status: Value = serde_json::from_str(&body).unwrap();
            if check(&status) {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what} within {wait:?}; last status: {status}"
            );
        } else {
            assert!(std::time::Instant::now() < deadline, "{what}: no status");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A broker outage does not stop a following pipeline: the status says the source is down
/// while it lasts, and once the broker is back, reading goes on where it stopped.
#[test]
fn a_following_pipeline_rides_out_a_broker_outage() {
    let mut broker = Broker::start();
    let topic = unique_name("outage");
    broker.create_topic(&topic, 2);
    broker.produce(&topic, &keyed_messages(0..200));
    let dir = kafka_pipeline(&broker, &topic, &unique_name("outage-group"), "");
    let (mut server, port) = crate::support::serve("p.toml", dir.path());
    let messages = |s: &Value| s["streams"][0]["messages"].as_u64().unwrap_or(0);
    status_when(
        port,
        Duration::from_secs(30),
        "the first 200 messages",
        |s| messages(s) == 200,
    );

    broker.stop();
    let down = status_when(port, Duration::from_secs(90), "the outage shown", |s| {
        s["streams"][0]["source_error"].is_string()
    });
    assert!(server.is_running(), "the pipeline survived the outage");
    assert_eq!(messages(&down), 200);
    let metrics = crate::support::http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains("tidewatch_source_up{stream=\"sensors\"} 0"),
        "{metrics}"
    );

    broker.restart();
    broker.produce(&topic, &keyed_messages(200..300));
    status_when(port, Duration::from_secs(90), "reading resumed", |s| {
        messages(s) == 300 && s["streams"][0]["source_error"].is_null()
    });
    assert!(server.is_running());
}

/// `partitions = [...]` splits a topic between instances by hand: two runs over disjoint
/// partitions together give exactly the windows of one run over all of them (series are keyed
/// to partitions), and a partition the topic lacks is a clear error.
#[test]
fn two_instances_on_disjoint_partitions_together_equal_one_over_all() {
    let broker = Broker::start();
    let topic = unique_name("split");
    broker.create_topic(&topic, 3);
    broker.produce(&topic, &keyed_messages(0..3_000));
    let run = |partitions: &str| {
        let dir = kafka_pipeline(&broker, &topic, &unique_name("split-group"), partitions);
        let output = tidewatch(&["run", "--once", "--config", "p.toml"], dir.path());
        (dir, output)
    };
    let (all, output) = run("");
    assert_success(&output);
    let (first, output) = run(", partitions = [0]");
    assert_success(&output);
    let (rest, output) = run(", partitions = [1, 2]");
    assert_success(&output);
    let mut split = sorted(first.path(), "windows.ndjson", &[]);
    assert!(!split.is_empty(), "partition 0 has windows of its own");
    split.extend(sorted(rest.path(), "windows.ndjson", &[]));
    split.sort();
    assert_eq!(split, sorted(all.path(), "windows.ndjson", &[]));

    let (_, output) = run(", partitions = [7]");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("has no partition 7"), "{stderr}");
}
