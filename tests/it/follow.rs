//! Continuous mode (`run` without `--once`): sources are followed, windows close as event time
//! advances, SIGTERM stops with a checkpoint and exit status 0, and a restart resumes.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{dashboard_port, free_port};

struct Running(Child);

impl Running {
    fn start(dir: &Path, config: &str) -> Running {
        let child = Command::new(env!("CARGO_BIN_EXE_tidewatch"))
            .args(["run", "--config", config])
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Running(child)
    }

    /// SIGTERM, then the exit status (waits at most 20 s).
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "did not exit within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits (at most 30 s) until `check` holds for the records of `file`.
fn wait_for(path: &Path, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let records = lines(path);
        if check(&records) {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn events(series: &str, from_s: i64, to_s: i64) -> String {
    (from_s..to_s)
        .map(|s| {
            format!(
                r#"{{"ts":{},"series":"{series}","value":{}}}"#,
                s * 1000,
                s % 7
            ) + "\n"
        })
        .collect()
}

fn has_window_ending(records: &[Value], end: i64) -> bool {
    records.iter().any(|w| w["window_end"] == end)
}

#[test]
fn follows_new_files_stops_on_sigterm_and_resumes_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/a.ndjson"), events("x", 0, 90)).unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        r#"
checkpoint = { interval = "200ms" }

[[streams]]
name = "s"
source = { kind = "file", path = "in" }
fields = { time = "ts", series = "series", value = "value" }
watermark = { lateness = "1s" }
windows = [{ kind = "tumbling", size = "1m" }]

[[sinks]]
kind = "ndjson"
path = "out"

[[sinks]]
kind = "db"
url = "sqlite://state.db"
"#,
    )
    .unwrap();
    let windows = dir.path().join("out/windows.ndjson");

    let run = Running::start(dir.path(), "p.toml");
    wait_for(&windows, "window [0, 60s)", |w| {
        has_window_ending(w, 60_000)
    });
    // A new file while running, and lines appended to it, the last one in two writes.
    std::fs::write(dir.path().join("in/b.ndjson"), events("x", 90, 150)).unwrap();
    let mut b = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("in/b.ndjson"))
        .unwrap();
    b.write_all(events("x", 150, 200).as_bytes()).unwrap();
    b.write_all(br#"{"ts":200000,"series":"x","#).unwrap();
    b.flush().unwrap();
    wait_for(&windows, "window [60s, 120s)", |w| {
        has_window_ending(w, 120_000)
    });
    b.write_all(b"\"value\":1}\n").unwrap();
    wait_for(&windows, "window [120s, 180s)", |w| {
        has_window_ending(w, 180_000)
    });
    let status = run.terminate();
    assert!(status.success(), "{status}");

    // Restart: state and positions come from the checkpoint, so [180 s, 240 s) holds the 21
    // events read before the stop (180..=200 s) and the 39 after it, and nothing is emitted
    // twice.
    let run = Running::start(dir.path(), "p.toml");
    std::fs::write(dir.path().join("in/c.ndjson"), events("x", 201, 250)).unwrap();
    let all = wait_for(&windows, "window [180s, 240s)", |w| {
        has_window_ending(w, 240_000)
    });
    assert!(run.terminate().success());
    let counts: Vec<(i64, u64)> = all
        .iter()
        .map(|w| {
            (
                w["window_start"].as_i64().unwrap(),
                w["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let starts: BTreeSet<i64> = counts.iter().map(|c| c.0).collect();
    assert_eq!(
        starts.len(),
        counts.len(),
        "a window was emitted twice: {counts:?}"
    );
    assert_eq!(
        counts,
        vec![(0, 60), (60_000, 60), (120_000, 60), (180_000, 60)]
    );
}

#[test]
fn socket_source_reads_ndjson_from_tcp_clients() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("p.toml"),
        format!(
            r#"
[[streams]]
name = "tcp"
source = {{ kind = "socket", listen = "127.0.0.1:{port}" }}
fields = {{ time = "ts", series = "series", value = "value" }}
watermark = {{ lateness = "0s" }}
windows = [{{ kind = "tumbling", size = "10s" }}]

[[sinks]]
kind = "ndjson"
path = "out"
"#
        ),
    )
    .unwrap();
    let run = Running::start(dir.path(), "p.toml");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut client = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("tidewatch did not listen on {port}: {e}"),
        }
    };
    client.write_all(events("tcp", 0, 25).as_bytes()).unwrap();
    client.write_all(b"{\"broken\": \n").unwrap();
    client.flush().unwrap();
    let windows = wait_for(&dir.path().join("out/windows.ndjson"), "two windows", |w| {
        w.len() >= 2
    });
    assert_eq!(windows[0]["count"], 10);
    assert_eq!(windows[1]["window_start"], 10_000);
    let dead = wait_for(
        &dir.path().join("out/dead_letters.ndjson"),
        "a dead letter",
        |d| !d.is_empty(),
    );
    assert!(dead[0]["source"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(run.terminate().success());
}

#[test]
fn demo_source_produces_live_points_and_windows() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        r#"
[[streams]]
name = "demo"
source = { kind = "demo", rate = 400, series = 4 }
fields = { time = "ts", series = "series", value = "value", id = "id" }
watermark = { lateness = "6s" }
dedup = { horizon = "1m" }
windows = [{ kind = "tumbling", size = "1s" }]
analytics = { zscore = { min_samples = 10 } }

[[sinks]]
kind = "ndjson"
path = "out"
"#,
    )
    .unwrap();
    let run = Running::start(dir.path(), "p.toml");
    let windows = wait_for(
        &dir.path().join("out/windows.ndjson"),
        "closed 1 s windows",
        |w| w.len() >= 8,
    );
    let series: BTreeSet<&str> = windows
        .iter()
        .map(|w| w["series"].as_str().unwrap())
        .collect();
    assert_eq!(series.len(), 4, "{series:?}");
    let points = lines(&dir.path().join("out/points.ndjson"));
    assert!(points.len() > 100, "{} points", points.len());
    assert!(run.terminate().success());
}

#[test]
fn no_command_serves_the_built_in_demo_pipeline_and_dashboard() {
    use sqlx::Row;
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    // Port 0: the binary binds a free port and says which.
    let log = dir.path().join("stderr.log");
    let child = Command::new(env!("CARGO_BIN_EXE_tidewatch"))
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .env("TIDEWATCH_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let run = Running(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        if let Some(port) = dashboard_port(&std::fs::read_to_string(&log).unwrap()) {
            break port;
        }
        assert!(
            Instant::now() < deadline,
            "no dashboard address within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // The dashboard answers, and shows the demo series once points are released.
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        let response = TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut s| {
                s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    .ok()?;
                let mut text = String::new();
                s.read_to_string(&mut text).ok()?;
                Some(text)
            });
        if let Some(text) = response.filter(|t| t.contains("s0005")) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no dashboard with demo series on port {port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(run.terminate().success());
    // The stop wrote a checkpoint with the engine state of a live pipeline.
    let db = dir.path().join("tidewatch.db");
    let store = tidewatch::DbSink::connect(&format!("sqlite://{}", db.display())).unwrap();
    let rows = store
        .fetch_all("SELECT pipeline, epoch FROM checkpoints WHERE engine IS NOT NULL")
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].try_get::<i64, _>(1).unwrap() >= 1);
}

#[test]
fn serve_refuses_a_public_address_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tidewatch"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .current_dir(dir.path())
        .env_remove("TIDEWATCH_AUTH_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--insecure") && stderr.contains("0.0.0.0"),
        "{stderr}"
    );
}
