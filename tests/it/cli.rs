//! End-to-end tests of the `tidewatch` binary: `run --once` on a generated file, checked
//! against a brute-force computation in the test; `check-config` error reporting.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use tidewatch::SplitMix64;

use crate::support::{read_ndjson, tidewatch};

/// What the generator put in the file, to check the outputs against.
struct Generated {
    /// (series, ts, value) of every event that is neither late nor a duplicate.
    accepted: Vec<(String, i64, f64)>,
    late: usize,
    duplicates: usize,
    malformed: usize,
}

/// Three series, one event per series per second for 20 minutes, up to 3 s out of order
/// (lateness is 5 s), with exact re-sent duplicates, events an hour late, and bad lines.
fn generate(path: &Path) -> Generated {
    let mut rng = SplitMix64::new(11);
    let start = 1_764_000_000_000i64;
    let mut lines = Vec::new();
    let mut generated = Generated {
        accepted: Vec::new(),
        late: 0,
        duplicates: 0,
        malformed: 0,
    };
    for i in 0..1200i64 {
        for (k, series) in ["alpha", "beta", "gamma"].iter().enumerate() {
            let ts = start + i * 1000 + k as i64 * 10 - rng.below(3000) as i64;
            let value = (k as f64 + 1.0) * 10.0 + rng.normal();
            let line =
                format!(r#"{{"ts":{ts},"series":"{series}","value":{value},"id":"{series}-{i}"}}"#);
            lines.push(line.clone());
            generated.accepted.push((series.to_string(), ts, value));
            if rng.below(50) == 0 {
                lines.push(line);
                generated.duplicates += 1;
            }
        }
        if i > 100 && i % 97 == 0 {
            let ts = start + (i - 3600) * 1000;
            lines.push(format!(
                r#"{{"ts":{ts},"series":"beta","value":1,"id":"late-{i}"}}"#
            ));
            generated.late += 1;
        }
        if i % 301 == 5 {
            lines.push(format!(
                r#"{{"ts":"soon","series":"beta","value":1,"id":"bad-{i}"}}"#
            ));
            lines.push("{not json".to_string());
            generated.malformed += 2;
        }
    }
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    generated
}

const CONFIG: &str = r#"
[[streams]]
name = "sensors"
source = { kind = "file", path = "events.ndjson" }
fields = { time = "ts", series = "series", value = "value", id = "id" }
watermark = { lateness = "5s" }
dedup = { horizon = "1m" }
windows = [{ kind = "tumbling", size = "1m" }, { kind = "sliding", size = "1m", slide = "20s" }]
analytics = { sma_points = 5, ewma_alpha = 0.5, trend_window = "1m", zscore = { window = "2m", min_samples = 20 } }

[[sinks]]
kind = "ndjson"
path = "out"
"#;

#[test]
fn run_once_writes_every_record_kind_and_matches_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let generated = generate(&dir.path().join("events.ndjson"));
    std::fs::write(dir.path().join("pipeline.toml"), CONFIG).unwrap();

    let output = tidewatch(&["run", "--once", "--config", "pipeline.toml"], dir.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("{} late", generated.late)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{} duplicates", generated.duplicates)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{} dead letters", generated.malformed)),
        "{stdout}"
    );

    let out = dir.path().join("out");
    // Tumbling and sliding windows: brute force over the accepted events.
    let windows = read_ndjson(&out.join("windows.ndjson"));
    for (kind, size, slide) in [
        ("tumbling", 60_000i64, 60_000i64),
        ("sliding", 60_000, 20_000),
    ] {
        let mut expected: BTreeMap<(String, i64), (u64, f64)> = BTreeMap::new();
        for (series, ts, value) in &generated.accepted {
            let mut start = ts.div_euclid(slide) * slide;
            while start + size > *ts {
                let entry = expected.entry((series.clone(), start)).or_default();
                entry.0 += 1;
                entry.1 += value;
                start -= slide;
            }
        }
        let actual: BTreeMap<(String, i64), (u64, f64)> = windows
            .iter()
            .filter(|w| w["kind"] == kind)
            .map(|w| {
                assert_eq!(
                    w["window_end"].as_i64().unwrap() - w["window_start"].as_i64().unwrap(),
                    size
                );
                assert_eq!(w["final"], true);
                (
                    (
                        w["series"].as_str().unwrap().to_string(),
                        w["window_start"].as_i64().unwrap(),
                    ),
                    (w["count"].as_u64().unwrap(), w["sum"].as_f64().unwrap()),
                )
            })
            .collect();
        assert_eq!(
            actual.len(),
            windows.iter().filter(|w| w["kind"] == kind).count(),
            "{kind}: a window was emitted twice"
        );
        assert_eq!(
            actual.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{kind}"
        );
        for (key, (count, sum)) in &expected {
            let (a_count, a_sum) = actual[key];
            assert_eq!(a_count, *count, "{kind} {key:?}");
            assert!(
                (a_sum - sum).abs() < 1e-6 * sum.abs().max(1.0),
                "{kind} {key:?}: {a_sum} vs {sum}"
            );
        }
    }

    // One point per accepted event, in event-time order per series.
    let points = read_ndjson(&out.join("points.ndjson"));
    assert_eq!(points.len(), generated.accepted.len());
    let mut last_ts: BTreeMap<String, i64> = BTreeMap::new();
    for p in &points {
        let series = p["series"].as_str().unwrap().to_string();
        let ts = p["ts"].as_i64().unwrap();
        let previous = last_ts.insert(series.clone(), ts).unwrap_or(i64::MIN);
        assert!(ts >= previous, "{series}: point {ts} after {previous}");
    }

    let late = read_ndjson(&out.join("late.ndjson"));
    assert_eq!(late.len(), generated.late);
    assert!(late
        .iter()
        .all(|l| l["lateness_ms"].as_i64().unwrap() > 3_000_000));

    let dead = read_ndjson(&out.join("dead_letters.ndjson"));
    assert_eq!(dead.len(), generated.malformed);
    let reasons: HashSet<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("not valid JSON")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("field `ts`")),
        "{reasons:?}"
    );
    assert!(dead
        .iter()
        .all(|d| d["offset"].as_u64().unwrap() > 0 && !d["payload"].as_str().unwrap().is_empty()));

    // Alerts file exists (may be empty for pure noise); joins file too, empty.
    assert!(out.join("alerts.ndjson").exists());
    assert_eq!(
        std::fs::read_to_string(out.join("joins.ndjson")).unwrap(),
        ""
    );

    // A second run over the same input rewrites the same files (idempotent batch).
    let first = std::fs::read(out.join("windows.ndjson")).unwrap();
    let again = tidewatch(&["run", "--once", "--config", "pipeline.toml"], dir.path());
    assert!(again.status.success());
    assert_eq!(std::fs::read(out.join("windows.ndjson")).unwrap(), first);
}

#[test]
fn check_config_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        CONFIG.replace("slide = \"20s\"", "slide = \"2 minutes\""),
    )
    .unwrap();
    let output = tidewatch(&["check-config", "bad.toml"], dir.path());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("streams[0].windows[1].slide"), "{stderr}");

    std::fs::write(dir.path().join("good.toml"), CONFIG).unwrap();
    let output = tidewatch(&["check-config", "good.toml"], dir.path());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("OK (1 stream(s)"));

    let output = tidewatch(&["check-config", "missing.toml"], dir.path());
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.toml"));
}

#[test]
fn the_example_config_is_valid_and_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(root.join("config/example.toml"))
        .unwrap()
        .replace("config/data/", &format!("{}/config/data/", root.display()));
    std::fs::write(dir.path().join("example.toml"), config).unwrap();
    let output = tidewatch(&["run", "--once", "--config", "example.toml"], dir.path());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let alerts = read_ndjson(&dir.path().join("out/alerts.ndjson"));
    // The sample plants a +9 spike on pump-7 and a -8 dip on boiler-1.
    for (series, direction) in [("pump-7", "high"), ("boiler-1", "low")] {
        assert!(
            alerts.iter().any(|a| a["series"] == series
                && a["direction"] == direction
                && a["z"].as_f64().unwrap().abs() > 6.0),
            "no strong {direction} alert on {series}"
        );
    }
}

#[test]
fn console_sink_prints_windows_late_events_and_dead_letters() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let case = root.join("tests/golden/late_data");
    let config = std::fs::read_to_string(case.join("config.toml"))
        .unwrap()
        .replace(
            "input.ndjson",
            &case.join("input.ndjson").display().to_string(),
        )
        .replace("kind = \"ndjson\"\npath = \"out\"", "kind = \"console\"");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    let output = tidewatch(&["run", "--once", "--config", "c.toml"], dir.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("window s/a Tumbling [1970-01-01T00:00:00Z .. 1970-01-01T00:00:00.01Z)  count 2  mean 2.5000"), "{stdout}");
    assert_eq!(stdout.matches("late s/a").count(), 2, "{stdout}");
    assert!(stdout.contains("dead letter s ("), "{stdout}");
}

#[test]
fn checkpoints_go_to_the_db_sink_checkpoint_store_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.ndjson"),
        "{\"ts\":1764000000000,\"series\":\"a\",\"value\":1}\n",
    )
    .unwrap();
    let pipeline = |store: &str| {
        format!(
            "[[streams]]\nname = \"s\"\nsource = {{ kind = \"file\", path = \"in.ndjson\" }}\n\
             fields = {{ time = \"ts\", series = \"series\", value = \"value\" }}\n\
             windows = [{{ kind = \"tumbling\", size = \"1m\" }}]\n\
             [[sinks]]\nkind = \"db\"\nurl = \"sqlite://first.db\"\n\
             [[sinks]]\nkind = \"db\"\nurl = \"sqlite://second.db\"\n\
             [checkpoint]\n{store}"
        )
    };
    let checkpoints = |file: &str| {
        tidewatch::DbSink::connect(&format!("sqlite://{}/{file}", dir.path().display()))
            .unwrap()
            .fetch_all("SELECT pipeline FROM checkpoints")
            .unwrap()
            .len()
    };
    std::fs::write(
        dir.path().join("named.toml"),
        pipeline("store = \"sqlite://second.db\"\n"),
    )
    .unwrap();
    let output = tidewatch(&["run", "--once", "--config", "named.toml"], dir.path());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!((checkpoints("first.db"), checkpoints("second.db")), (0, 1));
    // Both hold the window all the same.
    for file in ["first.db", "second.db"] {
        let windows =
            tidewatch::DbSink::connect(&format!("sqlite://{}/{file}", dir.path().display()))
                .unwrap()
                .fetch_all("SELECT series FROM windows")
                .unwrap();
        assert_eq!(windows.len(), 1, "{file}");
    }
}
