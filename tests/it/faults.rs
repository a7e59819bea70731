//! Faults while a pipeline follows its input: a sink write, a flush, the checkpoint store, an
//! offset commit or a Parquet upload failing (failpoints of the `fail` crate, compiled into the
//! test build only), PostgreSQL or the broker stopped and restarted, the lake's disk full,
//! SIGKILL at random moments; and one topic read in different interleavings. Each ends with the
//! database and lake rows of an uninterrupted run.
//!
//! Every input has late events, duplicates and bad lines. A following run cannot end by itself:
//! each scenario feeds its input in parts while the run follows, waits until the stored
//! checkpoint has reached the end, stops the run with SIGTERM, and lets `run --once` close the
//! windows, as an operator would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Row;
use tidewatch::record::{AlertRecord, DeadLetterRecord, LateRecord, PointRecord, WindowRecord};
use tidewatch::{DbSink, Faults, Generator, SplitMix64};

use crate::crash::dump_url;
use crate::lake::lake_rows;
use crate::support::broker::Broker;
use crate::support::postgres::Postgres;
use crate::support::{assert_success, read_ndjson, tidewatch, unique_name};

const PARTS: usize = 8;
const EVENTS_PER_PART: usize = 3_000;
/// What a rewind logs; counted to prove the fault happened.
const REWIND: &str = "going back to the last checkpoint";
/// What the first checkpoint stored after rewinds logs.
const RECOVERED: &str = "the pipeline has recovered";

/// One generated event as (series, NDJSON line).
type Line = (String, Vec<u8>);
/// A message for a partition the test chose: (partition, key, payload).
type Keyed = (i32, String, Vec<u8>);

/// The input, in parts: out of order by up to 4 s, 1 % duplicates, 0.3 % events a minute late,
/// and a line that is not JSON in every part.
fn input_parts(seed: u64) -> Vec<Vec<Line>> {
    input_parts_of(seed, PARTS, EVENTS_PER_PART)
}

/// [`input_parts`] with `parts` parts of `events` events each.
fn input_parts_of(seed: u64, parts: usize, events: usize) -> Vec<Vec<Line>> {
    let faults = Faults {
        duplicate: 0.01,
        late: 0.003,
        anomaly: 0.001,
        max_disorder_ms: 4_000,
        ..Faults::default()
    };
    let mut generator = Generator::new(24, seed, faults);
    (0..parts)
        .map(|p| {
            let mut part: Vec<Line> = (0..events)
                .map(|i| {
                    let n = (p * events + i) as i64;
                    let e = generator.next_event(1_764_000_000_000 + n * 250);
                    (e.series, e.line)
                })
                .collect();
            part.push((format!("bad{p}"), format!("not json {p}").into_bytes()));
            part
        })
        .collect()
}

fn pipeline(source: &str, db_url: &str, lake: &Path, ndjson: Option<&Path>) -> String {
    let ndjson = ndjson
        .map(|dir| {
            format!(
                "[[sinks]]\nkind = \"ndjson\"\npath = \"{}\"\n",
                dir.display()
            )
        })
        .unwrap_or_default();
    format!(
        r#"
checkpoint = {{ interval = "100ms" }}

[[streams]]
name = "sensors"
source = {source}
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
kind = "parquet"
url = "{}"
max_rows = 2000

{ndjson}"#,
        lake.display()
    )
}

const FILE_SOURCE: &str = r#"{ kind = "file", path = "input" }"#;

/// What a run left behind: every database row and every lake row, as text, sorted.
#[derive(Debug, PartialEq)]
struct Rows {
    db: Vec<String>,
    lake: Vec<Vec<String>>,
}

fn rows(db_url: &str, lake: &Path) -> Rows {
    Rows {
        db: dump_url(db_url),
        lake: vec![
            lake_rows::<WindowRecord>(lake, "window"),
            lake_rows::<AlertRecord>(lake, "alert"),
            lake_rows::<PointRecord>(lake, "point"),
            lake_rows::<LateRecord>(lake, "late"),
            lake_rows::<DeadLetterRecord>(lake, "dead_letter"),
        ],
    }
}

/// Fails with the first row that differs, not with two dumps of thousands of rows.
fn assert_same_rows(scenario: &str, got: &Rows, want: &Rows) {
    let tables = std::iter::once(("database", &got.db, &want.db)).chain(
        ["window", "alert", "point", "late", "dead_letter"]
            .into_iter()
            .zip(got.lake.iter().zip(&want.lake))
            .map(|(kind, (g, w))| (kind, g, w)),
    );
    for (table, got, want) in tables {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        assert!(
            first.is_none() && got.len() == want.len(),
            "{scenario}: {table} rows differ from the uninterrupted run ({} vs {} rows); first \
             difference: {:?}",
            got.len(),
            want.len(),
            first.map(|i| (&got[i], &want[i]))
        );
    }
}

/// An uninterrupted `run --once` over every part, in a directory of its own.
fn reference(parts: &[Vec<Line>], db_url: Option<&str>) -> Rows {
    let dir = tempfile::tempdir().unwrap();
    for p in 0..parts.len() {
        add_part(dir.path(), parts, p);
    }
    let sqlite = format!("sqlite://{}/reference.db", dir.path().display());
    let db_url = db_url.unwrap_or(&sqlite);
    let lake = dir.path().join("lake");
    std::fs::write(
        dir.path().join("p.toml"),
        pipeline(FILE_SOURCE, db_url, &lake, None),
    )
    .unwrap();
    assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        dir.path(),
    ));
    let rows = rows(db_url, &lake);
    assert!(rows.db.len() > 1_000 && rows.lake.iter().all(|t| !t.is_empty()));
    rows
}

/// Part `p` appears in `dir/input` whole (written aside, then renamed in), as a producer
/// rolling its files would.
fn add_part(dir: &Path, parts: &[Vec<Line>], p: usize) {
    std::fs::create_dir_all(dir.join("input")).unwrap();
    let mut text = Vec::new();
    for (_, line) in &parts[p] {
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    let aside = dir.join(format!("part-{p:02}.tmp"));
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, dir.join(format!("input/part-{p:02}.ndjson"))).unwrap();
}

/// A following `run`, its log in a file.
struct Following {
    child: Child,
    log: PathBuf,
}

impl Following {
    fn start(dir: &Path, failpoints: Option<&str>) -> Following {
        let log = dir.join(format!("run-{}.log", unique_name("log")));
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidewatch"));
        command
            .args(["run", "--config", "p.toml"])
            .current_dir(dir)
            .env("RUST_LOG", "warn,tidewatch=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(spec) = failpoints {
            command.env("FAILPOINTS", spec);
        }
        Following {
            child: command.spawn().unwrap(),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the stored checkpoint is at the end of what `done` recognises.
    fn wait_for(&mut self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the run exited ({status}) before {what}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "not {what} within 120 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, and the clean exit that follows. Only once the run has opened its sinks: its
    /// signal handlers are in place by then (before, SIGTERM simply ends the process).
    fn stop(mut self) -> String {
        let log = self.log.clone();
        self.wait_for("opened its sinks", || {
            std::fs::read_to_string(&log).is_ok_and(|text| text.contains("Database ready"))
        });
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit within 60 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = self.log();
        assert!(status.success(), "stopped run failed ({status}):\n{log}");
        log
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The positions of the last stored checkpoint, as (source, next offset) per split.
fn checkpoint_positions(db_url: &str) -> Vec<(String, u64)> {
    let Ok(db) = DbSink::connect(db_url) else {
        return Vec::new();
    };
    let Ok(found) = db.fetch_all("SELECT positions FROM checkpoints") else {
        return Vec::new();
    };
    let Some(Ok(text)) = found.first().map(|row| row.try_get::<String, _>(0)) else {
        return Vec::new();
    };
    let streams: Vec<Vec<serde_json::Value>> = serde_json::from_str(&text).unwrap();
    streams
        .iter()
        .flatten()
        .map(|p| {
            let source = p["source"].as_str().unwrap_or_default().to_owned();
            (source, p["next_offset"].as_u64().unwrap_or_default())
        })
        .collect()
}

/// Whether the checkpoint has read part `p` of a file source to its end.
fn file_read_through(db_url: &str, parts: &[Vec<Line>], p: usize) -> bool {
    let file = format!("part-{p:02}.ndjson");
    checkpoint_positions(db_url)
        .iter()
        .any(|(source, next)| source.ends_with(&file) && *next > parts[p].len() as u64)
}

/// Feeds the parts to a following run of a file pipeline, calling `between(p, run)` after
/// part `p` has been read through (or not, when the fault holds the run back), then stops it,
/// closes the windows with `run --once`, and returns the rows and the following run's log.
fn follow_file(
    dir: &Path,
    parts: &[Vec<Line>],
    db_url: &str,
    failpoints: Option<(&str, usize)>,
    mut between: impl FnMut(usize, &mut Following),
) -> (Rows, String) {
    let lake = dir.join("out/lake");
    add_part(dir, parts, 0);
    let mut run = Following::start(dir, failpoints.map(|(spec, _)| spec));
    for p in 1..parts.len() {
        std::thread::sleep(Duration::from_millis(150));
        between(p, &mut run);
        add_part(dir, parts, p);
    }
    let last = parts.len() - 1;
    run.wait_for("read every part", || file_read_through(db_url, parts, last));
    if let Some((_, rewinds)) = failpoints {
        // Every fault has fired and a checkpoint was stored after the last one, so none is
        // left for the final checkpoint of the stop.
        let log = run.log.clone();
        run.wait_for("recovered from every injected fault", || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.matches(REWIND).count() >= rewinds && text.rfind(RECOVERED) > text.rfind(REWIND)
        });
    }
    let log = run.stop();
    assert_success(&tidewatch(&["run", "--once", "--config", "p.toml"], dir));
    (rows(db_url, &lake), log)
}

fn file_scenario_dir(db_url: Option<&str>, ndjson: bool) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}/faulty.db", dir.path().display());
    let db_url = db_url.unwrap_or(&sqlite).to_owned();
    let out = dir.path().join("out");
    let ndjson = ndjson.then(|| out.join("ndjson"));
    std::fs::write(
        dir.path().join("p.toml"),
        pipeline(FILE_SOURCE, &db_url, &out.join("lake"), ndjson.as_deref()),
    )
    .unwrap();
    (dir, db_url)
}

#[test]
fn a_failing_write_flush_checkpoint_commit_or_upload_replays_to_the_same_rows() {
    let parts = input_parts(7);
    let want = reference(&parts, None);
    // Each fails twice early in the run, its 2nd and 5th call (`N*off` lets N calls
    // through), while the first parts are being read, then works.
    let scenarios = [
        ("sink write", "sink-write"),
        ("sink flush", "sink-flush"),
        ("checkpoint store", "checkpoint-save"),
        ("offset commit", "offset-commit"),
        ("parquet upload", "parquet-upload"),
    ];
    for (name, point) in scenarios {
        let spec = format!("{point}=1*off->1*return->2*off->1*return->off");
        let (dir, db_url) = file_scenario_dir(None, false);
        // Waits for both rewinds (a build without the failpoints compiled in fails there,
        // naming the wait and showing the log).
        let (got, log) = follow_file(dir.path(), &parts, &db_url, Some((&spec, 2)), |_, _| {});
        assert!(log.contains(&format!("fault injected at {point}")), "{log}");
        assert_same_rows(name, &got, &want);
    }
}

/// Makes the pipeline in `dir` write each checkpoint over several rounds, a kilobyte a round.
fn checkpoints_in_parts(dir: &Path) {
    let config = dir.join("p.toml");
    let toml = std::fs::read_to_string(&config).unwrap();
    let toml = toml.replace(
        r#"interval = "100ms""#,
        r#"interval = "100ms", bytes_per_round = "1KiB""#,
    );
    assert!(toml.contains("bytes_per_round"), "{toml}");
    std::fs::write(&config, toml).unwrap();
}

/// A checkpoint larger than `checkpoint.bytes_per_round` is written over several rounds, intake
/// going on between them: a part failing sends the pipeline back like any failed checkpoint,
/// and what the write had staged never becomes state.
#[test]
fn a_checkpoint_failing_half_written_replays_to_the_same_rows() {
    let parts = input_parts(17);
    let want = reference(&parts, None);
    let (dir, db_url) = file_scenario_dir(None, false);
    checkpoints_in_parts(dir.path());
    // The 4th and 9th parts staged fail, then every part goes through.
    let spec = "checkpoint-stage=3*off->1*return->4*off->1*return->off";
    let (got, log) = follow_file(dir.path(), &parts, &db_url, Some((spec, 2)), |_, _| {});
    assert!(log.contains("fault injected at checkpoint-stage"), "{log}");
    assert_same_rows("a checkpoint half written", &got, &want);
}

/// With two engine threads, a round runs on the shards beside the reading of the next round,
/// and the records of the round before are delivered meanwhile: a sink write failing then
/// sends the pipeline back with a round in flight, which is dropped unfinished.
/// Parts of 20,000 events are read in rounds of 8,192 lines in a row, so the deliveries between
/// them happen with one in flight; the log shows the rewinds that had one.
#[test]
fn a_sink_write_failing_while_a_round_is_in_flight_replays_to_the_same_rows() {
    let parts = input_parts_of(13, 3, 20_000);
    let want = reference(&parts, None);
    let (dir, db_url) = file_scenario_dir(None, false);
    let config = dir.path().join("p.toml");
    // A checkpoint lands the round in flight and delivers its records: checkpoints 2 s apart
    // leave several rounds in a row between them even in a slow debug build under load.
    let toml = std::fs::read_to_string(&config).unwrap();
    let toml = toml.replace(r#"interval = "100ms""#, r#"interval = "2s""#);
    assert!(toml.contains(r#"interval = "2s""#), "{toml}");
    std::fs::write(&config, toml + "\n[engine]\nthreads = 2\n").unwrap();
    // Two sinks, so two calls per delivery: the 2nd delivery's first write fails, then
    // another after the replay.
    let spec = "sink-write=2*off->1*return->5*off->1*return->off";
    let (got, log) = follow_file(dir.path(), &parts, &db_url, Some((spec, 2)), |_, _| {});
    let rewinds = log.lines().filter(|line| line.contains(REWIND));
    assert!(
        rewinds
            .into_iter()
            .any(|line| line.contains("round_in_flight=true")),
        "no sink write failed with a round in flight:\n{log}"
    );
    assert_same_rows("sink write with a round in flight", &got, &want);
}

#[test]
fn postgres_stopped_and_restarted_mid_run_replays_to_the_same_rows() {
    let pg = Postgres::start();
    let admin = DbSink::connect(&pg.url).unwrap();
    admin.fetch_all("CREATE DATABASE reference").unwrap();
    let reference_url = pg.url.replace("/postgres", "/reference");
    let parts = input_parts(11);
    let want = reference(&parts, Some(&reference_url));
    drop(admin);

    let (dir, db_url) = file_scenario_dir(Some(&pg.url), false);
    let (got, log) = follow_file(dir.path(), &parts, &db_url, None, |p, run| match p {
        3 => {
            run.wait_for("read part 2", || file_read_through(&pg.url, &parts, 2));
            pg.stop();
        }
        6 => {
            // Parts 3 to 5 arrived while the database was down, longer than a write waits
            // for a connection (5 s).
            std::thread::sleep(Duration::from_secs(7));
            pg.restart();
        }
        _ => {}
    });
    assert!(
        log.contains(REWIND),
        "no rewind while PostgreSQL was down:\n{log}"
    );
    assert_same_rows("PostgreSQL restart", &got, &want);
}

/// A size-limited tmpfs mounted for the test, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("mount runs");
        assert!(
            output.status.success(),
            "cannot mount a {size} tmpfs on {} (the disk-full test runs as root, as CI does): {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        SmallDisk {
            path: path.to_owned(),
        }
    }

    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "cannot grow {}", self.path.display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn a_full_disk_under_the_lake_and_ndjson_replays_to_the_same_rows_and_loses_no_line() {
    let parts = input_parts(13);
    let want = reference(&parts, None);
    let ndjson_want = {
        let dir = tempfile::tempdir().unwrap();
        for p in 0..PARTS {
            add_part(dir.path(), &parts, p);
        }
        let db = format!("sqlite://{}/n.db", dir.path().display());
        let out = dir.path().join("out");
        std::fs::write(
            dir.path().join("p.toml"),
            pipeline(
                FILE_SOURCE,
                &db,
                &out.join("lake"),
                Some(&out.join("ndjson")),
            ),
        )
        .unwrap();
        assert_success(&tidewatch(
            &["run", "--once", "--config", "p.toml"],
            dir.path(),
        ));
        read_ndjson(&out.join("ndjson/windows.ndjson"))
    };

    let (dir, db_url) = file_scenario_dir(None, true);
    let disk = SmallDisk::mount(&dir.path().join("out"), "600k");
    let (got, log) = follow_file(dir.path(), &parts, &db_url, None, |p, _| {
        if p == 5 {
            std::thread::sleep(Duration::from_secs(1));
            disk.grow("256m");
        }
    });
    assert!(
        log.contains("No space left on device") && log.contains(REWIND),
        "the disk never filled up:\n{log}"
    );
    assert_same_rows("disk full", &got, &want);
    // NDJSON is at least once: every line parses (no half line from a failed write) and every
    // window of the uninterrupted run is there.
    let windows = read_ndjson(&dir.path().join("out/ndjson/windows.ndjson"));
    let have: std::collections::HashSet<String> = windows.iter().map(|w| w.to_string()).collect();
    let missing = ndjson_want
        .iter()
        .filter(|w| !have.contains(&w.to_string()))
        .count();
    assert_eq!(missing, 0, "windows missing from the NDJSON sink");
    drop(disk);
}

#[test]
fn sigkill_at_twenty_random_moments_ends_with_the_same_rows() {
    let parts = input_parts(17);
    let want = reference(&parts, None);
    let (dir, db_url) = file_scenario_dir(None, false);
    // Checkpoints written over several rounds, so that kills land in the middle of some.
    checkpoints_in_parts(dir.path());
    let mut random = SplitMix64::new(20);
    let mut kills = 0;
    for p in 0..PARTS {
        add_part(dir.path(), &parts, p);
        // Two or three kills per part: 50 ms to 1 s after the start, while it restores,
        // reads, writes files or checkpoints.
        let per_part = if p < 4 { 3 } else { 2 };
        for _ in 0..per_part {
            let mut run = Following::start(dir.path(), None);
            let after = Duration::from_millis(50 + random.next_u64() % 950);
            std::thread::sleep(after);
            if let Some(status) = run.child.try_wait().unwrap() {
                panic!("the run exited by itself ({status}):\n{}", run.log());
            }
            run.child.kill().unwrap(); // SIGKILL
            run.child.wait().unwrap();
            kills += 1;
        }
    }
    assert_eq!(kills, 20);
    let mut run = Following::start(dir.path(), None);
    run.wait_for("read every part", || {
        file_read_through(&db_url, &parts, PARTS - 1)
    });
    run.stop();
    assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        dir.path(),
    ));
    let got = rows(&db_url, &dir.path().join("out/lake"));
    assert_same_rows("SIGKILL ×20", &got, &want);
}

/// Kafka pipelines over one topic: the same config with another source.
fn kafka_source(broker: &Broker, topic: &str, extra: &str) -> String {
    format!(
        r#"{{ kind = "kafka", brokers = "{}", topics = ["{topic}"], group = "{}"{extra} }}"#,
        broker.bootstrap,
        unique_name("g")
    )
}

fn run_kafka_once(broker: &Broker, topic: &str, extra: &str) -> Rows {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/k.db", dir.path().display());
    let lake = dir.path().join("lake");
    std::fs::write(
        dir.path().join("p.toml"),
        pipeline(&kafka_source(broker, topic, extra), &db_url, &lake, None),
    )
    .unwrap();
    assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        dir.path(),
    ));
    rows(&db_url, &lake)
}

/// Partition of a series: the test decides, so it can hold one partition back.
fn partition_of(series: &str) -> i32 {
    (series.bytes().map(u32::from).sum::<u32>() % 3) as i32
}

fn keyed(lines: &[Line]) -> Vec<Keyed> {
    lines
        .iter()
        .map(|(series, line)| (partition_of(series), series.clone(), line.clone()))
        .collect()
}

fn kafka_read_through(db_url: &str, total: u64) -> bool {
    checkpoint_positions(db_url)
        .iter()
        .map(|(_, next)| next)
        .sum::<u64>()
        >= total
}

#[test]
fn one_topic_read_in_different_interleavings_gives_the_same_rows() {
    let broker = Broker::start();
    let topic = unique_name("interleave");
    broker.create_topic(&topic, 3);
    let parts = input_parts(19);
    let all: Vec<Line> = parts.concat();
    let messages = keyed(&all);
    broker.produce_to_partitions(&topic, &messages);
    let want = run_kafka_once(&broker, &topic, "");
    assert!(want.lake[3].len() > 10, "the input has late events");

    // Partitions listed in another order, fetched a few messages at a time.
    let small_fetches = r#", partitions = [2, 0, 1], kafka = { "max.partition.fetch.bytes" = "600", "message.max.bytes" = "1000", "fetch.max.bytes" = "1200", "queued.min.messages" = "5" }"#;
    assert_same_rows(
        "small fetches",
        &run_kafka_once(&broker, &topic, small_fetches),
        &want,
    );

    // One partition held back: a following run reads partitions 1 and 2 and a third of
    // partition 0, the rest of partition 0 arrives seconds later.
    let held = unique_name("held");
    broker.create_topic(&held, 3);
    let (early, late): (Vec<_>, Vec<_>) = messages
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, (p, _, _))| *p != 0 || *i < messages.len() / 3);
    let strip = |v: Vec<(usize, Keyed)>| -> Vec<Keyed> { v.into_iter().map(|(_, m)| m).collect() };
    let (early, late) = (strip(early), strip(late));
    broker.produce_to_partitions(&held, &early);
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/held.db", dir.path().display());
    std::fs::write(
        dir.path().join("p.toml"),
        pipeline(
            &kafka_source(&broker, &held, ""),
            &db_url,
            &dir.path().join("out/lake"),
            None,
        ),
    )
    .unwrap();
    let mut run = Following::start(dir.path(), None);
    run.wait_for("read the early messages", || {
        kafka_read_through(&db_url, early.len() as u64)
    });
    std::thread::sleep(Duration::from_secs(2));
    broker.produce_to_partitions(&held, &late);
    run.wait_for("read every message", || {
        kafka_read_through(&db_url, messages.len() as u64)
    });
    run.stop();
    assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        dir.path(),
    ));
    let got = rows(&db_url, &dir.path().join("out/lake"));
    // Late events and dead letters name their topic: compare with a batch read of this one,
    // itself equal to the first topic's rows but for that name.
    let want_held = run_kafka_once(&broker, &held, "");
    assert_eq!(want_held.db.len(), want.db.len());
    assert_same_rows("partition held back", &got, &want_held);
}

#[test]
fn the_broker_stopped_and_restarted_mid_run_replays_to_the_same_rows() {
    let mut broker = Broker::start();
    let topic = unique_name("outage");
    broker.create_topic(&topic, 3);
    let parts = input_parts(23);

    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/outage.db", dir.path().display());
    std::fs::write(
        dir.path().join("p.toml"),
        pipeline(
            &kafka_source(&broker, &topic, ""),
            &db_url,
            &dir.path().join("out/lake"),
            None,
        ),
    )
    .unwrap();
    let half = PARTS / 2;
    broker.produce_to_partitions(&topic, &keyed(&parts[..half].concat()));
    let first: usize = parts[..half].iter().map(Vec::len).sum();
    let mut run = Following::start(dir.path(), None);
    run.wait_for("read the first half", || {
        kafka_read_through(&db_url, first as u64)
    });
    broker.stop();
    std::thread::sleep(Duration::from_secs(3));
    broker.restart();
    broker.produce_to_partitions(&topic, &keyed(&parts[half..].concat()));
    let total: usize = parts.iter().map(Vec::len).sum();
    run.wait_for("read every message", || {
        kafka_read_through(&db_url, total as u64)
    });
    let log = run.stop();
    assert!(
        log.contains("Kafka is failing") || log.contains(REWIND),
        "the run did not notice the outage:\n{log}"
    );
    assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        dir.path(),
    ));
    let got = rows(&db_url, &dir.path().join("out/lake"));
    // The uninterrupted run: the same topic, read at once by another group.
    let want = run_kafka_once(&broker, &topic, "");
    assert_same_rows("broker restart", &got, &want);
}
