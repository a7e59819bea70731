//! Hostile and careless input: events stamped far in the future, absurdly long series names,
//! and a server under abuse (foreign `Host` names, framing, half-sent requests). Each refusal
//! is a dead letter or a clear answer; nothing else changes.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::broker::Broker;
use crate::support::{assert_success, free_port, read_ndjson, tidewatch, unique_name};

/// An event time far in the future (9999-12-31T23:59:59Z), as a careless producer sends it.
const YEAR_9999: i64 = 253_402_300_799_000;

/// `tidewatch run` following its config, stopped (SIGKILL) on drop.
struct Following(Child);

impl Following {
    fn start(dir: &Path) -> Following {
        let child = Command::new(env!("CARGO_BIN_EXE_tidewatch"))
            .args(["run", "--config", "p.toml"])
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Following(child)
    }
}

impl Following {
    /// SIGTERM, then whether it exited successfully (within 20 s).
    fn terminate(mut self) -> bool {
        let pid = self.0.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "did not exit within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Following {
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

/// Waits (at most 30 s) until `check` holds for the records of `path`.
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

fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => return stream,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("tidewatch did not listen on {port}: {e}"),
        }
    }
}

fn event(series: &str, ts: i64, value: i64) -> String {
    format!("{{\"ts\":{ts},\"series\":\"{series}\",\"value\":{value}}}\n")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A socket stream followed live: an event from year 9999, one in microseconds and a line of
/// 3 MiB between ordinary ones become dead letters with the reason, and the ordinary events
/// after them are not late: their windows close as before.
#[test]
fn a_far_future_event_on_a_socket_is_a_dead_letter_and_the_stream_goes_on() {
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
    let _run = Following::start(dir.path());
    let mut client = connect(port);
    // Ten-second windows of the last two minutes, aligned: the first events fill [t0, t0+10s).
    let t0 = (now_ms() - 120_000) / 10_000 * 10_000;
    let mut feed = String::new();
    for s in 0..20 {
        feed += &event("a", t0 + s * 1_000, 1);
    }
    feed += &event("a", YEAR_9999, 1);
    feed += &event("a", now_ms() * 1_000, 1);
    // A line of 3 MiB: one dead letter that says so, not three of broken JSON.
    feed += &format!("{{\"ts\":{t0},\"series\":\"{}\"}}\n", "y".repeat(3 << 20));
    for s in 20..60 {
        feed += &event("a", t0 + s * 1_000, 2);
    }
    client.write_all(feed.as_bytes()).unwrap();
    client.flush().unwrap();

    let out = dir.path().join("out");
    let windows = wait_for(
        &out.join("windows.ndjson"),
        "windows after the bad events",
        |w| w.iter().any(|w| w["window_start"] == t0 + 40_000),
    );
    for (k, window) in windows.iter().take(5).enumerate() {
        assert_eq!(window["window_start"], t0 + k as i64 * 10_000, "{window}");
        assert_eq!(window["count"], 10, "{window}");
    }
    assert!(
        lines(&out.join("late.ndjson")).is_empty(),
        "no ordinary event was late"
    );
    wait_for(
        &out.join("dead_letters.ndjson"),
        "three dead letters",
        |d| d.len() >= 3,
    );
    // Had the long line been cut into pieces, more would follow.
    std::thread::sleep(Duration::from_millis(500));
    let dead = lines(&out.join("dead_letters.ndjson"));
    assert_eq!(dead.len(), 3, "{dead:?}");
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons[2],
        "message is longer than 1048576 bytes, the most this source takes (the rest of it was \
         skipped)"
    );
    assert!(
        reasons[0].starts_with("event time 9999-12-31T23:59:59Z is ")
            && reasons[0].contains("watermark.max_ahead = 1h"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("looks like microseconds"),
        "{reasons:?}"
    );
}

/// The same through Kafka in a batch run: the bad events are dead letters, no ordinary event
/// is late, and every window closes with all of its events; a second run after more ordinary
/// events (resuming from the checkpoint) still takes them.
#[test]
fn a_far_future_event_on_kafka_is_a_dead_letter_and_a_rerun_goes_on() {
    let broker = Broker::start();
    let topic = unique_name("future");
    broker.create_topic(&topic, 1);
    let t0 = 1_764_000_000_000;
    let mut messages: Vec<(String, Vec<u8>)> = (0..30)
        .map(|s| ("a".to_owned(), event("a", t0 + s * 1_000, 1).into_bytes()))
        .collect();
    messages.push(("a".into(), event("a", YEAR_9999, 1).into_bytes()));
    messages.extend((30..60).map(|s| ("a".to_owned(), event("a", t0 + s * 1_000, 1).into_bytes())));
    broker.produce(&topic, &messages);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        format!(
            r#"
[[streams]]
name = "k"
source = {{ kind = "kafka", brokers = "{}", topics = ["{topic}"], group = "{}" }}
fields = {{ time = "ts", series = "series", value = "value" }}
watermark = {{ lateness = "0s" }}
windows = [{{ kind = "tumbling", size = "10s" }}]

[[sinks]]
kind = "ndjson"
path = "out"

[[sinks]]
kind = "db"
url = "sqlite://state.db"
"#,
            broker.bootstrap,
            unique_name("group")
        ),
    )
    .unwrap();
    let run =
        |dir: &Path| assert_success(&tidewatch(&["run", "--once", "--config", "p.toml"], dir));
    let summary = run(dir.path());
    assert!(
        summary.contains("61 messages, 60 accepted, 0 late"),
        "{summary}"
    );
    assert!(summary.contains("1 dead letters"), "{summary}");
    let out = dir.path().join("out");
    let windows = read_ndjson(&out.join("windows.ndjson"));
    assert_eq!(windows.len(), 6, "{windows:?}");
    assert!(windows.iter().all(|w| w["count"] == 10), "{windows:?}");
    let dead = read_ndjson(&out.join("dead_letters.ndjson"));
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("event time 9999-12-31T23:59:59Z"),
        "{dead:?}"
    );
    assert_eq!(dead[0]["offset"], 30);

    // Later events, read by a second run from where the first left off: accepted.
    let later: Vec<(String, Vec<u8>)> = (60..70)
        .map(|s| ("a".to_owned(), event("a", t0 + s * 1_000, 1).into_bytes()))
        .collect();
    broker.produce(&topic, &later);
    let again = run(dir.path());
    assert!(
        again.contains("10 messages, 10 accepted, 0 late"),
        "{again}"
    );
}

/// Series names beyond `max_label_bytes` are dead letters with the reason; the others go on.
#[test]
fn series_names_beyond_the_label_limit_are_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(100_000);
    let mut input = String::new();
    for s in 0..20 {
        input += &event("short", 1_764_000_000_000 + s * 1_000, 1);
        if s % 5 == 0 {
            input += &event(&long, 1_764_000_000_000 + s * 1_000, 1);
        }
    }
    std::fs::write(dir.path().join("in.ndjson"), input).unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        r#"
[[streams]]
name = "f"
source = { kind = "file", path = "in.ndjson" }
fields = { time = "ts", series = "series", value = "value" }
windows = [{ kind = "tumbling", size = "10s" }]

[[sinks]]
kind = "ndjson"
path = "out"
"#,
    )
    .unwrap();
    let summary = assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        dir.path(),
    ));
    assert!(summary.contains("20 accepted"), "{summary}");
    let dead = read_ndjson(&dir.path().join("out/dead_letters.ndjson"));
    assert_eq!(dead.len(), 4);
    for d in &dead {
        assert_eq!(
            d["reason"],
            "series label is 100000 bytes long, more than the stream's max_label_bytes = 1024"
        );
    }
    let windows = read_ndjson(&dir.path().join("out/windows.ndjson"));
    assert!(
        windows.iter().all(|w| w["series"] == "short"),
        "{windows:?}"
    );
}

/// An event half an hour ahead (within `max_ahead`) still moves the watermark, and what comes
/// after it is late, also after a restart (the watermark is checkpointed); `tidewatch reset`
/// starts the stream afresh in the checkpoint, and the next run takes those events again.
#[test]
fn reset_starts_a_stream_afresh_and_keeps_its_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let t0 = (now_ms() - 3_600_000) / 60_000 * 60_000;
    let mut first = String::new();
    for s in 0..30 {
        first += &event("a", t0 + s * 1_000, 1);
    }
    first += &event("a", now_ms() + 1_800_000, 1);
    std::fs::write(dir.path().join("in/1.ndjson"), first).unwrap();
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
    let out = dir.path().join("out");
    let later = |from: i64, to: i64| -> String {
        (from..to).map(|s| event("a", t0 + s * 1_000, 1)).collect()
    };

    // Stuck: after the event from the future, ordinary ones are late, before and after a
    // restart.
    let run = Following::start(dir.path());
    std::fs::write(dir.path().join("in/2.ndjson"), later(30, 40)).unwrap();
    wait_for(&out.join("late.ndjson"), "10 late events", |l| {
        l.len() >= 10
    });
    assert!(run.terminate());
    let run = Following::start(dir.path());
    std::fs::write(dir.path().join("in/3.ndjson"), later(40, 50)).unwrap();
    wait_for(&out.join("late.ndjson"), "20 late events", |l| {
        l.len() >= 20
    });
    assert!(run.terminate());

    let reset = assert_success(&tidewatch(
        &["reset", "--config", "p.toml", "--stream", "s"],
        dir.path(),
    ));
    assert!(reset.starts_with("stream \"s\": state reset"), "{reset}");
    let unknown = tidewatch(
        &["reset", "--config", "p.toml", "--stream", "nope"],
        dir.path(),
    );
    assert!(!unknown.status.success());
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        said.contains("no stream named \"nope\"; the streams are: \"s\""),
        "{said}"
    );

    // Afresh: the files already read stay read, and new ordinary events count again.
    let run = Following::start(dir.path());
    std::fs::write(dir.path().join("in/4.ndjson"), later(60, 130)).unwrap();
    let windows = wait_for(
        &out.join("windows.ndjson"),
        "the window after the reset",
        |w| w.iter().any(|w| w["window_start"] == t0 + 60_000),
    );
    assert!(run.terminate());
    let after: Vec<&Value> = windows
        .iter()
        .filter(|w| w["window_start"] == t0 + 60_000)
        .collect();
    assert_eq!(after.len(), 1, "{windows:?}");
    assert_eq!(after[0]["count"], 60, "{after:?}");
    assert_eq!(
        lines(&out.join("late.ndjson")).len(),
        20,
        "nothing late after the reset"
    );
}

/// `tidewatch serve` over an idle pipeline, with `web` as its `[web]` table.
fn serve_with_web(dir: &Path, web: &str) -> (crate::support::ChildGuard, u16) {
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::write(dir.join("in/a.ndjson"), "").unwrap();
    std::fs::write(
        dir.join("p.toml"),
        format!(
            r#"
[[streams]]
name = "s"
source = {{ kind = "file", path = "in" }}
fields = {{ time = "ts", series = "series", value = "value" }}

[[sinks]]
kind = "ndjson"
path = "out"

[web]
{web}
"#
        ),
    )
    .unwrap();
    crate::support::serve("p.toml", dir)
}

/// Opens a connection and sends half a request: headers that never end.
fn half_sent(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Waiting: ")
        .unwrap();
    stream
}

/// Whether the server closes `stream` within `within` (rather than leaving it open).
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Slowloris: 300 connections that send half a request and wait. The dashboard goes on
/// answering, and each of them is closed once `header_timeout` has passed.
#[test]
fn half_sent_requests_are_cut_off_and_the_dashboard_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = serve_with_web(dir.path(), "header_timeout = \"2s\"");
    let mut held: Vec<TcpStream> = (0..300).map(|_| half_sent(port)).collect();
    assert_eq!(
        crate::support::http_get(port, "/healthz").as_deref(),
        Some("ok"),
        "/healthz while 300 requests hang"
    );
    let started = Instant::now();
    for (i, stream) in held.iter_mut().enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(15)),
            "connection {i} still open {:?} after it was opened",
            started.elapsed()
        );
    }
}

/// Connections beyond `max_connections` are answered 503 at once and closed; once the held
/// ones time out, the dashboard answers again.
#[test]
fn connections_beyond_the_limit_are_refused_until_others_close() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) =
        serve_with_web(dir.path(), "header_timeout = \"2s\"\nmax_connections = 20");
    let held: Vec<TcpStream> = (0..20).map(|_| half_sent(port)).collect();
    // The server takes the connections in order; give it a moment to have taken all 20.
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(("127.0.0.1", port)).unwrap();
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut extra, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.contains("too many connections"), "{answer:?}");
    // The held ones are cut off after 2 s; then there is room again.
    let deadline = Instant::now() + Duration::from_secs(15);
    while crate::support::http_get(port, "/healthz").is_none() {
        assert!(
            Instant::now() < deadline,
            "no room again after the held connections timed out"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(held);
}
