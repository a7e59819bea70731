//! Every example under `examples/` runs the way its header comment says (`run --once`), and its
//! output is checked against the data it read, computed plainly here. Kafka examples produce
//! their input with `tidewatch produce` to the test broker first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Row;
use tidewatch::record::WindowRecord;

use crate::lake::files_under;
use crate::support::broker::Broker;
use crate::support::postgres::Postgres;
use crate::support::{assert_success, http_get, read_ndjson, serve, tidewatch, unique_name};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Copies `examples/<name>/` into a fresh directory (so outputs land there, not in the
/// checkout), applies `replace` to its pipeline.toml, and runs it with `run --once` from that
/// directory, as the example's comment says to run it from the repository root.
fn run_example(name: &str, replace: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("examples").join(name);
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(repo().join("examples").join(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, target.join(path.file_name().unwrap())).unwrap();
    }
    let config = target.join("pipeline.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    for (from, to) in replace {
        assert!(
            text.contains(from),
            "{name}: {from:?} not in its pipeline.toml"
        );
        text = text.replace(from, to);
    }
    std::fs::write(&config, text).unwrap();
    let config = format!("examples/{name}/pipeline.toml");
    let stdout = assert_success(&tidewatch(
        &["run", "--once", "--config", &config],
        dir.path(),
    ));
    (dir, stdout)
}

fn data(name: &str, file: &str) -> Vec<Value> {
    read_ndjson(&repo().join("examples").join(name).join(file))
}

fn windows(path: &Path) -> Vec<WindowRecord> {
    read_ndjson(path)
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect()
}

#[test]
fn sensors_example_finds_the_planted_anomalies_the_trend_and_the_averages() {
    let (dir, _) = run_example("sensors", &[]);
    let out = dir.path().join("out/sensors");
    let planted: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(repo().join("examples/sensors/anomalies.json")).unwrap(),
    )
    .unwrap();
    let planted: BTreeSet<(String, i64)> = planted
        .iter()
        .map(|p| {
            (
                p["series"].as_str().unwrap().to_owned(),
                p["ts"].as_i64().unwrap(),
            )
        })
        .collect();
    let raised: BTreeSet<(String, i64)> = read_ndjson(&out.join("alerts.ndjson"))
        .iter()
        .map(|a| {
            (
                a["series"].as_str().unwrap().to_owned(),
                a["episode_start"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        raised, planted,
        "exactly the planted anomalies raise alerts"
    );

    // SMA over 12 points and EWMA(0.2), recomputed from the data (in order, no late events).
    let points = read_ndjson(&out.join("points.ndjson"));
    let mut by_series: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for event in data("sensors", "sensors.ndjson") {
        by_series
            .entry(event["sensor"].as_str().unwrap().to_owned())
            .or_default()
            .push(event["reading"].as_f64().unwrap());
    }
    for (series, values) in &by_series {
        let mine: Vec<&Value> = points.iter().filter(|p| p["series"] == **series).collect();
        assert_eq!(mine.len(), values.len(), "{series}: a point per reading");
        let mut ewma = values[0];
        for (i, point) in mine.iter().enumerate() {
            ewma = if i == 0 {
                values[0]
            } else {
                0.2 * values[i] + 0.8 * ewma
            };
            let window = &values[i.saturating_sub(11)..=i];
            let sma = window.iter().sum::<f64>() / window.len() as f64;
            assert!(
                (point["sma"].as_f64().unwrap() - sma).abs() < 1e-6,
                "{series} sma at {i}"
            );
            assert!(
                (point["ewma"].as_f64().unwrap() - ewma).abs() < 1e-6,
                "{series} ewma at {i}"
            );
        }
    }

    // The boiler warms up in the second hour only.
    let boiler: Vec<&Value> = points
        .iter()
        .filter(|p| p["series"] == "boiler-temp")
        .collect();
    let last_20_min = &boiler[boiler.len() - 120..];
    assert!(last_20_min.iter().all(|p| p["trend"] == "rising"));
    let first_hour = &boiler[..360];
    let rising = first_hour.iter().filter(|p| p["trend"] == "rising").count();
    assert!(
        rising < 36,
        "{rising} of 360 readings of a flat hour called rising"
    );

    // Six readings per sensor and minute, in tumbling windows.
    let windows = windows(&out.join("windows.ndjson"));
    assert_eq!(windows.len(), 3 * 120);
    assert!(windows.iter().all(|w| w.count == 6));
}

#[test]
fn clickstream_example_sessions_per_user_without_resent_clicks() {
    let (dir, stdout) = run_example("clickstream", &[]);
    let mut seen = BTreeSet::new();
    let mut per_user: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut resent = 0;
    for click in data("clickstream", "clicks.ndjson") {
        if !seen.insert(click["click_id"].as_str().unwrap().to_owned()) {
            resent += 1;
            continue;
        }
        let time = time::OffsetDateTime::parse(
            click["time"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        per_user
            .entry(click["user"].as_str().unwrap().to_owned())
            .or_default()
            .push((time.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    assert!(resent > 0, "the data has re-sent clicks");
    assert!(stdout.contains(&format!("{resent} duplicates")), "{stdout}");

    const GAP: i64 = 10 * 60_000;
    let mut expected = BTreeSet::new();
    for (user, mut times) in per_user {
        times.sort();
        let mut start = times[0];
        let mut count = 0;
        for (i, &t) in times.iter().enumerate() {
            if i > 0 && t - times[i - 1] > GAP {
                expected.insert((user.clone(), start, times[i - 1] + GAP, count));
                start = t;
                count = 0;
            }
            count += 1;
        }
        expected.insert((user.clone(), start, times[times.len() - 1] + GAP, count));
    }
    let actual: BTreeSet<(String, i64, i64, u64)> =
        windows(&dir.path().join("out/clickstream/windows.ndjson"))
            .into_iter()
            .map(|w| (w.series.to_string(), w.window_start, w.window_end, w.count))
            .collect();
    assert_eq!(actual, expected);
}

#[test]
fn orders_payments_example_joins_within_fifteen_minutes() {
    let (dir, _) = run_example("orders-payments", &[]);
    let payments = data("orders-payments", "payments.ndjson");
    let mut expected = BTreeSet::new();
    for order in data("orders-payments", "orders.ndjson") {
        let (id, ts) = (
            order["order_id"].as_str().unwrap(),
            order["ts"].as_i64().unwrap(),
        );
        let matches: Vec<i64> = payments
            .iter()
            .filter(|p| {
                p["order_id"] == id && (p["ts"].as_i64().unwrap() - ts).abs() <= 15 * 60_000
            })
            .map(|p| p["ts"].as_i64().unwrap())
            .collect();
        if matches.is_empty() {
            expected.insert((id.to_owned(), ts, None));
        }
        for m in matches {
            expected.insert((id.to_owned(), ts, Some(m)));
        }
    }
    let unmatched = expected.iter().filter(|e| e.2.is_none()).count();
    assert!(
        unmatched >= 5 && unmatched < expected.len(),
        "the data has both kinds"
    );
    let actual: BTreeSet<(String, i64, Option<i64>)> =
        read_ndjson(&dir.path().join("out/orders-payments/joins.ndjson"))
            .iter()
            .map(|j| {
                (
                    j["key"].as_str().unwrap().to_owned(),
                    j["left_ts"].as_i64().unwrap(),
                    j["right_ts"].as_i64(),
                )
            })
            .collect();
    assert_eq!(actual, expected);
}

#[test]
fn classic_counts_example_all_time_per_category_and_sliding_per_event_type() {
    let (dir, _) = run_example("classic-counts", &[]);
    let events = data("classic-counts", "events.ndjson");
    let windows = windows(&dir.path().join("out/classic-counts/windows.ndjson"));

    let mut per_category: BTreeMap<String, u64> = BTreeMap::new();
    for e in &events {
        *per_category
            .entry(e["category"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let finals: BTreeMap<String, u64> = windows
        .iter()
        .filter(|w| &*w.stream == "by_category" && w.is_final)
        .map(|w| (w.series.to_string(), w.count))
        .collect();
    assert_eq!(finals, per_category, "complete mode: the all-time counts");
    let updates = windows
        .iter()
        .filter(|w| &*w.stream == "by_category" && !w.is_final)
        .count();
    assert!(
        updates > 3 * 30,
        "updated as time went on ({updates} updates)"
    );

    // Epoch seconds with a fractional part, to the millisecond.
    let ms = |e: &Value| (e["time"].as_f64().unwrap() * 1000.0).round() as i64;
    let mut expected: BTreeMap<(String, i64), u64> = BTreeMap::new();
    for e in &events {
        let t = ms(e);
        let mut start = t.div_euclid(30_000) * 30_000;
        while start > t - 60_000 {
            *expected
                .entry((e["event_type"].as_str().unwrap().to_owned(), start))
                .or_default() += 1;
            start -= 30_000;
        }
    }
    let actual: BTreeMap<(String, i64), u64> = windows
        .iter()
        .filter(|w| &*w.stream == "by_event_type")
        .map(|w| {
            assert_eq!(w.window_end - w.window_start, 60_000);
            ((w.series.to_string(), w.window_start), w.count)
        })
        .collect();
    assert_eq!(actual, expected);
}

/// `tidewatch produce` to the test broker, as the Kafka examples say to.
fn produce(broker: &Broker, topic: &str, events: u64) {
    let events = events.to_string();
    assert_success(&tidewatch(
        &[
            "produce",
            "--brokers",
            &broker.bootstrap,
            "--topic",
            topic,
            "--partitions",
            "3",
            "--events",
            &events,
            "--rate",
            "0",
            "--series",
            "4",
            "--anomaly-rate",
            "0.01",
        ],
        &repo(),
    ));
}

#[test]
fn kafka_to_parquet_example_writes_a_lake_partitioned_by_date_and_hour() {
    let broker = Broker::start();
    let topic = unique_name("lake-events");
    produce(&broker, &topic, 3000);
    let (dir, stdout) = run_example(
        "kafka-to-parquet",
        &[
            ("localhost:9092", &broker.bootstrap),
            ("topics = [\"events\"]", &format!("topics = [\"{topic}\"]")),
            ("tidewatch-lake", &unique_name("lake-group")),
        ],
    );
    let lake = dir.path().join("out/lake");
    let mut files = files_under(&lake);
    let marker = std::path::PathBuf::from("_tidewatch_lake.json");
    assert!(files.contains(&marker), "no layout marker: {files:?}");
    files.retain(|f| *f != marker);
    assert!(!files.is_empty());
    for file in &files {
        let parts: Vec<String> = file
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let name = parts.last().unwrap();
        assert!(
            name.starts_with("part-lake-") && name.ends_with(".parquet"),
            "{file:?}"
        );
        assert!(!name.contains("tmp"), "no temporary file left: {file:?}");
        if parts[0] != "record=dead_letter" {
            assert!(
                parts.len() == 4 && parts[1].starts_with("date=") && parts[2].starts_with("hour="),
                "{file:?}"
            );
        }
    }
    // Every window is in the partition of its start; the tumbling windows hold every event.
    let mut tumbling_total = 0;
    for file in files.iter().filter(|f| f.starts_with("record=window")) {
        let parts: Vec<String> = file
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let rows: Vec<WindowRecord> = crate::lake::parquet_rows(&lake.join(file));
        for w in rows {
            let start = time::OffsetDateTime::from_unix_timestamp(w.window_start / 1000).unwrap();
            assert_eq!(parts[1], format!("date={}", start.date()), "{file:?}");
            assert_eq!(parts[2], format!("hour={:02}", start.hour()), "{file:?}");
            if w.kind == tidewatch::record::WindowKind::Tumbling {
                tumbling_total += w.count;
            }
        }
    }
    let accepted: u64 = stdout
        .split(" accepted")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no accepted count in {stdout}"));
    assert!(accepted > 2500, "{stdout}");
    assert_eq!(tumbling_total, accepted);
}

#[test]
fn kafka_postgres_example_fills_postgres_and_the_dashboard_shows_it() {
    let broker = Broker::start();
    let postgres = Postgres::start();
    let topic = unique_name("pg-sensors");
    produce(&broker, &topic, 4000);
    let replace = [
        ("localhost:9092", broker.bootstrap.as_str()),
        ("topics = [\"sensors\"]", &format!("topics = [\"{topic}\"]")),
        ("tidewatch-dashboard", &unique_name("pg-group")),
        (
            "postgres://tidewatch:tidewatch@localhost:5432/tidewatch",
            &postgres.url,
        ),
    ];
    let (dir, _) = run_example("kafka-postgres", &replace);
    let db = tidewatch::DbSink::connect(&postgres.url).unwrap();
    let count = |sql: &str| db.fetch_all(sql).unwrap()[0].try_get::<i64, _>(0).unwrap();
    assert!(count("SELECT COUNT(*) FROM windows") > 0);
    let alerts = count("SELECT COUNT(*) FROM alerts");
    assert!(alerts > 0, "planted anomalies raise alerts");

    // The dashboard of the same pipeline reads them from PostgreSQL.
    let (_server, port) = serve("examples/kafka-postgres/pipeline.toml", dir.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        assert!(
            Instant::now() < deadline,
            "the dashboard did not answer within 30 s"
        );
        if let Some(body) = http_get(port, "/api/alerts?limit=5000") {
            break serde_json::from_str::<Vec<Value>>(&body).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(listed.len() as i64, alerts);
}
