//! The engine as a whole: snapshots, and the same records whatever the number of shards.

use super::*;
use crate::record::LateRecord;

fn bench_config() -> Config {
    Config::from_toml_str(crate::bench::BENCH_CONFIG).unwrap()
}

/// `config` run on `threads` shards.
fn engine_on(config: &Config, threads: usize) -> Engine {
    Engine::from_plan(EnginePlan::from_config(config).with_threads(threads))
}

/// Where a test's event comes from: partition 0 of source "x", at `offset`.
fn origin(offset: u64) -> Origin<'static> {
    Origin {
        source: "x",
        split: 0,
        partition: 0,
        offset,
    }
}

fn event(ts: i64, series: String, value: f64, id: Option<String>) -> Event<'static> {
    Event {
        ts,
        series: series.into(),
        value,
        id: id.map(Into::into),
        join_key: None,
    }
}

#[test]
fn a_snapshot_restores_and_another_format_is_refused_by_name() {
    let config = bench_config();
    let snapshot = engine_on(&config, 1).snapshot().unwrap();
    assert_eq!(snapshot[0], SNAPSHOT_FORMAT);
    let mut restored = Engine::restore(&config, &snapshot).unwrap();
    assert_eq!(restored.snapshot().unwrap(), snapshot);

    let mut old = snapshot.clone();
    old[0] = SNAPSHOT_FORMAT - 1;
    let refused = Engine::restore(&config, &old).err().unwrap().to_string();
    assert!(
        refused.contains(&format!("format {}", SNAPSHOT_FORMAT - 1))
            && refused.contains("checkpoint.pipeline"),
        "{refused}"
    );
    assert!(Engine::restore(&config, &[]).is_err());
    assert!(Engine::restore(&config, &[SNAPSHOT_FORMAT]).is_err());
}

/// Any byte changed after the format byte is caught by the checksum, before decoding.
#[test]
fn a_damaged_snapshot_is_refused_by_its_checksum() {
    let config = bench_config();
    let mut engine = engine_on(&config, 2);
    let mut out = Vec::new();
    for i in 0..100 {
        let e = event(
            1_700_000_000_000 + i * 1_000,
            format!("s{}", i % 7),
            i as f64,
            Some(format!("e{i}")),
        );
        engine
            .process(0, &e, origin(i as u64), 0, &mut out)
            .unwrap();
    }
    engine.settle(&mut out);
    let snapshot = engine.snapshot().unwrap();
    let mut streamed = Vec::new();
    engine.image().unwrap().write(&mut streamed).unwrap();
    assert_eq!(streamed, snapshot, "both ways write the same bytes");
    for at in [1, snapshot.len() / 2, snapshot.len() - 1] {
        let mut damaged = snapshot.clone();
        damaged[at] ^= 0x10;
        let refused = Engine::restore(&config, &damaged).err().unwrap();
        assert!(
            matches!(refused, SnapshotError::Damaged),
            "byte {at}: {refused}"
        );
    }
}

/// One stream `s` with default analytics and a watermark `lateness` behind.
fn one_stream_with_analytics(lateness: &str) -> Config {
    Config::from_toml_str(&format!(
        "[[streams]]\nname = \"s\"\nsource = {{ kind = \"file\", path = \"x\" }}\n\
         fields = {{ time = \"ts\", series = \"series\", value = \"value\" }}\n\
         watermark = {{ lateness = \"{lateness}\" }}\nanalytics = {{}}\n\
         [[sinks]]\nkind = \"ndjson\"\npath = \"x\"\n",
    ))
    .unwrap()
}

/// A checkpoint of an engine with a round read or running would miss it: refused, and fine
/// once the round is landed.
#[test]
fn no_snapshot_while_a_round_is_read_or_run() {
    let config = one_stream_with_analytics("1s");
    let mut engine = engine_on(&config, 2);
    let mut out = Vec::new();
    for i in 0..5_000i64 {
        let e = event(
            1_700_000_000_000 + i * 10,
            format!("s{}", i % 50),
            (i % 7) as f64,
            None,
        );
        engine
            .process(0, &e, origin(i as u64), 0, &mut out)
            .unwrap();
    }
    assert!(
        matches!(engine.snapshot(), Err(SnapshotError::Busy)),
        "a round is read"
    );
    engine.end_round(&mut out);
    assert!(
        engine.in_flight(),
        "on threads the round runs while the next is read"
    );
    assert!(
        matches!(engine.snapshot(), Err(SnapshotError::Busy)),
        "a round is run"
    );
    engine.land(&mut out);
    assert_eq!(out.len(), 4_899, "the points the watermark passed");
    let mut restored = Engine::restore(&config, &engine.snapshot().unwrap()).unwrap();
    assert_eq!(restored.counters(0), engine.counters(0));
    assert_eq!(restored.snapshot().unwrap(), engine.snapshot().unwrap());
}

/// Two streams with windows and analytics (their records interleaved), late events, records
/// the caller puts in (as it does dead letters), alerts, new series arriving all along, a
/// backlog released at once by a jump of the watermark, and an idle partition: the records
/// of 2, 3 and 7 shards are those of one, in the same order, for rounds of any size.
#[test]
fn any_number_of_shards_gives_the_records_of_one() {
    let config = Config::from_toml_str(
        "[[streams]]\nname = \"a\"\nsource = { kind = \"file\", path = \"x\" }\n\
         fields = { time = \"ts\", series = \"series\", value = \"value\", id = \"id\" }\n\
         watermark = { lateness = \"3s\", idle_timeout = \"1s\" }\ndedup = { horizon = \"1m\" }\n\
         windows = [{ kind = \"tumbling\", size = \"10s\" }, { kind = \"sliding\", size = \"20s\", slide = \"5s\" }, { kind = \"session\", gap = \"2s\" }, { kind = \"global\", update = \"7s\" }]\n\
         analytics = { zscore = { points = 60, method = \"robust\" } }\n\
         [[streams]]\nname = \"b\"\nsource = { kind = \"file\", path = \"y\" }\n\
         fields = { time = \"ts\", series = \"series\", value = \"value\" }\n\
         watermark = { lateness = \"1s\" }\nanalytics = {}\n\
         [[sinks]]\nkind = \"ndjson\"\npath = \"x\"\n",
    )
    .unwrap();
    let run = |threads: usize, round: usize| {
        let mut engine = engine_on(&config, threads);
        let mut out = Vec::new();
        let start = 1_700_000_000_000i64;
        engine.assign_split(0, 1, 0);
        for i in 0..12_000i64 {
            let stream = (i % 5 == 0) as usize;
            // New series keep coming.
            let s = (i * 7919) % (100 + i / 200);
            // Out of order within the lateness, now and then late, now and then a spike, a
            // jump of two minutes at 9,000 (a backlog released at once), duplicates.
            let jitter = (i * 31) % 2_500 - if i % 997 == 0 { 9_000 } else { 0 };
            let jump = if i >= 9_000 { 120_000 } else { 0 };
            let spike = if i % 1_301 == 0 { 500.0 } else { 0.0 };
            let id = (i % 11 != 3).then(|| format!("e{}", i - i64::from(i % 13 == 0)));
            let e = event(
                start + i * 10 + jitter + jump,
                format!("s{s}"),
                ((s + i / 157) % 11) as f64 + spike,
                id,
            );
            engine
                .process(stream, &e, origin(i as u64), i / 100, &mut out)
                .unwrap();
            if i % 409 == 0 {
                engine.reject(Record::Late(LateRecord {
                    stream: Arc::from("caller"),
                    series: Arc::from("appended"),
                    ts: i,
                    watermark: 0,
                    lateness_ms: 0,
                    source: Arc::from("x"),
                    partition: 0,
                    offset: i as u64,
                }));
            }
            if i % 250 == 0 {
                // Split 1 of stream a never sends: idle after a second of processing time.
                engine.tick(i / 100);
            }
            if i as usize % round == round - 1 {
                engine.end_round(&mut out);
            }
        }
        engine.finish(&mut out);
        out
    };
    let one = run(1, 1_000);
    let count = |kind: fn(&Record) -> bool| one.iter().filter(|r| kind(r)).count();
    assert!(count(|r| matches!(r, Record::Point(p) if &*p.stream == "a")) > 8_000);
    assert!(count(|r| matches!(r, Record::Point(p) if &*p.stream == "b")) > 1_000);
    assert!(count(|r| matches!(r, Record::Alert(_))) > 0, "no alerts");
    assert!(count(|r| matches!(r, Record::Late(l) if &*l.stream != "caller")) > 0);
    for kind in [
        WindowKind::Tumbling,
        WindowKind::Sliding,
        WindowKind::Session,
        WindowKind::Global,
    ] {
        let windows = one
            .iter()
            .filter(|r| matches!(r, Record::Window(w) if w.kind == kind))
            .count();
        assert!(windows > 0, "{kind:?}");
    }
    for (threads, round) in [(1, 333), (2, 1_000), (2, 5_000), (3, 12_000), (7, 333)] {
        let got = run(threads, round);
        let case = format!("{threads} shards, rounds of {round}");
        assert_eq!(got.len(), one.len(), "{case}");
        assert!(got == one, "{case}");
    }
}

use crate::record::WindowKind;

/// A checkpoint written with one number of shards restores with another, and the run goes on
/// with the records of one that never stopped.
#[test]
fn a_checkpoint_of_n_shards_restores_on_m() {
    let config = one_stream_with_analytics("2s");
    let events: Vec<Event<'static>> = (0..6_000i64)
        .map(|i| {
            let s = (i * 31) % 240;
            let spike = if i % 977 == 0 { 80.0 } else { 0.0 };
            event(
                1_700_000_000_000 + i * 50 + (i * 17) % 1_500,
                format!("s{s}"),
                (s % 9) as f64 + spike,
                None,
            )
        })
        .collect();
    let feed = |engine: &mut Engine, range: std::ops::Range<usize>, out: &mut Vec<Record>| {
        for i in range {
            engine
                .process(0, &events[i], origin(i as u64), 0, out)
                .unwrap();
            if i % 700 == 0 {
                engine.end_round(out);
            }
        }
    };
    let mut straight = Vec::new();
    let mut engine = engine_on(&config, 1);
    feed(&mut engine, 0..events.len(), &mut straight);
    engine.finish(&mut straight);
    for (before, after) in [(1, 3), (3, 1), (2, 7), (7, 2)] {
        let mut resumed = Vec::new();
        let mut first = engine_on(&config, before);
        feed(&mut first, 0..2_500, &mut resumed);
        first.settle(&mut resumed);
        let snapshot = first.snapshot().unwrap();
        let plan = EnginePlan::from_config(&config).with_threads(after);
        let mut second = Engine::restore_plan(plan, &snapshot).unwrap();
        feed(&mut second, 2_500..events.len(), &mut resumed);
        second.finish(&mut resumed);
        assert!(resumed == straight, "{before} shards, then {after}");
    }
}

/// A month of an hourly series with a daily pattern and two anomalies: the default detector
/// picks up the pattern and alerts. Run straight through, or snapshotted and restored at any
/// of several points (before and after the pattern is found, between the anomalies), it
/// writes the same records.
#[test]
fn a_restored_detector_continues_exactly() {
    let config = one_stream_with_analytics("0s");
    let hour = 3_600_000i64;
    let values: Vec<(i64, f64)> = (0..24 * 30)
        .map(|i| {
            let daily = if (8..20).contains(&(i % 24)) {
                50.0
            } else {
                10.0
            };
            let noise = ((i * 7919) % 11) as f64 / 11.0;
            let planted = match i {
                600 => 40.0,
                661 => -30.0,
                _ => 0.0,
            };
            (1_700_000_000_000 + i * hour, daily + noise + planted)
        })
        .collect();
    let feed = |engine: &mut Engine, range: std::ops::Range<usize>, out: &mut Vec<Record>| {
        for i in range {
            let (ts, value) = values[i];
            let e = event(ts, "a".into(), value, None);
            engine.process(0, &e, origin(i as u64), 0, out).unwrap();
        }
    };
    let mut straight = Vec::new();
    let mut engine = engine_on(&config, 1);
    feed(&mut engine, 0..values.len(), &mut straight);
    engine.finish(&mut straight);
    let alerts: Vec<&crate::record::AlertRecord> = straight
        .iter()
        .filter_map(|r| match r {
            Record::Alert(a) => Some(&**a),
            _ => None,
        })
        .collect();
    assert!(
        alerts
            .iter()
            .any(|a| a.expectation.as_deref() == Some("1d")),
        "the daily pattern was in use: {alerts:?}"
    );
    assert!(alerts.iter().any(|a| a.ts == values[600].0));
    // The second, within the refractory period, reopens the same alert.
    assert!(straight
        .iter()
        .any(|r| matches!(r, Record::Point(p) if p.ts == values[661].0 && p.anomaly)));
    for cut in [50, 130, 599, 630] {
        let mut resumed = Vec::new();
        let mut first = engine_on(&config, 1);
        feed(&mut first, 0..cut, &mut resumed);
        first.settle(&mut resumed);
        let mut second = Engine::restore(&config, &first.snapshot().unwrap()).unwrap();
        feed(&mut second, cut..values.len(), &mut resumed);
        second.finish(&mut resumed);
        assert_eq!(resumed, straight, "restored after {cut} points");
    }
}
