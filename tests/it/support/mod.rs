//! Helpers that start real components for the integration tests, and stop them on drop.

pub mod broker;
pub mod hdfs;
pub mod postgres;
pub mod receiver;
pub mod seaweed;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};

/// A loopback port for a server the test starts that must be told its port (chromedriver,
/// PostgreSQL, the broker, a socket source). Tidewatch's own dashboard binds port 0 and says
/// which port it got instead (see [`serve`]).
///
/// Port 0's answer cannot be used here: once released, the kernel may hand the same ephemeral
/// port to any outgoing connection before the server binds it. These ports come from below the
/// ephemeral range (which starts at 32768 on Linux), which the kernel never assigns by itself;
/// each is taken once per run (a counter, offset by the process id so that two runs on one
/// machine start apart) and checked free by binding it.
pub fn free_port() -> u16 {
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let offset = (std::process::id() % 30) as u16 * 400;
    for _ in 0..SPAN {
        let port = FIRST + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {FIRST} and {}", FIRST + SPAN);
}

/// A name no other test (or earlier run) uses: topic and group names.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs the `tidewatch` binary in `dir` and returns its output.
pub fn tidewatch(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tidewatch"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the tidewatch binary runs")
}

/// Asserts a command succeeded, showing its output when it did not.
pub fn assert_success(output: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Reads an NDJSON file into JSON values.
pub fn read_ndjson(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Kills a child process on drop, even when the test fails.
pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on a loopback port; the body of a 200 answer, else `None`.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// `POST path` with a JSON body on a loopback port: the status and the body of the answer.
pub fn http_post_json(port: u16, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

/// Starts `tidewatch serve --config CONFIG --listen 127.0.0.1:0` in `dir` (its log in
/// `dir/tidewatch.log`); returns the guarded process and the port it bound, once it answers
/// `/healthz`.
pub fn serve(config: &str, dir: &std::path::Path) -> (ChildGuard, u16) {
    let log = dir.join("tidewatch.log");
    let mut server = ChildGuard(
        std::process::Command::new(env!("CARGO_BIN_EXE_tidewatch"))
            .args(["serve", "--config", config, "--listen", "127.0.0.1:0"])
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a log file in the test dir"))
            .spawn()
            .expect("tidewatch serve starts"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let port = loop {
        if let Some(port) = dashboard_port(&std::fs::read_to_string(&log).unwrap_or_default()) {
            break port;
        }
        assert!(server.is_running(), "tidewatch serve exited");
        assert!(
            std::time::Instant::now() < deadline,
            "tidewatch serve did not say where it listens within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    while http_get(port, "/healthz").is_none() {
        assert!(server.is_running(), "tidewatch serve exited");
        assert!(
            std::time::Instant::now() < deadline,
            "tidewatch serve did not answer within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    (server, port)
}

/// The port in tidewatch's "Dashboard on http://127.0.0.1:PORT/" line, once it is there.
pub fn dashboard_port(log: &str) -> Option<u16> {
    let rest = log.split("Dashboard on http://127.0.0.1:").nth(1)?;
    rest.split('/').next()?.parse().ok()
}

/// Copies every object under `prefix` of `store` into `into`, keeping the paths below
/// `prefix`; returns how many. (Reading back what Tidewatch wrote to S3 or HDFS.)
pub async fn download_store(
    store: &dyn object_store::ObjectStore,
    prefix: &str,
    into: &std::path::Path,
) -> usize {
    use futures_util::TryStreamExt;
    use object_store::ObjectStoreExt;
    let prefix = object_store::path::Path::from(prefix);
    let objects: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
    for object in &objects {
        let bytes = store
            .get(&object.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let mut target = into.to_path_buf();
        for part in object.location.prefix_match(&prefix).unwrap() {
            target.push(part.as_ref());
        }
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, bytes).unwrap();
    }
    objects.len()
}
