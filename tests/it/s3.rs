//! The Parquet lake on a real S3 server (SeaweedFS, which checks request signatures): the
//! same exactly-once rows across a SIGKILL as a local lake of an uninterrupted run, and wrong
//! credentials refused with a clear error.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidewatch::record::{AlertRecord, PointRecord, WindowRecord};
use tidewatch::{Faults, Generator};

use crate::lake::lake_rows;
use crate::support::assert_success;
use crate::support::seaweed::{SeaweedS3, SECRET_KEY};

const BUCKET: &str = "tidewatch";

fn pipeline(events: &Path, lake: &str, db: &str) -> String {
    format!(
        r#"
checkpoint = {{ interval = "100ms" }}

[[streams]]
name = "sensors"
source = {{ kind = "file", path = "{}" }}
fields = {{ time = "ts", series = "series", value = "value", id = "id" }}
watermark = {{ lateness = "10s" }}
dedup = {{ horizon = "2m" }}
windows = [{{ kind = "tumbling", size = "1m" }}, {{ kind = "sliding", size = "1m", slide = "15s" }}]
analytics = {{ sma_points = 10, trend_window = "2m", zscore = {{ window = "2m", min_samples = 20 }} }}

[[sinks]]
kind = "db"
url = "sqlite://{db}"

[[sinks]]
kind = "parquet"
url = "{lake}"
max_rows = 5000
"#,
        events.display()
    )
}

/// `tidewatch ARGS` in `dir` with the S3 settings (secret `secret`).
fn command(dir: &Path, args: &[&str], secret: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidewatch"));
    command
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .envs(SeaweedS3::env(secret));
    command
}

fn has_checkpoint(db: &Path) -> bool {
    db.exists()
        && tidewatch::DbSink::connect(&format!("sqlite://{}", db.display()))
            .and_then(|db| {
                db.fetch_all("SELECT pipeline FROM checkpoints WHERE engine IS NOT NULL")
            })
            .is_ok_and(|rows| !rows.is_empty())
}

#[test]
fn an_s3_lake_gets_the_rows_of_an_uninterrupted_run_across_a_sigkill() {
    let s3 = SeaweedS3::start(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults {
        duplicate: 0.01,
        late: 0.002,
        anomaly: 0.001,
        max_disorder_ms: 4_000,
        ..Faults::default()
    };
    let mut generator = Generator::new(8, 5, faults);
    let events: String = (0..150_000i64)
        .map(|i| {
            let mut line = generator.next_event(1_764_000_000_000 + i * 100).line;
            line.push(b'\n');
            String::from_utf8(line).unwrap()
        })
        .collect();
    let events_path = dir.path().join("events.ndjson");
    std::fs::write(&events_path, events).unwrap();

    // The reference: one uninterrupted run into a local lake.
    std::fs::write(
        dir.path().join("reference.toml"),
        pipeline(&events_path, "reference-lake", "reference.db"),
    )
    .unwrap();
    assert_success(
        &command(
            dir.path(),
            &["run", "--once", "--config", "reference.toml"],
            SECRET_KEY,
        )
        .output()
        .unwrap(),
    );

    // Into S3: a following run killed with -9 once it stored a checkpoint, then a restart.
    std::fs::write(
        dir.path().join("s3.toml"),
        pipeline(&events_path, &format!("s3://{BUCKET}/lake"), "s3.db"),
    )
    .unwrap();
    let mut child = command(dir.path(), &["run", "--config", "s3.toml"], SECRET_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !has_checkpoint(&dir.path().join("s3.db")) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the following run exited ({status}) before it was killed");
        }
        assert!(Instant::now() < deadline, "no checkpoint within 120 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    assert!(!child.wait().unwrap().success());
    assert_success(
        &command(
            dir.path(),
            &["run", "--once", "--config", "s3.toml"],
            SECRET_KEY,
        )
        .output()
        .unwrap(),
    );

    let mirror = dir.path().join("mirror");
    let objects = SeaweedS3::download(BUCKET, "lake", &mirror);
    assert!(objects > 3, "{objects} objects in the lake");
    let reference = dir.path().join("reference-lake");
    let s3_lake = mirror.join("lake");
    let windows = lake_rows::<WindowRecord>(&reference, "window");
    assert!(windows.len() > 1_000, "{} windows", windows.len());
    assert_eq!(lake_rows::<WindowRecord>(&s3_lake, "window"), windows);
    assert_eq!(
        lake_rows::<PointRecord>(&s3_lake, "point"),
        lake_rows::<PointRecord>(&reference, "point")
    );
    assert_eq!(
        lake_rows::<AlertRecord>(&s3_lake, "alert"),
        lake_rows::<AlertRecord>(&reference, "alert")
    );
    drop(s3);
}

#[test]
fn wrong_s3_credentials_are_refused_with_a_clear_error() {
    let _s3 = SeaweedS3::start(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    std::fs::write(
        &events,
        "{\"ts\":1764000000000,\"series\":\"a\",\"value\":1.0,\"id\":\"1\"}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        pipeline(&events, &format!("s3://{BUCKET}/lake"), "p.db"),
    )
    .unwrap();
    let started = Instant::now();
    let output = command(
        dir.path(),
        &["run", "--once", "--config", "p.toml"],
        "not-the-secret",
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a wrong secret must fail the run");
    assert!(
        stderr.contains("SignatureDoesNotMatch") || stderr.contains("403"),
        "{stderr}"
    );
    assert!(
        stderr.contains("s3://tidewatch/lake") || stderr.contains("parquet"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "refused within a minute, not retried forever"
    );
}
