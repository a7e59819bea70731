//! The engine as a whole: snapshots, and the same records whatever the number of shards.

use super::snapshot::SNAPSHOT_FORMAT;
use super::*;
use crate::config::Config;
use crate::record::LateRecord;

fn bench_config() -> Config {
    Config::from_toml_str(crate::bench::BENCH_CONFIG).unwrap()
}

/// `config` run on `threads` shards.
fn engine_on(config: &Config, threads: usize) -> Engine {
    Engine::new(config.engine_plan().with_threads(threads))
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

/// The bench's pipeline with `n` events of 50 series in it, on `threads` shards, keeping logs.
fn engine_with_events(config: &Config, threads: usize, n: i64) -> Engine {
    let plan = config
        .engine_plan()
        .with_threads(threads)
        .with_changelog(true);
    let mut engine = Engine::new(plan);
    let mut out = Vec::new();
    for i in 0..n {
        let e = event(
            1_700_000_000_000 + i * 100,
            format!("s{}", i % 50),
            (i % 17) as f64,
            Some(format!("e{i}")),
        );
        engine
            .process(0, &e, origin(i as u64), 0, &mut out)
            .unwrap();
    }
    engine.settle(&mut out);
    engine
}

/// Feeds both engines the same events after event `from` of [`engine_with_events`], to the
/// end of input, and checks they write the same records.
fn same_from_here(a: &mut Engine, b: &mut Engine, from: i64) {
    let run = |engine: &mut Engine| {
        let mut out = Vec::new();
        for i in from..from + 2_000 {
            let e = event(
                1_700_000_000_000 + i * 100,
                format!("s{}", i % 50),
                (i % 17) as f64 + if i % 301 == 0 { 90.0 } else { 0.0 },
                Some(format!("e{}", i - (i % 7 == 0) as i64)),
            );
            engine
                .process(0, &e, origin(i as u64), 0, &mut out)
                .unwrap();
        }
        engine.finish(&mut out);
        out
    };
    let (one, other) = (run(a), run(b));
    assert!(one.len() > 2_000, "{} records", one.len());
    assert!(one == other, "the restored engine went on otherwise");
}

#[test]
fn a_full_state_restores_and_another_format_is_refused_by_name() {
    let config = bench_config();
    let mut engine = engine_with_events(&config, 2, 3_000);
    let state = engine.full_state().unwrap();
    assert_eq!(state.head[0], SNAPSHOT_FORMAT);
    assert!(!state.images.is_empty() && state.logs.is_empty());
    let mut restored = Engine::restore(config.engine_plan(), &state).unwrap();
    let again = restored.full_state().unwrap();
    assert_eq!(again.head, state.head);
    let groups = |s: &StoredState| s.images.iter().map(|i| (i.kg, i.pos)).collect::<Vec<_>>();
    assert_eq!(groups(&again), groups(&state));
    same_from_here(&mut engine, &mut restored, 3_000);

    let mut old = state.clone();
    old.head[0] = SNAPSHOT_FORMAT - 1;
    let refused = Engine::restore(config.engine_plan(), &old)
        .err()
        .unwrap()
        .to_string();
    assert!(
        refused.contains(&format!("format {}", SNAPSHOT_FORMAT - 1))
            && refused.contains("checkpoint.pipeline"),
        "{refused}"
    );
    let empty = StoredState::default();
    assert!(Engine::restore(config.engine_plan(), &empty).is_err());
}

/// Any byte changed in the head, an image or a log segment is caught by its checksum before
/// anything is decoded.
#[test]
fn a_damaged_state_is_refused_by_its_checksums() {
    let config = bench_config();
    let mut engine = engine_with_events(&config, 2, 500);
    let state = engine.delta(false).unwrap().apply(None);
    let full = engine.full_state().unwrap();
    assert!(!state.logs.is_empty() && !full.images.is_empty());
    let damaged = |state: &StoredState, what: &str| {
        let refused = Engine::restore(config.engine_plan(), state).err().unwrap();
        assert!(
            matches!(refused, SnapshotError::Damaged),
            "{what}: {refused}"
        );
    };
    let mut head = state.clone();
    let middle = head.head.len() / 2;
    head.head[middle] ^= 0x10;
    damaged(&head, "head");
    let mut log = state.clone();
    log.logs[0].bytes[3] ^= 0x10;
    damaged(&log, "log");
    let mut image = full.clone();
    let last = image.images[0].bytes.len() - 1;
    image.images[0].bytes[last] ^= 0x10;
    damaged(&image, "image");
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
fn no_checkpoint_while_a_round_is_read_or_run() {
    let config = one_stream_with_analytics("1s");
    let plan = config.engine_plan().with_threads(2).with_changelog(true);
    let mut engine = Engine::new(plan);
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
        matches!(engine.delta(false), Err(SnapshotError::Busy)),
        "a round is read"
    );
    engine.end_round(&mut out);
    assert!(
        engine.in_flight(),
        "on threads the round runs while the next is read"
    );
    assert!(
        matches!(engine.delta(false), Err(SnapshotError::Busy)),
        "a round is run"
    );
    engine.land(&mut out);
    assert_eq!(out.len(), 4_899, "the points the watermark passed");
    let state = engine.delta(false).unwrap().apply(None);
    let restored = Engine::restore(config.engine_plan(), &state).unwrap();
    assert_eq!(restored.counters(0), engine.counters(0));
    assert_eq!(restored.watermark(0), engine.watermark(0));
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

/// Checkpoints written as they go (logs, and images the shards take as the logs grow) with one
/// number of shards restore with another, and the run goes on with the records of one that
/// never stopped.
#[test]
fn checkpoints_of_n_shards_restore_on_m() {
    let config = one_stream_with_analytics("2s");
    let events: Vec<Event<'static>> = (0..20_000i64)
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
    let plan = |threads: usize| {
        config
            .engine_plan()
            .with_threads(threads)
            .with_changelog(true)
            .with_first_image_after(2_000)
    };
    let mut straight = Vec::new();
    let mut engine = Engine::new(plan(1));
    feed(&mut engine, 0..events.len(), &mut straight);
    engine.finish(&mut straight);
    for (before, after) in [(1, 3), (3, 1), (2, 7), (7, 2)] {
        let mut resumed = Vec::new();
        let mut first = Engine::new(plan(before));
        // Checkpoints every 2,000 events, kept as a store keeps them.
        let mut stored: Option<StoredState> = None;
        let mut images = 0;
        for part in 0..7 {
            feed(&mut first, part * 2_000..(part + 1) * 2_000, &mut resumed);
            first.settle(&mut resumed);
            let delta = first.delta(false).unwrap();
            images += delta.images.len();
            stored = Some(delta.apply(stored));
        }
        let stored = stored.unwrap();
        assert!(images > 0, "the shards took images as the logs grew");
        let mut second = Engine::restore(plan(after), &stored).unwrap();
        feed(&mut second, 14_000..events.len(), &mut resumed);
        second.finish(&mut resumed);
        assert!(resumed == straight, "{before} shards, then {after}");
    }
}

/// A checkpoint writes what came since the one before: after a few events into state of many
/// series, it is a small fraction of the whole state.
#[test]
fn a_checkpoint_costs_what_changed() {
    let config = one_stream_with_analytics("1s");
    let plan = config.engine_plan().with_threads(2).with_changelog(true);
    let mut engine = Engine::new(plan);
    let mut out = Vec::new();
    let mut offset = 0;
    let mut feed = |engine: &mut Engine, events: i64, series: i64, out: &mut Vec<Record>| {
        for i in 0..events {
            let e = event(
                1_700_000_000_000 + offset as i64 * 10,
                format!("device-{}", i % series),
                (i % 13) as f64,
                None,
            );
            engine.process(0, &e, origin(offset), 0, out).unwrap();
            offset += 1;
        }
        engine.settle(out);
    };
    // 5,000 series with a few hundred points each, then a checkpoint of it all.
    feed(&mut engine, 600_000, 5_000, &mut out);
    let mut stored = Some(engine.delta(false).unwrap().apply(None));
    let whole = engine.full_state().unwrap();
    let whole_bytes: usize = whole.images.iter().map(|i| i.bytes.len()).sum();
    // A thousand more events: their checkpoint is a few percent of the state.
    feed(&mut engine, 1_000, 5_000, &mut out);
    let delta = engine.delta(false).unwrap();
    assert!(
        delta.len() * 20 < whole_bytes,
        "{} bytes for 1,000 events, the whole state is {whole_bytes}",
        delta.len()
    );
    stored = Some(delta.apply(stored));
    let restored = Engine::restore(config.engine_plan(), stored.as_ref().unwrap()).unwrap();
    assert_eq!(restored.counters(0), engine.counters(0));
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
    let plan = || config.engine_plan().with_changelog(true);
    let mut straight = Vec::new();
    let mut engine = Engine::new(plan());
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
        let mut first = Engine::new(plan());
        feed(&mut first, 0..cut / 2, &mut resumed);
        first.settle(&mut resumed);
        let stored = first.delta(false).unwrap().apply(None);
        feed(&mut first, cut / 2..cut, &mut resumed);
        first.settle(&mut resumed);
        let stored = first.delta(false).unwrap().apply(Some(stored));
        let mut second = Engine::restore(plan(), &stored).unwrap();
        feed(&mut second, cut..values.len(), &mut resumed);
        second.finish(&mut resumed);
        assert_eq!(resumed, straight, "restored after {cut} points");
    }
}
