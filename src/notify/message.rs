//! What a receiver is sent about an alert: Prometheus Alertmanager's v2 alert objects, a
//! generic JSON body, or Slack-compatible text. Pure functions of the alert and the event.

use serde_json::{json, Map, Value};

use crate::clock::format_ms;
use crate::names::named;
use crate::record::{AlertRecord, AlertState};

named! {
    /// What happened to an alert, as the outbox records it.
    pub enum Event as "notification event" {
        Open = "open",
        Resolved = "resolved",
        Acknowledged = "acknowledged",
    }
}

impl Event {
    /// The event an alert record written by the pipeline announces (an acknowledgement comes
    /// from people, through the dashboard, never from the pipeline).
    pub fn of_record(alert: &AlertRecord) -> Event {
        match alert.state {
            AlertState::Resolved => Event::Resolved,
            AlertState::Open | AlertState::Acknowledged => Event::Open,
        }
    }
}

/// The series page of an alert, under `dashboard_url`.
pub fn link(dashboard_url: Option<&str>, alert: &AlertRecord) -> Option<String> {
    let base = dashboard_url?.trim_end_matches('/');
    let segment = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    Some(format!(
        "{base}/series/{}/{}",
        segment(&alert.stream).replace('+', "%20"),
        segment(&alert.series).replace('+', "%20")
    ))
}

/// One line a person reads: what, where, how far from normal, and its state.
pub fn summary(alert: &AlertRecord, event: Event) -> String {
    let what = match event {
        Event::Open => "Anomaly",
        Event::Resolved => "Resolved",
        Event::Acknowledged => "Acknowledged",
    };
    let mut text = format!(
        "{what}: {}/{} = {} (expected {}, z {:+.1}, {})",
        alert.stream,
        alert.series,
        short(alert.value),
        short(alert.expected),
        alert.z,
        alert.severity.as_str()
    );
    if let (Event::Acknowledged, Some(by)) = (event, &alert.acked_by) {
        text.push_str(&format!(" by {by}"));
        if let Some(note) = alert.note.as_deref().filter(|n| !n.is_empty()) {
            text.push_str(&format!(": {note}"));
        }
    }
    text
}

fn short(value: f64) -> String {
    let text = format!("{value:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// An alert as Alertmanager's `POST /api/v2/alerts` takes it. Labels identify it there
/// (alert name, stream, series, severity); the rest are annotations. A resolved alert carries
/// `endsAt` (`resolved_at`, epoch ms); an open one none, so Alertmanager keeps it firing for
/// its `resolve_timeout` after each post, and the notifier posts it again before that.
pub fn alertmanager(
    alert: &AlertRecord,
    resolved_at: Option<i64>,
    dashboard_url: Option<&str>,
) -> Value {
    let event = match (resolved_at, alert.state) {
        (Some(_), _) => Event::Resolved,
        (None, AlertState::Acknowledged) => Event::Acknowledged,
        (None, _) => Event::Open,
    };
    let mut annotations = Map::new();
    let mut annotate = |key: &str, value: String| {
        annotations.insert(key.to_owned(), Value::String(value));
    };
    annotate("summary", summary(alert, event));
    annotate("value", short(alert.value));
    annotate("expected", short(alert.expected));
    annotate("z", format!("{:.2}", alert.z));
    if let (Some(lower), Some(upper)) = (alert.lower, alert.upper) {
        annotate("band", format!("{} .. {}", short(lower), short(upper)));
    }
    annotate("method", alert.method.as_str().to_owned());
    annotate("tidewatch_alert_id", alert.id.clone());
    if let Some(by) = &alert.acked_by {
        annotate("acknowledged_by", by.clone());
        if let Some(at) = alert.acked_at {
            annotate("acknowledged_at", format_ms(at));
        }
        if let Some(note) = alert.note.as_deref().filter(|n| !n.is_empty()) {
            annotate("acknowledgement_note", note.to_owned());
        }
    }
    if let Some(verdict) = alert.verdict {
        annotate("verdict", verdict.as_str().to_owned());
    }
    let link = link(dashboard_url, alert);
    if let Some(link) = &link {
        annotate("dashboard", link.clone());
    }
    let mut body = json!({
        "labels": {
            "alertname": "TidewatchAnomaly",
            "stream": &*alert.stream,
            "series": &*alert.series,
            "severity": alert.severity.as_str(),
        },
        "annotations": annotations,
        "startsAt": format_ms(alert.episode_start),
    });
    if let Some(at) = resolved_at {
        body["endsAt"] = json!(format_ms(at.max(alert.episode_start)));
    }
    if let Some(link) = link {
        body["generatorURL"] = json!(link);
    }
    body
}

/// The generic webhook body: the event, the whole alert record, a link and a summary line.
pub fn webhook_json(alert: &AlertRecord, event: Event, dashboard_url: Option<&str>) -> Value {
    json!({
        "event": event.as_str(),
        "alert": alert,
        "link": link(dashboard_url, alert),
        "text": summary(alert, event),
    })
}

/// Slack's (and Mattermost's, Rocket.Chat's) incoming-webhook body.
pub fn webhook_slack(alert: &AlertRecord, event: Event, dashboard_url: Option<&str>) -> Value {
    let mut text = summary(alert, event);
    if let Some(link) = link(dashboard_url, alert) {
        text = format!("{text} <{link}|chart>");
    }
    json!({ "text": text })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{AlertMethod, Direction, Severity};

    pub(crate) fn alert() -> AlertRecord {
        AlertRecord {
            id: "a-1".into(),
            stream: "sensors".into(),
            series: "room 1/temp".into(),
            ts: 1_700_000_060_000,
            value: 31.5,
            expected: 21.25,
            stddev: 1.0,
            lower: Some(18.0),
            upper: Some(24.5),
            z: 10.25,
            score: Some(7.0),
            probability: Some(1e-9),
            method: AlertMethod::Likelihood,
            expectation: Some("flat".into()),
            direction: Direction::High,
            severity: Severity::Critical,
            episode_start: 1_700_000_000_000,
            state: AlertState::Open,
            acked_by: None,
            acked_at: None,
            note: None,
            verdict: None,
        }
    }

    #[test]
    fn alertmanager_alerts_carry_labels_annotations_and_times() {
        let open = alertmanager(&alert(), None, Some("http://dash:8080/"));
        assert_eq!(open["labels"]["alertname"], "TidewatchAnomaly");
        assert_eq!(open["labels"]["series"], "room 1/temp");
        assert_eq!(open["labels"]["severity"], "critical");
        assert_eq!(open["annotations"]["value"], "31.5");
        assert_eq!(open["annotations"]["expected"], "21.25");
        assert_eq!(open["annotations"]["band"], "18 .. 24.5");
        assert_eq!(
            open["annotations"]["dashboard"],
            "http://dash:8080/series/sensors/room%201%2Ftemp"
        );
        assert_eq!(open["startsAt"], "2023-11-14T22:13:20Z");
        assert!(open.get("endsAt").is_none(), "firing");

        let resolved = alertmanager(&alert(), Some(1_700_000_300_000), None);
        assert_eq!(resolved["endsAt"], "2023-11-14T22:18:20Z");
        assert!(resolved.get("generatorURL").is_none());

        let mut acked = alert();
        acked.state = AlertState::Acknowledged;
        acked.acked_by = Some("ana".into());
        acked.acked_at = Some(1_700_000_100_000);
        acked.note = Some("disk swap".into());
        let acked = alertmanager(&acked, None, None);
        assert_eq!(acked["annotations"]["acknowledged_by"], "ana");
        assert_eq!(acked["annotations"]["acknowledgement_note"], "disk swap");
        assert!(acked["annotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("Acknowledged: sensors/room 1/temp"));
    }

    #[test]
    fn webhook_bodies_say_what_happened() {
        let body = webhook_json(&alert(), Event::Resolved, None);
        assert_eq!(body["event"], "resolved");
        assert_eq!(body["alert"]["id"], "a-1");
        assert_eq!(body["link"], Value::Null);
        let slack = webhook_slack(&alert(), Event::Open, Some("https://t.example"));
        assert_eq!(
            slack["text"],
            "Anomaly: sensors/room 1/temp = 31.5 (expected 21.25, z +10.2, critical) \
             <https://t.example/series/sensors/room%201%2Ftemp|chart>"
        );
    }
}
