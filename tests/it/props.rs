//! Property tests: the engine against brute-force models of the rules in `src/engine/mod.rs`,
//! written plainly here (whole-list recomputation, no incremental tricks), on random
//! out-of-order inputs.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tidewatch::record::{JoinRecord, PointRecord, Record, Trend, WindowKind, WindowRecord};
use tidewatch::Config;
use tidewatch::{Decoder, Event, FieldMapping, TimeFormat};
use tidewatch::{Engine, Origin};

/// One input event: series index, event time, value, id, partition.
#[derive(Debug, Clone)]
struct In {
    series: usize,
    ts: i64,
    value: f64,
    id: u32,
    partition: u32,
}

fn config(stream_body: &str, extra: &str) -> Config {
    Config::from_toml_str(&format!(
        "[[streams]]\nname = \"s\"\nsource = {{ kind = \"file\", path = \"unused\" }}\n{stream_body}\n{extra}\n[[sinks]]\nkind = \"ndjson\"\npath = \"unused\"\n"
    ))
    .unwrap()
}

fn label(series: usize) -> String {
    format!("k{series}")
}

/// Feeds events (arrival order) to stream `stream`, at processing time 0, then finishes.
fn run(engine: &mut Engine, stream: usize, events: &[In]) -> Vec<Record> {
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let series = label(e.series);
        let id = e.id.to_string();
        let event = Event {
            ts: e.ts,
            series: series.as_str().into(),
            value: e.value,
            id: Some(id.as_str().into()),
            join_key: None,
        };
        let origin = Origin {
            source: "test",
            split: e.partition,
            partition: e.partition,
            offset: i as u64,
        };
        engine.process(stream, &event, origin, 0, &mut out).unwrap();
    }
    engine.finish(&mut out);
    out
}

/// The late rule on one partition: late iff `ts < watermark`, watermark = max seen − lateness.
fn late_flags(events: &[In], lateness: i64) -> Vec<bool> {
    let mut max = i64::MIN;
    let mut watermark = i64::MIN;
    events
        .iter()
        .map(|e| {
            let late = e.ts < watermark;
            max = max.max(e.ts);
            watermark = watermark.max(max.saturating_sub(lateness));
            late
        })
        .collect()
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * (1.0 + a.abs().max(b.abs()))
}

fn sample_stddev(values: &[f64]) -> Option<f64> {
    (values.len() >= 2).then(|| {
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt()
    })
}

/// A window computed from its members, given as (ts, arrival, value).
fn expected_window(
    kind: WindowKind,
    series: usize,
    start: i64,
    end: i64,
    members: &[(i64, usize, f64)],
) -> WindowRecord {
    let values: Vec<f64> = members.iter().map(|m| m.2).collect();
    let first = members.iter().min_by_key(|m| (m.0, m.1)).unwrap().2;
    let last = members.iter().max_by_key(|m| (m.0, m.1)).unwrap().2;
    let sum: f64 = values.iter().sum();
    WindowRecord {
        stream: "s".into(),
        series: label(series).into(),
        kind,
        window_start: start,
        window_end: end,
        count: values.len() as u64,
        sum,
        mean: sum / values.len() as f64,
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        stddev: sample_stddev(&values),
        first,
        last,
        is_final: true,
    }
}

fn assert_windows_match(
    mut actual: Vec<WindowRecord>,
    mut expected: Vec<WindowRecord>,
) -> Result<(), TestCaseError> {
    let key = |w: &WindowRecord| (w.series.to_string(), w.window_start, w.window_end);
    actual.sort_by_key(key);
    expected.sort_by_key(key);
    prop_assert_eq!(actual.len(), expected.len(), "window count");
    for (a, e) in actual.iter().zip(&expected) {
        prop_assert_eq!(key(a), key(e));
        prop_assert_eq!(a.count, e.count);
        prop_assert!(
            close(a.sum, e.sum, 1e-9) && close(a.mean, e.mean, 1e-9),
            "{:?} vs {:?}",
            a,
            e
        );
        prop_assert_eq!(
            (a.min, a.max, a.first, a.last),
            (e.min, e.max, e.first, e.last)
        );
        match (a.stddev, e.stddev) {
            (Some(x), Some(y)) => prop_assert!(close(x, y, 1e-7), "stddev {} vs {}", x, y),
            (x, y) => prop_assert_eq!(x, y),
        }
    }
    Ok(())
}

fn windows_of(records: &[Record]) -> Vec<WindowRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Window(w) => Some(w.clone()),
            _ => None,
        })
        .collect()
}

fn points_of(records: &[Record]) -> Vec<PointRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Point(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// Events in arrival order: times drift upwards with random disorder, a few far behind.
fn arrivals(max_len: usize) -> impl Strategy<Value = Vec<In>> {
    prop::collection::vec(
        (
            0usize..3,
            0i64..60,
            -40i64..40,
            0u32..12,
            prop::bool::weighted(0.08),
        ),
        1..max_len,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (series, jitter, value, id, far_behind))| In {
                series,
                ts: i as i64 * 10 - jitter - if far_behind { 300 } else { 0 },
                value: value as f64,
                id,
                partition: 0,
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn aligned_windows_match_brute_force(events in arrivals(120), lateness in 0i64..120, size in 20i64..200, slide_div in 1i64..5) {
        // Slides that divide the size and slides that do not (pane = gcd).
        let slide = (size / slide_div).max(7);
        let slide = slide.min(size);
        let mut engine = Engine::new(config(
            &format!("fields = {{ time = \"ts\", series = \"series\", value = \"value\" }}\nwatermark = {{ lateness = \"{lateness}ms\" }}\nwindows = [{{ kind = \"tumbling\", size = \"{size}ms\" }}, {{ kind = \"sliding\", size = \"{size}ms\", slide = \"{slide}ms\" }}]"),
            "",
        ).engine_plan());
        let out = run(&mut engine, 0, &events);
        let late = late_flags(&events, lateness);
        for (kind, step) in [(WindowKind::Tumbling, size), (WindowKind::Sliding, slide)] {
            let mut expected = Vec::new();
            for series in 0..3 {
                let members: Vec<(i64, usize, f64)> = events.iter().enumerate()
                    .filter(|(i, e)| e.series == series && !late[*i])
                    .map(|(i, e)| (e.ts, i, e.value)).collect();
                let (Some(lo), Some(hi)) = (members.iter().map(|m| m.0).min(), members.iter().map(|m| m.0).max()) else { continue };
                let mut start = (lo - size).div_euclid(step) * step;
                while start <= hi {
                    let inside: Vec<_> = members.iter().copied().filter(|m| m.0 >= start && m.0 < start + size).collect();
                    if !inside.is_empty() {
                        expected.push(expected_window(kind, series, start, start + size, &inside));
                    }
                    start += step;
                }
            }
            let actual: Vec<WindowRecord> = windows_of(&out).into_iter().filter(|w| w.kind == kind).collect();
            assert_windows_match(actual, expected)?;
        }
    }

    #[test]
    fn session_windows_match_brute_force(events in arrivals(120), lateness in 0i64..120, gap in 1i64..60) {
        let mut engine = Engine::new(config(
            &format!("fields = {{ time = \"ts\", series = \"series\", value = \"value\" }}\nwatermark = {{ lateness = \"{lateness}ms\" }}\nwindows = [{{ kind = \"session\", gap = \"{gap}ms\" }}]"),
            "",
        ).engine_plan());
        let out = run(&mut engine, 0, &events);
        let late = late_flags(&events, lateness);
        let mut expected = Vec::new();
        for series in 0..3 {
            let mut members: Vec<(i64, usize, f64)> = events.iter().enumerate()
                .filter(|(i, e)| e.series == series && !late[*i])
                .map(|(i, e)| (e.ts, i, e.value)).collect();
            members.sort_by_key(|m| (m.0, m.1));
            // Sorted by time, a new session starts where the step exceeds `gap`.
            let mut session: Vec<(i64, usize, f64)> = Vec::new();
            for m in members {
                if let Some(last) = session.last() {
                    if m.0 - last.0 > gap {
                        let (start, end) = (session[0].0, session[session.len() - 1].0 + gap);
                        expected.push(expected_window(WindowKind::Session, series, start, end, &session));
                        session.clear();
                    }
                }
                session.push(m);
            }
            if !session.is_empty() {
                let (start, end) = (session[0].0, session[session.len() - 1].0 + gap);
                expected.push(expected_window(WindowKind::Session, series, start, end, &session));
            }
        }
        assert_windows_match(windows_of(&out), expected)?;
    }

    #[test]
    fn the_reorder_buffer_releases_like_a_sort(
        ops in prop::collection::vec((any::<bool>(), -3_000i64..3_000, 0u8..20), 1..400),
    ) {
        use tidewatch::{Buffered, LogOrder, ReorderBuffer};
        let year = 365 * 24 * 3_600_000i64;
        let mut buffer = ReorderBuffer::default();
        // (event time, split, offset): ties break by place in the logs, not arrival.
        let mut pending: Vec<(i64, u32, u64)> = Vec::new();
        let (mut watermark, mut clock, mut seq) = (i64::MIN, 0i64, 0u64);
        for (push, offset, far) in ops {
            if push {
                // Not late: at or after the watermark; now and then a clock a year off.
                let jump = match far { 0 => year, 1 => -year, _ => 0 };
                let ts = (clock + offset + jump).max(watermark);
                buffer.push(Buffered { ts, seq: LogOrder { split: (seq % 3) as u32, offset: seq }, series: 0, value: 0.0 });
                pending.push((ts, (seq % 3) as u32, seq));
                seq += 1;
                clock = clock.max(ts - 5_000);
            } else {
                watermark = watermark.max(clock + offset);
                let mut released = Vec::new();
                buffer.release(watermark, |p| released.push((p.ts, p.seq.split, p.seq.offset)));
                let mut expected: Vec<(i64, u32, u64)> = pending.iter().copied().filter(|p| p.0 < watermark).collect();
                expected.sort();
                pending.retain(|p| p.0 >= watermark);
                prop_assert_eq!(released, expected);
                prop_assert_eq!(buffer.len(), pending.len());
            }
        }
        let mut rest = Vec::new();
        buffer.release(i64::MAX, |p| rest.push((p.ts, p.seq.split, p.seq.offset)));
        pending.sort();
        prop_assert_eq!(rest, pending);
    }

    #[test]
    fn global_windows_match_brute_force(events in arrivals(120), lateness in 0i64..120, update in 1i64..100) {
        let mut engine = Engine::new(config(
            &format!("fields = {{ time = \"ts\", series = \"series\", value = \"value\" }}\nwatermark = {{ lateness = \"{lateness}ms\" }}\nwindows = [{{ kind = \"global\", update = \"{update}ms\" }}]"),
            "",
        ).engine_plan());
        let out = run(&mut engine, 0, &events);
        let late = late_flags(&events, lateness);
        let all = windows_of(&out);
        let mut expected = Vec::new();
        for series in 0..3 {
            let members: Vec<(i64, usize, f64)> = events.iter().enumerate()
                .filter(|(i, e)| e.series == series && !late[*i])
                .map(|(i, e)| (e.ts, i, e.value)).collect();
            if members.is_empty() {
                continue;
            }
            expected.push(expected_window(WindowKind::Global, series, 0, i64::MAX, &members));
            // Updates before the final one only ever grow, and each one is news.
            let counts: Vec<(u64, bool)> = all.iter()
                .filter(|w| *w.series == *label(series))
                .map(|w| (w.count, w.is_final)).collect();
            prop_assert_eq!(counts.iter().filter(|c| c.1).count(), 1, "one final record");
            prop_assert!(counts.last().unwrap().1, "the final record comes last");
            let updates: Vec<u64> = counts.iter().filter(|c| !c.1).map(|c| c.0).collect();
            prop_assert!(updates.windows(2).all(|w| w[0] < w[1]), "updates {:?}", updates);
        }
        let finals: Vec<WindowRecord> = all.into_iter().filter(|w| w.is_final).collect();
        assert_windows_match(finals, expected)?;
    }

    #[test]
    fn results_do_not_depend_on_arrival_order_within_the_lateness(
        seed_values in prop::collection::vec((-50i64..50, 0i64..40), 5..80),
    ) {
        // Distinct times 10 ms apart, shuffled by sorting on time + a jitter below 40 ms: no
        // event moves more than 40 ms, well within the 100 ms lateness, so nothing is late.
        let sorted: Vec<In> = seed_values.iter().enumerate()
            .map(|(i, (v, _))| In { series: i % 2, ts: i as i64 * 10, value: *v as f64, id: i as u32, partition: 0 })
            .collect();
        let mut order: Vec<(i64, usize)> = seed_values.iter().enumerate().map(|(i, (_, j))| (i as i64 * 10 + j, i)).collect();
        order.sort();
        let shuffled: Vec<In> = order.iter().map(|&(_, i)| sorted[i].clone()).collect();
        let body = "fields = { time = \"ts\", series = \"series\", value = \"value\", id = \"id\" }\nwatermark = { lateness = \"100ms\" }\ndedup = { horizon = \"1s\" }\nwindows = [{ kind = \"tumbling\", size = \"50ms\" }, { kind = \"sliding\", size = \"60ms\", slide = \"20ms\" }, { kind = \"session\", gap = \"15ms\" }]\nanalytics = { sma_points = 4, ewma_alpha = 0.3, trend_window = \"80ms\", zscore = { window = \"200ms\", min_samples = 3, season = \"1s\" } }";
        let a = run(&mut Engine::new(config(body, "").engine_plan()), 0, &sorted);
        let b = run(&mut Engine::new(config(body, "").engine_plan()), 0, &shuffled);
        let key = |w: &WindowRecord| (w.kind as u8, w.series.to_string(), w.window_start);
        let (mut wa, mut wb) = (windows_of(&a), windows_of(&b));
        wa.sort_by_key(key);
        wb.sort_by_key(key);
        prop_assert_eq!(wa.len(), wb.len());
        for (x, y) in wa.iter().zip(&wb) {
            prop_assert_eq!((key(x), x.count, x.min, x.max, x.first, x.last), (key(y), y.count, y.min, y.max, y.first, y.last));
            prop_assert!(close(x.sum, y.sum, 1e-12));
        }
        let (mut pa, mut pb) = (points_of(&a), points_of(&b));
        pa.sort_by_key(|p| p.ts);
        pb.sort_by_key(|p| p.ts);
        prop_assert_eq!(pa, pb);
    }

    #[test]
    fn results_do_not_depend_on_how_partitions_interleave(
        logs in prop::collection::vec(
            prop::collection::vec((0usize..2, 0i64..60, -40i64..40, 0u32..20, prop::bool::weighted(0.06)), 1..70),
            3,
        ),
        picks_a in prop::collection::vec(0usize..3, 0..240),
        picks_b in prop::collection::vec(0usize..3, 0..240),
        lateness in 0i64..80,
    ) {
        // Three partitions, each with its own log: out of order, duplicates, now and then an
        // event far behind. Series are keyed to partitions (series s of partition p is
        // `k{2p+s}`), as Kafka producers key them. Two arbitrary interleavings of the same
        // logs must give the same records, late ones included.
        let logs: Vec<Vec<In>> = logs.into_iter().enumerate().map(|(p, log)| {
            log.into_iter().enumerate().map(|(i, (series, jitter, value, id, far_behind))| In {
                series: 2 * p + series,
                ts: i as i64 * 10 - jitter - if far_behind { 400 } else { 0 },
                value: value as f64,
                id: p as u32 * 100 + id,
                partition: p as u32,
            }).collect()
        }).collect();
        let body = format!("fields = {{ time = \"ts\", series = \"series\", value = \"value\", id = \"id\" }}\nwatermark = {{ lateness = \"{lateness}ms\" }}\ndedup = {{ horizon = \"100ms\" }}\nwindows = [{{ kind = \"tumbling\", size = \"50ms\" }}, {{ kind = \"sliding\", size = \"60ms\", slide = \"20ms\" }}, {{ kind = \"session\", gap = \"15ms\" }}]\nanalytics = {{ sma_points = 4, ewma_alpha = 0.3, trend_window = \"80ms\", zscore = {{ window = \"200ms\", min_samples = 3 }} }}");
        let run_interleaved = |picks: &[usize]| -> Vec<String> {
            let mut engine = Engine::new(config(&body, "").engine_plan());
            for p in 0..3 {
                engine.assign_split(0, p, 0);
            }
            let mut next = [0usize; 3];
            let mut order = picks.iter().copied().chain((0..3).cycle().take(3 * 70));
            let mut out = Vec::new();
            while next.iter().zip(&logs).any(|(n, log)| *n < log.len()) {
                let p = order.next().unwrap();
                let Some(e) = logs[p].get(next[p]) else { continue };
                let series = label(e.series);
                let id = e.id.to_string();
                let event = Event { ts: e.ts, series: series.as_str().into(), value: e.value, id: Some(id.as_str().into()), join_key: None };
                let origin = Origin { source: "t", split: e.partition, partition: e.partition, offset: next[p] as u64 };
                engine.process(0, &event, origin, 0, &mut out).unwrap();
                next[p] += 1;
            }
            engine.finish(&mut out);
            let mut rows: Vec<String> = out.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
            rows.sort();
            rows
        };
        let a = run_interleaved(&picks_a);
        let b = run_interleaved(&picks_b);
        prop_assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            prop_assert_eq!(x, y);
        }
    }

    #[test]
    fn dedup_matches_the_rule_and_is_idempotent(events in arrivals(120), lateness in 0i64..100, horizon in 1i64..200) {
        let body = format!("fields = {{ time = \"ts\", series = \"series\", value = \"value\", id = \"id\" }}\nwatermark = {{ lateness = \"{lateness}ms\" }}\ndedup = {{ horizon = \"{horizon}ms\" }}\nanalytics = {{}}");
        // Values carry the arrival index so the output tells which events got through.
        let events: Vec<In> = events.into_iter().enumerate().map(|(i, e)| In { value: i as f64, ..e }).collect();
        let mut engine = Engine::new(config(&body, "").engine_plan());
        let out = run(&mut engine, 0, &events);
        prop_assert_eq!(engine.dedup_entries(0), 0, "dedup state is empty after the end");

        // Reference, in arrival order: late iff `ts < watermark`; otherwise a duplicate iff an
        // earlier accepted event of the same series has the same id and a time at most
        // `horizon` away; every event that is not late moves the watermark, duplicates too
        // (they are found in the series' shard, after the watermark).
        let (mut max, mut watermark) = (i64::MIN, i64::MIN);
        let mut accepted: Vec<(usize, u32, i64)> = Vec::new();
        let (mut expected_points, mut expected_late, mut passed) = (Vec::new(), Vec::new(), Vec::new());
        for (i, e) in events.iter().enumerate() {
            if e.ts < watermark {
                expected_late.push(i);
                continue;
            }
            max = max.max(e.ts);
            watermark = watermark.max(max - lateness);
            if accepted.iter().any(|&(series, id, t)| series == e.series && id == e.id && (e.ts - t).abs() <= horizon) {
                continue;
            }
            accepted.push((e.series, e.id, e.ts));
            expected_points.push(i);
            passed.push(e.clone());
        }
        let mut points: Vec<usize> = points_of(&out).iter().map(|p| p.value as usize).collect();
        let mut lates: Vec<usize> = out.iter().filter_map(|r| match r { Record::Late(l) => Some(l.offset as usize), _ => None }).collect();
        points.sort();
        lates.sort();
        prop_assert_eq!(points, expected_points);
        prop_assert_eq!(lates, expected_late.clone());
        prop_assert_eq!(engine.counters(0).unwrap().duplicates as usize, events.len() - passed.len() - expected_late.len());

        // Idempotent: what got through has no duplicates left in it.
        let mut again = Engine::new(config(&body, "").engine_plan());
        run(&mut again, 0, &passed);
        prop_assert_eq!(again.counters(0).unwrap().duplicates, 0);
    }

    #[test]
    fn watermark_and_late_rule_with_partitions_and_idleness(
        steps in prop::collection::vec((0u32..3, 0i64..40, 0i64..30, prop::bool::weighted(0.2)), 1..150),
        lateness in 0i64..50,
        idle in 1i64..200,
    ) {
        let mut engine = Engine::new(config(
            &format!("fields = {{ time = \"ts\", series = \"series\", value = \"value\" }}\nwatermark = {{ lateness = \"{lateness}ms\", idle_timeout = \"{idle}ms\" }}"),
            "",
        ).engine_plan());
        // Model: per partition (max, last activity, idle).
        let mut parts: BTreeMap<u32, (i64, i64, bool)> = BTreeMap::new();
        let mut watermark = i64::MIN;
        let mut now = 0i64;
        let mut out = Vec::new();
        let recompute = |parts: &BTreeMap<u32, (i64, i64, bool)>, watermark: i64| {
            let active = parts.values().filter(|p| !p.2).map(|p| p.0 - lateness).min();
            let candidate = active.or_else(|| parts.values().map(|p| p.0 - lateness).max()).unwrap_or(i64::MIN);
            watermark.max(candidate)
        };
        for (i, (partition, advance_ts, advance_now, tick)) in steps.into_iter().enumerate() {
            now += advance_now;
            if tick {
                for p in parts.values_mut() { p.2 = now - p.1 >= idle; }
                watermark = recompute(&parts, watermark);
                engine.tick(now);
            } else {
                let ts = i as i64 * 10 - advance_ts;
                // Late: behind the partition's own watermark, or the stream's when further on.
                let own = parts.get(&partition).map_or(i64::MIN, |p| p.0.saturating_sub(lateness));
                let bound = own.max(watermark);
                let late = ts < bound;
                let p = parts.entry(partition).or_insert((i64::MIN, now, false));
                p.0 = p.0.max(ts);
                p.1 = p.1.max(now);
                p.2 = false;
                watermark = recompute(&parts, watermark);
                let before = out.len();
                let event = Event { ts, series: "a".into(), value: 1.0, id: None, join_key: None };
                engine.process(0, &event, Origin { source: "t", split: partition, partition, offset: i as u64 }, now, &mut out).unwrap();
                engine.settle(&mut out);
                let late_record = out[before..].iter().find_map(|r| match r { Record::Late(l) => Some(l.clone()), _ => None });
                prop_assert_eq!(late_record.is_some(), late, "step {}: ts {}", i, ts);
                if let Some(l) = late_record {
                    prop_assert_eq!(l.watermark, bound);
                    prop_assert_eq!(l.lateness_ms, l.watermark - ts);
                }
            }
            prop_assert_eq!(engine.watermark(0), Some(watermark), "step {}", i);
        }
    }

    #[test]
    fn interval_join_matches_brute_force(
        raw in prop::collection::vec((prop::bool::ANY, 0usize..3, 0i64..40), 1..120),
        within in 0i64..60,
        lateness in 0i64..60,
        left_outer in prop::bool::ANY,
    ) {
        let kind = if left_outer { "left" } else { "inner" };
        let two = format!(
            "[[streams]]\nname = \"l\"\nsource = {{ kind = \"file\", path = \"u\" }}\nfields = {{ time = \"ts\", series = \"series\", value = \"value\" }}\nwatermark = {{ lateness = \"{lateness}ms\" }}\n\
             [[streams]]\nname = \"r\"\nsource = {{ kind = \"file\", path = \"u\" }}\nfields = {{ time = \"ts\", series = \"series\", value = \"value\" }}\nwatermark = {{ lateness = \"{lateness}ms\" }}\n\
             [[joins]]\nname = \"j\"\nleft = \"l\"\nright = \"r\"\nwithin = \"{within}ms\"\nkind = \"{kind}\"\n[[sinks]]\nkind = \"ndjson\"\npath = \"u\"\n"
        );
        let mut engine = Engine::new(Config::from_toml_str(&two).unwrap().engine_plan());
        let mut out = Vec::new();
        let events: Vec<(bool, usize, i64, f64)> = raw.iter().enumerate()
            .map(|(i, &(left, key, jitter))| (left, key, i as i64 * 5 - jitter, i as f64)).collect();
        for (i, &(left, key, ts, value)) in events.iter().enumerate() {
            let series = label(key);
            let event = Event { ts, series: series.as_str().into(), value, id: None, join_key: None };
            engine.process(usize::from(!left), &event, Origin { source: "t", split: 0, partition: 0, offset: i as u64 }, 0, &mut out).unwrap();
        }
        engine.finish(&mut out);
        prop_assert_eq!(engine.join_rows(), 0);

        // Each side's late rule on its own, then all pairs.
        let side = |left: bool| -> Vec<(usize, i64, f64)> {
            let mine: Vec<&(bool, usize, i64, f64)> = events.iter().filter(|e| e.0 == left).collect();
            let as_in: Vec<In> = mine.iter().map(|e| In { series: e.1, ts: e.2, value: e.3, id: 0, partition: 0 }).collect();
            let late = late_flags(&as_in, lateness);
            mine.iter().zip(late).filter(|(_, l)| !l).map(|(e, _)| (e.1, e.2, e.3)).collect()
        };
        let (lefts, rights) = (side(true), side(false));
        let mut expected: Vec<(i64, u64, Option<i64>, Option<u64>)> = Vec::new();
        for l in &lefts {
            let matches: Vec<_> = rights.iter().filter(|r| r.0 == l.0 && (r.1 - l.1).abs() <= within).collect();
            for r in &matches {
                expected.push((l.1, l.2 as u64, Some(r.1), Some(r.2 as u64)));
            }
            if matches.is_empty() && left_outer {
                expected.push((l.1, l.2 as u64, None, None));
            }
        }
        let mut actual: Vec<(i64, u64, Option<i64>, Option<u64>)> = out.iter().filter_map(|r| match r {
            Record::Join(JoinRecord { left_ts, left_value, right_ts, right_value, .. }) =>
                Some((*left_ts, *left_value as u64, *right_ts, right_value.map(|v| v as u64))),
            _ => None,
        }).collect();
        expected.sort();
        actual.sort();
        prop_assert_eq!(actual, expected);
    }

    #[test]
    fn point_analytics_match_brute_force(
        events in arrivals(150),
        lateness in 0i64..100,
        sma_points in 1usize..8,
        alpha in 0.05f64..1.0,
        trend_window in 10i64..300,
        z_points in 2usize..40,
        z_window in prop::option::of(20i64..400),
        min_samples in 2usize..10,
        threshold in 0.8f64..3.0,
        floor in prop::sample::select(vec![0.0, 0.05, 0.5]),
        method in prop::sample::select(vec!["robust", "mean", "auto"]),
    ) {
        let z_points = z_points.max(min_samples);
        let window = z_window.map_or(String::new(), |w| format!(", window = \"{w}ms\""));
        // "auto" alerts by probability, the others by threshold.
        let rule = if method == "auto" { String::new() } else { format!(", threshold = {threshold}") };
        let mut engine = Engine::new(config(
            &format!("fields = {{ time = \"ts\", series = \"series\", value = \"value\" }}\nwatermark = {{ lateness = \"{lateness}ms\" }}\n\
                      analytics = {{ sma_points = {sma_points}, ewma_alpha = {alpha}, trend_window = \"{trend_window}ms\", zscore = {{ points = {z_points}{window}{rule}, min_samples = {min_samples}, method = \"{method}\", season = \"none\", floor = {floor} }} }}"),
            "",
        ).engine_plan());
        let out = run(&mut engine, 0, &events);
        let late = late_flags(&events, lateness);
        let points = points_of(&out);
        for series in 0..3 {
            // Released order: event time, then arrival.
            let mut mine: Vec<(i64, usize, f64)> = events.iter().enumerate()
                .filter(|(i, e)| e.series == series && !late[*i])
                .map(|(i, e)| (e.ts, i, e.value)).collect();
            mine.sort_by_key(|m| (m.0, m.1));
            let actual: Vec<&PointRecord> = points.iter().filter(|p| *p.series == *label(series)).collect();
            prop_assert_eq!(actual.len(), mine.len());
            let mut ewma = None;
            // The detector's own recurrences: the level (EWMA over 100 points) and the long-run
            // mean absolute deviation (over 500), both behind the spread floor.
            let mut level: Option<f64> = None;
            let (mut deviation, mut deviations) = (0.0f64, 0u64);
            for (i, &(ts, _, value)) in mine.iter().enumerate() {
                let p = actual[i];
                prop_assert_eq!((p.ts, p.value), (ts, value));
                let recent: Vec<f64> = mine[i.saturating_sub(sma_points - 1)..=i].iter().map(|m| m.2).collect();
                prop_assert!(close(p.sma, recent.iter().sum::<f64>() / recent.len() as f64, 1e-9), "sma");
                let e = match ewma { None => value, Some(prev) => alpha * value + (1.0 - alpha) * prev };
                ewma = Some(e);
                prop_assert!(close(p.ewma, e, 1e-9), "ewma {} vs {}", p.ewma, e);

                // Least squares over [ts - trend_window, ts] among released points.
                let pts: Vec<(f64, f64)> = mine[..=i].iter().filter(|m| m.0 >= ts - trend_window).map(|m| (m.0 as f64 / 1000.0, m.2)).collect();
                let n = pts.len() as f64;
                let mx = pts.iter().map(|q| q.0).sum::<f64>() / n;
                let my = pts.iter().map(|q| q.1).sum::<f64>() / n;
                let sxx: f64 = pts.iter().map(|q| (q.0 - mx).powi(2)).sum();
                let sxy: f64 = pts.iter().map(|q| (q.0 - mx) * (q.1 - my)).sum();
                let syy: f64 = pts.iter().map(|q| (q.1 - my).powi(2)).sum();
                if sxx > 1e-12 {
                    let slope = sxy / sxx;
                    let Some(got) = p.slope else { return Err(TestCaseError::fail("slope missing")) };
                    prop_assert!(close(got, slope, 1e-6), "slope {} vs {}", got, slope);
                    if pts.len() >= 3 {
                        let se = ((syy - slope * sxy).max(0.0) / (n - 2.0) / sxx).sqrt();
                        let t = if se > 0.0 { slope / se } else if slope == 0.0 { 0.0 } else { slope.signum() * f64::INFINITY };
                        if (t.abs() - 2.0).abs() > 1e-6 {
                            let trend = if t >= 2.0 { Trend::Rising } else if t <= -2.0 { Trend::Falling } else { Trend::Flat };
                            prop_assert_eq!(p.trend, trend, "t = {}", t);
                        }
                    } else {
                        prop_assert_eq!(p.trend, Trend::Flat);
                    }
                } else {
                    prop_assert_eq!(p.slope, None);
                }

                // Baseline: as of the last refresh (every 8 points), the last `points` points
                // before it, none more than `window` older than the newest of them.
                let refreshed = i / 8 * 8;
                let baseline: Vec<f64> = (refreshed.saturating_sub(z_points)..refreshed)
                    .filter(|&j| z_window.is_none_or(|w| mine[j].0 >= mine[refreshed - 1].0 - w))
                    .map(|j| mine[j].2)
                    .collect();
                let expected = (baseline.len() >= min_samples.max(1)).then(|| {
                    let (centre, raw) = if method == "mean" {
                        let mean = baseline.iter().sum::<f64>() / baseline.len() as f64;
                        (mean, sample_stddev(&baseline).unwrap_or(0.0))
                    } else {
                        let median = |v: &mut Vec<f64>| { v.sort_by(f64::total_cmp); let n = v.len(); if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 } };
                        let mut b = baseline.clone();
                        let m = median(&mut b);
                        let mut dev: Vec<f64> = baseline.iter().map(|v| (v - m).abs()).collect();
                        (m, median(&mut dev) * 1.4826)
                    };
                    let lv = level.unwrap_or(centre).abs();
                    let mut spread = raw.max(floor * lv).max(1e-9 * lv.max(centre.abs()).max(1.0));
                    if deviations > 0 {
                        spread = spread.max(0.3 * deviation);
                    }
                    (centre, spread)
                });
                match (p.z, p.expected, p.spread, expected) {
                    (Some(z), Some(centre), Some(spread), Some((c, s))) => {
                        prop_assert!(close(centre, c, 1e-6), "centre {} vs {}", centre, c);
                        prop_assert!(close(spread, s, 1e-6), "spread {} vs {}", spread, s);
                        prop_assert!(close(z, (value - c) / s, 1e-6), "z {} vs {}", z, (value - c) / s);
                        if method != "auto" {
                            let flagged = ((value - c) / s).abs() >= threshold;
                            if (((value - c) / s).abs() - threshold).abs() > 1e-9 {
                                prop_assert_eq!(p.anomaly, flagged);
                            }
                            prop_assert!(close(p.lower.unwrap(), c - threshold * s, 1e-6));
                            prop_assert!(close(p.upper.unwrap(), c + threshold * s, 1e-6));
                        }
                        deviations += 1;
                        let weight = if (deviations as f64) < 500.0 { 1.0 / deviations as f64 } else { 1.0 / 500.0 };
                        deviation += weight * ((value - c).abs() - deviation);
                    }
                    (None, None, None, None) => prop_assert!(!p.anomaly),
                    (z, c, s, e) => return Err(TestCaseError::fail(format!("z presence: {z:?} {c:?} {s:?} vs {e:?}"))),
                }
                let previous = level.unwrap_or(value);
                level = Some(previous + 2.0 / 101.0 * (value - previous));
            }
        }
    }

    #[test]
    fn the_decoder_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let decoder = decoder();
        let _ = decoder.decode(&bytes);
    }

    #[test]
    fn the_decoder_never_panics_on_json_like_text(text in "[{}\\[\\]\":,0-9a-z .eE+\\-\\\\tsvi]{0,120}") {
        let decoder = decoder();
        if let Ok(event) = decoder.decode(text.as_bytes()) {
            prop_assert!(event.value.is_finite());
        }
    }
}

fn decoder() -> Decoder {
    Decoder::new(FieldMapping {
        time: "ts".into(),
        time_format: TimeFormat::EpochMillis,
        series: Some("s".into()),
        group_by: vec!["g".into()],
        value: Some("v".into()),
        id: Some("i".into()),
        join_key: None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The keyed shards: random input (many series, three partitions, out of order, late
    /// events, duplicates, anomalies) through every kind of window, dedup and the analytics,
    /// cut into rounds of random size, gives on 2 to 7 shards exactly the records of one, in
    /// the same order.
    #[test]
    fn any_number_of_shards_gives_the_records_of_one(
        raw in prop::collection::vec((0usize..60, 0u32..3, 0i64..80, -30i64..30, 0u32..40, prop::bool::weighted(0.05)), 1..400),
        lateness in 0i64..100,
        threads in 2usize..8,
        round in 1usize..120,
    ) {
        let events: Vec<In> = raw
            .into_iter()
            .enumerate()
            .map(|(i, (series, partition, jitter, value, id, spike))| In {
                series,
                ts: i as i64 * 10 - jitter,
                value: value as f64 + if spike { 500.0 } else { 0.0 },
                id,
                partition,
            })
            .collect();
        let body = format!(
            "fields = {{ time = \"ts\", series = \"series\", value = \"value\", id = \"id\" }}\n\
             watermark = {{ lateness = \"{lateness}ms\" }}\ndedup = {{ horizon = \"50ms\" }}\n\
             windows = [{{ kind = \"tumbling\", size = \"70ms\" }}, {{ kind = \"sliding\", size = \"90ms\", slide = \"30ms\" }}, {{ kind = \"session\", gap = \"25ms\" }}, {{ kind = \"global\", update = \"200ms\" }}]\n\
             analytics = {{ sma_points = 5, zscore = {{ points = 40, min_samples = 8, method = \"robust\" }} }}"
        );
        let config = config(&body, "");
        let run_on = |threads: usize| {
            let plan = config.engine_plan().with_threads(threads);
            let mut engine = Engine::new(plan);
            let mut out = Vec::new();
            for (i, e) in events.iter().enumerate() {
                let series = label(e.series);
                let id = e.id.to_string();
                let event = Event { ts: e.ts, series: series.as_str().into(), value: e.value, id: Some(id.as_str().into()), join_key: None };
                let origin = Origin { source: "test", split: e.partition, partition: e.partition, offset: i as u64 };
                engine.process(0, &event, origin, 0, &mut out).unwrap();
                if i % round == round - 1 {
                    engine.end_round(&mut out);
                }
            }
            engine.finish(&mut out);
            out
        };
        let one = run_on(1);
        let many = run_on(threads);
        prop_assert_eq!(one.len(), many.len());
        for (i, (a, b)) in one.iter().zip(&many).enumerate() {
            prop_assert_eq!(a, b, "record {}", i);
        }
    }
}
