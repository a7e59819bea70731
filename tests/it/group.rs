//! `assignment = "group"`: instances share a topic through the consumer group, and a
//! partition's state moves with the partition when the group rebalances.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Row;
use tidewatch::DbSink;
use tidewatch::SplitPosition;
use tidewatch::{Assignment, KafkaSource, KafkaSourceConfig, Polled, Rebalance, Source, StartFrom};
use tidewatch::{Faults, Generator};

use crate::crash::dump_url;
use crate::support::broker::{produce_to, Broker};
use crate::support::postgres::Postgres;
use crate::support::{assert_success, read_ndjson, tidewatch, unique_name, ChildGuard};

/// The crash test's pipeline shape: dedup, every window kind, analytics with alerts.
fn pipeline(broker: &str, topic: &str, group: &str, assignment: &str, db_url: &str) -> String {
    format!(
        r#"
checkpoint = {{ interval = "200ms" }}

[[streams]]
name = "sensors"
source = {{ kind = "kafka", brokers = "{broker}", topics = ["{topic}"], group = "{group}", assignment = "{assignment}", kafka = {{ "session.timeout.ms" = "6000" }} }}
fields = {{ time = "ts", series = "series", value = "value", id = "id" }}
watermark = {{ lateness = "10s" }}
dedup = {{ horizon = "2m" }}
windows = [
  {{ kind = "tumbling", size = "1m" }},
  {{ kind = "sliding", size = "1m", slide = "15s" }},
  {{ kind = "session", gap = "20s" }},
]
analytics = {{ sma_points = 10, trend_window = "2m", zscore = {{ window = "2m", min_samples = 20 }} }}

[[sinks]]
kind = "db"
url = "{db_url}"

[[sinks]]
kind = "ndjson"
path = "out"
"#
    )
}

/// Generated events, keyed by series (so each series stays in one partition), with
/// duplicates, anomalies and events beyond the allowed lateness.
fn events(count: i64) -> Vec<(String, Vec<u8>)> {
    let faults = Faults {
        duplicate: 0.01,
        late: 0.002,
        anomaly: 0.002,
        max_disorder_ms: 4_000,
        ..Faults::default()
    };
    let mut generator = Generator::new(9, 5, faults);
    (0..count)
        .map(|i| {
            let e = generator.next_event(1_764_000_000_000 + i * 100);
            (e.series, e.line)
        })
        .collect()
}

fn write_config(dir: &Path, name: &str, text: String) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn sorted_windows(dir: &Path) -> Vec<String> {
    let mut windows: Vec<String> = read_ndjson(&dir.join("out/windows.ndjson"))
        .iter()
        .map(|w| w.to_string())
        .collect();
    windows.sort();
    windows
}

/// One instance under a group reads what one static instance reads, with the same windows,
/// and leaves one checkpoint per partition at its end offset. A series that arrives from a
/// second partition is refused into dead letters, with the reason.
#[test]
fn a_group_run_once_equals_a_static_run_and_checkpoints_each_partition() {
    let broker = Broker::start();
    let topic = unique_name("group-once");
    broker.create_topic(&topic, 3);
    let mut messages = events(6_000);
    // "roaming" is sent under many keys, so it lands in several partitions.
    let roaming: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            let line = format!(
                r#"{{"ts":{},"series":"roaming","value":1.0,"id":"r{i}"}}"#,
                1_764_000_000_000i64 + i * 1_000
            );
            (format!("key-{i}"), line.into_bytes())
        })
        .collect();
    messages.extend(roaming);
    broker.produce(&topic, &messages);

    let run = |assignment: &str| {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("t.db").display());
        let group = unique_name("g");
        write_config(
            dir.path(),
            "p.toml",
            pipeline(&broker.bootstrap, &topic, &group, assignment, &db),
        );
        assert_success(&tidewatch(
            &["run", "--once", "--config", "p.toml"],
            dir.path(),
        ));
        (dir, db)
    };
    let (static_dir, _) = run("static");
    let (group_dir, group_db) = run("group");

    let without_roaming = |windows: Vec<String>| -> Vec<String> {
        windows
            .into_iter()
            .filter(|w| !w.contains("\"roaming\""))
            .collect()
    };
    let static_windows = sorted_windows(static_dir.path());
    assert!(static_windows.len() > 400, "{}", static_windows.len());
    assert_eq!(
        without_roaming(sorted_windows(group_dir.path())),
        without_roaming(static_windows)
    );
    let alerts = |dir: &Path| {
        let mut alerts: Vec<String> = read_ndjson(&dir.join("out/alerts.ndjson"))
            .iter()
            .map(|a| a.to_string())
            .collect();
        alerts.sort();
        alerts
    };
    let group_alerts = alerts(group_dir.path());
    assert!(!group_alerts.is_empty(), "the data has anomalies");
    assert_eq!(group_alerts, alerts(static_dir.path()));

    // Roaming events from partitions other than its first are dead letters, with the reason.
    let dead = read_ndjson(&group_dir.path().join("out/dead_letters.ndjson"));
    assert!(
        !dead.is_empty(),
        "12 keys over 3 partitions split the series"
    );
    for letter in &dead {
        let reason = letter["reason"].as_str().unwrap();
        assert!(
            reason.contains("series \"roaming\" already comes from partition")
                && reason.contains("key messages by series"),
            "{reason}"
        );
    }
    let static_dead = static_dir.path().join("out/dead_letters.ndjson");
    assert!(!static_dead.exists() || read_ndjson(&static_dead).is_empty());

    // One checkpoint per partition, each at the end of its partition.
    let db = DbSink::connect(&group_db).unwrap();
    let rows = db
        .fetch_all("SELECT pipeline, positions FROM checkpoints WHERE pipeline LIKE 'default/%' ORDER BY pipeline")
        .unwrap();
    assert_eq!(rows.len(), 3);
    let mut total = 0;
    for (partition, row) in rows.iter().enumerate() {
        let name: String = row.try_get(0).unwrap();
        assert_eq!(name, format!("default/sensors/{topic}/{partition}"));
        let positions: String = row.try_get(1).unwrap();
        total += next_offsets(&positions);
    }
    assert_eq!(total, messages.len() as u64);
}

/// Sum of the `next_offset`s in a checkpoint's positions column.
fn next_offsets(positions: &str) -> u64 {
    let value: serde_json::Value = serde_json::from_str(positions).unwrap();
    value
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|stream| stream.as_array().cloned().unwrap_or_default())
        .map(|p| p["next_offset"].as_u64().unwrap())
        .sum()
}

/// Messages the partition checkpoints of a database account for.
fn checkpointed(url: &str) -> u64 {
    let Ok(db) = DbSink::connect(url) else {
        return 0;
    };
    db.fetch_all("SELECT positions FROM checkpoints WHERE pipeline LIKE 'default/%'")
        .map(|rows| {
            rows.iter()
                .map(|row| next_offsets(&row.try_get::<String, _>(0).unwrap()))
                .sum()
        })
        .unwrap_or(0)
}

/// A following `tidewatch run` logging to `log`.
fn start_instance(dir: &Path, log: &str) -> ChildGuard {
    let log = std::fs::File::create(dir.join(log)).unwrap();
    ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_tidewatch"))
            .args(["run", "--config", "group.toml"])
            .current_dir(dir)
            .env("RUST_LOG", "warn,tidewatch=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// SIGTERM, then the exit status (it must stop by itself within 30 s).
fn stop(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `done`; on timeout, fails with the instances' logs in `dir`.
fn wait_until(dir: &Path, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "waited {limit:?} for {what}\n--- a.log\n{}\n--- b.log\n{}",
            log_of(dir, "a.log"),
            log_of(dir, "b.log")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn log_of(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// How the first of the two instances goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Departure {
    /// SIGTERM: it checkpoints, leaves the group, and the group hands its partitions over.
    Stopped,
    /// SIGKILL: the group notices after the session timeout; the other instance resumes the
    /// partitions from their last periodic checkpoints and writes those rows again.
    Killed,
}

/// Two following instances share `topic` (3 partitions, on the cluster at `bootstrap`) in one
/// consumer group, on PostgreSQL. The group moves partitions twice — when the second instance
/// joins (the first checkpoints on revocation and keeps some), and when the first departs —
/// each time with open windows, dedup and analytics state; a last `run --once` closes what is
/// left. The database must end with exactly the rows of one uninterrupted static run.
///
/// `kafka_extra` adds librdkafka properties to the instances' consumers (`, "key" = "value"`).
fn move_partitions_between_instances(
    bootstrap: &str,
    topic: &str,
    departure: Departure,
    kafka_extra: &str,
) -> String {
    let postgres = Postgres::start();
    let all = events(30_000);
    let (first, rest) = all.split_at(12_000);
    let (second, third) = rest.split_at(12_000);

    let dir = tempfile::tempdir().unwrap();
    let group = unique_name("movers");
    write_config(
        dir.path(),
        "group.toml",
        pipeline(bootstrap, topic, &group, "group", &postgres.url).replace(
            r#""session.timeout.ms" = "6000""#,
            &format!(r#""session.timeout.ms" = "6000"{kafka_extra}"#),
        ),
    );
    let limit = Duration::from_secs(90);

    produce_to(bootstrap, topic, first);
    let mut a = start_instance(dir.path(), "a.log");
    wait_until(
        dir.path(),
        "instance a to checkpoint the first part",
        limit,
        || checkpointed(&postgres.url) == first.len() as u64,
    );

    // Instance a may have had more than one assignment already (under the cooperative protocol
    // a partition the broker announces late comes as an increment), so count from here.
    let assigned_to_a = |dir: &Path| log_of(dir, "a.log").matches("Partitions assigned").count();
    let assigned_before_b = assigned_to_a(dir.path());
    let mut b = start_instance(dir.path(), "b.log");
    wait_until(
        dir.path(),
        "the group to give instance b a partition",
        limit,
        || log_of(dir.path(), "b.log").contains("Partitions assigned"),
    );
    wait_until(
        dir.path(),
        "instance a to give up a partition and keep the rest",
        limit,
        || {
            log_of(dir.path(), "a.log").contains("Partitions revoked")
                && assigned_to_a(dir.path()) > assigned_before_b
        },
    );
    produce_to(bootstrap, topic, second);
    wait_until(
        dir.path(),
        "both instances to checkpoint the second part",
        limit,
        || checkpointed(&postgres.url) == (first.len() + second.len()) as u64,
    );

    match departure {
        Departure::Stopped => {
            let status = stop(&mut a.0);
            assert!(
                status.success(),
                "instance a: {status}\n{}",
                log_of(dir.path(), "a.log")
            );
        }
        Departure::Killed => {
            a.0.kill().unwrap();
            a.0.wait().unwrap();
        }
    }
    produce_to(bootstrap, topic, third);
    wait_until(
        dir.path(),
        "instance b to checkpoint everything",
        limit,
        || checkpointed(&postgres.url) == all.len() as u64,
    );
    let status = stop(&mut b.0);
    assert!(
        status.success(),
        "instance b: {status}\n{}",
        log_of(dir.path(), "b.log")
    );

    // Instance b restored every partition from a checkpoint instance a wrote: the one it got
    // when it joined, and the others when a departed.
    let b_log = log_of(dir.path(), "b.log");
    for partition in 0..3 {
        let restored = format!("checkpoint=default/sensors/{topic}/{partition}");
        assert!(b_log.contains(&restored), "{restored} not in\n{b_log}");
    }

    // The end of input: one instance closes every window.
    assert_success(&tidewatch(
        &["run", "--once", "--config", "group.toml"],
        dir.path(),
    ));

    let reference = tempfile::tempdir().unwrap();
    let reference_db = format!("sqlite://{}", reference.path().join("r.db").display());
    write_config(
        reference.path(),
        "p.toml",
        pipeline(
            bootstrap,
            topic,
            &unique_name("ref"),
            "static",
            &reference_db,
        ),
    );
    assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        reference.path(),
    ));
    let expected = dump_url(&reference_db);
    let actual = dump_url(&postgres.url);
    assert!(expected.len() > 2_000, "{} reference rows", expected.len());
    assert_eq!(actual.len(), expected.len());
    let first_difference = actual.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(
        first_difference,
        None,
        "row differs: {:?}",
        first_difference.map(|i| (&actual[i], &expected[i]))
    );
    log_of(dir.path(), "a.log")
}

/// Against the test broker: the second instance joins, the first stops (SIGTERM).
#[test]
fn partitions_handed_over_between_instances_carry_their_state() {
    let broker = Broker::start();
    let topic = unique_name("group-move");
    broker.create_topic(&topic, 3);
    move_partitions_between_instances(&broker.bootstrap, &topic, Departure::Stopped, "");
}

/// The first instance is killed with SIGKILL: Apache Kafka's group coordinator expires it
/// after the session timeout (6 s) and hands its partitions to the other instance.
#[test]
fn partitions_of_a_killed_instance_resume_elsewhere_from_their_checkpoints() {
    let broker = Broker::start();
    let topic = unique_name("group-kill");
    broker.create_topic(&topic, 3);
    move_partitions_between_instances(&broker.bootstrap, &topic, Departure::Killed, "");
}

/// The cooperative protocol (KIP-429) moves only the partitions that change owner: revocations
/// and assignments come as increments. With a SIGTERM departure.
#[test]
fn partitions_move_under_the_cooperative_protocol_too() {
    let broker = Broker::start();
    let topic = unique_name("group-coop");
    broker.create_topic(&topic, 3);
    let a_log = move_partitions_between_instances(
        &broker.bootstrap,
        &topic,
        Departure::Stopped,
        r#", "partition.assignment.strategy" = "cooperative-sticky""#,
    );
    // When b joined, a gave up one partition of its three, not all of them.
    let revoked: Vec<&str> = a_log
        .lines()
        .filter(|l| l.contains("Partitions revoked"))
        .collect();
    assert_eq!(revoked.len(), 1, "{a_log}");
    assert!(revoked[0].ends_with("partitions=1"), "{}", revoked[0]);
}

/// Polls a group-assigned source until the group announces a rebalance.
fn next_rebalance(source: &mut KafkaSource) -> Rebalance {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match source.poll_message(Duration::from_millis(100)).unwrap() {
            Polled::Rebalance(change) => return change,
            Polled::Message(m) => panic!("read offset {} before any assignment", m.offset),
            Polled::Idle | Polled::End => {}
        }
        assert!(Instant::now() < deadline, "no rebalance within 60 s");
    }
}

/// Drops `source` on another thread and fails unless that ends within 30 s (a consumer can
/// block for ever in its close).
fn assert_closes(source: KafkaSource, what: &str) {
    let (closed, dropped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(source);
        let _ = closed.send(());
    });
    if dropped.recv_timeout(Duration::from_secs(30)).is_err() {
        panic!("{what} did not close within 30 s");
    }
}

/// The source side of a rebalance: nothing is read until the pipeline completes the
/// assignment, a checkpointed position wins over the group's offset, and a source dropped —
/// with a rebalance still pending, or normally — closes instead of hanging.
#[test]
fn a_group_source_reads_only_what_the_pipeline_assigned_and_closes_cleanly() {
    let broker = Broker::start();
    let topic = unique_name("group-source");
    broker.create_topic(&topic, 2);
    let messages: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("k{}", i % 5), format!("{{\"n\":{i}}}").into_bytes()))
        .collect();
    broker.produce(&topic, &messages);
    let config = KafkaSourceConfig {
        brokers: broker.bootstrap.clone(),
        topics: vec![topic.clone()],
        group: Some(unique_name("source-group")),
        start: StartFrom::Earliest,
        partitions: None,
        assignment: Assignment::Group,
        properties: [("session.timeout.ms".to_owned(), "6000".to_owned())].into(),
    };

    let mut source = KafkaSource::open_following(&config, &[]).unwrap();
    let waiting = source.state().unwrap();
    assert!(
        waiting.starts_with("waiting for consumer group"),
        "{waiting}"
    );
    let Rebalance::Assigned(splits) = next_rebalance(&mut source) else {
        panic!("the first rebalance assigns")
    };
    assert_eq!(splits.len(), 2);
    assert!(
        source.split_status().is_empty(),
        "nothing owned before assign()"
    );
    // Partition 0 resumes from a checkpoint at offset 3; partition 1 from the start.
    let resume = [SplitPosition {
        source: topic.clone(),
        partition: 0,
        next_offset: 3,
    }];
    source.assign(&splits, &resume).unwrap();
    assert_eq!(
        source.state().unwrap(),
        format!(
            "reading 2 partitions of consumer group {:?}",
            config.group_id()
        )
    );
    let mut first_offset = BTreeMap::new();
    let mut read = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while read < messages.len() - 3 {
        if let Polled::Message(m) = source.poll_message(Duration::from_millis(100)).unwrap() {
            first_offset.entry(m.partition).or_insert(m.offset);
            read += 1;
        }
        assert!(Instant::now() < deadline, "read {read} messages in 30 s");
    }
    assert_eq!(first_offset[&0], 3, "the checkpoint's position wins");
    assert_eq!(first_offset[&1], 0);

    // A second consumer joins: this one is asked to revoke, and is dropped before it does.
    let mut other = KafkaSource::open_following(&config, &[]).unwrap();
    let change = next_rebalance(&mut source);
    assert!(matches!(change, Rebalance::Revoked { .. }), "{change:?}");
    assert_closes(source, "a source dropped with a revocation pending");
    let Rebalance::Assigned(splits) = next_rebalance(&mut other) else {
        panic!("the remaining member is assigned")
    };
    assert_eq!(
        splits.len(),
        2,
        "it gets both partitions once the first has left"
    );

    // A member with its assignment carried out leaves the group when dropped (librdkafka
    // revokes its partitions while closing; that rebalance is applied, not queued).
    other.assign(&splits, &[]).unwrap();
    assert_closes(other, "an assigned source");
}
