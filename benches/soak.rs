//! Soak: `tidewatch serve` (the release binary, its own process) under a steady demo load with
//! dashboard clients attached, its resident memory sampled at a fixed interval. Memory must
//! level off: every buffer of the engine, the live view and the fan-out is bounded.
//!
//!     scripts/soak.sh                                  # 20,000 events/s, 100 clients, 30 min
//!     cargo bench --bench soak -- --minutes 2 --clients 10 --rate 5000
//!     scripts/soak.sh --series 100000 --page           # clients as overview pages
//!
//! Clients take every series (`all`) by default; with `--page` each subscribes to the 50
//! series of one overview page (client k to page k), as the dashboard does: at 100,000 series
//! `all` is a stream no browser could take.
//!
//! Prints one line per sample (minutes, RSS in MiB, events accepted, the accepted rate since
//! the sample before, messages the clients read, and the longest checkpoint pause and largest
//! checkpoint seen since the sample before: `/metrics` is read every second) and a summary:
//! RSS at the end of each third of the run, so a slope is visible, the lowest accepted rate in
//! any minute, and the longest checkpoint pause.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

struct Options {
    minutes: f64,
    clients: usize,
    rate: u64,
    series: u64,
    every: u64,
    /// Clients subscribe to a page of 50 series.
    page: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: f64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} takes a number, not {v:?}"))
            })
            .unwrap_or(default)
    };
    Options {
        minutes: value("--minutes", 30.0),
        clients: value("--clients", 100.0) as usize,
        rate: value("--rate", 20_000.0) as u64,
        series: value("--series", 10_000.0) as u64,
        every: value("--every", 10.0) as u64,
        page: args.iter().any(|a| a == "--page"),
    }
}

/// The server under test; killed when dropped, so a failed soak leaves nothing running.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// What one read of `/metrics` says: events accepted, the last checkpoint's longest pause (s)
/// and bytes.
#[derive(Debug, Default, Clone, Copy)]
struct Sample {
    accepted: u64,
    pause: f64,
    bytes: f64,
}

fn sample(port: u16) -> Sample {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return Sample::default();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut text = String::new();
    if stream.write_all(request.as_bytes()).is_err() || stream.read_to_string(&mut text).is_err() {
        return Sample::default();
    }
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    };
    Sample {
        accepted: text
            .lines()
            .filter(|l| l.starts_with("tidewatch_events_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum(),
        pause: value("tidewatch_checkpoint_pause_seconds"),
        bytes: value("tidewatch_checkpoint_bytes"),
    }
}

/// Series an overview page shows.
const PAGE: u64 = 50;

async fn client(
    url: String,
    page: Option<std::ops::Range<u64>>,
    stop: Arc<AtomicBool>,
    read: Arc<AtomicU64>,
) {
    let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
        eprintln!("soak: a client could not connect to {url}");
        return;
    };
    if let Some(names) = page {
        // The demo source names its series s0000, s0001, ...
        let series: Vec<serde_json::Value> = names
            .map(|i| serde_json::json!({ "stream": "demo", "series": format!("s{i:04}") }))
            .collect();
        let request = serde_json::json!({ "subscribe": { "series": series } });
        let message = tokio_tungstenite::tungstenite::Message::Text(request.to_string().into());
        if futures_util::SinkExt::send(&mut socket, message)
            .await
            .is_err()
        {
            eprintln!("soak: a client could not subscribe");
            return;
        }
    }
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_secs(1), socket.next()).await {
            Ok(Some(Ok(_))) => {
                read.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => return,
            Err(_) => {}
        }
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench targets too; the soak is for scripts/soak.sh.
        eprintln!("soak: a long-running measurement; run it with scripts/soak.sh");
        return;
    }
    let o = options();
    let binary = std::env::var("TIDEWATCH_BIN").unwrap_or("target/release/tidewatch".into());
    let dir = tempfile::tempdir().expect("a working directory");
    let config = dir.path().join("soak.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[streams]]
name = "demo"
source = {{ kind = "demo", rate = {}, series = {} }}
fields = {{ time = "ts", series = "series", value = "value", id = "id" }}
watermark = {{ lateness = "6s", idle_timeout = "30s" }}
dedup = {{ horizon = "1m" }}
windows = [{{ kind = "tumbling", size = "1m" }}, {{ kind = "sliding", size = "1m", slide = "10s" }}]
analytics = {{}}

[[sinks]]
kind = "db"
url = "sqlite://{}/soak.db"
"#,
            o.rate,
            o.series,
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(&binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {binary}: {e} (build it with cargo build --release)")
        });
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let server = Server(child);
    let port: u16 = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            let rest = l.split("Dashboard on http://127.0.0.1:").nth(1)?;
            rest.split('/').next()?.parse().ok()
        })
        .expect("serve says where it listens");
    // Keep draining the server's stderr so it never blocks on a full pipe.
    std::thread::spawn(move || {
        lines
            .map_while(Result::ok)
            .for_each(|l| eprintln!("serve: {l}"))
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let read = Arc::new(AtomicU64::new(0));
    let url = format!("ws://127.0.0.1:{port}/ws");
    let pages = (o.series / PAGE).max(1);
    let tasks: Vec<_> = (0..o.clients as u64)
        .map(|k| {
            let page = o.page.then(|| {
                let first = (k % pages) * PAGE;
                first..(first + PAGE).min(o.series)
            });
            runtime.spawn(client(url.clone(), page, stop.clone(), read.clone()))
        })
        .collect();

    let pid = server.0.id();
    println!(
        "soak: serve (pid {pid}) with the demo source at {} events/s over {} series, {} clients \
         ({}), {:.0} min, RSS every {} s",
        o.rate,
        o.series,
        o.clients,
        if o.page {
            "each on a page"
        } else {
            "all series"
        },
        o.minutes,
        o.every
    );
    println!(
        "minutes,rss_mib,events_accepted,accepted_per_s,client_messages,\
         checkpoint_pause_ms,checkpoint_mb"
    );
    let started = Instant::now();
    let end = Duration::from_secs_f64(o.minutes * 60.0);
    let mut samples = Vec::new();
    // Accepted events at each whole minute, for the lowest rate in any minute.
    let mut minutes_accepted = vec![0u64];
    let (mut longest_pause, mut last_accepted) = (0.0f64, 0u64);
    while started.elapsed() < end {
        let (mut pause, mut bytes) = (0.0f64, 0.0f64);
        let mut last = Sample::default();
        for _ in 0..o.every {
            std::thread::sleep(Duration::from_secs(1));
            last = sample(port);
            (pause, bytes) = (pause.max(last.pause), bytes.max(last.bytes));
            if started.elapsed().as_secs() / 60 >= minutes_accepted.len() as u64 {
                minutes_accepted.push(last.accepted);
            }
        }
        longest_pause = longest_pause.max(pause);
        let minutes = started.elapsed().as_secs_f64() / 60.0;
        let rss = rss_mib(pid);
        assert!(rss > 0.0, "serve exited during the soak");
        println!(
            "{minutes:.2},{rss:.1},{},{:.0},{},{:.0},{:.1}",
            last.accepted,
            (last.accepted - last_accepted.min(last.accepted)) as f64 / o.every as f64,
            read.load(Ordering::Relaxed),
            pause * 1000.0,
            bytes / 1e6
        );
        last_accepted = last.accepted;
        samples.push((minutes, rss));
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = runtime.block_on(task);
    }
    let third = |k: usize| samples[(samples.len() * k / 3).saturating_sub(1)];
    if samples.len() >= 3 {
        let (a, b, c) = (third(1), third(2), third(3));
        println!(
            "soak: RSS {:.0} MiB at {:.0} min, {:.0} MiB at {:.0} min, {:.0} MiB at {:.0} min; \
             peak {:.0} MiB",
            a.1,
            a.0,
            b.1,
            b.0,
            c.1,
            c.0,
            samples.iter().map(|s| s.1).fold(0.0, f64::max)
        );
    }
    let per_minute: Vec<u64> = minutes_accepted.windows(2).map(|w| w[1] - w[0]).collect();
    if let Some(lowest) = per_minute.iter().skip(1).min() {
        println!(
            "soak: lowest accepted rate in a minute (after the first) {:.0}/s; longest \
             checkpoint pause {:.0} ms",
            *lowest as f64 / 60.0,
            longest_pause * 1000.0
        );
    }
    drop(server);
}
