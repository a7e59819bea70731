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
    let dir = lake.join(format!("kind={kind}"));
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
    let files = files_under(&lake);
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
        per_partition.contains_key("kind=window/date=2025-11-24/hour=16"),
        "{per_partition:?}"
    );
    assert!(
        per_partition.contains_key("kind=dead_letter"),
        "{per_partition:?}"
    );
    // 2,700 points with max_rows 400 roll into several files.
    assert!(
        per_partition["kind=point/date=2025-11-24/hour=16"] >= 7,
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
    assert_eq!(files_under(&lake), files);
    assert_eq!(
        lake_rows::<WindowRecord>(&lake, "window"),
        sorted_json(read_ndjson(&out.join("windows.ndjson")))
    );
}
