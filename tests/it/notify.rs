//! Alert notifications against real receivers: a local webhook that fails for a while, one
//! that is down across a restart, and Prometheus Alertmanager (Debian's
//! `prometheus-alertmanager`, started here) with an acknowledgement made on the dashboard.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::receiver::Receiver;
use crate::support::{
    assert_success, free_port, http_get, http_post_json, read_ndjson, serve, tidewatch, ChildGuard,
};

fn pipeline(notify: &str) -> String {
    pipeline_over(
        &format!("{}/config/data/sensors.ndjson", env!("CARGO_MANIFEST_DIR")),
        notify,
    )
}

fn pipeline_over(data: &str, notify: &str) -> String {
    format!(
        r#"
[[streams]]
name = "sensors"
source = {{ kind = "file", path = "{data}" }}
fields = {{ time = "ts", series = "series", value = "value", id = "id" }}
watermark = {{ lateness = "10s" }}
windows = [{{ kind = "tumbling", size = "1m" }}]
analytics = {{}}

[[sinks]]
kind = "ndjson"
path = "out"

[[sinks]]
kind = "db"
url = "sqlite://tidewatch.db"

{notify}
"#
    )
}

/// `(alert id, event)` of every alert the run wrote: `open` for each alert, `resolved` for
/// those that resolved.
fn expected_events(dir: &Path) -> BTreeSet<(String, String)> {
    let alerts = read_ndjson(&dir.join("out/alerts.ndjson"));
    assert!(!alerts.is_empty(), "the test data raises alerts");
    alerts
        .iter()
        .map(|a| {
            let event = match a["state"].as_str().unwrap() {
                "resolved" => "resolved",
                _ => "open",
            };
            (a["id"].as_str().unwrap().to_owned(), event.to_owned())
        })
        .collect()
}

/// `(alert id, event)` of the requests the receiver accepted, each once.
fn delivered_events(receiver: &Receiver) -> Vec<(String, String)> {
    receiver
        .requests()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body).unwrap();
            (
                body["alert"]["id"].as_str().unwrap().to_owned(),
                body["event"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn webhook(port: u16) -> String {
    format!(
        r#"[[notify]]
kind = "webhook"
name = "ops"
url = "http://127.0.0.1:{port}/hook"
dashboard_url = "https://dash.example"
headers = {{ "X-Token" = "s3cret" }}"#
    )
}

#[test]
fn a_webhook_that_fails_for_a_while_gets_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(0, 3);
    std::fs::write(dir.path().join("p.toml"), pipeline(&webhook(receiver.port))).unwrap();
    assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        dir.path(),
    ));

    let expected = expected_events(dir.path());
    let delivered = delivered_events(&receiver);
    let unique: BTreeSet<(String, String)> = delivered.iter().cloned().collect();
    assert_eq!(
        unique, expected,
        "every opening and resolution, nothing else"
    );
    assert_eq!(delivered.len(), expected.len(), "each once");
    let requests = receiver.requests();
    assert_eq!(
        requests.iter().filter(|r| r.status == 500).count(),
        3,
        "the failures were retried"
    );
    let first = &requests[0];
    assert_eq!(first.path, "/hook");
    assert!(
        first
            .headers
            .contains(&("x-token".to_owned(), "s3cret".to_owned())),
        "{:?}",
        first.headers
    );
    let body: Value = serde_json::from_str(&requests.last().unwrap().body).unwrap();
    assert!(body["link"]
        .as_str()
        .unwrap()
        .starts_with("https://dash.example/series/sensors/"));
    assert!(body["text"].as_str().unwrap().contains("sensors/"));

    // A replay of the same input (a second run from scratch over the same store) notifies
    // nobody again.
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    let db = tidewatch::DbSink::connect(&format!("sqlite://{}/tidewatch.db", dir.path().display()))
        .unwrap();
    db.fetch_all("DELETE FROM checkpoints").unwrap();
    drop(db);
    assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        dir.path(),
    ));
    assert_eq!(delivered_events(&receiver).len(), expected.len());
}

#[test]
fn notifications_wait_in_the_outbox_while_the_receiver_is_down_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(dir.path().join("p.toml"), pipeline(&webhook(port))).unwrap();
    // Nobody listens: the run ends, the notifications stay.
    assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        dir.path(),
    ));
    let expected = expected_events(dir.path());
    let db = tidewatch::DbSink::connect(&format!("sqlite://{}/tidewatch.db", dir.path().display()))
        .unwrap();
    let rows = db
        .fetch_all(
            "SELECT COUNT(*), MAX(attempts), MAX(last_error) FROM notifications \
             WHERE delivered_at IS NULL",
        )
        .unwrap();
    use sqlx::Row;
    let pending: i64 = rows[0].try_get(0).unwrap();
    let attempts: i64 = rows[0].try_get(1).unwrap();
    let error: String = rows[0].try_get(2).unwrap();
    assert_eq!(pending as usize, expected.len());
    assert!(
        attempts >= 2,
        "the oldest was tried again before the run gave up for now"
    );
    assert!(error.contains("request failed"), "{error}");
    drop(db);

    // The receiver is back; the next start delivers what waited, once each.
    let receiver = Receiver::start(port, 0);
    assert_success(&tidewatch(
        &["run", "--once", "--config", "p.toml"],
        dir.path(),
    ));
    let delivered = delivered_events(&receiver);
    assert_eq!(delivered.len(), expected.len());
    assert_eq!(delivered.into_iter().collect::<BTreeSet<_>>(), expected);
}

/// Prometheus Alertmanager on a loopback port, with a receiver that sends nothing anywhere.
struct Alertmanager {
    _process: ChildGuard,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    fn start() -> Alertmanager {
        let binary = "/usr/bin/prometheus-alertmanager";
        assert!(
            Path::new(binary).exists(),
            "{binary} is missing: install the Debian package prometheus-alertmanager \
             (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: nobody\n  group_wait: 1s\nreceivers:\n  - name: nobody\n",
        )
        .unwrap();
        let port = free_port();
        let mut process = ChildGuard(
            std::process::Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=")
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("am.log")).unwrap())
                .spawn()
                .expect("alertmanager starts"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(port, "/-/ready").is_none() {
            assert!(process.is_running(), "alertmanager exited");
            assert!(Instant::now() < deadline, "alertmanager not ready in 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Alertmanager {
            _process: process,
            port,
            _dir: dir,
        }
    }

    /// The alerts Alertmanager holds as active, by their `tidewatch_alert_id` annotation.
    fn alerts(&self) -> BTreeMap<String, Value> {
        let body = http_get(self.port, "/api/v2/alerts").expect("GET /api/v2/alerts");
        let alerts: Vec<Value> = serde_json::from_str(&body).unwrap();
        alerts
            .into_iter()
            .map(|a| {
                let id = a["annotations"]["tidewatch_alert_id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                (id, a)
            })
            .collect()
    }

    /// Waits until `done` holds for its alerts.
    fn wait_for(&self, what: &str, done: impl Fn(&BTreeMap<String, Value>) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let alerts = self.alerts();
            if done(&alerts) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "alertmanager: {what} within 30 s; it holds {alerts:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn alertmanager_holds_the_open_alerts_and_hears_of_acknowledgements() {
    let am = Alertmanager::start();
    let dir = tempfile::tempdir().unwrap();
    let notify = format!(
        r#"[[notify]]
kind = "alertmanager"
url = "http://127.0.0.1:{}"
dashboard_url = "http://dash.example:8080"
repeat = "2s""#,
        am.port
    );
    // The stock data, then a spike of pump-7 that no normal point of pump-7 follows (its alert
    // stays open) while the other series move the watermark past it.
    let mut data = std::fs::read_to_string(format!(
        "{}/config/data/sensors.ndjson",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let end = 1_764_000_900_000_i64;
    data.push_str(&format!(
        "{{\"ts\":{end},\"series\":\"pump-7\",\"value\":900.0,\"id\":\"spike-1\"}}\n"
    ));
    for i in 1..=60 {
        for (series, value) in [("boiler-1", 61.0), ("boiler-2", 80.0)] {
            data.push_str(&format!(
                "{{\"ts\":{},\"series\":\"{series}\",\"value\":{value},\"id\":\"tail-{series}-{i}\"}}\n",
                end + i * 1000
            ));
        }
    }
    let data_path = dir.path().join("sensors.ndjson");
    std::fs::write(&data_path, data).unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        pipeline_over(data_path.to_str().unwrap(), &notify),
    )
    .unwrap();
    let (_server, port) = serve("p.toml", dir.path());

    // Wait for the file to be read through: its alerts in the store, their number steady.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (0, Instant::now());
    let (open, resolved) = loop {
        let body = http_get(port, "/api/alerts?limit=5000").unwrap_or_default();
        let alerts: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
        if alerts.len() != last.0 {
            last = (alerts.len(), Instant::now());
        } else if !alerts.is_empty() && last.1.elapsed() > Duration::from_secs(3) {
            let of = |state: &str| -> BTreeSet<String> {
                alerts
                    .iter()
                    .filter(|a| a["state"] == state)
                    .map(|a| a["id"].as_str().unwrap().to_owned())
                    .collect()
            };
            break (of("open"), of("resolved"));
        }
        assert!(Instant::now() < deadline, "no steady alerts within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!open.is_empty(), "the data leaves some alerts open");

    // Firing in Alertmanager: the open ones, with labels and a link; not the resolved ones.
    am.wait_for("the open alerts", |held| {
        open.iter().all(|id| held.contains_key(id))
            && resolved.iter().all(|id| !held.contains_key(id))
    });
    let held = am.alerts();
    let one = &held[open.iter().next().unwrap()];
    assert_eq!(one["labels"]["alertname"], "TidewatchAnomaly");
    assert_eq!(one["labels"]["stream"], "sensors");
    assert!(one["labels"]["severity"].is_string());
    assert!(one["annotations"]["dashboard"]
        .as_str()
        .unwrap()
        .starts_with("http://dash.example:8080/series/sensors/"));

    // Acknowledged on the dashboard: Alertmanager's alert says by whom.
    let id = open.iter().next().unwrap().clone();
    let (status, body) = http_post_json(
        port,
        &format!("/api/alerts/{id}/ack"),
        r#"{"by": "ana", "note": "on it"}"#,
    );
    assert_eq!(status, 200, "{body}");
    am.wait_for("the acknowledgement", |held| {
        held.get(&id)
            .is_some_and(|a| a["annotations"]["acknowledged_by"] == "ana")
    });
    assert_eq!(
        am.alerts()[&id]["annotations"]["acknowledgement_note"],
        "on it"
    );
    let deliveries: Vec<Value> =
        serde_json::from_str(&http_get(port, &format!("/api/alerts/{id}/notifications")).unwrap())
            .unwrap();
    let events: BTreeSet<&str> = deliveries
        .iter()
        .filter(|d| d["delivered_at"].is_i64())
        .map(|d| d["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, BTreeSet::from(["acknowledged", "open"]));
    let page = http_get(port, "/alerts").unwrap();
    assert!(
        page.contains("notified: alertmanager"),
        "the alerts page shows it"
    );
}
