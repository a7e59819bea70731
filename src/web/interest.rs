//! Who wants which series: a WebSocket client of an overview page or of one series registers the
//! series it shows, and the live feed hands it the updates of just those series. (Each such
//! client filtering the whole hub itself cost the server one and a half cores at 1,000 clients
//! over 100,000 series, and its p99 latency was seconds.)
//!
//! A page gets, once per page interval (50 ms), the newest point of each of its series that
//! changed — the feed keeps those — so its cost does not grow with the event rate, nor with
//! the windows that close (every series' at once, at each window end: a page shows none). A
//! chart of one series gets every point and window as it comes. Alerts and acknowledgements go
//! to everyone as they happen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use crate::live::Update;

/// Deliveries queued for one client; more and it is resynchronised.
const QUEUE: usize = 256;

/// The registered clients and the series each one wants.
#[derive(Default)]
pub struct Interest {
    index: Mutex<Index>,
}

#[derive(Default)]
struct Index {
    /// stream → series → ids of the clients that want it.
    by_series: HashMap<String, HashMap<String, Vec<u64>>>,
    clients: HashMap<u64, Client>,
    next_id: u64,
}

struct Client {
    sender: mpsc::Sender<Vec<Update>>,
    lagged: Arc<AtomicBool>,
    series: Vec<(String, String)>,
    /// Every point as it comes (a chart), rather than the newest per batch (a list).
    every_point: bool,
}

/// A client's place in the index; dropping it takes the client out.
pub struct Registration {
    id: u64,
    interest: Arc<Interest>,
    receiver: mpsc::Receiver<Vec<Update>>,
    lagged: Arc<AtomicBool>,
}

impl Interest {
    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a client for `series` (stream, series): it receives their points and windows
    /// as they come (`every_point`: a chart of one series), or the newest point of each per
    /// page interval (a page); and every alert.
    pub fn register(
        self: &Arc<Self>,
        series: Vec<(String, String)>,
        every_point: bool,
    ) -> Registration {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let lagged = Arc::new(AtomicBool::new(false));
        let mut index = self.index();
        let id = index.next_id;
        index.next_id += 1;
        for (stream, name) in &series {
            index
                .by_series
                .entry(stream.clone())
                .or_default()
                .entry(name.clone())
                .or_default()
                .push(id);
        }
        index.clients.insert(
            id,
            Client {
                sender,
                lagged: lagged.clone(),
                series,
                every_point,
            },
        );
        Registration {
            id,
            interest: self.clone(),
            receiver,
            lagged,
        }
    }

    fn deregister(&self, id: u64) {
        let mut index = self.index();
        let Some(client) = index.clients.remove(&id) else {
            return;
        };
        for (stream, name) in client.series {
            if let Some(names) = index.by_series.get_mut(&stream) {
                if let Some(ids) = names.get_mut(&name) {
                    ids.retain(|&other| other != id);
                    if ids.is_empty() {
                        names.remove(&name);
                    }
                }
                if names.is_empty() {
                    index.by_series.remove(&stream);
                }
            }
        }
    }

    /// Hands the updates of one sink write to the clients that want them as they come: points
    /// and windows to the charts of their series, alerts and acknowledgements to every
    /// client.
    pub fn deliver(&self, updates: &[Update]) {
        let index = self.index();
        if index.clients.is_empty() {
            return;
        }
        let mut outgoing: HashMap<u64, Vec<Update>> = HashMap::new();
        // Without a chart open, a sink write's points and windows (100,000 windows at once
        // when every series' window closes) need no lookup at all.
        let charts = index.clients.values().any(|c| c.every_point);
        for update in updates {
            // Points and windows go to charts of one series as they come; a page shows
            // neither windows nor every point (it gets the newest, see `deliver_newest`).
            let (stream, series) = match update {
                Update::Point(_) | Update::Window(_) if !charts => continue,
                Update::Point(p) => (&p.stream, &p.series),
                Update::Window(w) => (&w.stream, &w.series),
                Update::Alert(_) | Update::Ack(_) => {
                    for &id in index.clients.keys() {
                        outgoing.entry(id).or_default().push(update.clone());
                    }
                    continue;
                }
            };
            for id in index.wanting(stream, series) {
                if index.clients[id].every_point {
                    outgoing.entry(*id).or_default().push(update.clone());
                }
            }
        }
        index.send(outgoing);
    }

    /// Hands the newest point of each series that changed since the last batch to the clients
    /// that list it (every page interval, from the feed).
    pub fn deliver_newest<'u>(&self, newest: impl Iterator<Item = &'u Update>) {
        let index = self.index();
        if index.clients.is_empty() {
            return;
        }
        let mut outgoing: HashMap<u64, Vec<Update>> = HashMap::new();
        for update in newest {
            let Update::Point(p) = update else { continue };
            for id in index.wanting(&p.stream, &p.series) {
                if !index.clients[id].every_point {
                    outgoing.entry(*id).or_default().push(update.clone());
                }
            }
        }
        index.send(outgoing);
    }

    /// The feed lost updates: every registered client starts again from a snapshot.
    pub fn all_lagged(&self) {
        for client in self.index().clients.values() {
            client.lagged.store(true, Ordering::Relaxed);
        }
    }

    #[cfg(test)]
    fn registered(&self) -> (usize, usize) {
        let index = self.index();
        (index.clients.len(), index.by_series.len())
    }
}

impl Index {
    /// The clients of one series.
    fn wanting(&self, stream: &str, series: &str) -> &[u64] {
        self.by_series
            .get(stream)
            .and_then(|names| names.get(series))
            .map_or(&[], Vec::as_slice)
    }

    /// Queues each client's updates as one delivery, never waiting: a client whose queue is
    /// full is marked to be resynchronised with a snapshot.
    fn send(&self, outgoing: HashMap<u64, Vec<Update>>) {
        for (id, updates) in outgoing {
            let Some(client) = self.clients.get(&id) else {
                continue;
            };
            if let Err(mpsc::error::TrySendError::Full(_)) = client.sender.try_send(updates) {
                client.lagged.store(true, Ordering::Relaxed);
            }
        }
    }
}

impl Registration {
    /// The next delivery for this client.
    pub async fn recv(&mut self) -> Option<Vec<Update>> {
        self.receiver.recv().await
    }

    /// Whether updates were lost since the last call: the client needs a fresh snapshot.
    pub fn take_lagged(&self) -> bool {
        self.lagged.swap(false, Ordering::Relaxed)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.interest.deregister(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::PointRecord;

    fn point(series: &str) -> Update {
        let record: PointRecord = serde_json::from_value(serde_json::json!({
            "stream": "s", "series": series, "ts": 1, "value": 1.0, "sma": 1.0, "ewma": 1.0,
            "slope": null, "trend": "flat", "z": null, "anomaly": false
        }))
        .unwrap();
        Update::Point(Arc::new(record))
    }

    fn names(delivery: Option<Vec<Update>>) -> Vec<String> {
        let mut names: Vec<String> = delivery
            .unwrap_or_default()
            .iter()
            .map(|u| match u {
                Update::Point(p) => p.series.to_string(),
                _ => "other".into(),
            })
            .collect();
        names.sort();
        names
    }

    #[tokio::test(flavor = "current_thread")]
    async fn pages_get_the_newest_points_per_batch_charts_get_every_point() {
        let interest = Arc::new(Interest::default());
        let page_series = vec![("s".into(), "x".into()), ("s".into(), "y".into())];
        let mut page = interest.register(page_series, false);
        let mut chart = interest.register(vec![("s".into(), "y".into())], true);
        // As they come: points go to charts only.
        interest.deliver(&[point("x"), point("y"), point("y"), point("z")]);
        assert_eq!(names(chart.recv().await), ["y", "y"]);
        assert!(
            page.receiver.try_recv().is_err(),
            "a page gets points per batch"
        );
        // Windows: to the chart of their series; a page shows none.
        let window: crate::record::WindowRecord = serde_json::from_value(serde_json::json!({
            "stream": "s", "series": "y", "kind": "tumbling", "window_start": 0,
            "window_end": 60000, "count": 1, "sum": 1.0, "mean": 1.0, "min": 1.0, "max": 1.0,
            "stddev": null, "first": 1.0, "last": 1.0, "final": true
        }))
        .unwrap();
        interest.deliver(&[Update::Window(window)]);
        assert_eq!(names(chart.recv().await), ["other"]);
        assert!(page.receiver.try_recv().is_err(), "a page gets no windows");
        // Per batch: the newest points go to the pages that list them.
        interest.deliver_newest([point("x"), point("y"), point("z")].iter());
        assert_eq!(names(page.recv().await), ["x", "y"]);
        assert!(
            chart.receiver.try_recv().is_err(),
            "a chart had its points already"
        );
        drop(page);
        drop(chart);
        assert_eq!(interest.registered(), (0, 0));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_client_that_falls_behind_is_marked_not_waited_for() {
        let interest = Arc::new(Interest::default());
        let slow = interest.register(vec![("s".into(), "x".into())], true);
        for _ in 0..=QUEUE {
            interest.deliver(&[point("x")]);
        }
        assert!(slow.take_lagged());
        assert!(!slow.take_lagged(), "the mark is taken once");
    }
}
