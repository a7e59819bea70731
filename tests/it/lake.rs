//! The Parquet sink: files land under kind/date/hour partitions, read back to exactly the
//! records of the NDJSON sink, and a re-run replaces files instead of adding them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use tidewatch::record::{AlertRecord, WindowRecord};

use crate::support::{assert_success, read_ndjson, tidewatch};

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_owned());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

/// Every row of one Parquet file.
pub fn parquet_rows<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    reader
        .flat_map(|batch| serde_arrow::from_record_batch::<Vec<T>>(&batch.unwrap()).unwrap())
        .collect()
}

/// All rows of one record kind in a lake, as sorted JSON texts.
pub fn lake_rows<T>(lake: &Path, kind: &str) -> Vec<String>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let dir = lake.join(format!("record={kind}"));
    let mut rows: Vec<String> = files_under(&dir)
        .iter()
        .flat_map(|file| parquet_rows::<T>(&dir.join(file)))
        // Through JSON text and back, exactly as the NDJSON side is read, so both sides meet
        // the same (not always correctly rounded) float parser.
        .map(|r| {
            let text = serde_json::to_string(&r).unwrap();
            serde_json::from_str::<Value>(&text).unwrap().to_string()
        })
        .collect();
    rows.sort();
    rows
}

fn sorted_json(values: Vec<Value>) -> Vec<String> {
    let mut rows: Vec<String> = values.iter().map(Value::to_string).collect();
    rows.sort();
    rows
}

#[test]
fn parquet_lake_is_partitioned_complete_and_rewritten_not_appended() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[[streams]]
name = "sensors"
source = {{ kind = "file", path = "{root}/config/data/sensors.ndjson" }}
fields = {{ time = "ts", series = "series", value = "value", id = "id" }}
watermark = {{ lateness = "10s" }}
windows = [{{ kind = "tumbling", size = "1m" }}, {{ kind = "session", gap = "30s" }}]
analytics = {{}}

[[sinks]]
kind = "ndjson"
path = "out"

[[sinks]]
kind = "parquet"
url = "lake"
max_rows = 400
"#,
        root = env!("CARGO_MANIFEST_DIR")
    );
    std::fs::write(dir.path().join("p.toml"), config).unwrap();
    assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        dir.path(),
    ));

    let lake = dir.path().join("lake");
    let mut files = files_under(&lake);
    // The layout marker, which Spark and DuckDB skip (leading underscore).
    let marker = PathBuf::from("_tidewatch_lake.json");
    assert!(files.contains(&marker), "{files:?}");
    let layout: Value =
        serde_json::from_str(&std::fs::read_to_string(lake.join(&marker)).unwrap()).unwrap();
    assert_eq!(layout["layout"], 2);
    files.retain(|f| *f != marker);
    assert!(!files.is_empty());
    let mut per_partition: BTreeMap<String, usize> = BTreeMap::new();
    for file in &files {
        let text = file.display().to_string();
        assert!(
            text.ends_with(".parquet") && text.contains("/part-default-"),
            "{text}"
        );
        let partition = text.rsplit_once('/').unwrap().0.to_owned();
        *per_partition.entry(partition).or_default() += 1;
    }
    // The sample spans 2025-11-24 16:00 to 16:15 UTC.
    assert!(
        per_partition.contains_key("record=window/date=2025-11-24/hour=16"),
        "{per_partition:?}"
    );
    assert!(
        per_partition.contains_key("record=dead_letter"),
        "{per_partition:?}"
    );
    // 2,700 points with max_rows 400 roll into several files.
    assert!(
        per_partition["record=point/date=2025-11-24/hour=16"] >= 7,
        "{per_partition:?}"
    );

    let out = dir.path().join("out");
    assert_eq!(
        lake_rows::<WindowRecord>(&lake, "window"),
        sorted_json(read_ndjson(&out.join("windows.ndjson")))
    );
    assert_eq!(
        lake_rows::<AlertRecord>(&lake, "alert"),
        sorted_json(read_ndjson(&out.join("alerts.ndjson")))
    );

    // A fresh re-run (no checkpoint store here) replaces this pipeline's files.
    assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        dir.path(),
    ));
    let mut again = files_under(&lake);
    again.retain(|f| *f != marker);
    assert_eq!(again, files);
    assert_eq!(
        lake_rows::<WindowRecord>(&lake, "window"),
        sorted_json(read_ndjson(&out.join("windows.ndjson")))
    );

    // A lake of the old layout is refused, not mixed with new files.
    std::fs::create_dir_all(lake.join("kind=window")).unwrap();
    let refused = tidewatch(&["run", "--once", "--config", "p.toml"], dir.path());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("files of layout 1"),
        "{stderr}"
    );
}

/// Where scripts/test.sh installs the Python packages the lake tests read with.
pub fn test_python_path() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".test-deps/python");
    assert!(
        path.join("duckdb").exists(),
        "DuckDB for Python not found in {}: run ./scripts/test.sh, which installs it there",
        path.display()
    );
    path
}

/// Runs a Python `script` with DuckDB in reach, in `dir`, and returns the JSON it prints.
/// `sys.argv[1]` is where the Python packages are (DuckDB's extensions among them), then `args`.
pub fn duckdb_json(script: &str, args: &[&str], dir: &Path) -> Value {
    let python = test_python_path();
    let output = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&python)
        .args(args)
        .current_dir(dir)
        .env("PYTHONPATH", &python)
        // DuckDB keeps its secrets and extensions under $HOME: not the user's.
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The lake as DuckDB reads it with hive partitioning: event times are timestamps, counts are
/// signed, window records keep their own `kind` beside the `record` directory, and the rows
/// are the NDJSON sink's.
#[test]
fn duckdb_reads_timestamps_signed_counts_and_window_kinds() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        format!(
            r#"
[[streams]]
name = "sensors"
source = {{ kind = "file", path = "{}/config/data/sensors.ndjson" }}
fields = {{ time = "ts", series = "series", value = "value", id = "id" }}
watermark = {{ lateness = "10s" }}
windows = [{{ kind = "tumbling", size = "1m" }}, {{ kind = "sliding", size = "1m", slide = "30s" }}, {{ kind = "session", gap = "20s" }}]
analytics = {{}}

[[sinks]]
kind = "parquet"
url = "lake"

[[sinks]]
kind = "ndjson"
path = "out"
"#,
            env!("CARGO_MANIFEST_DIR")
        ),
    )
    .unwrap();
    assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        dir.path(),
    ));
    let script = r#"
import json, duckdb
con = duckdb.connect()
def read(kind):
    return f"read_parquet('lake/record={kind}/**/*.parquet', hive_partitioning = true)"
types = {}
for kind in ["window", "point", "alert", "late", "dead_letter"]:
    types[kind] = {name: typ for name, typ, *_ in con.sql(f"DESCRIBE SELECT * FROM {read(kind)}").fetchall()}
windows = con.sql(f"""SELECT stream, series, kind, epoch_ms(window_start), epoch_ms(window_end),
    count, sum, record FROM {read('window')}""").fetchall()
print(json.dumps({"types": types, "windows": windows}))
"#;
    let read = duckdb_json(script, &[], dir.path());
    let types = &read["types"];
    let timestamp = "TIMESTAMP WITH TIME ZONE";
    for (kind, column) in [
        ("window", "window_start"),
        ("window", "window_end"),
        ("point", "ts"),
        ("alert", "ts"),
        ("alert", "episode_start"),
        ("alert", "acked_at"),
        ("late", "ts"),
        ("late", "watermark"),
    ] {
        assert_eq!(types[kind][column], timestamp, "{kind}.{column}: {types}");
    }
    assert_eq!(types["window"]["count"], "BIGINT", "{types}");
    assert_eq!(types["window"]["kind"], "VARCHAR", "{types}");
    assert_eq!(types["window"]["record"], "VARCHAR", "{types}");

    // Every window, with its own kind, equal to the NDJSON sink's.
    let mut from_duckdb: Vec<String> = read["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            assert_eq!(w[7], "window");
            format!(
                "{}|{}|{}|{}|{}|{}|{}",
                w[0], w[1], w[2], w[3], w[4], w[5], w[6]
            )
        })
        .collect();
    let mut from_ndjson: Vec<String> = read_ndjson(&dir.path().join("out/windows.ndjson"))
        .iter()
        .map(|w| {
            let f = |k: &str| w[k].to_string();
            format!(
                "{}|{}|{}|{}|{}|{}|{}",
                f("stream"),
                f("series"),
                f("kind"),
                f("window_start"),
                f("window_end"),
                f("count"),
                f("sum")
            )
        })
        .collect();
    from_duckdb.sort();
    from_ndjson.sort();
    let kinds: std::collections::BTreeSet<&str> = from_duckdb
        .iter()
        .map(|w| w.split('|').nth(2).unwrap())
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["\"session\"", "\"sliding\"", "\"tumbling\""]
    );
    assert_eq!(from_duckdb, from_ndjson);
}
