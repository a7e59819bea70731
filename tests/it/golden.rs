//! Golden cases: `tests/golden/<case>/{config.toml, inputs, expected/<kind>.ndjson}`.
//!
//! Each case's config names its inputs relative to the case directory; the runner points them
//! there, writes the output to a temporary directory, and compares every expected file with the
//! output line by line (as JSON, floats to 1e-12 relative; `source` compared by file name, since
//! the absolute path differs per machine). The expected files were worked out by hand from the
//! rules in the case's config comments, not copied from a run.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tidewatch::Config;
use tidewatch::SourceConfig;
use tidewatch::{NdjsonConfig, SinkConfig};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn run_case(name: &str) {
    let case = golden_dir().join(name);
    let mut config = Config::from_file(&case.join("config.toml")).expect("case config is valid");
    for stream in &mut config.streams {
        if let SourceConfig::File(file) = &mut stream.source {
            file.path = case.join(&file.path);
        }
    }
    let out = tempfile::tempdir().unwrap();
    config.sinks = vec![SinkConfig::Ndjson(NdjsonConfig {
        path: out.path().to_owned(),
    })];
    tidewatch::run_once(&config).expect("case runs");

    let mut compared = 0;
    for entry in std::fs::read_dir(case.join("expected")).unwrap() {
        let expected_path = entry.unwrap().path();
        let file_name = expected_path.file_name().unwrap();
        let expected = read_lines(&expected_path);
        let actual = read_lines(&out.path().join(file_name));
        assert_eq!(
            actual.len(),
            expected.len(),
            "{name}/{}: {} lines, expected {}:\n{}",
            file_name.to_string_lossy(),
            actual.len(),
            expected.len(),
            actual
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
        for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
            assert!(
                same(a, e),
                "{name}/{} line {}:\n  actual   {a}\n  expected {e}",
                file_name.to_string_lossy(),
                i + 1
            );
        }
        compared += 1;
    }
    assert!(compared > 0, "{name}: no expected files");
}

fn read_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if let Some(Value::String(source)) = v.get_mut("source") {
                *source = Path::new(source.as_str())
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
            }
            v
        })
        .collect()
}

fn same(a: &Value, e: &Value) -> bool {
    match (a, e) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        _ => a == e,
    }
}

#[test]
fn late_data() {
    run_case("late_data");
}

#[test]
fn session_merge() {
    run_case("session_merge");
}

#[test]
fn interval_join() {
    run_case("join");
}

#[test]
fn every_case_has_a_test() {
    let mut cases: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    assert_eq!(cases, ["join", "late_data", "session_merge"]);
}
