//! The Parquet lake on a real S3 server (SeaweedFS, which checks request signatures): the
//! same exactly-once rows across a SIGKILL as a local lake of an uninterrupted run, read back
//! by DuckDB straight from S3 with the database sink's rows, and wrong credentials refused with
//! a clear error.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::lake::duckdb_json;
use crate::remote_lake::{assert_exactly_once_across_sigkill, command, pipeline};
use crate::support::seaweed::{SeaweedS3, ACCESS_KEY, ENDPOINT, SECRET_KEY};

const BUCKET: &str = "tidewatch";

#[test]
fn an_s3_lake_gets_the_rows_of_an_uninterrupted_run_across_a_sigkill() {
    let s3 = SeaweedS3::start(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    assert_exactly_once_across_sigkill(
        dir.path(),
        &format!("s3://{BUCKET}/lake"),
        &SeaweedS3::env(SECRET_KEY),
        |mirror| {
            let objects = SeaweedS3::download(BUCKET, "lake", mirror);
            assert!(objects > 3, "{objects} objects in the lake");
            mirror.to_path_buf()
        },
    );

    // DuckDB reads the lake from S3 itself (its httpfs extension), and its final windows are
    // the database sink's.
    let script = r#"
import glob, json, os, sqlite3, sys, duckdb
extension = glob.glob(os.path.join(sys.argv[1], "duckdb_extension_httpfs/extensions/*/httpfs.duckdb_extension"))[0]
con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
con.execute(f"LOAD '{extension}'")
con.execute(f"""CREATE SECRET (TYPE s3, KEY_ID '{sys.argv[2]}', SECRET '{sys.argv[3]}',
    ENDPOINT '{sys.argv[4]}', URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')""")
lake = con.sql(f"""SELECT DISTINCT stream, series, kind, epoch_ms(window_start), epoch_ms(window_end),
    count, sum FROM read_parquet('s3://{sys.argv[5]}/lake/record=window/**/*.parquet', hive_partitioning = true)
    WHERE final""").fetchall()
db = sqlite3.connect("remote.db").execute("""SELECT stream, series, kind, window_start, window_end,
    count, sum FROM windows WHERE final""").fetchall()
print(json.dumps({"lake": lake, "db": db}))
"#;
    let read = duckdb_json(
        script,
        &[
            ACCESS_KEY,
            SECRET_KEY,
            ENDPOINT.trim_start_matches("http://"),
            BUCKET,
        ],
        dir.path(),
    );
    let rows = |which: &str| {
        let mut rows: Vec<String> = read[which]
            .as_array()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect();
        rows.sort();
        rows
    };
    let (lake, db) = (rows("lake"), rows("db"));
    assert!(
        lake.len() > 1_000,
        "{} final windows read from S3",
        lake.len()
    );
    assert_eq!(lake, db);
    drop(s3);
}

#[test]
fn wrong_s3_credentials_are_refused_with_a_clear_error() {
    let _s3 = SeaweedS3::start(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    std::fs::write(
        &events,
        "{\"ts\":1764000000000,\"series\":\"a\",\"value\":1.0,\"id\":\"1\"}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        pipeline(&events, &format!("s3://{BUCKET}/lake"), "p.db"),
    )
    .unwrap();
    let started = Instant::now();
    let output = command(
        dir.path(),
        &["run", "--once", "--config", "p.toml"],
        &SeaweedS3::env("not-the-secret"),
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a wrong secret must fail the run");
    assert!(
        stderr.contains("SignatureDoesNotMatch") || stderr.contains("403"),
        "{stderr}"
    );
    assert!(stderr.contains("s3://tidewatch/lake"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "refused within a minute, not retried forever"
    );
}
