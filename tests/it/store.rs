//! The database sink against real SQLite and PostgreSQL: rows match the NDJSON records, a replay
//! rewrites the same rows, and a replay never undoes an acknowledgement.

use std::path::Path;

use sqlx::Row;
use tidewatch::record::Verdict;
use tidewatch::DbSink;
use tidewatch::Report;
use tidewatch::{Acknowledgement, AlertFilter, VerdictFilter, VerdictShare};

use crate::support::postgres::Postgres;
use crate::support::{assert_success, read_ndjson, tidewatch};

fn pipeline(db_url: &str) -> String {
    format!(
        r#"
[[streams]]
name = "sensors"
source = {{ kind = "file", path = "{}/config/data/sensors.ndjson" }}
fields = {{ time = "ts", series = "series", value = "value", id = "id" }}
watermark = {{ lateness = "10s" }}
dedup = {{ horizon = "5m" }}
windows = [{{ kind = "tumbling", size = "1m" }}, {{ kind = "sliding", size = "1m", slide = "10s" }}]
analytics = {{}}

[[sinks]]
kind = "ndjson"
path = "out"

[[sinks]]
kind = "db"
url = "{db_url}"
"#,
        env!("CARGO_MANIFEST_DIR")
    )
}

fn count(db: &DbSink, table: &str) -> i64 {
    db.fetch_all(&format!("SELECT COUNT(*) FROM {table}"))
        .unwrap()[0]
        .try_get::<i64, _>(0)
        .unwrap()
}

fn check_store(db_url: &str, dir: &Path) {
    std::fs::write(dir.join("p.toml"), pipeline(db_url)).unwrap();
    assert_success(&tidewatch(&["run", "--once", "--config", "p.toml"], dir));
    let db = DbSink::connect(db_url).unwrap();

    let windows = read_ndjson(&dir.join("out/windows.ndjson"));
    let alerts = read_ndjson(&dir.join("out/alerts.ndjson"));
    let late = read_ndjson(&dir.join("out/late.ndjson"));
    let dead = read_ndjson(&dir.join("out/dead_letters.ndjson"));
    assert!(!alerts.is_empty() && !late.is_empty() && !dead.is_empty());
    assert_eq!(count(&db, "windows"), windows.len() as i64);
    assert_eq!(count(&db, "late_events"), late.len() as i64);
    assert_eq!(count(&db, "dead_letters"), dead.len() as i64);
    let mut alert_ids: Vec<&str> = alerts.iter().map(|a| a["id"].as_str().unwrap()).collect();
    alert_ids.sort();
    alert_ids.dedup();
    assert_eq!(count(&db, "alerts"), alert_ids.len() as i64);

    // The dashboard's history reads the same windows back, per series, oldest first.
    let series = windows[0]["series"].as_str().unwrap().to_owned();
    let mut expected: Vec<(i64, String, u64)> = windows
        .iter()
        .filter(|w| w["series"] == series.as_str())
        .map(|w| {
            (
                w["window_start"].as_i64().unwrap(),
                w["kind"].as_str().unwrap().to_owned(),
                w["count"].as_u64().unwrap(),
            )
        })
        .collect();
    expected.sort();
    let history = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = tidewatch::Store::connect(db_url).await.unwrap();
        store
            .windows("sensors", &series, i64::MIN, i64::MAX, 1_000_000)
            .await
            .unwrap()
    });
    assert!(history.iter().all(|w| w.is_final));
    let mut got: Vec<(i64, String, u64)> = history
        .iter()
        .map(|w| {
            let kind = serde_json::to_value(w.kind).unwrap();
            (w.window_start, kind.as_str().unwrap().to_owned(), w.count)
        })
        .collect();
    got.sort();
    assert_eq!(got, expected);

    // Every window row has the values of its record.
    for w in windows.iter().step_by(7) {
        let rows = db
            .fetch_all(&format!(
                "SELECT count, sum, stddev FROM windows WHERE stream = 'sensors' AND series = '{}' \
                 AND kind = '{}' AND window_start = {} AND window_end = {}",
                w["series"].as_str().unwrap(),
                w["kind"].as_str().unwrap(),
                w["window_start"],
                w["window_end"]
            ))
            .unwrap();
        assert_eq!(rows.len(), 1, "{w}");
        assert_eq!(
            rows[0].try_get::<i64, _>(0).unwrap(),
            w["count"].as_i64().unwrap()
        );
        let sum: f64 = rows[0].try_get(1).unwrap();
        assert!((sum - w["sum"].as_f64().unwrap()).abs() < 1e-9 * sum.abs().max(1.0));
        assert_eq!(
            rows[0].try_get::<Option<f64>, _>(2).unwrap().is_some(),
            !w["stddev"].is_null()
        );
    }
    // The last record of each alert id is the row's state.
    let last = alerts.last().unwrap();
    let row = &db
        .fetch_all(&format!(
            "SELECT state, z FROM alerts WHERE id = '{}'",
            last["id"].as_str().unwrap()
        ))
        .unwrap()[0];
    assert_eq!(
        row.try_get::<String, _>(0).unwrap(),
        last["state"].as_str().unwrap()
    );

    // Someone acknowledges an alert; a replay must keep the acknowledgement. Prefer one that is
    // still open at the end of the input: that one must stay acknowledged, not reopen.
    let mut final_state = std::collections::BTreeMap::new();
    for a in &alerts {
        final_state.insert(
            a["id"].as_str().unwrap().to_owned(),
            a["state"].as_str().unwrap().to_owned(),
        );
    }
    let (acked_id, acked_final) = final_state
        .iter()
        .find(|(_, state)| *state == "open")
        .or_else(|| final_state.iter().next())
        .map(|(id, state)| (id.clone(), state.clone()))
        .unwrap();
    // Through the store, as the dashboard does it: with a verdict, then once more without one
    // (which keeps it).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(tidewatch::Store::connect(db_url)).unwrap();
    for verdict in [Some(Verdict::FalseAlarm), None] {
        let ack = Acknowledgement {
            by: "ops",
            note: None,
            verdict,
            at: 1,
        };
        let acked = runtime
            .block_on(store.acknowledge(&acked_id, &ack))
            .unwrap();
        assert_eq!(acked.unwrap().verdict, Some(Verdict::FalseAlarm));
    }
    // A finished run leaves a checkpoint at the end of the input; drop it to replay it all.
    assert_eq!(count(&db, "checkpoints"), 1);
    db.fetch_all("DELETE FROM checkpoints RETURNING pipeline")
        .unwrap();
    let before: Vec<i64> = ["windows", "alerts", "late_events", "dead_letters"]
        .iter()
        .map(|t| count(&db, t))
        .collect();
    assert_success(&tidewatch(&["run", "--once", "--config", "p.toml"], dir));
    let after: Vec<i64> = ["windows", "alerts", "late_events", "dead_letters"]
        .iter()
        .map(|t| count(&db, t))
        .collect();
    assert_eq!(before, after, "a replay rewrites rows, it does not add any");
    let row = &db
        .fetch_all(&format!(
            "SELECT state, acked_by FROM alerts WHERE id = '{acked_id}'"
        ))
        .unwrap()[0];
    let state: String = row.try_get(0).unwrap();
    let expected = if acked_final == "open" {
        "acknowledged"
    } else {
        "resolved"
    };
    assert_eq!(state, expected);
    assert_eq!(
        row.try_get::<Option<String>, _>(1).unwrap().as_deref(),
        Some("ops")
    );
    // The verdict survived the replay, and the store lists and counts it.
    let judged = runtime
        .block_on(store.alerts(&AlertFilter {
            verdict: Some(VerdictFilter::Is(Verdict::FalseAlarm)),
            limit: 10,
            ..AlertFilter::default()
        }))
        .unwrap();
    assert_eq!(
        judged.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        [acked_id.as_str()]
    );
    let unjudged = runtime
        .block_on(store.alerts(&AlertFilter {
            verdict: Some(VerdictFilter::None),
            limit: 100_000,
            ..AlertFilter::default()
        }))
        .unwrap();
    assert_eq!(unjudged.len() as i64, count(&db, "alerts") - 1);
    let shares = runtime.block_on(store.verdicts()).unwrap();
    assert_eq!(
        shares,
        [VerdictShare {
            stream: "sensors".into(),
            judged: 1,
            false_alarms: 1
        }]
    );

    // A row whose state or window kind this version does not know (written by a newer one,
    // or by hand) is an error that names the column, not a quiet default.
    db.fetch_all(&format!(
        "UPDATE alerts SET state = 'snoozed' WHERE id = '{acked_id}' RETURNING id"
    ))
    .unwrap();
    let error = runtime
        .block_on(store.alerts(&AlertFilter {
            limit: 100_000,
            ..AlertFilter::default()
        }))
        .unwrap_err();
    let error = Report(&error).to_string();
    assert!(
        error.contains("alerts.state: unknown alert state \"snoozed\""),
        "{error}"
    );
    db.fetch_all(&format!(
        "UPDATE windows SET kind = 'hopping' WHERE series = '{series}' AND kind = 'tumbling' \
         RETURNING series"
    ))
    .unwrap();
    let error = runtime
        .block_on(store.windows("sensors", &series, i64::MIN, i64::MAX, 10))
        .unwrap_err();
    let error = Report(&error).to_string();
    assert!(
        error.contains("windows.kind: unknown window kind \"hopping\""),
        "{error}"
    );
}

#[test]
fn sqlite_store_upserts_and_keeps_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/tidewatch.db", dir.path().display());
    check_store(&url, dir.path());
}

#[test]
fn postgres_store_upserts_and_keeps_acknowledgements() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    check_store(&pg.url, dir.path());
}

/// Two streams reading one file: each has its own late-event and dead-letter rows for the same
/// line (they used to share one key and overwrite each other).
#[test]
fn two_streams_on_one_source_keep_their_own_late_events_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/tidewatch.db", dir.path().display());
    let one = pipeline(&url);
    let (streams, sinks) = one.split_at(one.find("[[sinks]]").unwrap());
    let copy = streams.replace("name = \"sensors\"", "name = \"sensors_copy\"");
    std::fs::write(dir.path().join("p.toml"), format!("{streams}{copy}{sinks}")).unwrap();
    assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        dir.path(),
    ));
    let late = read_ndjson(&dir.path().join("out/late.ndjson"));
    let dead = read_ndjson(&dir.path().join("out/dead_letters.ndjson"));
    let of = |rows: &[serde_json::Value], stream: &str| {
        rows.iter().filter(|r| r["stream"] == stream).count()
    };
    assert!(of(&late, "sensors") > 0 && of(&dead, "sensors") > 0);
    assert_eq!(of(&late, "sensors"), of(&late, "sensors_copy"));
    assert_eq!(of(&dead, "sensors"), of(&dead, "sensors_copy"));
    let db = DbSink::connect(&url).unwrap();
    assert_eq!(count(&db, "late_events"), late.len() as i64);
    assert_eq!(count(&db, "dead_letters"), dead.len() as i64);
}

/// Processes opening one fresh SQLite file at once (a pipeline, a tool polling its store)
/// apply each migration once: they used to race into "duplicate column name".
#[test]
fn sqlite_migrations_run_once_when_many_open_the_file_together() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/together.db", dir.path().display());
    let opened: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || DbSink::connect(&url).map(drop))
        })
        .collect();
    for thread in opened {
        let result = thread.join().unwrap();
        assert!(result.is_ok(), "{}", Report(&result.unwrap_err()));
    }
    let db = DbSink::connect(&url).unwrap();
    let versions = db.fetch_all("SELECT version FROM schema_version").unwrap();
    let versions: Vec<i64> = versions.iter().map(|r| r.get::<i64, _>(0)).collect();
    assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>());
}

/// Nullable doubles (a window's stddev, an alert's band and score) bound as NULL, then as
/// values, in statements of the same shape: on PostgreSQL the second write failed ("incorrect
/// binary data format in bind parameter 11") once the first had prepared the statement.
fn check_nullable_doubles(url: &str) {
    use tidewatch::record::{Record, WindowKind, WindowRecord};
    use tidewatch::Sink;
    let window = |start: i64, stddev: Option<f64>| {
        Record::Window(WindowRecord {
            stream: "s".into(),
            series: "a".into(),
            kind: WindowKind::Tumbling,
            window_start: start,
            window_end: start + 60_000,
            count: 2,
            sum: 4.0,
            mean: 2.0,
            min: 1.0,
            max: 3.0,
            stddev,
            first: 1.0,
            last: 3.0,
            is_final: true,
        })
    };
    let alert = |id: &str, band: Option<f64>| {
        let mut alert = crate::web::alert(id);
        alert.lower = band.map(|b| -b);
        alert.upper = band;
        alert.score = band;
        alert.probability = band.map(|b| b / 1e12);
        Record::Alert(Box::new(alert))
    };
    // NULLs first, then values, more times than the pool has connections (each connection
    // keeps its own prepared statements). Each write flushed on its own, so each is a
    // transaction of its own (the sink's thread joins the writes that wait for it).
    let values: Vec<Option<f64>> = [None; 6].into_iter().chain([Some(1.5); 6]).collect();
    let mut db = DbSink::connect(url).unwrap();
    for (i, &value) in values.iter().enumerate() {
        let batch = [
            window(i as i64 * 60_000, value),
            alert(&format!("a{i:02}"), value.map(|v| v * 2.0)),
        ];
        if let Err(error) = db.write(&batch).and_then(|()| db.flush(i as u64)) {
            panic!("write {i} ({value:?}): {}", Report(&error));
        }
    }
    let rows = db
        .fetch_all("SELECT stddev FROM windows ORDER BY window_start")
        .unwrap();
    let stddevs: Vec<Option<f64>> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(stddevs, values);
    let rows = db
        .fetch_all("SELECT upper, probability FROM alerts ORDER BY id")
        .unwrap();
    let bands: Vec<(Option<f64>, Option<f64>)> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected: Vec<(Option<f64>, Option<f64>)> = values
        .iter()
        .map(|v| (v.map(|v| v * 2.0), v.map(|v| v * 2.0 / 1e12)))
        .collect();
    assert_eq!(bands, expected);
}

#[test]
fn nullable_doubles_go_in_as_null_then_as_values_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    check_nullable_doubles(&format!("sqlite://{}/t.db", dir.path().display()));
}

#[test]
fn nullable_doubles_go_in_as_null_then_as_values_postgres() {
    let pg = Postgres::start();
    check_nullable_doubles(&pg.url);
}

/// One transaction may carry several versions of one row: a global window updated twice, or the
/// same late event and dead letter written again by a replay, joined by the sink's writer thread
/// into one batch. The row holds the last version (PostgreSQL refuses an upsert that touches a
/// row twice in one statement, so the sink must keep only the last of each key).
fn check_repeated_keys_in_one_transaction(url: &str) {
    use tidewatch::record::{DeadLetterRecord, LateRecord, Record, WindowKind, WindowRecord};
    use tidewatch::Sink;
    let window = |count: u64| {
        Record::Window(WindowRecord {
            stream: "s".into(),
            series: "a".into(),
            kind: WindowKind::Global,
            window_start: 0,
            window_end: i64::MAX,
            count,
            sum: count as f64,
            mean: 1.0,
            min: 1.0,
            max: 1.0,
            stddev: None,
            first: 1.0,
            last: 1.0,
            is_final: count == 3,
        })
    };
    let late = |watermark: i64| {
        Record::Late(LateRecord {
            stream: "s".into(),
            series: "a".into(),
            ts: 1,
            watermark,
            lateness_ms: watermark - 1,
            source: "file".into(),
            partition: 0,
            offset: 7,
        })
    };
    let dead = |reason: &str| {
        Record::DeadLetter(DeadLetterRecord {
            stream: "s".into(),
            source: "file".into(),
            partition: 0,
            offset: 8,
            reason: reason.into(),
            payload: "{".into(),
        })
    };
    let batch = [
        window(1),
        late(10),
        dead("first"),
        window(2),
        late(20),
        dead("second"),
        window(3),
    ];
    let mut db = DbSink::connect(url).unwrap();
    if let Err(error) = db.write(&batch).and_then(|()| db.flush(1)) {
        panic!("write: {}", Report(&error));
    }
    let rows = db
        .fetch_all("SELECT count, CAST(\"final\" AS INTEGER) FROM windows")
        .unwrap();
    let windows: Vec<(i64, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get::<i64, _>(1) != 0))
        .collect();
    assert_eq!(windows, [(3, true)]);
    let rows = db.fetch_all("SELECT watermark FROM late_events").unwrap();
    let watermarks: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(watermarks, [20]);
    let rows = db.fetch_all("SELECT reason FROM dead_letters").unwrap();
    let reasons: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(reasons, ["second"]);
}

#[test]
fn repeated_keys_in_one_transaction_keep_the_last_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    check_repeated_keys_in_one_transaction(&format!("sqlite://{}/t.db", dir.path().display()));
}

#[test]
fn repeated_keys_in_one_transaction_keep_the_last_postgres() {
    let pg = Postgres::start();
    check_repeated_keys_in_one_transaction(&pg.url);
}

/// Window rows read back from the store bit for bit: doubles at the edges of `f64` (the
/// PostgreSQL sink sends them as JSON text), labels JSON must escape, a window without a
/// stddev, and an infinite sum (which JSON cannot carry, so PostgreSQL gets it bound).
/// `keeps_negative_zero`: SQLite stores an integral REAL as an integer, so -0.0 reads back 0.0.
fn check_window_doubles_round_trip(url: &str, keeps_negative_zero: bool) {
    use tidewatch::record::{Record, WindowKind, WindowRecord};
    use tidewatch::Sink;
    let window = |series: &str, values: [f64; 6], stddev: Option<f64>| WindowRecord {
        stream: "s".into(),
        series: series.into(),
        kind: WindowKind::Tumbling,
        window_start: -60_000,
        window_end: 0,
        count: 3,
        sum: values[0],
        mean: values[1],
        min: values[2],
        max: values[3],
        stddev,
        first: values[4],
        last: values[5],
        is_final: true,
    };
    let windows = [
        window(
            "a \"quoted\" \\ back/slash",
            [0.1, 1.0 / 3.0, -0.0, 1e300, 5e-324, -2.5],
            Some(0.2),
        ),
        window(
            "b\nnew line, tab\t, é ✓",
            [
                f64::MAX,
                f64::MIN_POSITIVE,
                f64::MIN,
                123_456_789.123_456_79,
                1e-7,
                42.0,
            ],
            None,
        ),
        window(
            "c",
            [
                2.0_f64.sqrt(),
                std::f64::consts::PI,
                -1e-310,
                9007199254740993.0,
                0.3,
                7.0,
            ],
            Some(f64::EPSILON),
        ),
    ];
    let infinite = window(
        "d infinite",
        [f64::INFINITY, 1.0, 1.0, f64::INFINITY, 1.0, 1.0],
        Some(0.5),
    );
    let mut db = DbSink::connect(url).unwrap();
    let first: Vec<Record> = windows.iter().cloned().map(Record::Window).collect();
    let written = db
        .write(&first)
        .and_then(|()| db.flush(1))
        .and_then(|()| db.write(&[Record::Window(infinite.clone())]))
        .and_then(|()| db.flush(2));
    if let Err(error) = written {
        panic!("write: {}", Report(&error));
    }
    let rows = db
        .fetch_all(
            "SELECT series, window_start, window_end, count, sum, mean, min, max, stddev, first, \
             last FROM windows ORDER BY series",
        )
        .unwrap();
    let read: Vec<WindowRecord> = rows
        .iter()
        .map(|r| WindowRecord {
            stream: "s".into(),
            series: r.get::<String, _>(0).into(),
            kind: WindowKind::Tumbling,
            window_start: r.get(1),
            window_end: r.get(2),
            count: r.get::<i64, _>(3) as u64,
            sum: r.get(4),
            mean: r.get(5),
            min: r.get(6),
            max: r.get(7),
            stddev: r.get(8),
            first: r.get(9),
            last: r.get(10),
            is_final: true,
        })
        .collect();
    let bits = |w: &WindowRecord| {
        let doubles = [w.sum, w.mean, w.min, w.max, w.first, w.last].map(|x| {
            if x == 0.0 && !keeps_negative_zero {
                0.0
            } else {
                x
            }
        });
        (
            w.series.to_string(),
            w.window_start,
            w.window_end,
            w.count,
            doubles.map(f64::to_bits),
            w.stddev.map(f64::to_bits),
        )
    };
    let expected: Vec<_> = windows.iter().chain([&infinite]).map(bits).collect();
    assert_eq!(read.iter().map(bits).collect::<Vec<_>>(), expected);
}

#[test]
fn window_doubles_round_trip_exactly_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    check_window_doubles_round_trip(&format!("sqlite://{}/t.db", dir.path().display()), false);
}

#[test]
fn window_doubles_round_trip_exactly_postgres() {
    let pg = Postgres::start();
    check_window_doubles_round_trip(&pg.url, true);
}

/// The pipeline of [`engine_with`]'s engine.
fn engine_config() -> tidewatch::Config {
    tidewatch::Config::from_toml_str(
        r#"
[[streams]]
name = "s"
source = { kind = "file", path = "unused" }
fields = { time = "ts", series = "series", value = "value" }
windows = [{ kind = "tumbling", size = "1m" }]
analytics = {}

[[sinks]]
kind = "ndjson"
path = "unused"
"#,
    )
    .unwrap()
}

/// A checkpointing engine (its key groups keep logs, and take images early).
fn logging_engine() -> tidewatch::Engine {
    let plan = engine_config()
        .engine_plan()
        .with_changelog(true)
        .with_first_image_after(4_000);
    tidewatch::Engine::new(plan)
}

/// Feeds `engine` events `range` of `series` series, and lands them.
fn feed(engine: &mut tidewatch::Engine, series: usize, range: std::ops::Range<usize>) {
    use tidewatch::{Event, Origin};
    let mut out = Vec::new();
    for i in range {
        let label = format!("device-{}", i % series);
        let event = Event {
            ts: 1_764_000_000_000 + i as i64 * 100,
            series: label.as_str().into(),
            value: (i % 7) as f64 + if i % 211 == 0 { 40.0 } else { 0.0 },
            id: None,
            join_key: None,
        };
        let origin = Origin {
            source: "test",
            split: 0,
            partition: 0,
            offset: i as u64,
        };
        engine.process(0, &event, origin, 0, &mut out).unwrap();
    }
    engine.settle(&mut out);
}

/// The records both engines write for the same events after `from`, to the end.
fn same_from_here(a: &mut tidewatch::Engine, b: &mut tidewatch::Engine, from: usize) {
    let run = |engine: &mut tidewatch::Engine| {
        use tidewatch::{Event, Origin};
        let mut out = Vec::new();
        for i in from..from + 2_000 {
            let label = format!("device-{}", i % 200);
            let event = Event {
                ts: 1_764_000_000_000 + i as i64 * 100,
                series: label.as_str().into(),
                value: (i % 5) as f64,
                id: None,
                join_key: None,
            };
            let origin = Origin {
                source: "test",
                split: 0,
                partition: 0,
                offset: i as u64,
            };
            engine.process(0, &event, origin, 0, &mut out).unwrap();
        }
        engine.finish(&mut out);
        out
    };
    let (one, other) = (run(a), run(b));
    assert!(one.len() >= 2_000);
    assert!(one == other, "the restored engine went on otherwise");
}

fn checkpoint(engine: Option<&tidewatch::StateDelta>, epoch: u64) -> tidewatch::Outgoing<'_> {
    tidewatch::Checkpoint {
        fingerprint: "f".into(),
        engine,
        positions: vec![vec![tidewatch::SplitPosition {
            source: "t".into(),
            partition: 0,
            next_offset: epoch * 10,
        }]],
        epoch,
        written_at: 1,
    }
}

/// With its log segments in (key group, first position) order, as the database lists them.
fn sorted(mut state: tidewatch::StoredState) -> tidewatch::StoredState {
    state.logs.sort_by_key(|l| (l.kg, l.first_pos));
    state
}

/// A checkpoint adds to the stored state: what loads is each delta applied to the one before
/// (images replace their group's, log segments an image covers are dropped), it restores into
/// an engine that goes on as the one that wrote it, a full checkpoint replaces everything, a
/// finished batch run's drops it, a damaged image is refused, and a checkpoint of an older
/// format is refused by it.
fn check_checkpoint_state(url: &str) {
    use tidewatch::CheckpointStore;
    let db = DbSink::connect(url).unwrap();
    let mut store = db.checkpoints();
    let rows = |table: &str, name: &str| -> i64 {
        db.fetch_all(&format!(
            "SELECT COUNT(*) FROM {table} WHERE pipeline = '{name}'"
        ))
        .unwrap()[0]
            .get(0)
    };

    let mut engine = logging_engine();
    let mut expected: Option<tidewatch::StoredState> = None;
    let mut saw_images = false;
    for part in 0..6usize {
        feed(&mut engine, 200, part * 3_000..(part + 1) * 3_000);
        let delta = engine.delta(false).unwrap();
        saw_images |= !delta.images.is_empty();
        let epoch = part as u64 + 1;
        if part % 2 == 0 {
            let written = store.save("p", &checkpoint(Some(&delta), epoch)).unwrap();
            assert_eq!(written, delta.len() as u64);
        } else {
            // Written in parts: none of it loads before the save.
            let before = store.load("p").unwrap().unwrap();
            let mut rest = delta.clone();
            store.begin("p").unwrap();
            while !rest.images.is_empty() || rest.logs.len() > 1 {
                let images: Vec<_> = rest.images.drain(..rest.images.len().min(1)).collect();
                let logs: Vec<_> = match images.is_empty() {
                    true => rest.logs.drain(..2.min(rest.logs.len() - 1)).collect(),
                    false => Vec::new(),
                };
                store.stage("p", &images, &logs).unwrap();
                assert_eq!(
                    store.load("p").unwrap().unwrap(),
                    before,
                    "staged, not saved"
                );
            }
            store
                .save_staged("p", &checkpoint(Some(&rest), epoch))
                .unwrap();
        }
        expected = Some(sorted(delta.apply(expected)));
        let loaded = store.load("p").unwrap().unwrap();
        assert_eq!(
            loaded.engine.as_ref(),
            expected.as_ref(),
            "after part {part}"
        );
        assert_eq!(loaded.epoch, part as u64 + 1);
    }
    assert!(saw_images, "the key groups took images as their logs grew");
    let stored = expected.clone().unwrap();
    assert_eq!(rows("state_logs", "p"), stored.logs.len() as i64);

    // A write in parts that never reaches its save (the process died, or the pipeline went
    // back to its last checkpoint): what it staged never loads, and the next write drops it.
    let plan = engine_config().engine_plan().with_changelog(true);
    let mut going_on = tidewatch::Engine::restore(plan, &stored).unwrap();
    feed(&mut going_on, 200, 18_000..21_000);
    let lost = going_on.delta(false).unwrap();
    assert!(!lost.logs.is_empty());
    store.begin("p").unwrap();
    store.stage("p", &lost.images, &lost.logs).unwrap();
    let mut store = db.checkpoints();
    assert_eq!(store.load("p").unwrap().unwrap().engine, expected);
    assert!(
        matches!(
            store.stage("p", &[], &lost.logs),
            Err(tidewatch::CheckpointError::NotBegun { .. })
        ),
        "a part is staged only after the write began"
    );
    store
        .save("p", &checkpoint(Some(&tidewatch::StateDelta::default()), 7))
        .unwrap();
    assert_eq!(
        rows("state_logs", "p"),
        stored.logs.len() as i64,
        "the lost write's rows went"
    );
    assert_eq!(
        store.load("p").unwrap().unwrap().engine.unwrap().logs,
        stored.logs
    );
    let covered = stored.logs.iter().filter(|l| {
        stored
            .images
            .iter()
            .any(|i| i.kg == l.kg && l.last_pos < i.pos)
    });
    assert_eq!(
        covered.count(),
        0,
        "segments the images covered were dropped"
    );
    let mut restored = tidewatch::Engine::restore(engine_config().engine_plan(), &stored).unwrap();
    same_from_here(&mut engine, &mut restored, 18_000);

    // A full checkpoint: images only, nothing before it left.
    let mut other = logging_engine();
    feed(&mut other, 50, 0..2_000);
    let full = other.delta(true).unwrap();
    store.save("p", &checkpoint(Some(&full), 9)).unwrap();
    let loaded = store.load("p").unwrap().unwrap().engine.unwrap();
    assert_eq!(loaded, full.apply(None));
    assert_eq!(rows("state_logs", "p"), 0);

    // Positions only (a finished batch run): no state.
    store.save("p", &checkpoint(None, 10)).unwrap();
    assert_eq!(store.load("p").unwrap().unwrap().engine, None);
    assert_eq!((rows("state_images", "p"), rows("state_logs", "p")), (0, 0));

    // A damaged image (a hand-edited database): refused, not restored wrong.
    store.save("d", &checkpoint(Some(&full), 1)).unwrap();
    let mut damaged = store.load("d").unwrap().unwrap().engine.unwrap();
    damaged.images[0].bytes[0] ^= 0x40;
    let refused = tidewatch::Engine::restore(engine_config().engine_plan(), &damaged)
        .err()
        .unwrap();
    assert!(refused.to_string().contains("damaged"), "{refused}");

    // Written by an older version (its state in `checkpoint_chunks`): refused by format.
    db.fetch_all(
        "INSERT INTO checkpoints (pipeline, fingerprint, engine, engine_chunks, positions, epoch, written_at) \
         VALUES ('old', 'f', NULL, 1, '[[]]', 7, 1)",
    )
    .unwrap();
    db.fetch_all(&format!(
        "INSERT INTO checkpoint_chunks (pipeline, seq, bytes) VALUES ('old', 0, {})",
        if url.starts_with("postgres") {
            "'\\x0a02'::bytea"
        } else {
            "x'0a02'"
        }
    ))
    .unwrap();
    let old = store.load("old").unwrap().unwrap();
    let refused =
        tidewatch::Engine::restore(engine_config().engine_plan(), old.engine.as_ref().unwrap())
            .err()
            .unwrap();
    assert!(refused.to_string().contains("state format 10"), "{refused}");
}

#[test]
fn checkpoint_state_adds_up_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    check_checkpoint_state(&format!("sqlite://{}/t.db", dir.path().display()));
}

#[test]
fn checkpoint_state_adds_up_postgres() {
    let pg = Postgres::start();
    check_checkpoint_state(&pg.url);
}

/// Two instances of a group-assigned pipeline share its name, so both save the pipeline's own
/// checkpoint row, at times at the same moment: each save is whole (the other's images never
/// mixed in), and what loads is one of the two.
fn check_concurrent_checkpoints(url: &str) {
    use tidewatch::CheckpointStore;
    let deltas: Vec<tidewatch::StateDelta> = [150, 160]
        .into_iter()
        .map(|series| {
            let mut engine = logging_engine();
            feed(&mut engine, series, 0..series * 20);
            engine.delta(true).unwrap()
        })
        .collect();
    std::thread::scope(|scope| {
        for (instance, delta) in deltas.iter().enumerate() {
            let url = url.to_owned();
            scope.spawn(move || {
                let db = DbSink::connect(&url).unwrap();
                let mut store = db.checkpoints();
                for round in 0..15 {
                    let epoch = (round * 2 + instance) as u64;
                    if let Err(error) = store.save("shared", &checkpoint(Some(delta), epoch)) {
                        panic!("instance {instance}, round {round}: {}", Report(&error));
                    }
                }
            });
        }
    });
    let db = DbSink::connect(url).unwrap();
    let loaded = db.checkpoints().load("shared").unwrap().unwrap();
    let state = loaded.engine.unwrap();
    assert!(
        deltas.iter().any(|d| d.apply(None) == state),
        "the stored state is neither instance's ({} images)",
        state.images.len()
    );
}

#[test]
fn concurrent_checkpoints_of_one_name_postgres() {
    let pg = Postgres::start();
    check_concurrent_checkpoints(&pg.url);
}

#[test]
fn concurrent_checkpoints_of_one_name_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    check_concurrent_checkpoints(&format!("sqlite://{}/t.db", dir.path().display()));
}
