//! Decoding on a thread ahead of the engine, with each round's per-point analytics computed on
//! several threads (`engine.threads` above 1), writes the same records, byte for byte, as
//! everything on the engine's own thread (`engine.threads = 1`).
//!
//! The input spans many batches and two files (a source change inside a batch), and holds every
//! kind of message a batch must keep in its place: lines that are not JSON or lack a field (dead
//! letters), duplicates, late events, series labels with escapes (decoded into owned strings).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use tidewatch::Config;

/// Lines per input file: together more than one read's batches (8 × 1,024), so the reads
/// cross from one call of the run loop to the next, and the second file starts mid-batch.
const LINES_PER_FILE: usize = 9_500;

fn write_input(dir: &Path) {
    let mut ts = 1_764_000_000_000i64;
    for file in ["a.ndjson", "b.ndjson"] {
        let mut text = String::new();
        for i in 0..LINES_PER_FILE {
            let n = i + if file == "b.ndjson" {
                LINES_PER_FILE
            } else {
                0
            };
            ts += 250;
            let series = match n % 7 {
                0 => r"s\u0041-é".to_owned(),
                k => format!("s{k}"),
            };
            let value = (n % 13) as f64 * 1.5 + if n % 997 == 0 { 400.0 } else { 0.0 };
            match n % 211 {
                5 => text.push_str("not json at all\n"),
                17 => writeln!(text, r#"{{"ts":{ts},"series":"{series}"}}"#).unwrap(),
                29 => writeln!(
                    text,
                    r#"{{"ts":{},"series":"s1","value":1,"id":"late{n}"}}"#,
                    ts - 60_000
                )
                .unwrap(),
                _ => {}
            }
            let id = if n % 50 == 49 { n - 1 } else { n };
            writeln!(
                text,
                r#"{{"ts":{ts},"series":"{series}","value":{value},"id":"e{id}"}}"#
            )
            .unwrap();
        }
        std::fs::write(dir.join(file), text).unwrap();
    }
}

/// Runs the pipeline with `threads` engine threads; every output file, by name.
fn run(input: &Path, threads: usize) -> BTreeMap<String, Vec<u8>> {
    let out = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[[streams]]
name = "q"
source = {{ kind = "file", path = "{input}" }}
fields = {{ time = "ts", series = "series", value = "value", id = "id" }}
watermark = {{ lateness = "5s" }}
dedup = {{ horizon = "1m" }}
windows = [{{ kind = "tumbling", size = "1m" }}, {{ kind = "session", gap = "30s" }}]
analytics = {{ zscore = {{ points = 100 }} }}

[[sinks]]
kind = "ndjson"
path = "{out}"

[engine]
threads = {threads}
"#,
        input = input.display(),
        out = out.path().display(),
    );
    let config = Config::from_toml_str(&toml).expect("valid config");
    tidewatch::run_once(&config).expect("the run succeeds");
    std::fs::read_dir(out.path())
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

#[test]
fn decoding_ahead_writes_the_records_of_one_thread() {
    let input = tempfile::tempdir().unwrap();
    write_input(input.path());
    let one = run(input.path(), 1);
    let two = run(input.path(), 2);

    let lines = |name: &str| {
        one.get(name)
            .map_or(0, |bytes| bytes.iter().filter(|&&b| b == b'\n').count())
    };
    // The input reaches every kind of record, or the comparison below would prove little.
    for name in [
        "dead_letters.ndjson",
        "late.ndjson",
        "windows.ndjson",
        "points.ndjson",
        "alerts.ndjson",
    ] {
        assert!(lines(name) > 0, "no {name} among {:?}", one.keys());
    }
    let bad_lines = (0..2 * LINES_PER_FILE)
        .filter(|n| n % 211 == 5 || n % 211 == 17)
        .count();
    assert_eq!(lines("dead_letters.ndjson"), bad_lines);
    assert_eq!(
        one.keys().collect::<Vec<_>>(),
        two.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &one {
        assert!(
            bytes == &two[name],
            "{name} differs between one thread and decoding ahead"
        );
    }
}
