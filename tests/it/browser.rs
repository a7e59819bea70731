//! The dashboard in a real browser: headless Chromium driven over WebDriver (Debian's chromium
//! and chromium-driver, installed by scripts/test.sh). A value sent to the pipeline appears on
//! the open series page without a reload; an alert acknowledged in one browser turns
//! "acknowledged" in another one without a reload. Screenshots go to target/screenshots/.

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::{free_port, ChildGuard};

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts chromedriver on a free port; returns it and its URL.
fn chromedriver() -> (ChildGuard, String) {
    let binary = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chromedriver not found: run ./scripts/test.sh, which installs Debian's chromium-driver");
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    wait_for_port(port, "chromedriver");
    (ChildGuard(child), format!("http://127.0.0.1:{port}"))
}

async fn browser(webdriver: &str, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1300,900", format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(webdriver)
        .await
        .expect("a WebDriver session")
}

/// Polls `check` on the page for up to 15 s.
async fn eventually(client: &Client, what: &str, script: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let value = client.execute(script, vec![]).await.unwrap();
        if value.as_bool() != Some(false) && !value.is_null() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Saves a screenshot of the page as `target/screenshots/NAME`.
async fn shoot(client: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), client.screenshot().await.unwrap()).unwrap();
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn type_into(client: &Client, css: &str, text: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .send_keys(text)
        .await
        .unwrap();
}

/// Waits until the page's WebSocket is connected.
async fn live(client: &Client) {
    eventually(
        client,
        "the live connection",
        "return document.getElementById('connection').textContent === 'live'",
    )
    .await;
}

fn line(i: i64, value: f64) -> String {
    line_of("pump", i, value)
}

fn line_of(series: &str, i: i64, value: f64) -> String {
    format!(
        "{{\"ts\":{},\"series\":\"{series}\",\"value\":{value}}}\n",
        1_764_000_000_000 + i * 1000
    )
}

/// `tidewatch serve` on a socket source (stream `plant`, alerts that stay open) into SQLite,
/// with `extra` appended to the pipeline; returns the server, its web port and the socket.
fn plant_server(dir: &std::path::Path, extra: &str) -> (ChildGuard, u16, TcpStream) {
    let socket_port = free_port();
    std::fs::write(
        dir.join("p.toml"),
        format!(
            r#"
checkpoint = {{ interval = "1s" }}

[[streams]]
name = "plant"
source = {{ kind = "socket", listen = "127.0.0.1:{socket_port}" }}
fields = {{ time = "ts", series = "series", value = "value" }}
watermark = {{ lateness = "0s" }}
analytics = {{ sma_points = 5, zscore = {{ method = "mean", window = "10m", min_samples = 10, threshold = 3.0, resolve_after = 1000 }} }}

[[sinks]]
kind = "db"
url = "sqlite://t.db"
{extra}
"#
        ),
    )
    .unwrap();
    let (server, web_port) = crate::support::serve("p.toml", dir);
    wait_for_port(socket_port, "the socket source");
    let feed = TcpStream::connect(("127.0.0.1", socket_port)).unwrap();
    (server, web_port, feed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_values_and_acknowledgement_across_two_browsers() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, web_port, mut feed) = plant_server(dir.path(), "");
    for i in 0..30 {
        feed.write_all(line(i, 10.0 + (i % 3) as f64 * 0.1).as_bytes())
            .unwrap();
    }
    feed.flush().unwrap();

    let (_driver, webdriver) = chromedriver();
    let base = format!("http://127.0.0.1:{web_port}");
    let profiles = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = browser(&webdriver, profiles.0.path()).await;
    let b = browser(&webdriver, profiles.1.path()).await;

    // A value sent now shows up on the open series page without a reload.
    a.goto(&format!("{base}/series/plant/pump")).await.unwrap();
    live(&a).await;
    feed.write_all(format!("{}{}", line(30, 10.125), line(31, 10.1)).as_bytes())
        .unwrap();
    eventually(
        &a,
        "the new value on the series page",
        "return document.getElementById('series-value').textContent === '10.125'",
    )
    .await;
    shoot(&a, "series.png").await;

    // Both browsers on the alerts page; a spike opens an alert, which appears live in both.
    b.goto(&format!("{base}/alerts")).await.unwrap();
    a.goto(&format!("{base}/alerts")).await.unwrap();
    for client in [&a, &b] {
        live(client).await;
    }
    feed.write_all(format!("{}{}", line(32, 100.0), line(33, 10.0)).as_bytes())
        .unwrap();
    for client in [&a, &b] {
        eventually(
            client,
            "the new alert, with a small chart of its series",
            "return document.querySelector('button.ack') !== null && document.querySelector('#alerts td.around svg circle') !== null",
        )
        .await;
    }
    let title = eventually(
        &b,
        "the open count in the title",
        "return document.title.startsWith('(1)') ? document.title : false",
    )
    .await;
    assert!(title.as_str().unwrap().contains("Alerts"));

    // Acknowledge in A, with a note typed into the page's dialog; B sees it without a reload.
    click(&a, "button.ack").await;
    eventually(
        &a,
        "the acknowledgement dialog, naming the series",
        "const d = document.getElementById('ack-dialog'); return d.open && d.querySelector('.target').textContent === 'plant/pump'",
    )
    .await;
    type_into(&a, "#ack-note", "checked the pump").await;
    click(&a, "#ack-confirm").await;
    eventually(
        &a,
        "the acknowledgement in A",
        "return document.querySelector('#alerts td.state').textContent === 'acknowledged'",
    )
    .await;
    let acked = eventually(&b, "the acknowledgement in B", "const s = document.querySelector('#alerts td.state'); return s && s.textContent === 'acknowledged' ? document.querySelector('#alerts td.acked').textContent : false").await;
    assert!(acked.as_str().unwrap().starts_with("anonymous"), "{acked}");
    assert!(
        acked.as_str().unwrap().contains("checked the pump"),
        "{acked}"
    );
    shoot(&b, "alerts-acknowledged.png").await;

    // The overview, for the record.
    b.goto(&format!("{base}/")).await.unwrap();
    live(&b).await;
    shoot(&b, "overview.png").await;

    // The status page: the socket's partition with its watermark, updated live.
    b.goto(&format!("{base}/status")).await.unwrap();
    eventually(
        &b,
        "the partition row",
        "const r = document.querySelector('tr[data-partition]'); return r && r.querySelector('[data-field=state]').textContent === 'active' && r.cells[0].textContent.startsWith('tcp://127.0.0.1:')",
    )
    .await;
    shoot(&b, "status.png").await;

    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// With a token, the dashboard asks for a login before acknowledging; after logging in through
/// the form (a session cookie), several alerts are acknowledged at once under the user's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_then_acknowledge_several_alerts_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, web_port, mut feed) = plant_server(dir.path(), "\n[auth]\ntoken = \"s3cret\"\n");
    // Two series with a quiet baseline, then a spike in each: two open alerts.
    let mut lines = String::new();
    for i in 0..30 {
        let wobble = (i % 3) as f64 * 0.1;
        lines += &line_of("pump", i, 10.0 + wobble);
        lines += &line_of("fan", i, 50.0 + wobble);
    }
    lines += &line_of("pump", 30, 100.0);
    lines += &line_of("fan", 30, 500.0);
    lines += &line_of("pump", 31, 10.0);
    lines += &line_of("fan", 31, 50.0);
    feed.write_all(lines.as_bytes()).unwrap();
    feed.flush().unwrap();

    let (_driver, webdriver) = chromedriver();
    let base = format!("http://127.0.0.1:{web_port}");
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&webdriver, profile.path()).await;
    client.goto(&format!("{base}/alerts")).await.unwrap();
    eventually(
        &client,
        "two alerts offering a login",
        "return document.querySelectorAll('a.login-to-ack').length === 2 && !document.querySelector('button.ack, #pick-all')",
    )
    .await;

    click(&client, "a.login-to-ack").await;
    eventually(
        &client,
        "the login form",
        "return location.pathname === '/login' && document.querySelector('form.login') !== null",
    )
    .await;
    shoot(&client, "login.png").await;
    type_into(&client, "form.login input[name=name]", "Ana Ops").await;
    type_into(&client, "form.login input[name=token]", "s3cret").await;
    click(&client, "form.login button[type=submit]").await;

    // Back on the alerts page, logged in: select both and acknowledge them with one note.
    eventually(
        &client,
        "the alerts page, logged in",
        "return location.pathname === '/alerts' && document.querySelectorAll('input.pick').length === 2 && document.querySelector('header .user').textContent === 'Ana Ops'",
    )
    .await;
    live(&client).await;
    click(&client, "#pick-all").await;
    type_into(&client, "#bulk-note", "planned maintenance").await;
    let button = client.find(Locator::Css("#ack-selected")).await.unwrap();
    assert_eq!(button.text().await.unwrap(), "Acknowledge 2 selected");
    button.click().await.unwrap();
    let acked = eventually(
        &client,
        "both acknowledged",
        "const rows = [...document.querySelectorAll('#alerts tbody tr[data-id]')]; return rows.length === 2 && rows.every((r) => r.querySelector('td.state').textContent === 'acknowledged') ? rows.map((r) => r.querySelector('td.acked').textContent) : false",
    )
    .await;
    for text in acked.as_array().unwrap() {
        let text = text.as_str().unwrap();
        assert!(
            text.starts_with("Ana Ops") && text.contains("planned maintenance"),
            "{text}"
        );
    }
    shoot(&client, "alerts-bulk-acknowledged.png").await;
    client.close().await.unwrap();
}

/// The overview with 100,000 series: Chromium shows its first page and then a live update of a
/// row on it. How long the page took and the update took are printed (not asserted: speed is
/// for benchmarks); the screenshot is `target/screenshots/overview-100k.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_of_a_hundred_thousand_series_loads_and_updates_live() {
    const SERIES: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let (server, web_port, mut feed) = plant_server(dir.path(), "");
    // One point per series, then a later one that moves the watermark past them all.
    let mut text = String::with_capacity(SERIES * 80);
    for i in 0..SERIES {
        text.push_str(&line_of(&format!("device-{i:06}"), 0, 1.0));
    }
    text.push_str(&line_of("device-000000", 1, 1.0));
    feed.write_all(text.as_bytes()).unwrap();
    feed.flush().unwrap();
    let base = format!("http://127.0.0.1:{web_port}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !crate::support::http_get(web_port, "/api/series?limit=1")
        .is_some_and(|body| body.contains("device-"))
        || !crate::support::http_get(web_port, "/")
            .is_some_and(|page| page.contains("100000 series"))
    {
        assert!(
            Instant::now() < deadline,
            "100,000 series not in the live view within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (_driver, webdriver) = chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&webdriver, profile.path()).await;
    let opened = Instant::now();
    client.goto(&format!("{base}/")).await.unwrap();
    live(&client).await;
    let loaded = opened.elapsed();
    let rows = eventually(
        &client,
        "the first page",
        "return document.querySelectorAll('#series tbody tr[data-name]').length",
    )
    .await;
    assert_eq!(rows, 50);

    // A new value for the first row reaches the open page without a reload.
    let sent = Instant::now();
    feed.write_all(line_of("device-000000", 2, 4242.0).as_bytes())
        .unwrap();
    feed.write_all(line_of("device-000000", 3, 1.0).as_bytes())
        .unwrap();
    feed.flush().unwrap();
    eventually(
        &client,
        "the live update",
        "const r = document.querySelector('#series tr[data-name=\"plant/device-000000\"]'); return r && r.querySelector('.value').textContent.startsWith('4242')",
    )
    .await;
    let updated = sent.elapsed();
    shoot(&client, "overview-100k.png").await;
    eprintln!(
        "overview of {SERIES} series: page live after {loaded:?}, an update shown after {updated:?}"
    );
    client.close().await.unwrap();
    drop(server);
}
