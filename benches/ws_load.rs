//! WebSocket fan-out under load: many dashboard clients on one server while the demo source
//! runs fast. Loopback only, bounded in clients and time.
//!
//!     cargo bench --bench ws_load                       # 1,000 clients, 20,000 events/s, 15 s
//!     cargo bench --bench ws_load -- --clients 200 --rate 5000 --seconds 10
//!     cargo bench --bench ws_load -- --series 100000 --page   # clients as overview pages
//!
//! With `--page`, each client does what an overview page does (protocol v2): it subscribes to
//! the 50 series of one page (client k to page k, wrapping around) and hears of those only.
//! Without it, clients take every series (`all`).
//!
//! Latency is measured from the moment the engine's output reaches the live hub (the point
//! leaves the engine: it was released by the watermark) to the moment a client has read and
//! parsed the message that carries it. The wait in the engine's reorder buffer before that is
//! the configured lateness (event-time order is the contract), reported separately as "event
//! time → client". CPU is read per thread from /proc: the pipeline thread, the server's
//! runtime threads and the clients' runtime threads (all in this one process).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde::Deserialize;
use tidewatch::record::Record;
use tidewatch::web::{self, AppState};
use tidewatch::Config;
use tidewatch::{LiveSink, LiveState};
use tidewatch::{Mode, Outputs, Pipeline};
use tidewatch::{Sink, SinkError};
use tokio_tungstenite::tungstenite::Message;

struct Options {
    /// Clients subscribe to a page (the snapshot's series) rather than to every series.
    page: bool,
    clients: usize,
    rate: u64,
    series: usize,
    seconds: u64,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    Options {
        page: args.iter().any(|a| a == "--page"),
        clients: value("--clients", 1000) as usize,
        rate: value("--rate", 20_000),
        series: value("--series", 20) as usize,
        seconds: value("--seconds", 15),
    }
}

/// When each point reached the live hub, by (series, event time).
type Stamps = Arc<RwLock<HashMap<(String, i64), Instant>>>;

/// The live sink, noting when each point is handed to it.
struct Stamping {
    inner: LiveSink,
    stamps: Stamps,
    last_prune: Instant,
}

impl Sink for Stamping {
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        {
            let now = Instant::now();
            let mut stamps = self.stamps.write().unwrap();
            for record in records {
                if let Record::Point(p) = record {
                    stamps.entry((p.series.to_string(), p.ts)).or_insert(now);
                }
            }
            if self.last_prune.elapsed() > Duration::from_secs(5) {
                stamps.retain(|_, at| at.elapsed() < Duration::from_secs(30));
                self.last_prune = now;
            }
        }
        self.inner.write(records)
    }

    fn flush(&mut self, epoch: u64) -> Result<(), SinkError> {
        self.inner.flush(epoch)
    }
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default, borrow)]
    updates: Vec<Update<'a>>,
}

/// Series an overview page shows.
const PAGE: usize = 50;

#[derive(Deserialize)]
struct Update<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    series: Option<&'a str>,
    #[serde(default)]
    ts: Option<i64>,
}

#[derive(Default)]
struct ClientStats {
    /// Hub → client, microseconds.
    latency_us: Vec<u32>,
    /// Event time → client, milliseconds.
    event_age_ms: Vec<u32>,
    messages: u64,
    bytes: u64,
    snapshots: u64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn client(
    url: String,
    page: Option<std::ops::Range<usize>>,
    stamps: Stamps,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    connected: Arc<AtomicU64>,
) -> ClientStats {
    let mut stats = ClientStats::default();
    let (mut socket, _) = match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok(ok) => ok,
        Err(error) => {
            eprintln!("connect failed: {error}");
            return stats;
        }
    };
    if let Some(names) = page {
        // The demo source names its series s0000, s0001, ...
        let series: Vec<serde_json::Value> = names
            .map(|i| serde_json::json!({ "stream": "demo", "series": format!("s{i:04}") }))
            .collect();
        let request = serde_json::json!({ "subscribe": { "series": series } });
        let sent =
            futures_util::SinkExt::send(&mut socket, Message::Text(request.to_string().into()));
        if sent.await.is_err() {
            return stats;
        }
    }
    connected.fetch_add(1, Ordering::Relaxed);
    while !stop.load(Ordering::Relaxed) {
        let next = tokio::time::timeout(Duration::from_millis(500), socket.next()).await;
        let text = match next {
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) | Err(_) => continue,
            Ok(Some(Err(_))) | Ok(None) => break,
        };
        let received = Instant::now();
        let Ok(incoming) = serde_json::from_str::<Incoming>(&text) else {
            continue;
        };

        if !measuring.load(Ordering::Relaxed) {
            continue;
        }
        stats.messages += 1;
        stats.bytes += text.len() as u64;
        if incoming.kind == "snapshot" {
            stats.snapshots += 1;
        }
        let wall = now_ms();
        let stamps = stamps.read().unwrap();
        for update in incoming.updates.iter().filter(|u| u.kind == "point") {
            let (Some(series), Some(ts)) = (update.series, update.ts) else {
                continue;
            };
            if let Some(at) = stamps.get(&(series.to_owned(), ts)) {
                let us = received.saturating_duration_since(*at).as_micros();
                stats.latency_us.push(us.min(u32::MAX as u128) as u32);
            }
            stats
                .event_age_ms
                .push((wall - ts).clamp(0, u32::MAX as i64) as u32);
        }
    }
    stats
}

/// CPU seconds per thread-name prefix, from /proc/self/task/*/stat.
fn cpu_by_thread() -> HashMap<String, f64> {
    let mut cpu = HashMap::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        let group = ["pipeline", "server", "client"]
            .into_iter()
            .find(|g| name.starts_with(g))
            .unwrap_or("other");
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // utime and stime are fields 14 and 15 of stat (11 and 12 after the name), in ticks.
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        *cpu.entry(group.to_owned()).or_default() += ticks / 100.0;
    }
    cpu
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench targets too; the load test is for `cargo bench`.
        eprintln!("ws_load: a load benchmark; run it with `cargo bench --bench ws_load`");
        return;
    }
    let options = options();
    let config = Config::from_toml_str(&format!(
        r#"
[[streams]]
name = "demo"
source = {{ kind = "demo", rate = {}, series = {} }}
fields = {{ time = "ts", series = "series", value = "value", id = "id" }}
watermark = {{ lateness = "6s", idle_timeout = "30s" }}
dedup = {{ horizon = "1m" }}
windows = [{{ kind = "tumbling", size = "10s" }}]
analytics = {{ sma_points = 20, zscore = {{ window = "1m", min_samples = 30 }} }}

[[sinks]]
kind = "console"

[checkpoint]
interval = "1h"
"#,
        options.rate, options.series
    ))
    .unwrap();

    let live = LiveState::new();
    let stamps: Stamps = Arc::default();
    let stop_pipeline = tidewatch::Shutdown::new();
    let pipeline = {
        let live = live.clone();
        let stamps = stamps.clone();
        let stop = stop_pipeline.clone();
        std::thread::Builder::new()
            .name("pipeline".into())
            .spawn(move || {
                let outputs = Outputs {
                    database: None,
                    sinks: vec![Box::new(Stamping {
                        inner: LiveSink::new(live.clone()),
                        stamps,
                        last_prune: Instant::now(),
                    })],
                    checkpoints: None,
                    status: Some(live.status_sender()),
                };
                Pipeline::open(&config, outputs, Mode::Continuous { stop }).and_then(Pipeline::run)
            })
            .unwrap()
    };

    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server")
        .enable_all()
        .build()
        .unwrap();
    let listener = server
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap();
    let state = AppState::new(live.clone(), None, web::auth::Auth::open());
    let stop_server = Arc::new(AtomicBool::new(false));
    {
        let stop = stop_server.clone();
        server.spawn(web::serve(listener, state, async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }

    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("client")
        .enable_all()
        .build()
        .unwrap();
    let measuring = Arc::new(AtomicBool::new(false));
    let stop_clients = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicU64::new(0));
    let url = format!("ws://{address}/ws");
    let started = Instant::now();
    let handles: Vec<_> = (0..options.clients)
        .map(|i| {
            if i % 50 == 49 {
                std::thread::sleep(Duration::from_millis(20));
            }
            clients.spawn(client(
                url.clone(),
                options.page.then(|| {
                    let pages = (options.series / PAGE).max(1);
                    let first = (i % pages) * PAGE;
                    first..(first + PAGE).min(options.series)
                }),
                stamps.clone(),
                measuring.clone(),
                stop_clients.clone(),
                connected.clone(),
            ))
        })
        .collect();
    while (connected.load(Ordering::Relaxed) as usize) < options.clients {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {} of {} clients connected within 60 s",
            connected.load(Ordering::Relaxed),
            options.clients
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "{} clients connected in {:.1} s; warming up",
        options.clients,
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(3));

    let accepted =
        |live: &LiveState| -> u64 { live.status().streams.iter().map(|s| s.accepted).sum() };
    let cpu_before = cpu_by_thread();
    let events_before = accepted(&live);
    let window = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(options.seconds));
    measuring.store(false, Ordering::Relaxed);
    let elapsed = window.elapsed().as_secs_f64();
    let events = accepted(&live) - events_before;
    let cpu_after = cpu_by_thread();

    stop_clients.store(true, Ordering::Relaxed);
    let stats: Vec<ClientStats> = handles
        .into_iter()
        .map(|h| clients.block_on(h).unwrap())
        .collect();
    stop_server.store(true, Ordering::Relaxed);
    stop_pipeline.trigger();
    pipeline.join().unwrap().unwrap();

    let mut latency: Vec<u32> = stats
        .iter()
        .flat_map(|s| s.latency_us.iter().copied())
        .collect();
    let mut age: Vec<u32> = stats
        .iter()
        .flat_map(|s| s.event_age_ms.iter().copied())
        .collect();
    latency.sort_unstable();
    age.sort_unstable();
    let messages: u64 = stats.iter().map(|s| s.messages).sum();
    let bytes: u64 = stats.iter().map(|s| s.bytes).sum();
    let snapshots: u64 = stats.iter().map(|s| s.snapshots).sum();
    let idle = stats.iter().filter(|s| s.messages == 0).count();
    let ms = |us: u32| us as f64 / 1000.0;
    println!(
        "ws_load: {} clients ({}), demo source at {} events/s over {} series, {elapsed:.1} s measured",
        options.clients,
        if options.page { "each subscribed to a page" } else { "all series" },
        options.rate,
        options.series
    );
    println!(
        "  events accepted by the engine: {:.0}/s",
        events as f64 / elapsed
    );
    println!(
        "  delivered: {:.0} messages/s ({:.1} MB/s), {:.0} point updates/s; {} clients got nothing; {snapshots} resync snapshots",
        messages as f64 / elapsed,
        bytes as f64 / elapsed / 1e6,
        latency.len() as f64 / elapsed,
        idle
    );
    println!(
        "  hub -> client latency: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        ms(percentile(&latency, 0.5)),
        ms(percentile(&latency, 0.9)),
        ms(percentile(&latency, 0.99)),
        ms(latency.last().copied().unwrap_or(0)),
        latency.len()
    );
    println!(
        "  event time -> client (includes the 6 s lateness the engine waits): p50 {} ms, p99 {} ms",
        percentile(&age, 0.5),
        percentile(&age, 0.99)
    );
    let mut groups: Vec<_> = cpu_after.keys().cloned().collect();
    groups.sort();
    let usage: Vec<String> = groups
        .iter()
        .map(|g| {
            let used = cpu_after[g] - cpu_before.get(g).copied().unwrap_or(0.0);
            format!("{g} {:.0} %", used / elapsed * 100.0)
        })
        .collect();
    println!("  CPU (100 % = one core): {}", usage.join(", "));
}
