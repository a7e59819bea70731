//! The web layer in-process (tower `oneshot`): pages render live data escaped, the JSON API and
//! `/metrics` answer, and an acknowledgement is checked, stored, then broadcast.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::Value;
use tidewatch::record::{
    AlertMethod, AlertRecord, AlertState, Direction, PointRecord, Record, Severity, Trend,
};
use tidewatch::web::auth::{Auth, SESSION_COOKIE};
use tidewatch::web::{router, AppState, WebConfig};
use tidewatch::Store;
use tidewatch::{DbSink, Sink};
use tidewatch::{LiveSink, LiveState, Update};
use tower::ServiceExt;

const EVIL: &str = "<script>alert(1)</script>";

fn point(series: &str, ts: i64, value: f64) -> Record {
    Record::Point(PointRecord {
        stream: "s".into(),
        series: series.into(),
        ts,
        value,
        sma: value,
        ewma: value,
        slope: Some(0.5),
        trend: Trend::Rising,
        z: Some(4.2),
        anomaly: true,
        expected: Some(value - 4.2),
        spread: Some(1.0),
        lower: Some(value - 7.2),
        upper: Some(value - 1.2),
    })
}

/// An open alert of stream `s` (its series a name that needs escaping everywhere).
pub(crate) fn alert(id: &str) -> AlertRecord {
    AlertRecord {
        id: id.into(),
        stream: "s".into(),
        series: EVIL.into(),
        ts: 1_000,
        value: 9.0,
        expected: 1.0,
        stddev: 2.0,
        lower: Some(-5.0),
        upper: Some(7.0),
        z: 4.0,
        score: Some(6.5),
        probability: Some(4e-11),
        method: AlertMethod::Likelihood,
        expectation: Some("1d".into()),
        direction: Direction::High,
        severity: Severity::Warning,
        episode_start: 1_000,
        state: AlertState::Open,
        acked_by: None,
        acked_at: None,
        note: None,
        verdict: None,
    }
}

async fn body_text(response: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    (response.status(), body_text(response).await)
}

fn ack_request(id: &str, _body: &str) -> axum::http::request::Builder {
    Request::post(format!("/api/alerts/{id}/ack")).header(header::HOST, "localhost:8080")
}

/// A live state with two series (one with a hostile name) and a store holding one open alert.
async fn fixture(token: Option<&str>) -> (axum::Router, Arc<LiveState>, tempfile::TempDir) {
    fixture_with(Auth::new(token, false)).await
}

async fn fixture_with(auth: Auth) -> (axum::Router, Arc<LiveState>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let live = LiveState::new();
    let mut live_sink = LiveSink::new(live.clone());
    let records = vec![
        point(EVIL, 1_000, 1.5),
        point("plain", 1_000, 2.0),
        point("plain", 2_000, 3.0),
        Record::Alert(Box::new(alert("a1"))),
    ];
    live_sink.write(&records).unwrap();
    // The db sink runs its own runtime: create, use and drop it off the async threads.
    tokio::task::spawn_blocking({
        let url = url.clone();
        move || write_to_db(&url, &records)
    })
    .await
    .unwrap();
    let store = Store::connect(&url).await.unwrap();
    let app = router(AppState::new(live.clone(), Some(store), auth));
    (app, live, dir)
}

#[tokio::test]
async fn pages_render_live_data_and_escape_names() {
    let (app, live, _dir) = fixture(None).await;
    let (status, html) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("plain") && html.contains("3.000"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
            || html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "series name escaped: {html}"
    );
    assert!(
        !html.contains(EVIL),
        "raw markup from a series name reached the page"
    );
    assert!(html.contains("anomalous"));
    let (status, html) = get(&app, "/alerts").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("data-id=\"a1\"") && html.contains("Acknowledge"));
    assert!(!html.contains(EVIL));
    assert!(
        !html.contains("alert-spark"),
        "one point around the alert is no chart"
    );

    // With the series around the alert in memory, the alert shows a small chart of it, the
    // alert's point (the first, at 1000, of 1000..3000) marked.
    LiveSink::new(live.clone())
        .write(&[point(EVIL, 2_000, 2.0), point(EVIL, 3_000, 1.0)])
        .unwrap();
    let (_, html) = get(&app, "/alerts").await;
    assert!(html.contains("class=\"spark alert-spark\""), "{html}");
    assert!(html.contains("<circle cx=\"0.0\" cy=\"14.0\""), "{html}");
    let (status, _) = get(&app, "/alerts?state=bogus").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, css) = get(&app, "/static/app.css").await;
    assert_eq!(status, StatusCode::OK);
    assert!(css.contains("--accent"));
}

#[tokio::test]
async fn api_health_and_metrics_answer() {
    let (app, _live, _dir) = fixture(None).await;
    assert_eq!(
        get(&app, "/healthz").await,
        (StatusCode::OK, "ok".to_owned())
    );
    let (status, json) = get(&app, "/api/series").await;
    assert_eq!(status, StatusCode::OK);
    let list: Vec<Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(list.len(), 2);
    let (status, json) = get(&app, "/api/series/s/plain").await;
    assert_eq!(status, StatusCode::OK);
    let view: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(view["recent"].as_array().unwrap().len(), 2);
    assert_eq!(
        get(&app, "/api/series/s/nope").await.0,
        StatusCode::NOT_FOUND
    );
    let (status, json) = get(&app, "/api/alerts?state=open").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&json).unwrap()[0]["id"],
        "a1"
    );
    assert_eq!(
        get(&app, "/api/alerts?state=maybe").await.0,
        StatusCode::BAD_REQUEST
    );
    let (status, metrics) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(metrics.contains("tidewatch_series 2"), "{metrics}");
    assert!(
        metrics.contains("tidewatch_live_evicted_total 0"),
        "{metrics}"
    );
    let memory: usize = metrics
        .lines()
        .find_map(|line| line.strip_prefix("tidewatch_live_memory_bytes "))
        .and_then(|n| n.parse().ok())
        .expect("tidewatch_live_memory_bytes");
    assert!(
        (1_000..100_000).contains(&memory),
        "{memory} bytes for 2 series"
    );
    assert!(
        metrics.contains("tidewatch_records_total{kind=\"points\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("tidewatch_open_alerts 1"), "{metrics}");
}

#[tokio::test]
async fn acknowledgement_is_checked_stored_then_broadcast() {
    let (app, live, _dir) = fixture(None).await;
    let send = |request: Request<Body>| {
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            (status, body_text(response).await)
        }
    };
    let json = |id: &str, body: &str| {
        ack_request(id, body)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    // Not JSON (a cross-site form could send this): refused.
    let form = ack_request("a1", "")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("note=x"))
        .unwrap();
    assert_eq!(send(form).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Another origin: refused.
    let foreign = ack_request("a1", "{}")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(send(foreign).await.0, StatusCode::FORBIDDEN);
    let (status, error) = send(json("a1", "{\"note\": 5}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error.contains("invalid body"), "{error}");
    let long = format!("{{\"note\": \"{}\"}}", "x".repeat(2001));
    assert_eq!(send(json("a1", &long)).await.0, StatusCode::BAD_REQUEST);
    let huge = format!("{{\"note\": \"{}\"}}", "x".repeat(40_000));
    assert_eq!(
        send(json("a1", &huge)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(send(json("nope", "{}")).await.0, StatusCode::NOT_FOUND);

    let mut updates = live.subscribe();
    let same_origin = ack_request("a1", "")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, "http://localhost:8080")
        .body(Body::from(format!(
            "{{\"by\": \"ops\", \"note\": \"{EVIL}\"}}"
        )))
        .unwrap();
    let (status, body) = send(same_origin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let acked: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (acked["state"].as_str(), acked["acked_by"].as_str()),
        (Some("acknowledged"), Some("ops"))
    );
    // Stored: the store answers with it.
    let (_, stored) = get(&app, "/api/alerts?state=acknowledged").await;
    let stored: Vec<Value> = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["note"], EVIL);
    // Broadcast to every client.
    match updates.try_recv().as_deref() {
        Ok([Update::Ack(a)]) => {
            assert_eq!((a.id.as_str(), a.state), ("a1", AlertState::Acknowledged))
        }
        other => panic!("expected an ack broadcast, got {other:?}"),
    }
    // The note is shown escaped on the page.
    let (_, html) = get(&app, "/alerts").await;
    assert!(
        (html.contains("&lt;script&gt;") || html.contains("&#60;script&#62;"))
            && !html.contains(EVIL)
    );
}

#[tokio::test]
async fn verdicts_are_stored_with_acknowledgements_shown_per_stream_and_exported() {
    let (app, live, dir) = fixture(None).await;
    // Two more alerts, so there is one of each kind of judgement.
    let more = vec![
        Record::Alert(Box::new(alert("a2"))),
        Record::Alert(Box::new(alert("a3"))),
    ];
    let url = format!("sqlite://{}/t.db", dir.path().display());
    tokio::task::spawn_blocking(move || write_to_db(&url, &more))
        .await
        .unwrap();
    let post = |uri: &str, body: &str| {
        let app = app.clone();
        let request = Request::post(uri)
            .header(header::HOST, "localhost:8080")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            (status, body_text(response).await)
        }
    };
    // An unknown verdict is refused with a reason and judges nothing.
    let (status, error) = post("/api/alerts/a1/ack", r#"{"verdict": "maybe"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error.contains("verdict"), "{error}");

    let mut updates = live.subscribe();
    let (status, body) = post("/api/alerts/a1/ack", r#"{"verdict": "false_alarm"}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let judged: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(judged["verdict"], "false_alarm");
    assert_eq!(judged["state"], "acknowledged");
    // The WebSocket hears of it with the verdict.
    match updates.try_recv().as_deref() {
        Ok([Update::Ack(a)]) => {
            assert_eq!(a.verdict, Some(tidewatch::record::Verdict::FalseAlarm))
        }
        other => panic!("expected an ack broadcast, got {other:?}"),
    }
    // Acknowledging again without a verdict keeps it; with one, replaces it.
    let (_, body) = post("/api/alerts/a1/ack", r#"{"note": "looked again"}"#).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["verdict"],
        "false_alarm"
    );
    let (status, body) = post(
        "/api/alerts/ack",
        r#"{"ids": ["a2", "a3"], "verdict": "real"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = post("/api/alerts/a3/ack", r#"{"verdict": "false_alarm"}"#).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["verdict"],
        "false_alarm"
    );

    // A replay of the engine's records does not undo a person's verdict.
    let replay = vec![Record::Alert(Box::new(alert("a1")))];
    let url = format!("sqlite://{}/t.db", dir.path().display());
    tokio::task::spawn_blocking(move || write_to_db(&url, &replay))
        .await
        .unwrap();

    // Exported by verdict.
    let ids = |json: &str| {
        let mut ids: Vec<String> = serde_json::from_str::<Vec<Value>>(json)
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let (_, false_alarms) = get(&app, "/api/alerts?verdict=false_alarm").await;
    assert_eq!(ids(&false_alarms), ["a1", "a3"]);
    let (_, real) = get(&app, "/api/alerts?verdict=real").await;
    assert_eq!(ids(&real), ["a2"]);
    let (_, unjudged) = get(&app, "/api/alerts?verdict=none").await;
    assert!(ids(&unjudged).is_empty());
    let (status, _) = get(&app, "/api/alerts?verdict=perhaps").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The alerts page shows the share of false alarms among judged alerts per stream.
    let (_, html) = get(&app, "/alerts").await;
    let table = &html[html.find("Judged alerts").expect("the verdicts table")..];
    let row = &table[table.find("<td>s</td>").unwrap()..];
    assert!(
        row.starts_with("<td>s</td><td>3</td><td>2</td><td class=\"share\">67 %</td>"),
        "{}",
        &row[..80.min(row.len())]
    );
    let (_, filtered) = get(&app, "/alerts?verdict=real").await;
    assert!(filtered.contains("data-id=\"a2\"") && !filtered.contains("data-id=\"a1\""));
}

#[tokio::test]
async fn with_a_token_acknowledging_needs_it_and_without_a_store_it_is_refused() {
    let (app, _live, _dir) = fixture(Some("s3cret")).await;
    let request = |auth: Option<&str>| {
        let mut builder = ack_request("a1", "{}").header(header::CONTENT_TYPE, "application/json");
        if let Some(auth) = auth {
            builder = builder.header(header::AUTHORIZATION, auth);
        }
        builder.body(Body::from("{}")).unwrap()
    };
    for auth in [None, Some("Bearer wrong"), Some("Basic s3cret")] {
        let response = app.clone().oneshot(request(auth)).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
    }
    let response = app
        .clone()
        .oneshot(request(Some("Bearer s3cret")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let acked: Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(acked["acked_by"], "api");

    let no_store = router(AppState::new(LiveState::new(), None, Auth::open()));
    let response = no_store
        .oneshot(
            ack_request("a1", "{}")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

mod live_updates {
    use std::time::{Duration, Instant};

    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    use super::*;

    type Client = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    /// Next JSON message whose `type` is `kind` (others skipped), within `limit`.
    async fn next_of(client: &mut Client, kind: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = tokio::time::timeout(left, client.next())
                .await
                .unwrap_or_else(|_| panic!("no {kind} message within {limit:?}"))
                .expect("socket open")
                .expect("a message");
            if let Message::Text(text) = message {
                let value: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(value["v"], 2, "protocol version");
                if value["type"] == kind {
                    return value;
                }
            }
        }
    }

    /// A batch containing a point of `series` with `value`.
    async fn wait_for_point(client: &mut Client, series: &str, value: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let batch = next_of(client, "batch", deadline - Instant::now()).await;
            let found = batch["updates"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u["type"] == "point" && u["series"] == series && u["value"] == value);
            if found {
                return;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clients_get_a_snapshot_then_deltas_and_acks_and_a_stalled_client_blocks_no_one() {
        let (app, live, _dir) = fixture(None).await;
        let state_live = live.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app.clone())
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        let url = format!("ws://{address}/ws");
        let (mut first, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let (mut second, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        // Never read from this one.
        let (_stalled, _) = tokio_tungstenite::connect_async(&url).await.unwrap();

        let snapshot = next_of(&mut first, "snapshot", Duration::from_secs(5)).await;
        assert_eq!(snapshot["series"].as_array().unwrap().len(), 2);
        assert_eq!(snapshot["alerts"][0]["id"], "a1");
        next_of(&mut second, "snapshot", Duration::from_secs(5)).await;

        // A new point reaches both.
        let mut sink = LiveSink::new(state_live.clone());
        sink.write(&[point("plain", 3_000, 42.0)]).unwrap();
        wait_for_point(&mut first, "plain", 42.0).await;
        wait_for_point(&mut second, "plain", 42.0).await;

        // An acknowledgement through the API reaches every client.
        let ack_app = router(AppState::new(
            state_live.clone(),
            Some(
                Store::connect(&format!("sqlite://{}/t.db", _dir.path().display()))
                    .await
                    .unwrap(),
            ),
            Auth::open(),
        ));
        let response = ack_app
            .oneshot(
                ack_request("a1", "{}")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from("{\"by\": \"ops\"}"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        for client in [&mut first, &mut second] {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let batch = next_of(client, "batch", deadline - Instant::now()).await;
                if batch["updates"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|u| u["type"] == "ack" && u["acked_by"] == "ops")
                {
                    break;
                }
            }
        }

        // A flood, far more than the hub holds, while one client never reads: the pipeline side
        // never waits, and the reading clients still get the newest point (after a resync).
        let flood: Vec<Record> = (0..20_000)
            .map(|i| point("plain", 10_000 + i, i as f64))
            .collect();
        let started = Instant::now();
        for chunk in flood.chunks(1000) {
            sink.write(chunk).unwrap();
        }
        sink.write(&[point("plain", 50_000, -1.0)]).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "publishing waited for clients"
        );
        for client in [&mut first, &mut second] {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let message = tokio::time::timeout(deadline - Instant::now(), client.next())
                    .await
                    .expect("updates keep coming")
                    .unwrap()
                    .unwrap();
                let Message::Text(text) = message else {
                    continue;
                };
                let value: Value = serde_json::from_str(&text).unwrap();
                let in_batch = value["type"] == "batch"
                    && value["updates"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|u| u["value"] == -1.0);
                let in_snapshot = value["type"] == "snapshot"
                    && value["series"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|s| s["value"] == -1.0);
                if in_batch || in_snapshot {
                    break;
                }
            }
        }
        let _ = stop.send(());
        server.abort();
    }

    /// 100,000 series: the overview page and the WebSocket snapshot stay small, and a client
    /// subscribed to a page hears of that page's series only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_a_hundred_thousand_series_pages_and_snapshots_stay_small() {
        let live = LiveState::new();
        let mut sink = LiveSink::new(live.clone());
        for chunk in (0..100_000).collect::<Vec<usize>>().chunks(10_000) {
            let records: Vec<Record> = chunk
                .iter()
                .map(|i| point(&format!("device-{i:06}"), 1_000, *i as f64))
                .collect();
            sink.write(&records).unwrap();
        }
        let app = router(AppState::new(live.clone(), None, Auth::new(None, false)));

        let (status, html) = get(&app, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.len() < 300_000, "GET / is {} bytes", html.len());
        assert_eq!(
            html.matches("data-name=\"s/").count(),
            50,
            "one page of rows"
        );
        assert!(html.contains("100000 series"), "totals for every series");
        assert!(html.contains("rel=\"next\""), "a link to the next page");
        let (_, filtered) = get(&app, "/?q=device-09999&sort=name").await;
        assert_eq!(filtered.matches("data-name=\"s/").count(), 10);
        assert!(filtered.contains("10 match"));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws"))
            .await
            .unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Message::Text(text) = first else {
            panic!("the first message is the snapshot")
        };
        assert!(text.len() < 1_000_000, "snapshot is {} bytes", text.len());
        let snapshot: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(snapshot["type"], "snapshot");
        assert_eq!(snapshot["series"].as_array().unwrap().len(), 50);

        // Subscribed to a page of two series: their snapshot, then only their points.
        let page = r#"{"subscribe": {"series": [{"stream": "s", "series": "device-000007"}, {"stream": "s", "series": "device-000008"}]}}"#;
        futures_util::SinkExt::send(&mut client, Message::Text(page.into()))
            .await
            .unwrap();
        let snapshot = next_of(&mut client, "snapshot", Duration::from_secs(10)).await;
        let mut names: Vec<&str> = snapshot["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["series"].as_str().unwrap())
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["device-000007", "device-000008"]);
        sink.write(&[
            point("device-000009", 2_000, -9.0),
            point("device-000007", 2_000, -7.0),
        ])
        .unwrap();
        let batch = next_of(&mut client, "batch", Duration::from_secs(10)).await;
        let series: Vec<&str> = batch["updates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["type"] == "point")
            .map(|u| u["series"].as_str().unwrap())
            .collect();
        assert_eq!(series, ["device-000007"]);
        server.abort();
    }
}

#[tokio::test]
async fn series_page_embeds_chart_data_safely() {
    let (app, _live, _dir) = fixture(None).await;
    let (status, html) = get(&app, "/series/s/plain").await;
    assert_eq!(status, StatusCode::OK);
    let start = html.find("id=\"chart-data\">").unwrap() + "id=\"chart-data\">".len();
    let end = start + html[start..].find("</script>").unwrap();
    let chart: Value = serde_json::from_str(&html[start..end]).unwrap();
    // Columns: time, value, SMA, EWMA, band low, band high, anomaly marker, expected.
    assert_eq!(chart["data"].as_array().unwrap().len(), 8);
    assert_eq!(chart["data"][1], serde_json::json!([2.0, 3.0]));
    // The band the detector used, as the point records carry it (to the f32 precision and
    // the 0.4 % of the band's width the live view keeps, see src/live/ring.rs).
    let near = |got: &Value, want: f64| (got.as_f64().unwrap() - want).abs() < 0.02;
    assert!(
        near(&chart["data"][4][1], 3.0 - 7.2),
        "{}",
        chart["data"][4]
    );
    assert!(
        near(&chart["data"][5][1], 3.0 - 1.2),
        "{}",
        chart["data"][5]
    );
    assert!(
        near(&chart["data"][7][1], 3.0 - 4.2),
        "{}",
        chart["data"][7]
    );
    assert_eq!(
        chart["data"][6][0],
        serde_json::json!(2.0),
        "anomalous points are marked"
    );
    // A hostile name cannot close the script element or inject markup.
    let evil = format!("/series/s/{}", "%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    let (status, html) = get(&app, &evil).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains(EVIL), "raw markup reached the page");
    assert_eq!(
        html.matches("</script>").count(),
        3,
        "only the page's own scripts close (chart data, uPlot, app.js)"
    );
    assert_eq!(
        get(&app, "/series/s/unknown").await.0,
        StatusCode::NOT_FOUND
    );
    let (status, js) = get(&app, "/static/vendor/uplot.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(js.contains("uPlot"));
}

#[tokio::test]
async fn status_page_shows_partitions_lag_late_events_and_dead_letters() {
    use tidewatch::record::{DeadLetterRecord, LateRecord};
    use tidewatch::{PartitionProgress, StreamProgress};

    let (app, live, _dir) = fixture(None).await;
    let mut live_sink = LiveSink::new(live.clone());
    live_sink
        .write(&[
            Record::Late(LateRecord {
                stream: "s".into(),
                series: "plain".into(),
                ts: 1_764_000_000_000,
                watermark: 1_764_000_012_500,
                lateness_ms: 12_500,
                source: "events".into(),
                partition: 1,
                offset: 4242,
            }),
            Record::DeadLetter(DeadLetterRecord {
                stream: "s".into(),
                source: "events".into(),
                partition: 0,
                offset: 77,
                reason: "missing field `ts`".into(),
                payload: EVIL.into(),
            }),
        ])
        .unwrap();
    let partition = |split: u32, lag: u64, watermark: Option<i64>, idle: bool| PartitionProgress {
        split,
        source: "events".into(),
        partition: split,
        next_offset: Some(1000 + u64::from(split)),
        lag: Some(lag),
        watermark,
        idle,
    };
    // The pipeline reports its progress to the live view over the status channel.
    let pipeline_status = live.status_sender();
    pipeline_status.send_modify(|s| {
        s.streams = vec![StreamProgress {
            name: "s".into(),
            watermark: Some(1_764_000_010_000),
            messages: 3001,
            accepted: 2990,
            late: 1,
            duplicates: 10,
            dead_letters: 1,
            partitions: vec![
                partition(0, 5, Some(1_764_000_010_000), false),
                partition(1, 7, Some(1_763_999_000_000), true),
                partition(2, 11, None, false),
            ],
            source_error: Some("all brokers down".into()),
            source_state: None,
        }]
    });

    let (code, html) = get(&app, "/status").await;
    assert_eq!(code, StatusCode::OK);
    let row = |split: u32| {
        let start = html
            .find(&format!("data-partition=\"s/{split}\""))
            .unwrap_or_else(|| panic!("no row for split {split}: {html}"));
        html[start..start + html[start..].find("</tr>").unwrap()].to_string()
    };
    assert!(row(0).contains(">1000<") && row(0).contains(">5<") && row(0).contains("active"));
    assert!(row(1).contains(">7<") && row(1).contains("idle"));
    assert!(row(2).contains("waiting"), "{}", row(2));
    assert!(html.contains(">23<"), "total lag 5 + 7 + 11: {html}");
    assert!(
        html.contains("down: all brokers down"),
        "the source's trouble: {html}"
    );
    assert!(
        html.contains("12.5 s") && html.contains("4242"),
        "late event: {html}"
    );
    assert!(
        html.contains("missing field `ts`"),
        "dead letter reason: {html}"
    );
    assert!(!html.contains(EVIL), "a dead letter's payload is escaped");

    let (_, json) = get(&app, "/api/status").await;
    let status: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(status["streams"][0]["partitions"][1]["idle"], true);
    assert_eq!(status["late"][0]["offset"], 4242);
    assert_eq!(status["dead_letters"][0]["reason"], "missing field `ts`");

    let (_, metrics) = get(&app, "/metrics").await;
    assert!(
        metrics
            .contains("tidewatch_consumer_lag{stream=\"s\",source=\"events\",partition=\"2\"} 11"),
        "{metrics}"
    );
    assert!(metrics
        .contains("tidewatch_partition_idle{stream=\"s\",source=\"events\",partition=\"1\"} 1"));
    assert!(metrics.contains("tidewatch_pipeline_paused 0"));
    assert!(metrics.contains("tidewatch_source_up{stream=\"s\"} 0"));

    // A failing sink pauses the pipeline: the status page and the metrics say so.
    pipeline_status.send_modify(|s| s.paused = Some("database unreachable <again>".into()));
    let (_, html) = get(&app, "/status").await;
    assert!(
        html.contains("Pipeline paused: database unreachable &"),
        "{html}"
    );
    let (_, metrics) = get(&app, "/metrics").await;
    assert!(metrics.contains("tidewatch_pipeline_paused 1"));
    pipeline_status.send_modify(|s| s.paused = None);
    let (_, html) = get(&app, "/status").await;
    assert!(!html.contains("Pipeline paused"));

    // Reading again, as one member of a consumer group: the status says which partitions.
    let member = "reading 2 partitions of consumer group \"g\"";
    pipeline_status.send_modify(|s| {
        s.streams = vec![StreamProgress {
            name: "s".into(),
            partitions: vec![partition(0, 5, None, false), partition(2, 11, None, false)],
            source_state: Some(member.into()),
            ..StreamProgress::default()
        }]
    });
    let (_, html) = get(&app, "/status").await;
    assert!(
        html.contains("reading 2 partitions of consumer group &quot;g&quot;")
            || html.contains("reading 2 partitions of consumer group &#34;g&#34;"),
        "{html}"
    );
    assert!(!html.contains("down: all brokers down"));
    let (_, json) = get(&app, "/api/status").await;
    let status: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(status["streams"][0]["source_state"], member);
}

/// POSTs a JSON body to `uri` with optional extra headers.
async fn post_json(
    app: &axum::Router,
    uri: &str,
    body: &str,
    headers: &[(header::HeaderName, &str)],
) -> (StatusCode, String) {
    let mut builder = Request::post(uri)
        .header(header::HOST, "localhost:8080")
        .header(header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        builder = builder.header(name, *value);
    }
    let response = app
        .clone()
        .oneshot(builder.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    (status, body_text(response).await)
}

/// Logs in through the form; returns the response's status, `Location` and `Set-Cookie`.
async fn log_in(app: &axum::Router, form: &str) -> (StatusCode, String, String) {
    let response = app
        .clone()
        .oneshot(
            Request::post("/login")
                .header(header::HOST, "localhost:8080")
                .header(header::ORIGIN, "http://localhost:8080")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form.to_owned()))
                .unwrap(),
        )
        .await
        .unwrap();
    let header_text = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (
        response.status(),
        header_text(header::LOCATION),
        header_text(header::SET_COOKIE),
    )
}

#[tokio::test]
async fn the_login_form_gives_a_session_cookie_that_acknowledges_under_the_users_name() {
    let (app, live, _dir) = fixture(Some("s3cret")).await;
    let mut updates = live.subscribe();

    // The pages offer a login instead of the button.
    let (_, html) = get(&app, "/alerts").await;
    assert!(html.contains("Log in to acknowledge") && !html.contains("button class=\"ack\""));
    let (code, form) = get(&app, "/login?next=/alerts").await;
    assert_eq!(code, StatusCode::OK);
    assert!(form.contains("type=\"password\"") && form.contains("value=\"/alerts\""));

    let (code, _, cookie) = log_in(&app, "token=wrong&name=ana&next=%2Falerts").await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(cookie.is_empty(), "no session for a wrong token");

    let (code, location, cookie) =
        log_in(&app, "token=s3cret&name=Ana+Ops&next=%2F%2Fevil.example%2F").await;
    assert_eq!(code, StatusCode::SEE_OTHER);
    assert_eq!(location, "/", "never redirected off site");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("s3cret"),
        "the token itself never goes to the browser"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    assert!(session.starts_with(&format!("{SESSION_COOKIE}=")));

    // The session acknowledges; the name is the one given at login, whatever the body says.
    let (code, body) = post_json(
        &app,
        "/api/alerts/a1/ack",
        r#"{"by": "someone else", "note": "on it"}"#,
        &[(header::COOKIE, &session)],
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let acked: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(acked["acked_by"], "Ana Ops");
    assert!(matches!(&*updates.recv().await.unwrap(), [Update::Ack(a)] if a.id == "a1"));

    // Pages show who is logged in; after logout the cookie no longer works.
    let response = app
        .clone()
        .oneshot(
            Request::get("/alerts")
                .header(header::COOKIE, &session)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let html = body_text(response).await;
    assert!(html.contains("Ana Ops") && html.contains("Log out"));
    let response = app
        .clone()
        .oneshot(
            Request::post("/logout")
                .header(header::COOKIE, &session)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (code, _) = post_json(
        &app,
        "/api/alerts/a1/ack",
        "{}",
        &[(header::COOKIE, &session)],
    )
    .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn with_reads_protected_pages_redirect_to_login_and_the_api_answers_401() {
    let (app, _live, _dir) = fixture_with(Auth::new(Some("s3cret"), true)).await;
    for page in ["/", "/alerts?state=open", "/status", "/series/s/plain"] {
        let response = app
            .clone()
            .oneshot(Request::get(page).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{page}");
        let location = response.headers()[header::LOCATION].to_str().unwrap();
        assert!(
            location.starts_with("/login?next=%2F"),
            "{page} -> {location}"
        );
    }
    for api in [
        "/api/series",
        "/api/alerts",
        "/api/status",
        "/metrics",
        "/ws",
    ] {
        let (code, _) = get(&app, api).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{api}");
    }
    // Open: the login page, its assets, the health check.
    for open in ["/login", "/static/app.css", "/healthz"] {
        let (code, _) = get(&app, open).await;
        assert_eq!(code, StatusCode::OK, "{open}");
    }
    // A bearer token or a session reads.
    let response = app
        .clone()
        .oneshot(
            Request::get("/api/series")
                .header(header::AUTHORIZATION, "Bearer s3cret")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (_, _, cookie) = log_in(&app, "token=s3cret&next=%2Fstatus").await;
    let response = app
        .clone()
        .oneshot(
            Request::get("/")
                .header(header::COOKIE, cookie.split(';').next().unwrap())
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn bulk_acknowledgement_is_all_or_nothing() {
    let (app, live, dir) = fixture(None).await;
    // Two more open alerts in the store.
    let url = format!("sqlite://{}/t.db", dir.path().display());
    tokio::task::spawn_blocking(move || {
        write_to_db(
            &url,
            &[
                Record::Alert(Box::new(alert("a2"))),
                Record::Alert(Box::new(alert("a3"))),
            ],
        )
    })
    .await
    .unwrap();
    let mut updates = live.subscribe();

    let (code, body) = post_json(
        &app,
        "/api/alerts/ack",
        r#"{"ids": ["a1", "nope", "a2"]}"#,
        &[],
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(body.contains("nope"), "{body}");
    let (_, open) = get(&app, "/api/alerts?state=open").await;
    let open: Vec<Value> = serde_json::from_str(&open).unwrap();
    assert_eq!(open.len(), 3, "an unknown id acknowledges nothing");

    for bad in [r#"{"ids": []}"#, r#"{"id": ["a1"]}"#, "[1, 2]"] {
        let (code, _) = post_json(&app, "/api/alerts/ack", bad, &[]).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}");
    }

    let (code, body) = post_json(
        &app,
        "/api/alerts/ack",
        r#"{"ids": ["a1", "a3"], "by": "night shift", "note": "known maintenance"}"#,
        &[],
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let acked: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(acked.len(), 2);
    assert!(acked
        .iter()
        .all(|a| a["state"] == "acknowledged" && a["acked_by"] == "night shift"));
    let (_, open) = get(&app, "/api/alerts?state=open").await;
    let open: Vec<Value> = serde_json::from_str(&open).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["id"], "a2");
    let mut broadcast = Vec::new();
    while let Ok(batch) = updates.try_recv() {
        for update in batch.iter() {
            if let Update::Ack(a) = update {
                broadcast.push(a.id.clone());
            }
        }
    }
    assert_eq!(broadcast, ["a1", "a3"], "each acknowledgement is broadcast");
}

#[tokio::test]
async fn series_history_comes_from_the_stored_windows() {
    use tidewatch::record::{WindowKind, WindowRecord};
    let (app, _live, dir) = fixture(None).await;
    let window = |kind: WindowKind, start: i64, mean: f64| {
        Record::Window(WindowRecord {
            stream: "s".into(),
            series: "plain".into(),
            kind,
            window_start: start,
            window_end: start + 60_000,
            count: 2,
            sum: mean * 2.0,
            mean,
            min: mean - 1.0,
            max: mean + 1.0,
            stddev: Some(1.4),
            first: mean - 1.0,
            last: mean + 1.0,
            is_final: true,
        })
    };
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let records = vec![
        window(WindowKind::Tumbling, 120_000, 3.0),
        window(WindowKind::Tumbling, 60_000, 2.0),
        window(WindowKind::Sliding, 60_000, 2.5),
        window(WindowKind::Tumbling, 900_000, 9.0),
    ];
    tokio::task::spawn_blocking(move || write_to_db(&url, &records))
        .await
        .unwrap();

    let (code, body) = get(&app, "/api/series/s/plain?from=0&to=600000").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let history: Value = serde_json::from_str(&body).unwrap();
    let got: Vec<(i64, &str, f64)> = history["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["window_start"].as_i64().unwrap(),
                w["kind"].as_str().unwrap(),
                w["mean"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (60_000, "sliding", 2.5),
            (60_000, "tumbling", 2.0),
            (120_000, "tumbling", 3.0)
        ],
        "oldest first, only the range"
    );
    assert_eq!(history["windows"][0]["final"], true);

    let (code, _) = get(&app, "/api/series/s/plain?from=5&to=5").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, _) = get(&app, "/api/series/s/plain?from=oops").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    // Without from/to: the live view, as before.
    let (code, body) = get(&app, "/api/series/s/plain").await;
    assert_eq!(code, StatusCode::OK);
    assert!(body.contains("\"recent\""));

    let no_store = router(AppState::new(LiveState::new(), None, Auth::open()));
    let (code, _) = get(&no_store, "/api/series/s/plain?from=0&to=10").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
}

/// The classes a script module requires of rows it fills: `row.querySelector(".name")` ...
/// (the first class of each selector), not those it looks up optionally (`...)?.`).
fn row_classes(script: &str) -> Vec<String> {
    let mut classes = Vec::new();
    for part in script.split("row.querySelector(\"").skip(1) {
        let Some((selector, after)) = part.split_once('"') else {
            continue;
        };
        if after.starts_with(")?.") {
            continue;
        }
        if let Some(class) = selector.split('.').nth(1) {
            classes.push(class.split([' ', ':', '[']).next().unwrap().to_owned());
        }
    }
    classes.sort();
    classes.dedup();
    classes
}

/// The page script is ES modules served from the binary; every module the entry point imports,
/// directly or not, is there. Rows the script adds live are clones of `<template>` rows the
/// server renders with the same markup as its own rows, so every cell the script fills exists.
#[tokio::test]
async fn script_modules_resolve_and_fill_rows_the_templates_have() {
    let (app, _live, _dir) = fixture(None).await;
    let mut pending = vec!["main.js".to_owned()];
    let mut served = std::collections::BTreeMap::new();
    while let Some(module) = pending.pop() {
        if served.contains_key(&module) {
            continue;
        }
        let (status, js) = get(&app, &format!("/static/js/{module}")).await;
        assert_eq!(status, StatusCode::OK, "{module} is served");
        for import in js.split("from \"./").skip(1) {
            pending.push(import.split('"').next().unwrap().to_owned());
        }
        served.insert(module, js);
    }
    assert!(served.len() >= 8, "{:?}", served.keys());
    assert_eq!(
        get(&app, "/static/js/nope.js").await.0,
        StatusCode::NOT_FOUND
    );
    assert!(
        !served.values().any(|js| js.contains("window.prompt")),
        "notes are typed into the page"
    );

    let (_, alerts) = get(&app, "/alerts").await;
    let template = &alerts[alerts.find("<template id=\"alert-row\">").unwrap()..];
    let template = &template[..template.find("</template>").unwrap()];
    for class in row_classes(&served["alerts.js"]) {
        assert!(
            template.contains(&format!("class=\"{class}"))
                || template.contains(&format!(" {class}\""))
                || template.contains(&format!("class=\"zv {class}")),
            "the alert row template has no .{class}: {template}"
        );
    }
    assert!(alerts.contains("<dialog id=\"ack-dialog\""));
    // A row's checkbox says which alert it selects.
    assert!(
        alerts.contains("aria-label=\"Select the alert of s/"),
        "{alerts}"
    );

    let (_, overview) = get(&app, "/").await;
    let template = &overview[overview.find("<template id=\"series-row\">").unwrap()..];
    let template = &template[..template.find("</template>").unwrap()];
    for class in row_classes(&served["overview.js"]) {
        assert!(
            template.contains(&format!("class=\"{class}")),
            "the series row template has no .{class}: {template}"
        );
    }
    // The connection state is announced; range toggles are buttons.
    assert!(overview.contains("id=\"connection\"") && overview.contains("aria-live=\"polite\""));
    let (_, series) = get(&app, "/series/s/plain").await;
    assert!(series.contains(
        "<button type=\"button\" data-minutes=\"60\" class=\"range\" aria-pressed=\"true\">"
    ));
    assert!(!series.contains("href=\"#\""));
}

/// A real Prometheus tool reads `/metrics` of a running `serve`: `promtool check metrics`
/// (Debian package `prometheus`, which scripts/test.sh installs) finds no error and no lint
/// problem. The checkpoints, the shards and the sinks are in it, and on the status page.
#[test]
fn promtool_accepts_the_metrics_of_a_running_pipeline() {
    let promtool = std::path::Path::new("/usr/bin/promtool");
    assert!(
        promtool.exists(),
        "promtool not found: run ./scripts/test.sh, which installs the Debian package prometheus"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        format!(
            r#"
checkpoint = {{ interval = "200ms" }}
engine = {{ threads = 2 }}

[[streams]]
name = "sensors"
source = {{ kind = "file", path = "{}/config/data/sensors.ndjson" }}
fields = {{ time = "ts", series = "series", value = "value", id = "id" }}
windows = [{{ kind = "tumbling", size = "1m" }}]
analytics = {{}}

[[sinks]]
kind = "db"
url = "sqlite://{}/t.db"
"#,
            env!("CARGO_MANIFEST_DIR"),
            dir.path().display()
        ),
    )
    .unwrap();
    let (_server, port) = crate::support::serve("p.toml", dir.path());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let value = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    };
    let metrics = loop {
        let text = crate::support::http_get(port, "/metrics").unwrap_or_default();
        // Every family has samples once the stream has been read and a checkpoint stored.
        if text.contains("tidewatch_partition_watermark_seconds{")
            && text.contains("kind=\"windows\"")
            && value(&text, "tidewatch_checkpoint_bytes") > 0.0
            && value(&text, "tidewatch_shard_busy_seconds_total{shard=\"1\"}") > 0.0
        {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never showed the stream:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let output = check.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        value(&metrics, "tidewatch_checkpoints_total") >= 1.0,
        "{metrics}"
    );
    let age = value(&metrics, "tidewatch_checkpoint_age_seconds");
    assert!((0.0..30.0).contains(&age), "{metrics}");
    for shard in ["0", "1"] {
        let busy = format!("tidewatch_shard_busy_seconds_total{{shard=\"{shard}\"}}");
        assert!(value(&metrics, &busy) > 0.0, "{busy} in\n{metrics}");
    }
    let writes = "tidewatch_sink_write_seconds_count{sink=\"0\",kind=\"db\"}";
    assert!(value(&metrics, writes) >= 1.0, "{metrics}");

    let status = crate::support::http_get(port, "/status").unwrap();
    for shown in [
        "<tr data-shard=\"0\">",
        "<tr data-shard=\"1\">",
        "<tr data-sink=\"0\"><td>0</td><td>db</td>",
    ] {
        assert!(
            status.contains(shown),
            "{shown} not on the status page:\n{status}"
        );
    }
    assert!(
        !status.contains("data-field=\"checkpoint_age\">–"),
        "{status}"
    );
}

/// `/api/series` at 100,000 series: pages of `limit`, a cursor to the next one, filter and
/// sort on the server, and every series exactly once when paged through.
#[tokio::test]
async fn the_series_list_pages_through_a_hundred_thousand_series() {
    const SERIES: usize = 100_000;
    let live = LiveState::new();
    let mut sink = LiveSink::new(live.clone());
    let records: Vec<Record> = (0..SERIES)
        .map(|i| {
            let Record::Point(mut p) = point(&format!("host-{i:06}"), 1_000 + i as i64, 1.0) else {
                unreachable!()
            };
            // Every 1,000th series anomalous, with |z| growing with its number.
            p.anomaly = i % 1_000 == 0;
            p.z = Some(if p.anomaly { i as f64 / 1_000.0 } else { 0.5 });
            Record::Point(p)
        })
        .collect();
    sink.write(&records).unwrap();
    drop(records);
    let app = router(AppState::new(live, None, Auth::new(None, false)));
    let fetch = |uri: String| {
        let app = app.clone();
        async move {
            let response = app
                .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let total = response
                .headers()
                .get("x-total-count")
                .map(|v| v.to_str().unwrap().to_owned());
            let next = response
                .headers()
                .get(header::LINK)
                .map(|v| v.to_str().unwrap().to_owned());
            let body = body_text(response).await;
            (status, total, next, body)
        }
    };

    // The default page: 500 series, the anomalous ones first, most extreme first.
    let (status, total, _, body) = fetch("/api/series".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(total.as_deref(), Some("100000"));
    assert!(body.len() < 200_000, "first page is {} bytes", body.len());
    let first: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(first.len(), 500);
    assert_eq!(first[0]["series"], "host-099000");
    assert_eq!(first[99]["series"], "host-000000");
    assert_eq!(first[100]["anomaly"], false);

    // Paged through by name, 5,000 at a time: each series once, in order.
    let mut uri = "/api/series?sort=name&limit=5000".to_owned();
    let mut seen = Vec::with_capacity(SERIES);
    let mut pages = 0;
    loop {
        let (status, _, next, body) = fetch(uri.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let page: Vec<Value> = serde_json::from_str(&body).unwrap();
        seen.extend(
            page.iter()
                .map(|v| v["series"].as_str().unwrap().to_owned()),
        );
        pages += 1;
        assert!(pages <= 20, "more pages than series allow");
        let Some(link) = next else { break };
        uri = link
            .strip_prefix('<')
            .and_then(|l| l.split_once(">; rel=\"next\""))
            .map(|(u, _)| u.to_owned())
            .unwrap_or_else(|| panic!("Link header: {link}"));
    }
    assert_eq!(pages, 20);
    let expected: Vec<String> = (0..SERIES).map(|i| format!("host-{i:06}")).collect();
    assert!(seen == expected, "paging lost, doubled or reordered series");

    // Filter and sort on the server; bad parameters are named.
    let (_, total, next, body) = fetch("/api/series?q=HOST-0123&sort=recent".into()).await;
    let found: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(total.as_deref(), Some("100"));
    assert!(next.is_none());
    assert_eq!(found[0]["series"], "host-012399");
    for bad in ["sort=size", "limit=0", "limit=100000", "after=nonsense"] {
        let (status, _, _, body) = fetch(format!("/api/series?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        let param = bad.split('=').next().unwrap();
        assert!(body.contains(param), "{bad}: {body}");
    }
}

/// Writes `records` with a db sink into the fixture's store (off the async threads).
/// Writes `records` through a db sink and waits until they are committed, as a checkpoint does
/// (the sink writes on a thread of its own). Off the async threads: the sink runs a runtime.
fn write_to_db(url: &str, records: &[Record]) {
    let mut sink = DbSink::connect(url).unwrap();
    sink.write(records).unwrap();
    sink.flush(0).unwrap();
}

async fn store_records(dir: &tempfile::TempDir, records: Vec<Record>) {
    let url = format!("sqlite://{}/t.db", dir.path().display());
    tokio::task::spawn_blocking(move || write_to_db(&url, &records))
        .await
        .unwrap();
}

#[tokio::test]
async fn alerts_page_through_the_store_newest_first() {
    let (app, _live, dir) = fixture(None).await;
    // 250 alerts over 3 series; pairs share a time, so the id breaks the tie.
    let records: Vec<Record> = (0..250)
        .map(|i| {
            let mut a = alert(&format!("p{i:03}"));
            a.series = format!("k{}", i % 3).into();
            a.ts = 10_000 + (i / 2) * 1_000;
            Record::Alert(Box::new(a))
        })
        .collect();
    store_records(&dir, records).await;

    let mut seen: Vec<(i64, String)> = Vec::new();
    let mut next = Some("/api/alerts?limit=40".to_owned());
    let mut pages = 0;
    while let Some(uri) = next.take() {
        pages += 1;
        assert!(pages <= 10, "paging does not end");
        let response = app
            .clone()
            .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        next = response.headers().get(header::LINK).map(|link| {
            let link = link.to_str().unwrap();
            link[link.find('<').unwrap() + 1..link.find('>').unwrap()].to_owned()
        });
        let page: Vec<Value> = serde_json::from_str(&body_text(response).await).unwrap();
        assert!(page.len() <= 40);
        seen.extend(page.iter().map(|a| {
            (
                a["ts"].as_i64().unwrap(),
                a["id"].as_str().unwrap().to_owned(),
            )
        }));
    }
    // The fixture's own alert a1 (ts 1000) is the oldest.
    assert_eq!(seen.len(), 251, "every alert once");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(seen, sorted, "newest first, by time then id, no repeats");

    // One series' alerts, and a cursor that is not one.
    let (code, body) = get(&app, "/api/alerts?stream=s&series=k1&limit=5000").await;
    assert_eq!(code, StatusCode::OK);
    let k1: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(k1.len(), 83);
    assert!(k1.iter().all(|a| a["series"] == "k1"));
    let (code, body) = get(&app, "/api/alerts?before=yesterday").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("before: expected <ts>:<id>"), "{body}");
    let (code, _) = get(&app, "/api/alerts?series=k1").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);

    // The page: 100 rows, a link to the older ones, which is not the newest page.
    let (code, first) = get(&app, "/alerts").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        first.matches("<tr class=\"open\" data-id=\"p").count(),
        100,
        "one page"
    );
    assert!(first.contains("data-newest=\"true\""));
    let older = first
        .split("href=\"")
        .find(|s| s.starts_with("/alerts?before="))
        .and_then(|s| s.split('"').next())
        .expect("an older-alerts link")
        .replace("&amp;", "&");
    let (code, second) = get(&app, &older).await;
    assert_eq!(code, StatusCode::OK, "{older}");
    assert!(second.contains("data-newest=\"false\""));
    assert_eq!(
        second.matches("<tr class=\"open\" data-id=\"p").count(),
        100
    );
    assert!(second.contains("data-id=\"p149\"") && !first.contains("data-id=\"p149\""));
}

#[tokio::test]
async fn a_series_the_live_view_no_longer_holds_shows_its_stored_history() {
    use tidewatch::record::{WindowKind, WindowRecord};
    let (app, live, dir) = fixture(None).await;
    let windows: Vec<Record> = (0..30)
        .map(|i| {
            Record::Window(WindowRecord {
                stream: "s".into(),
                series: "gone".into(),
                kind: WindowKind::Tumbling,
                window_start: i * 60_000,
                window_end: (i + 1) * 60_000,
                count: 2,
                sum: 2.0 * (40.0 + i as f64),
                mean: 40.0 + i as f64,
                min: 1.0,
                max: 99.0,
                stddev: None,
                first: 1.0,
                last: 77.25,
                is_final: true,
            })
        })
        .collect();
    let mut gone_alert = alert("gone-1");
    gone_alert.series = "gone".into();
    let mut records = windows;
    records.push(Record::Alert(Box::new(gone_alert)));
    store_records(&dir, records).await;
    assert!(!live
        .read()
        .series
        .contains_key(&(Arc::from("s"), Arc::from("gone"))));

    let (code, body) = get(&app, "/series/s/gone").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert!(body.contains("No recent points in memory"), "{body}");
    assert!(body.contains("77.25"), "the newest window's last value");
    assert!(body.contains("data-id=\"gone-1\""), "its alert");
    // Charted by the windows' means, oldest first; the newest 20 windows listed.
    let chart = body.split("id=\"chart-data\">").nth(1).unwrap();
    let chart: Value = serde_json::from_str(chart.split("</script>").next().unwrap()).unwrap();
    let means: Vec<f64> = chart["data"][1]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(means.len(), 30);
    assert_eq!((means[0], means[29]), (40.0, 69.0));
    assert_eq!(body.matches("<td>tumbling</td>").count(), 20);

    // A browser that opens an unknown series gets a page it can show, with a way back; the
    // API answers the same miss in JSON.
    let response = app
        .clone()
        .oneshot(
            Request::get("/series/s/never-seen%3Cb%3E")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = body_text(response).await;
    assert!(page.contains("<h1>404 Not Found</h1>"), "{page}");
    assert!(
        page.contains("series s/never-seen&#60;b&#62; not found"),
        "{page}"
    );
    assert!(page.contains(r#"href="/""#));
    let (code, body) = get(&app, "/api/series/s/never-seen").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
}

/// A request for `uri` with `Host: host` (and, when given, a same-looking `Origin`).
async fn get_as(app: &axum::Router, uri: &str, host: &str) -> axum::response::Response {
    app.clone()
        .oneshot(
            Request::get(uri)
                .header(header::HOST, host)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap()
}

/// DNS rebinding: a page on attacker.example that points its name at the dashboard sends
/// `Host: attacker.example` and a matching `Origin`; it reads nothing and acknowledges
/// nothing. Addresses, localhost and listed names are served; no page may be framed.
#[tokio::test]
async fn foreign_host_names_are_refused_and_pages_cannot_be_framed() {
    let (app, _live, _dir) = fixture(None).await;
    for uri in ["/", "/alerts", "/api/alerts", "/api/series", "/metrics"] {
        let response = get_as(&app, uri, "attacker.example:8080").await;
        assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST, "{uri}");
        let text = body_text(response).await;
        assert!(text.contains("web.allowed_hosts"), "{text}");
    }
    let rebound = app
        .clone()
        .oneshot(
            Request::post("/api/alerts/a1/ack")
                .header(header::HOST, "attacker.example")
                .header(header::ORIGIN, "http://attacker.example")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(rebound.status(), StatusCode::MISDIRECTED_REQUEST);
    let (_, alerts) = get(&app, "/api/alerts").await;
    assert!(
        alerts.contains("\"state\":\"open\""),
        "not acknowledged: {alerts}"
    );

    for host in [
        "127.0.0.1:8080",
        "localhost:8080",
        "[::1]:8080",
        "192.168.1.20",
    ] {
        assert_eq!(
            get_as(&app, "/", host).await.status(),
            StatusCode::OK,
            "{host}"
        );
    }
    let named = fixture_app_with_web(WebConfig {
        allowed_hosts: vec!["dash.example.com".into()],
        ..WebConfig::default()
    })
    .await;
    assert_eq!(
        get_as(&named, "/", "dash.example.com").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get_as(&named, "/", "evil.example.com").await.status(),
        StatusCode::MISDIRECTED_REQUEST
    );

    for uri in ["/", "/alerts", "/api/alerts", "/static/app.css", "/nope"] {
        let response = get_as(&app, uri, "localhost:8080").await;
        let headers = response.headers();
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY", "{uri}");
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'"),
            "{uri}"
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{uri}");
    }
}

async fn fixture_app_with_web(web: WebConfig) -> axum::Router {
    router(AppState::new(LiveState::new(), None, Auth::open()).with_web(web))
}

/// Wrong tokens cost: after ten within a minute a client is refused (429, Retry-After),
/// right token or not, while requests without a token are not held back. The bearer scheme
/// is case-insensitive.
#[tokio::test]
async fn wrong_tokens_are_throttled_and_the_bearer_scheme_is_case_insensitive() {
    let (app, _live, _dir) = fixture(Some("s3cret")).await;
    let (code, body) = post_json(
        &app,
        "/api/alerts/a1/ack",
        "{}",
        &[(header::AUTHORIZATION, "bearer s3cret")],
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    for guess in 0..10 {
        let token = format!("Bearer guess{guess}");
        let (code, _) = post_json(
            &app,
            "/api/alerts/a1/ack",
            "{}",
            &[(header::AUTHORIZATION, token.as_str())],
        )
        .await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "guess {guess}");
    }
    let response = app
        .clone()
        .oneshot(
            Request::post("/api/alerts/a1/ack")
                .header(header::HOST, "localhost:8080")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::AUTHORIZATION, "Bearer s3cret")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = response.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let (code, _, _) = log_in(&app, "token=s3cret&name=ana").await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS, "the login form too");
    let (code, _) = get(&app, "/alerts").await;
    assert_eq!(
        code,
        StatusCode::OK,
        "reading without a token is not held back"
    );
}

/// Behind TLS the session cookie can be marked `Secure`.
#[tokio::test]
async fn session_cookies_are_secure_when_asked() {
    let (app, _live, _dir) =
        fixture_with(Auth::new(Some("s3cret"), false).with_secure_cookies(true)).await;
    let (code, _, cookie) = log_in(&app, "token=s3cret&name=ana").await;
    assert_eq!(code, StatusCode::SEE_OTHER);
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    let (plain, _live, _dir) = fixture(Some("s3cret")).await;
    let (_, _, cookie) = log_in(&plain, "token=s3cret&name=ana").await;
    assert!(!cookie.contains("Secure"), "{cookie}");
}

/// `limit` out of range is refused with the range, as the series list does, not clamped.
#[tokio::test]
async fn an_alert_limit_out_of_range_is_refused() {
    let (app, _live, _dir) = fixture(None).await;
    for limit in ["-1", "0", "5001"] {
        let (code, body) = get(&app, &format!("/api/alerts?limit={limit}")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{limit}");
        assert!(body.contains("limit: between 1 and 5000"), "{body}");
    }
    let (code, _) = get(&app, "/api/alerts?limit=1").await;
    assert_eq!(code, StatusCode::OK);
}

/// Every acknowledgement is kept: the API lists them oldest first and the alerts page shows
/// the earlier ones under the last.
#[tokio::test]
async fn acknowledgements_keep_their_history() {
    let (app, _live, _dir) = fixture(None).await;
    for body in [
        r#"{"by": "ana", "note": "looking"}"#,
        r#"{"by": "bo", "note": "disk full", "verdict": "real"}"#,
        r#"{"by": "cy"}"#,
    ] {
        let (code, answer) = post_json(&app, "/api/alerts/a1/ack", body, &[]).await;
        assert_eq!(code, StatusCode::OK, "{answer}");
    }
    let (code, body) = get(&app, "/api/alerts/a1/acknowledgements").await;
    assert_eq!(code, StatusCode::OK);
    let history: Vec<Value> = serde_json::from_str(&body).unwrap();
    let who: Vec<&str> = history.iter().map(|a| a["by"].as_str().unwrap()).collect();
    assert_eq!(who, ["ana", "bo", "cy"]);
    assert_eq!(history[1]["note"], "disk full");
    assert_eq!(history[1]["verdict"], "real");
    assert!(history
        .windows(2)
        .all(|w| w[0]["at"].as_i64() <= w[1]["at"].as_i64()));
    let (_, html) = get(&app, "/alerts").await;
    assert!(html.contains("2 earlier"), "{html}");
    assert!(html.contains(": real — disk full"), "{html}");
    let (code, none) = get(&app, "/api/alerts/unknown/acknowledgements").await;
    assert_eq!((code, none.as_str()), (StatusCode::OK, "[]"));
}
