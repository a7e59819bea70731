//! Alert episodes: one incident, one alert.
//!
//! Anomalous points of a series form an episode, with a stable id from its first point. The
//! alert is written when the episode opens, each time a more extreme point joins it, and when
//! `resolve_after` normal points in a row resolve it. An anomalous point within `refractory`
//! points of the episode's last anomalous one reopens it instead of starting another: a
//! flapping series is one incident, not a page every few minutes.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::record::{AlertMethod, AlertRecord, AlertState, Direction, Record, Severity};

/// What an anomalous point contributes to its alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The test that fired.
    pub method: AlertMethod,
    pub ts: i64,
    pub value: f64,
    pub expected: f64,
    pub spread: f64,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub z: f64,
    /// How far past normal the point is; the most extreme point of an episode has the highest.
    pub score: f64,
    pub probability: f64,
    /// The score beyond which an alert is critical.
    pub critical_at: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Episodes {
    resolve_after: u32,
    refractory: u32,
    /// The episode that is open, or resolved but still within its refractory period. Boxed: a
    /// series seldom has one, and the engine's per-series state is read for every point.
    current: Option<Box<Episode>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Episode {
    alert: AlertRecord,
    /// Normal points since the last anomalous one.
    quiet: u32,
}

impl Episodes {
    pub fn new(resolve_after: u32, refractory: u32) -> Self {
        Episodes {
            resolve_after: resolve_after.max(1),
            refractory,
            current: None,
        }
    }

    #[cfg(test)]
    pub fn is_open(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|e| e.alert.state == AlertState::Open)
    }

    /// Feeds one point: `finding` for an anomalous one, `None` for a normal one. `open_alert`
    /// builds the record of a new episode.
    pub fn on_point(
        &mut self,
        finding: Option<&Finding>,
        open_alert: impl FnOnce(&Finding) -> AlertRecord,
        out: &mut Vec<Record>,
    ) {
        match (finding, self.current.as_mut()) {
            (Some(finding), Some(episode)) => {
                episode.quiet = 0;
                let reopened = episode.alert.state == AlertState::Resolved;
                if reopened {
                    episode.alert.state = AlertState::Open;
                }
                let worse = finding.score > episode.alert.score.unwrap_or(f64::NEG_INFINITY);
                if worse {
                    fill(&mut episode.alert, finding);
                }
                if reopened || worse {
                    out.push(Record::Alert(Box::new(episode.alert.clone())));
                }
            }
            (Some(finding), None) => {
                let alert = open_alert(finding);
                out.push(Record::Alert(Box::new(alert.clone())));
                self.current = Some(Box::new(Episode { alert, quiet: 0 }));
            }
            (None, Some(episode)) => {
                episode.quiet = episode.quiet.saturating_add(1);
                if episode.alert.state == AlertState::Open && episode.quiet >= self.resolve_after {
                    episode.alert.state = AlertState::Resolved;
                    out.push(Record::Alert(Box::new(episode.alert.clone())));
                }
                if episode.alert.state == AlertState::Resolved && episode.quiet >= self.refractory {
                    self.current = None;
                }
            }
            (None, None) => {}
        }
    }
}

/// Makes `f` the alert's point: the most extreme of its episode so far.
fn fill(alert: &mut AlertRecord, f: &Finding) {
    alert.ts = f.ts;
    alert.value = f.value;
    alert.expected = f.expected;
    alert.stddev = f.spread;
    alert.lower = f.lower;
    alert.upper = f.upper;
    alert.z = f.z;
    alert.score = Some(f.score);
    alert.probability = Some(f.probability);
    alert.method = f.method;
    alert.direction = if f.z >= 0.0 {
        Direction::High
    } else {
        Direction::Low
    };
    alert.severity = if f.score >= f.critical_at {
        Severity::Critical
    } else {
        Severity::Warning
    };
}

/// A stable alert id: FNV-1a over (stream, series, episode start), so a replay of the same input
/// produces the same ids and sinks can upsert on them.
pub fn alert_id(stream: &str, series: &str, episode_start: i64) -> String {
    let bytes = stream
        .bytes()
        .chain([0xff])
        .chain(series.bytes())
        .chain([0xff])
        .chain(episode_start.to_le_bytes());
    format!("{:016x}", crate::digest::fnv1a(bytes))
}

/// The alert of a new episode that starts with `finding`.
pub fn new_alert(
    stream: &Arc<str>,
    series: &Arc<str>,
    expectation: String,
    finding: &Finding,
) -> AlertRecord {
    let mut alert = AlertRecord {
        id: alert_id(stream, series, finding.ts),
        stream: stream.clone(),
        series: series.clone(),
        ts: 0,
        value: 0.0,
        expected: 0.0,
        stddev: 0.0,
        lower: None,
        upper: None,
        z: 0.0,
        score: None,
        probability: None,
        method: finding.method,
        expectation: Some(expectation),
        direction: Direction::High,
        severity: Severity::Warning,
        episode_start: finding.ts,
        state: AlertState::Open,
        acked_by: None,
        acked_at: None,
        note: None,
        verdict: None,
    };
    fill(&mut alert, finding);
    alert
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(ts: i64, z: f64) -> Finding {
        Finding {
            method: AlertMethod::Threshold,
            ts,
            value: z,
            expected: 0.0,
            spread: 1.0,
            lower: Some(-3.0),
            upper: Some(3.0),
            z,
            score: z.abs(),
            probability: 0.001,
            critical_at: 6.0,
        }
    }

    fn feed(
        e: &mut Episodes,
        points: &[(i64, Option<f64>)],
    ) -> Vec<(i64, i64, AlertState, Direction, Severity)> {
        let stream: Arc<str> = "s".into();
        let series: Arc<str> = "a".into();
        let mut out = Vec::new();
        for &(ts, z) in points {
            let f = z.map(|z| finding(ts, z));
            e.on_point(
                f.as_ref(),
                |f| new_alert(&stream, &series, "flat".into(), f),
                &mut out,
            );
        }
        out.iter()
            .map(|r| match r {
                Record::Alert(a) => (a.ts, a.episode_start, a.state, a.direction, a.severity),
                _ => panic!("only alerts"),
            })
            .collect()
    }

    #[test]
    fn an_episode_opens_takes_its_worst_point_and_resolves() {
        let mut e = Episodes::new(2, 0);
        let alerts = feed(
            &mut e,
            &[
                (10, Some(4.0)),
                (11, Some(3.5)),
                (12, None),
                (13, Some(-7.0)),
                (14, None),
                (15, None),
            ],
        );
        assert!(!e.is_open());
        assert_eq!(
            alerts,
            vec![
                (10, 10, AlertState::Open, Direction::High, Severity::Warning),
                (13, 10, AlertState::Open, Direction::Low, Severity::Critical),
                (
                    13,
                    10,
                    AlertState::Resolved,
                    Direction::Low,
                    Severity::Critical
                ),
            ]
        );
        // Without a refractory period the next anomaly is a new episode.
        let next = feed(&mut e, &[(16, Some(4.0))]);
        assert_eq!(next[0].1, 16);
    }

    #[test]
    fn within_the_refractory_period_an_anomaly_reopens_the_episode() {
        let mut e = Episodes::new(1, 5);
        let alerts = feed(
            &mut e,
            &[(10, Some(4.0)), (11, None), (12, None), (13, Some(3.0))],
        );
        assert_eq!(
            alerts.iter().map(|a| (a.1, a.2)).collect::<Vec<_>>(),
            vec![
                (10, AlertState::Open),
                (10, AlertState::Resolved),
                (10, AlertState::Open),
            ]
        );
        // Five quiet points end the refractory period: the next anomaly is a new alert.
        let later = feed(
            &mut e,
            &[
                (14, None),
                (15, None),
                (16, None),
                (17, None),
                (18, None),
                (19, Some(5.0)),
            ],
        );
        assert_eq!(
            later.last().map(|a| (a.1, a.2)),
            Some((19, AlertState::Open))
        );
        assert_ne!(alert_id("s", "a", 10), alert_id("s", "a", 19));
        assert_ne!(alert_id("sa", "", 10), alert_id("s", "a", 10));
    }
}
