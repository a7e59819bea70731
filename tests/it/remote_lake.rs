//! What every remote lake (S3, HDFS) must show: a following run killed with SIGKILL after a
//! checkpoint and restarted leaves exactly the rows of one uninterrupted run into a local lake.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidewatch::record::{AlertRecord, PointRecord, WindowRecord};
use tidewatch::{Faults, Generator};

use crate::lake::lake_rows;
use crate::support::assert_success;

/// A file-fed pipeline into a SQLite database and the lake at `lake`, checkpointing often.
pub fn pipeline(events: &Path, lake: &str, db: &str) -> String {
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

/// `tidewatch ARGS` in `dir` with `env`.
pub fn command(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidewatch"));
    command
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)));
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

/// 150,000 events of 40 series with duplicates, late events and anomalies.
fn write_events(path: &Path) {
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
    std::fs::write(path, events).unwrap();
}

/// Runs the pipeline into `lake_url` (with `env`), kills it with SIGKILL once it stored a
/// checkpoint, runs it again to the end, and compares the lake, which `fetch` copies into the
/// local directory it is given and returns the root of, with an uninterrupted run's local
/// lake. The directory holds `remote.db`, the remote run's database, afterwards.
pub fn assert_exactly_once_across_sigkill(
    dir: &Path,
    lake_url: &str,
    env: &[(&str, String)],
    fetch: impl FnOnce(&Path) -> PathBuf,
) {
    let events_path = dir.join("events.ndjson");
    write_events(&events_path);

    // The reference: one uninterrupted run into a local lake.
    std::fs::write(
        dir.join("reference.toml"),
        pipeline(&events_path, "reference-lake", "reference.db"),
    )
    .unwrap();
    assert_success(
        &command(dir, &["run", "--once", "--config", "reference.toml"], env)
            .output()
            .unwrap(),
    );

    // Into the remote lake: a following run killed with -9 once it stored a checkpoint, then
    // a restart.
    std::fs::write(
        dir.join("remote.toml"),
        pipeline(&events_path, lake_url, "remote.db"),
    )
    .unwrap();
    // Killed on drop too, should the test fail before it kills the run itself.
    let mut run = crate::support::ChildGuard(
        command(dir, &["run", "--config", "remote.toml"], env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while !has_checkpoint(&dir.join("remote.db")) {
        if let Some(status) = run.0.try_wait().unwrap() {
            panic!("the following run exited ({status}) before it was killed");
        }
        assert!(Instant::now() < deadline, "no checkpoint within 120 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    run.0.kill().unwrap(); // SIGKILL
    assert!(!run.0.wait().unwrap().success());
    assert_success(
        &command(dir, &["run", "--once", "--config", "remote.toml"], env)
            .output()
            .unwrap(),
    );

    let remote = fetch(&dir.join("mirror"));
    let reference = dir.join("reference-lake");
    let windows = lake_rows::<WindowRecord>(&reference, "window");
    assert!(windows.len() > 1_000, "{} windows", windows.len());
    assert_eq!(lake_rows::<WindowRecord>(&remote, "window"), windows);
    assert_eq!(
        lake_rows::<PointRecord>(&remote, "point"),
        lake_rows::<PointRecord>(&reference, "point")
    );
    assert_eq!(
        lake_rows::<AlertRecord>(&remote, "alert"),
        lake_rows::<AlertRecord>(&reference, "alert")
    );
}
