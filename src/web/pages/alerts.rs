//! `/alerts`: the alerts, newest first, filtered and paged through the store.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse};

use super::format::{band_text, number, score_text, spark_scale, sparkline, why_text};
use super::viewer::Viewer;
use crate::clock::format_ms;
use crate::db::AckEntry;
use crate::live::Dashboard;
use crate::notify::outbox::Delivery as NotificationDelivery;
use crate::record::{AlertRecord, AlertState, Verdict};
use crate::web::error::PageError;
use crate::web::queries::{list_alerts, AlertQuery};
use crate::web::state::AppState;

#[derive(Template)]
#[template(path = "alerts.html")]
pub struct AlertsPage {
    /// A page of alerts, newest first.
    pub alerts: Vec<AlertRow>,
    /// Whether the page starts at the newest alert (alerts opening live go on top of it).
    pub newest: bool,
    /// The next (older) page's address while this one is full.
    pub older: Option<String>,
    /// The row the page script fills for an alert that opens live.
    pub blank_alert: AlertRow,
    pub filter: String,
    pub verdict: String,
    /// Per stream: the share of false alarms among the alerts people judged.
    pub verdicts: Vec<VerdictRow>,
    pub open_alerts: usize,
    pub viewer: Viewer,
}

pub struct VerdictRow {
    pub stream: String,
    pub judged: i64,
    pub false_alarms: i64,
    pub share: String,
}

#[derive(Default)]
pub struct AlertRow {
    pub id: String,
    /// The series around the alert as SVG polyline points (empty when no longer in memory),
    /// and where the alert's point is on it.
    pub spark: String,
    pub dot_x: String,
    pub dot_y: String,
    pub stream: String,
    pub series: String,
    pub time: String,
    pub value: String,
    pub expected: String,
    /// The band of normal values the detector used there.
    pub band: String,
    pub z: String,
    /// The likelihood score and probability, or |z| for a threshold alert.
    pub score: String,
    /// What fired, and what the expectation followed.
    pub why: String,
    pub direction: &'static str,
    pub severity: &'static str,
    pub state: &'static str,
    pub acked: String,
    /// When the last acknowledgement was (epoch ms), empty without one: the page script
    /// tells a new acknowledgement from the one shown by it.
    pub acked_at: String,
    pub note: String,
    /// The acknowledgements before the last, oldest first, each as one line.
    pub earlier_acks: Vec<String>,
    /// `real`, `false_alarm` or empty, and how to show it.
    pub verdict: &'static str,
    pub verdict_text: &'static str,
    pub can_ack: bool,
    /// How its notifications went (empty without receivers), in a word and in full.
    pub notified: String,
    pub notified_class: &'static str,
    pub notified_detail: String,
}

impl AlertRow {
    /// Adds the acknowledgements before the last one (the row shows the last itself).
    fn with_history(mut self, history: Option<&Vec<AckEntry>>) -> AlertRow {
        let Some((_last, earlier)) = history.and_then(|h| h.split_last()) else {
            return self;
        };
        self.earlier_acks = earlier
            .iter()
            .map(|ack| {
                let mut line = format!("{}, {}", ack.by, format_ms(ack.at));
                if let Some(verdict) = ack.verdict {
                    line += match verdict {
                        Verdict::Real => ": real",
                        Verdict::FalseAlarm => ": false alarm",
                    };
                }
                if let Some(note) = &ack.note {
                    line += &format!(" — {note}");
                }
                line
            })
            .collect();
        self
    }

    /// Adds how the alert's notifications went: delivered, or still being retried and why.
    fn with_deliveries(mut self, deliveries: Option<&Vec<NotificationDelivery>>) -> AlertRow {
        let Some(deliveries) = deliveries.filter(|d| !d.is_empty()) else {
            return self;
        };
        let pending: Vec<&NotificationDelivery> = deliveries
            .iter()
            .filter(|d| d.delivered_at.is_none())
            .collect();
        let mut targets: Vec<&str> = deliveries.iter().map(|d| d.target.as_str()).collect();
        targets.sort_unstable();
        targets.dedup();
        if pending.is_empty() {
            self.notified = format!("notified: {}", targets.join(", "));
            self.notified_class = "ok";
        } else {
            let attempts: i64 = pending.iter().map(|d| d.attempts).max().unwrap_or(0);
            self.notified = format!(
                "notifying {} ({attempts} attempt{})",
                pending[0].target,
                if attempts == 1 { "" } else { "s" }
            );
            self.notified_class = "pending";
        }
        self.notified_detail = deliveries
            .iter()
            .map(|d| match (&d.delivered_at, &d.last_error) {
                (Some(at), _) => format!("{} {}: delivered {}", d.target, d.event, format_ms(*at)),
                (None, Some(error)) => format!(
                    "{} {}: {} attempts, next {}, last error: {error}",
                    d.target,
                    d.event,
                    d.attempts,
                    format_ms(d.next_attempt)
                ),
                (None, None) => format!("{} {}: pending", d.target, d.event),
            })
            .collect::<Vec<_>>()
            .join("\n");
        self
    }
}

/// The alert's series around its point (5 minutes before, 2 after), from the points the
/// dashboard still holds, with the alert's point marked; `None` once they are gone.
fn alert_spark(dashboard: &Dashboard, a: &AlertRecord) -> Option<(String, f64, f64)> {
    let view = dashboard
        .series
        .get(&(a.stream.clone(), a.series.clone()))?;
    let around: Vec<(i64, f64)> = view
        .recent
        .iter()
        .filter(|p| p.ts >= a.ts - 300_000 && p.ts <= a.ts + 120_000)
        .map(|p| (p.ts, p.value))
        .collect();
    let &(_, value) = around.iter().find(|&&(t, _)| t == a.ts)?;
    if around.len() < 2 {
        return None;
    }
    let (x, y) = spark_scale(&around)?(a.ts, value);
    Some((sparkline(&around), x, y))
}

/// Alerts on one page of the alerts page.
const ALERTS_PAGE: i64 = 100;

pub async fn alerts(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<AlertQuery>,
) -> Result<impl IntoResponse, PageError> {
    let filter = query.filter(ALERTS_PAGE)?;
    let alerts = list_alerts(&state, &filter).await?;
    let older = alerts
        .last()
        .filter(|_| alerts.len() as i64 == filter.limit)
        .map(|last| format!("/alerts?{}", query.next_page(last)));
    let verdicts = match &state.store {
        Some(store) => store.verdicts().await?,
        None => Vec::new(),
    };
    let (deliveries, history) = match &state.store {
        Some(store) => {
            let ids: Vec<String> = alerts.iter().map(|a| a.id.clone()).collect();
            (
                store.deliveries(&ids).await?,
                store.acknowledgements(&ids).await?,
            )
        }
        None => Default::default(),
    };
    let open_alerts = state.live.read().open_alerts();
    let page = AlertsPage {
        blank_alert: AlertRow::blank(),
        alerts: {
            let dashboard = state.live.read();
            alerts
                .iter()
                .map(|a| {
                    alert_row(&dashboard, a)
                        .with_deliveries(deliveries.get(&a.id))
                        .with_history(history.get(&a.id))
                })
                .collect()
        },
        newest: filter.before.is_none(),
        older,
        filter: query.state.unwrap_or_else(|| "all".into()),
        verdict: query.verdict.unwrap_or_else(|| "all".into()),
        verdicts: verdicts
            .into_iter()
            .map(|v| VerdictRow {
                share: format!(
                    "{:.0} %",
                    100.0 * v.false_alarms as f64 / v.judged.max(1) as f64
                ),
                stream: v.stream,
                judged: v.judged,
                false_alarms: v.false_alarms,
            })
            .collect(),
        open_alerts,
        viewer: Viewer::of(&state, &headers),
    };
    Ok(Html(page.render()?))
}

pub(super) fn alert_row(dashboard: &Dashboard, a: &AlertRecord) -> AlertRow {
    let (spark, dot_x, dot_y) = alert_spark(dashboard, a).unwrap_or_default();
    let (verdict, verdict_text) = match a.verdict {
        Some(Verdict::Real) => (Verdict::Real.as_str(), "real"),
        Some(Verdict::FalseAlarm) => (Verdict::FalseAlarm.as_str(), "false alarm"),
        None => ("", ""),
    };
    AlertRow {
        spark,
        dot_x: format!("{dot_x:.1}"),
        dot_y: format!("{dot_y:.1}"),
        id: a.id.clone(),
        stream: a.stream.to_string(),
        series: a.series.to_string(),
        time: format_ms(a.ts),
        value: number(a.value),
        expected: number(a.expected),
        band: band_text(a.lower, a.upper),
        z: format!("{:+.2}", a.z),
        score: score_text(a.method, a.score, a.probability),
        why: why_text(a.method, a.expectation.as_deref()),
        direction: a.direction.as_str(),
        severity: a.severity.as_str(),
        state: a.state.as_str(),
        acked: match (&a.acked_by, a.acked_at) {
            (Some(by), Some(at)) => format!("{by}, {}", format_ms(at)),
            _ => String::new(),
        },
        acked_at: a.acked_at.map(|at| at.to_string()).unwrap_or_default(),
        note: a.note.clone().unwrap_or_default(),
        verdict,
        verdict_text,
        can_ack: a.state == AlertState::Open,
        ..AlertRow::default()
    }
}

impl AlertRow {
    /// The row the page script fills for an alert that opens while the page is open.
    pub(super) fn blank() -> AlertRow {
        AlertRow {
            can_ack: true,
            ..AlertRow::default()
        }
    }
}
