//! Alert notifications: alerts reach people who are not looking at the dashboard.
//!
//! `[[notify]]` blocks name the receivers: Prometheus Alertmanager (its v2 API) or any webhook
//! (a JSON body, or Slack-compatible text). Every alert opening or resolving, and every
//! acknowledgement, becomes a row of the store's outbox ([`outbox`]) in the same transaction
//! that stores it; the [`Notifier`], a thread beside the pipeline, delivers the rows, in order
//! per receiver, and retries a receiver that is down with a backoff (1 s doubling to 5 min),
//! across restarts, until it answers: nothing is lost, and a replay of the input notifies
//! nobody twice.
//!
//! Alertmanager forgets a firing alert it has not heard of for its `resolve_timeout` (5 min by
//! default), so the notifier posts every open alert again each `repeat` (1 min); a resolved
//! alert goes with `endsAt`. An acknowledgement shows there as annotations on the alert
//! (`acknowledged_by`, `acknowledged_at`, `acknowledgement_note`), not as a silence: a silence
//! would stop the routing of every later alert of that series too, while the acknowledgement
//! is about this episode, and whoever is paged should still see the next one.

pub mod message;
pub mod outbox;

use std::collections::BTreeMap;
use std::time::{Duration as StdDuration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::clock::now_ms;
use crate::db::{Database, DbError};
use crate::types::{Duration, Invalid};
use message::Event;
use outbox::Due;

/// One `[[notify]]` table, told apart by `kind` (see `config::tagged`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyConfig {
    Alertmanager(AlertmanagerConfig),
    Webhook(WebhookConfig),
}

/// `kind = "alertmanager"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Names the receiver in the outbox and on the dashboard (default `alertmanager`).
    pub name: Option<String>,
    /// Alertmanager's address, e.g. `http://alertmanager:9093` (alerts go to `/api/v2/alerts`).
    pub url: String,
    /// Where people open the dashboard, for the link on each alert.
    pub dashboard_url: Option<String>,
    /// How often open alerts are posted again (below Alertmanager's `resolve_timeout`).
    #[serde(default = "default_repeat")]
    pub repeat: Duration,
}

fn default_repeat() -> Duration {
    Duration::from_secs(60)
}

/// `kind = "webhook"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the receiver in the outbox and on the dashboard (default `webhook`).
    pub name: Option<String>,
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    pub dashboard_url: Option<String>,
    /// Extra request headers, e.g. `{ Authorization = "Bearer ..." }`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The body a webhook gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{"event", "alert", "link", "text"}`.
    #[default]
    Json,
    /// `{"text"}`, as Slack, Mattermost and Rocket.Chat incoming webhooks take it.
    Slack,
}

impl NotifyConfig {
    /// The receiver's name: its `name`, or its kind.
    pub fn name(&self) -> &str {
        match self {
            NotifyConfig::Alertmanager(c) => c.name.as_deref().unwrap_or("alertmanager"),
            NotifyConfig::Webhook(c) => c.name.as_deref().unwrap_or("webhook"),
        }
    }

    fn url(&self) -> &str {
        match self {
            NotifyConfig::Alertmanager(c) => &c.url,
            NotifyConfig::Webhook(c) => &c.url,
        }
    }

    fn dashboard_url(&self) -> Option<&str> {
        match self {
            NotifyConfig::Alertmanager(c) => c.dashboard_url.as_deref(),
            NotifyConfig::Webhook(c) => c.dashboard_url.as_deref(),
        }
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        check_http_url("url", self.url())?;
        if let Some(dashboard) = self.dashboard_url() {
            check_http_url("dashboard_url", dashboard)?;
        }
        match self {
            NotifyConfig::Alertmanager(c) => c.repeat.positive("repeat").map(drop),
            NotifyConfig::Webhook(c) => {
                for (name, value) in &c.headers {
                    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                        || reqwest::header::HeaderValue::from_str(value).is_err()
                    {
                        return Err(Invalid::new(
                            format!("headers.{name}"),
                            "is not a valid HTTP header",
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}

fn check_http_url(key: &str, text: &str) -> Result<(), Invalid> {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(()),
        _ => Err(Invalid::new(
            key,
            format!("expected an http:// or https:// URL, not {text:?}"),
        )),
    }
}

/// Why a notification could not be delivered (it stays in the outbox and is retried).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notifications need the store for their outbox")]
    Store(#[from] DbError),
    #[error("request failed: {0}")]
    Request(#[from] reqwest::Error),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("starting the notifier: {0}")]
    Start(std::io::Error),
}

/// How long the notifier keeps trying what is still pending when the pipeline ends.
const DRAIN_FOR: StdDuration = StdDuration::from_secs(5);
/// How often the outbox is looked at.
const POLL_EVERY: StdDuration = StdDuration::from_millis(500);
/// Rows per look at the outbox.
const ROWS_PER_PASS: i64 = 500;
/// Open alerts posted again to Alertmanager at most.
const REPOST_MOST: i64 = 1000;
/// Longest wait between two attempts of one notification.
const MAX_BACKOFF_MS: i64 = 300_000;

/// The wait after `attempts` failed attempts: 1 s, 2 s, 4 s, ... at most 5 minutes.
pub fn backoff_ms(attempts: i64) -> i64 {
    1000_i64
        .saturating_mul(1 << attempts.clamp(0, 20))
        .min(MAX_BACKOFF_MS)
}

/// Delivers the outbox as a task on the process's runtime until told to stop, then tries what
/// is left for a few seconds ([`Notifier::finish`]).
pub struct Notifier {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    runtime: &'static tokio::runtime::Runtime,
}

impl Notifier {
    /// Starts delivering to `targets` from the outbox in `db` (the pipeline's database);
    /// `None` without targets.
    pub fn spawn(targets: &[NotifyConfig], db: Database) -> Result<Option<Notifier>, NotifyError> {
        if targets.is_empty() {
            return Ok(None);
        }
        let runtime = crate::runtime::runtime().map_err(NotifyError::Start)?;
        let client = reqwest::Client::builder()
            .connect_timeout(StdDuration::from_secs(5))
            .timeout(StdDuration::from_secs(10))
            .build()?;
        let (stop, stopped) = watch::channel(false);
        let worker = Worker {
            targets: targets.to_vec(),
            db,
            client,
            failing: vec![false; targets.len()],
            reposted: vec![None; targets.len()],
        };
        let task = runtime.spawn(worker.run(stopped));
        info!(receivers = targets.len(), "Notifier started.");
        Ok(Some(Notifier {
            stop,
            task,
            runtime,
        }))
    }

    /// Stops after trying, for a few seconds, what is still pending (the rest stays in the
    /// outbox for the next start).
    pub fn finish(self) {
        self.stop.send_replace(true);
        if self.runtime.block_on(self.task).is_err() {
            warn!("The notifier task panicked; pending notifications stay in the outbox.");
        }
    }
}

struct Worker {
    targets: Vec<NotifyConfig>,
    db: Database,
    client: reqwest::Client,
    /// Per target: its last attempt failed (so a recovery is logged once).
    failing: Vec<bool>,
    /// Per Alertmanager target: when its open alerts were last posted.
    reposted: Vec<Option<Instant>>,
}

impl Worker {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            self.pass(false).await;
            self.repost_open_alerts().await;
            // Told to stop, it stops waiting at once; with its `Notifier` dropped, it stops.
            if let Ok(Err(_)) = tokio::time::timeout(POLL_EVERY, stop.changed()).await {
                break;
            }
        }
        // The pipeline has ended: what is pending now is tried at once, again and again for a
        // few seconds, the backoff aside.
        let deadline = Instant::now() + DRAIN_FOR;
        while self.pass(true).await > 0 && Instant::now() < deadline {
            tokio::time::sleep(StdDuration::from_millis(200)).await;
        }
    }

    /// One look at the outbox; returns how many rows are still undelivered after it.
    /// `everything`: the backoff aside (the last tries when the pipeline ends).
    async fn pass(&mut self, everything: bool) -> usize {
        let now = if everything { i64::MAX } else { now_ms() };
        let mut undelivered = 0;
        for index in 0..self.targets.len() {
            let name = self.targets[index].name().to_owned();
            let mine = match outbox::pending(self.db.pool(), &name, ROWS_PER_PASS).await {
                Ok(mine) => mine,
                Err(error) => {
                    warn!(error = %self.db.error(error), "Cannot read the notification outbox.");
                    undelivered += 1;
                    continue;
                }
            };
            let mine: Vec<&Due> = mine.iter().collect();
            match mine.first() {
                // The receiver's oldest row waits out its backoff, and the rest behind it.
                Some(first) if first.next_attempt > now => undelivered += mine.len(),
                Some(_) => undelivered += self.deliver(index, &mine).await,
                None => {}
            }
        }
        undelivered
    }

    /// Delivers a target's rows in order, stopping at the first failure (the receiver is down:
    /// the rest keep their order and wait behind it). Returns how many stay undelivered.
    async fn deliver(&mut self, index: usize, due: &[&Due]) -> usize {
        let target = self.targets[index].clone();
        let batches: Vec<Vec<&Due>> = match &target {
            // Alertmanager takes a list: one post for them all.
            NotifyConfig::Alertmanager(_) => vec![due.to_vec()],
            NotifyConfig::Webhook(_) => due.iter().map(|d| vec![*d]).collect(),
        };
        let mut left = due.len();
        for batch in batches {
            match self.send(&target, &batch).await {
                Ok(()) => {
                    let now = now_ms();
                    for d in &batch {
                        let delivered = outbox::Attempt::Delivered { at: now };
                        if let Err(error) = outbox::attempted(self.db.pool(), d, delivered).await {
                            warn!(error = %self.db.error(error), "Cannot mark a notification delivered; it will be sent again.");
                        }
                    }
                    left -= batch.len();
                    if std::mem::replace(&mut self.failing[index], false) {
                        info!(receiver = target.name(), "Notifications go through again.");
                    }
                }
                Err(error) => {
                    let text = error.to_string();
                    if !std::mem::replace(&mut self.failing[index], true) {
                        warn!(receiver = target.name(), error = %text, "Cannot notify; retrying with backoff.");
                    } else {
                        debug!(receiver = target.name(), error = %text, "Still cannot notify.");
                    }
                    for d in &batch {
                        let failed = outbox::Attempt::Failed {
                            next_attempt: now_ms() + backoff_ms(d.attempts),
                            error: &text,
                        };
                        if let Err(error) = outbox::attempted(self.db.pool(), d, failed).await {
                            warn!(error = %self.db.error(error), "Cannot record a failed notification.");
                        }
                    }
                    break;
                }
            }
        }
        left
    }

    async fn send(&self, target: &NotifyConfig, batch: &[&Due]) -> Result<(), NotifyError> {
        let dashboard = target.dashboard_url();
        match target {
            NotifyConfig::Alertmanager(am) => {
                // The newest state of each alert: a resolution supersedes its opening.
                let mut latest: BTreeMap<&str, &Due> = BTreeMap::new();
                for d in batch {
                    let keep = latest
                        .get(d.alert.id.as_str())
                        .is_none_or(|kept| kept.event != Event::Resolved);
                    if keep {
                        latest.insert(d.alert.id.as_str(), d);
                    }
                }
                let alerts: Vec<serde_json::Value> = latest
                    .values()
                    .map(|d| {
                        let resolved = (d.event == Event::Resolved).then_some(d.created_at);
                        message::alertmanager(&d.alert, resolved, dashboard)
                    })
                    .collect();
                self.post_alertmanager(am, &alerts).await
            }
            NotifyConfig::Webhook(hook) => {
                for d in batch {
                    let body = match hook.format {
                        WebhookFormat::Json => message::webhook_json(&d.alert, d.event, dashboard),
                        WebhookFormat::Slack => {
                            message::webhook_slack(&d.alert, d.event, dashboard)
                        }
                    };
                    let mut request = self.client.post(&hook.url);
                    for (name, value) in &hook.headers {
                        request = request.header(name, value);
                    }
                    send_json(request, &body).await?;
                }
                Ok(())
            }
        }
    }

    async fn post_alertmanager(
        &self,
        am: &AlertmanagerConfig,
        alerts: &[serde_json::Value],
    ) -> Result<(), NotifyError> {
        let url = format!("{}/api/v2/alerts", am.url.trim_end_matches('/'));
        send_json(self.client.post(url), &serde_json::Value::from(alerts)).await
    }

    /// Posts each Alertmanager target's open alerts again once its `repeat` has passed.
    async fn repost_open_alerts(&mut self) {
        for index in 0..self.targets.len() {
            let NotifyConfig::Alertmanager(am) = &self.targets[index] else {
                continue;
            };
            let every = StdDuration::from_millis(am.repeat.ms() as u64);
            if self.reposted[index].is_some_and(|at| at.elapsed() < every) {
                continue;
            }
            self.reposted[index] = Some(Instant::now());
            let open = match outbox::open_alerts(self.db.pool(), REPOST_MOST).await {
                Ok(open) => open,
                Err(error) => {
                    warn!(error = %self.db.error(error), "Cannot read the open alerts.");
                    continue;
                }
            };
            if open.is_empty() {
                continue;
            }
            let alerts: Vec<serde_json::Value> = open
                .iter()
                .map(|a| message::alertmanager(a, None, am.dashboard_url.as_deref()))
                .collect();
            if let Err(error) = self.post_alertmanager(am, &alerts).await {
                debug!(receiver = am.name.as_deref().unwrap_or("alertmanager"), %error, "Cannot post the open alerts again; next time.");
            }
        }
    }
}

async fn send_json(
    request: reqwest::RequestBuilder,
    body: &serde_json::Value,
) -> Result<(), NotifyError> {
    let response = request
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    Err(NotifyError::Status {
        status: status.as_u16(),
        body: text.chars().take(200).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_second_to_five_minutes() {
        assert_eq!(backoff_ms(0), 1_000);
        assert_eq!(backoff_ms(3), 8_000);
        assert_eq!(backoff_ms(9), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(1_000), MAX_BACKOFF_MS);
    }

    #[test]
    fn receivers_are_checked_and_named() {
        let hook = NotifyConfig::Webhook(WebhookConfig {
            name: None,
            url: "ftp://x".into(),
            format: WebhookFormat::Json,
            dashboard_url: None,
            headers: BTreeMap::new(),
        });
        assert_eq!(hook.name(), "webhook");
        assert_eq!(
            hook.validate().unwrap_err().to_string(),
            "url: expected an http:// or https:// URL, not \"ftp://x\""
        );
        let am = NotifyConfig::Alertmanager(AlertmanagerConfig {
            name: Some("oncall".into()),
            url: "http://127.0.0.1:9093".into(),
            dashboard_url: Some("https://dash.example".into()),
            repeat: Duration::ZERO,
        });
        assert_eq!(am.name(), "oncall");
        assert_eq!(
            am.validate().unwrap_err().to_string(),
            "repeat: must be greater than zero"
        );
    }
}
