//! The Parquet lake on a real HDFS (Hadoop's MiniDFSCluster): exactly-once rows across a
//! SIGKILL, the files readable back, no staging files left; and a name node that does not
//! answer fails the run within a bounded time with an error that names it.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::remote_lake::{assert_exactly_once_across_sigkill, command, pipeline};
use crate::support::hdfs::MiniHdfs;

#[test]
fn an_hdfs_lake_gets_the_rows_of_an_uninterrupted_run_across_a_sigkill() {
    let hdfs = MiniHdfs::start();
    let dir = tempfile::tempdir().unwrap();
    assert_exactly_once_across_sigkill(
        dir.path(),
        &format!("{}/tidewatch/lake", hdfs.url),
        &[],
        |mirror| {
            let files = hdfs.download("tidewatch/lake", mirror);
            assert!(files > 3, "{files} files in the lake");
            mirror.to_path_buf()
        },
    );
    // Every file left is a whole Parquet file of the lake (or its layout marker): the staging
    // files of uploads the SIGKILL cut short were removed on restart.
    let mut names = Vec::new();
    collect_file_names(&dir.path().join("mirror"), &mut names);
    let strays: Vec<&String> = names
        .iter()
        .filter(|n| !n.ends_with(".parquet") && n.as_str() != "_tidewatch_lake.json")
        .collect();
    assert!(strays.is_empty(), "not lake files: {strays:?}");
}

fn collect_file_names(dir: &std::path::Path, into: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            collect_file_names(&entry.path(), into);
        } else {
            into.push(entry.file_name().into_string().unwrap());
        }
    }
}

fn one_event_pipeline(dir: &std::path::Path, lake: &str, extra: &str) {
    let events = dir.join("events.ndjson");
    std::fs::write(
        &events,
        "{\"ts\":1764000000000,\"series\":\"a\",\"value\":1.0,\"id\":\"1\"}\n",
    )
    .unwrap();
    std::fs::write(dir.join("p.toml"), pipeline(&events, lake, "p.db") + extra).unwrap();
}

/// `run --once` of `dir/p.toml`, which must fail: its standard error and how long it took.
fn failed_run(dir: &std::path::Path) -> (String, Duration) {
    let started = Instant::now();
    let output = command(dir, &["run", "--once", "--config", "p.toml"], &[])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{stderr}");
    (stderr, started.elapsed())
}

/// A closed port fails at once (the client's fail-over retries are for name services, not one
/// name node); a name node that accepts connections and never answers fails at the sink's
/// `timeout`.
#[test]
fn an_unreachable_name_node_fails_the_run_within_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("hdfs://127.0.0.1:{closed}/lake");
    one_event_pipeline(dir.path(), &url, "");
    let (stderr, took) = failed_run(dir.path());
    assert!(stderr.contains(&url), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(took < Duration::from_secs(30), "refused after {took:?}");

    // Accepts, then says nothing.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "hdfs://127.0.0.1:{}/lake",
        silent.local_addr().unwrap().port()
    );
    let dir = tempfile::tempdir().unwrap();
    one_event_pipeline(dir.path(), &url, "timeout = \"2s\"\n");
    let (stderr, took) = failed_run(dir.path());
    assert!(
        stderr.contains(&url) && stderr.contains("no answer within 2s"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(30), "gave up after {took:?}");
    drop(silent);
}

/// `viewfs://` resolves through the mount table in `$HADOOP_CONF_DIR/core-site.xml`, and
/// `hdfs:///path` through its `fs.defaultFS`, as Hadoop's own clients do. (`hdfs-native` wants
/// a `linkFallback` in every mount table.)
#[test]
fn viewfs_and_default_fs_lakes_land_where_the_hadoop_config_points() {
    let hdfs = MiniHdfs::start();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("hadoop-conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("core-site.xml"),
        format!(
            "<configuration>\n\
             <property><name>fs.viewfs.mounttable.analytics.link./lakes</name>\
             <value>{url}/mounted/lakes</value></property>\n\
             <property><name>fs.viewfs.mounttable.analytics.linkFallback</name>\
             <value>{url}/elsewhere</value></property>\n\
             <property><name>fs.defaultFS</name><value>{url}</value></property>\n\
             </configuration>\n",
            url = hdfs.url
        ),
    )
    .unwrap();
    // Each URL, and the path in HDFS where its lake must land.
    for (url, lands_at) in [
        ("viewfs://analytics/lakes/sensors", "mounted/lakes/sensors"),
        ("hdfs:///by-default/lake", "by-default/lake"),
    ] {
        let run = tempfile::tempdir().unwrap();
        one_event_pipeline(run.path(), url, "");
        let output = command(
            run.path(),
            &["run", "--once", "--config", "p.toml"],
            &[("HADOOP_CONF_DIR", conf.display().to_string())],
        )
        .output()
        .unwrap();
        crate::support::assert_success(&output);
        let mirror = run.path().join("mirror");
        hdfs.download(lands_at, &mirror);
        let points = crate::lake::lake_rows::<tidewatch::record::PointRecord>(&mirror, "point");
        assert_eq!(points.len(), 1, "{url}: {points:?}");
    }
}
