//! Exactly-once results across a crash: a run killed with SIGKILL after a mid-run checkpoint,
//! then started again, ends with the same database rows as a run that never stopped.
//!
//! The run that is killed follows its topic (`run` without `--once`), so it cannot end on its
//! own before the kill whatever the machine's speed: the test waits for a checkpoint with engine
//! state, kills, and the restart (`run --once`) finishes from that checkpoint.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Row;
use tidewatch::DbSink;
use tidewatch::{Faults, Generator};

use tidewatch::record::{AlertRecord, PointRecord, WindowRecord};

use crate::lake::lake_rows;
use crate::support::broker::Broker;
use crate::support::{assert_success, tidewatch, unique_name, ChildGuard};

fn pipeline(broker: &str, topic: &str, group: &str, db: &Path, lake: &Path) -> String {
    format!(
        r#"
checkpoint = {{ interval = "100ms" }}

[[streams]]
name = "sensors"
source = {{ kind = "kafka", brokers = "{broker}", topics = ["{topic}"], group = "{group}", kafka = {{ "session.timeout.ms" = "6000" }} }}
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
url = "sqlite://{}"

[[sinks]]
kind = "parquet"
url = "{}"
max_rows = 5000
"#,
        db.display(),
        lake.display()
    )
}

/// Every row of the result tables, in key order, as text.
fn dump(db_path: &Path) -> Vec<String> {
    dump_url(&format!("sqlite://{}", db_path.display()))
}

/// [`dump`] of any database the db sink takes (SQLite or PostgreSQL).
pub fn dump_url(url: &str) -> Vec<String> {
    let db = DbSink::connect(url).unwrap();
    let queries = [
        "SELECT stream, series, kind, window_start, window_end, count, sum, mean, min, max, \
         COALESCE(stddev, -1.0), first, last FROM windows \
         ORDER BY stream, series, kind, window_start, window_end",
        "SELECT id, ts, value, expected, stddev, z, direction, severity, episode_start, state \
         FROM alerts ORDER BY id",
        "SELECT source, \"partition\", \"offset\", ts, watermark FROM late_events \
         ORDER BY source, \"partition\", \"offset\"",
        "SELECT source, \"partition\", \"offset\", reason FROM dead_letters \
         ORDER BY source, \"partition\", \"offset\"",
    ];
    let mut rows = Vec::new();
    for query in queries {
        for row in db.fetch_all(query).unwrap() {
            let cells: Vec<String> = (0..row.len())
                .map(|i| {
                    if let Ok(v) = row.try_get::<i64, _>(i) {
                        v.to_string()
                    } else if let Ok(v) = row.try_get::<f64, _>(i) {
                        format!("{v:?}")
                    } else {
                        row.try_get::<String, _>(i)
                            .unwrap_or_else(|e| format!("<{e}>"))
                    }
                })
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows
}

fn has_mid_run_checkpoint(db_path: &Path) -> bool {
    if !db_path.exists() {
        return false;
    }
    let Ok(db) = DbSink::connect(&format!("sqlite://{}", db_path.display())) else {
        return false;
    };
    db.fetch_all("SELECT pipeline FROM checkpoints WHERE engine IS NOT NULL")
        .map(|rows| !rows.is_empty())
        .unwrap_or(false)
}

#[test]
fn kill_9_and_restart_gives_the_rows_of_an_uninterrupted_run() {
    let broker = Broker::start();
    let topic = unique_name("crash");
    broker.create_topic(&topic, 3);
    // Late events too: which ones are late depends on each partition's log alone, so the
    // restarted run, which interleaves the partitions differently, finds the same ones.
    let faults = Faults {
        duplicate: 0.01,
        late: 0.002,
        anomaly: 0.001,
        max_disorder_ms: 4_000,
        ..Faults::default()
    };
    let mut generator = Generator::new(12, 9, faults);
    let mut duplicates = 0;
    let messages: Vec<(String, Vec<u8>)> = (0..120_000i64)
        .map(|i| {
            let e = generator.next_event(1_764_000_000_000 + i * 100);
            duplicates += usize::from(e.kind == tidewatch::Kind::Duplicate);
            (e.series, e.line)
        })
        .chain((0..5).map(|i| (format!("bad{i}"), b"not json".to_vec())))
        .collect();
    broker.produce(&topic, &messages);

    let dir = tempfile::tempdir().unwrap();
    // The reference: one uninterrupted run.
    let reference_db = dir.path().join("reference.db");
    std::fs::write(
        dir.path().join("reference.toml"),
        pipeline(
            &broker.bootstrap,
            &topic,
            &unique_name("ref"),
            &reference_db,
            &dir.path().join("reference-lake"),
        ),
    )
    .unwrap();
    assert_success(&tidewatch(
        &["run", "--once", "--config", "reference.toml"],
        dir.path(),
    ));

    // The crash: a following run, killed with -9 once it has stored a checkpoint with engine
    // state (its windows still open).
    let crash_db = dir.path().join("crash.db");
    std::fs::write(
        dir.path().join("crash.toml"),
        pipeline(
            &broker.bootstrap,
            &topic,
            &unique_name("crash"),
            &crash_db,
            &dir.path().join("crash-lake"),
        ),
    )
    .unwrap();
    // Killed on drop too, should the test fail before it kills the run itself.
    let mut run = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_tidewatch"))
            .args(["run", "--config", "crash.toml"])
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if has_mid_run_checkpoint(&crash_db) {
            run.0.kill().unwrap(); // SIGKILL
            break;
        }
        if let Some(status) = run.0.try_wait().unwrap() {
            panic!("the following run exited ({status}) before it was killed");
        }
        assert!(Instant::now() < deadline, "no checkpoint within 120 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = run.0.wait().unwrap();
    assert!(!status.success(), "the run was killed, not stopped");
    let partial = dump(&crash_db);
    let reference = dump(&reference_db);
    assert!(
        partial.len() < reference.len(),
        "killed midway: {} of {} rows",
        partial.len(),
        reference.len()
    );

    assert_success(&tidewatch(
        &["run", "--once", "--config", "crash.toml"],
        dir.path(),
    ));
    let recovered = dump(&crash_db);
    assert_eq!(recovered.len(), reference.len());
    let first_difference = recovered.iter().zip(&reference).position(|(a, b)| a != b);
    assert_eq!(
        first_difference,
        None,
        "row differs: {:?}",
        first_difference.map(|i| (&recovered[i], &reference[i]))
    );

    // The lake too: files the crashed run wrote after its checkpoint were replaced, not doubled.
    let crash_lake = dir.path().join("crash-lake");
    let reference_lake = dir.path().join("reference-lake");
    assert_eq!(
        lake_rows::<WindowRecord>(&crash_lake, "window"),
        lake_rows::<WindowRecord>(&reference_lake, "window")
    );
    assert_eq!(
        lake_rows::<AlertRecord>(&crash_lake, "alert"),
        lake_rows::<AlertRecord>(&reference_lake, "alert")
    );
    let points = lake_rows::<PointRecord>(&crash_lake, "point");
    assert!(points.len() < 120_000 - duplicates && points.len() > 110_000);
    assert!(
        points == lake_rows::<PointRecord>(&reference_lake, "point"),
        "point rows differ"
    );
}
