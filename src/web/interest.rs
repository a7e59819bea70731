//! Who wants which series: a WebSocket client of an overview page or of one series registers the
//! series it shows, and the live feed hands each update to just those clients. (Each such client
//! filtering the whole hub itself cost the server one and a half cores at 1,000 clients over
//! 100,000 series, and its p99 latency was seconds.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use crate::live::Update;

/// Updates queued for one client between its batches; more and it is resynchronised.
const QUEUE: usize = 4096;

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
    sender: mpsc::Sender<Update>,
    lagged: Arc<AtomicBool>,
    series: Vec<(String, String)>,
}

/// A client's place in the index; dropping it takes the client out.
pub struct Registration {
    id: u64,
    interest: Arc<Interest>,
    receiver: mpsc::Receiver<Update>,
    lagged: Arc<AtomicBool>,
}

impl Interest {
    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a client for `series` (stream, series): it receives their points and windows,
    /// and every alert.
    pub fn register(self: &Arc<Self>, series: Vec<(String, String)>) -> Registration {
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

    /// Hands each update to the clients that want it: a point or window to the clients of its
    /// series, an alert or acknowledgement to every client. Never waits: a client whose queue
    /// is full is marked to be resynchronised with a snapshot.
    pub fn deliver(&self, updates: &[Update]) {
        let index = self.index();
        if index.clients.is_empty() {
            return;
        }
        let send = |client: &Client, update: &Update| {
            if let Err(mpsc::error::TrySendError::Full(_)) = client.sender.try_send(update.clone())
            {
                client.lagged.store(true, Ordering::Relaxed);
            }
        };
        for update in updates {
            let (stream, series) = match update {
                Update::Point(p) => (&p.stream, &p.series),
                Update::Window(w) => (&w.stream, &w.series),
                Update::Alert(_) | Update::Ack(_) => {
                    index.clients.values().for_each(|c| send(c, update));
                    continue;
                }
            };
            let Some(ids) = index
                .by_series
                .get(&**stream)
                .and_then(|names| names.get(&**series))
            else {
                continue;
            };
            for id in ids {
                if let Some(client) = index.clients.get(id) {
                    send(client, update);
                }
            }
        }
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

impl Registration {
    /// The next update for this client (pending for ever once the index dropped it, which
    /// only happens when the registration itself goes).
    pub async fn recv(&mut self) -> Option<Update> {
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

    #[tokio::test(flavor = "current_thread")]
    async fn each_client_gets_its_own_series_and_leaves_no_trace() {
        let interest = Arc::new(Interest::default());
        let mut a = interest.register(vec![("s".into(), "x".into()), ("s".into(), "y".into())]);
        let mut b = interest.register(vec![("s".into(), "y".into())]);
        interest.deliver(&[point("x"), point("y"), point("z")]);
        let series = |u: Option<Update>| match u {
            Some(Update::Point(p)) => p.series.to_string(),
            _ => "none".into(),
        };
        assert_eq!(series(a.recv().await), "x");
        assert_eq!(series(a.recv().await), "y");
        assert_eq!(series(b.recv().await), "y");
        assert!(
            b.receiver.try_recv().is_err(),
            "b got a series it did not ask for"
        );
        drop(a);
        drop(b);
        assert_eq!(interest.registered(), (0, 0));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_client_that_falls_behind_is_marked_not_waited_for() {
        let interest = Arc::new(Interest::default());
        let slow = interest.register(vec![("s".into(), "x".into())]);
        let burst: Vec<Update> = (0..QUEUE + 1).map(|_| point("x")).collect();
        interest.deliver(&burst);
        assert!(slow.take_lagged());
        assert!(!slow.take_lagged(), "the mark is taken once");
    }
}
