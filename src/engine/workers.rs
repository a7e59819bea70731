//! The engine's shards and the threads they run on: one shard on the caller's thread, or one
//! thread per shard, each owning its shard's state outright (no locks: requests and replies
//! go over bounded channels, a round of items at a time).
//!
//! A round is sent to every shard and its results are collected in the order rounds were
//! sent; on threads, the caller goes on reading the next round meanwhile.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::sync::Arc as Shared;

use super::keygroup::KgTask;
use super::output::Keyed;
use super::plan::EnginePlan;
use super::shard::{GroupState, Item, Shard, ShardDelta, ShardStats};
use super::snapshot::SnapshotError;

/// What a shard made of one round: its records in key order and the duplicates it found per
/// task; and the round's item vector, emptied, for the next round to reuse.
pub struct RoundResult {
    pub records: Vec<Keyed>,
    pub duplicates: Vec<(u32, u64)>,
    pub items: Vec<Item>,
}

enum Request {
    /// A round's items, a vector for its records (reused: a round's records are a few
    /// megabytes, and a fresh vector's pages are faulted in anew each round), and the position
    /// the round ends before.
    Round(Vec<Item>, Vec<Keyed>, u64),
    Delta {
        unit: u32,
        full: bool,
        pos: u64,
    },
    Replay {
        unit: u32,
        remap: Option<u32>,
        groups: Vec<GroupState>,
    },
    SeriesOf(u32),
    Take(u32),
    DropJoins(Vec<usize>),
    Stats,
}

enum Reply {
    Round(RoundResult),
    Delta(Result<ShardDelta, SnapshotError>),
    Replayed(Result<Vec<(u32, u64)>, SnapshotError>),
    Series(Vec<(u32, Shared<str>, u16, u32)>),
    Taken(Vec<(u16, KgTask)>),
    Dropped,
    Stats(ShardStats),
}

/// A shard's thread and its two channels.
struct Worker {
    requests: SyncSender<Request>,
    replies: Receiver<Reply>,
    thread: Option<JoinHandle<()>>,
}

/// The engine's shards, inline or on threads.
pub struct Shards {
    kind: Kind,
    /// Inline: the results of rounds run but not collected yet.
    done: VecDeque<Vec<RoundResult>>,
    /// How loaded each shard is, counted where it runs.
    loads: Vec<Arc<LoadCounters>>,
}

/// How loaded a shard is: what the status page and `/metrics` show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardLoad {
    /// Items sent to the shard and not yet run.
    pub queued: u64,
    /// Time spent running rounds since start.
    pub busy: Duration,
}

/// [`ShardLoad`] as the shard's thread and the engine update it.
#[derive(Debug, Default)]
struct LoadCounters {
    queued: AtomicU64,
    busy_ns: AtomicU64,
}

enum Kind {
    Inline(Vec<Shard>),
    Threads(Vec<Worker>),
}

impl Shards {
    /// `plan.threads` shards: on the caller's thread when it is 1, else each on its own.
    pub fn start(plan: &Arc<EnginePlan>) -> Shards {
        let count = plan.threads.max(1);
        let loads: Vec<Arc<LoadCounters>> = (0..count).map(|_| Arc::default()).collect();
        let kind = if count == 1 {
            Kind::Inline(vec![Shard::new(plan.clone())])
        } else {
            let workers: Option<Vec<Worker>> = (0..count)
                .map(|i| spawn(plan, i, loads[i].clone()))
                .collect();
            match workers {
                Some(workers) => Kind::Threads(workers),
                // Without threads, the same shards on the caller's thread.
                None => Kind::Inline((0..count).map(|_| Shard::new(plan.clone())).collect()),
            }
        };
        Shards {
            kind,
            done: VecDeque::new(),
            loads,
        }
    }

    /// How loaded each shard is.
    pub fn loads(&self) -> Vec<ShardLoad> {
        self.loads
            .iter()
            .map(|load| ShardLoad {
                queued: load.queued.load(Ordering::Relaxed),
                busy: Duration::from_nanos(load.busy_ns.load(Ordering::Relaxed)),
            })
            .collect()
    }

    pub fn count(&self) -> usize {
        match &self.kind {
            Kind::Inline(shards) => shards.len(),
            Kind::Threads(workers) => workers.len(),
        }
    }

    /// Sends a round (items per shard, and an empty vector per shard for its records) that
    /// ends before position `end`; its results come from [`Shards::collect`], rounds in the
    /// order sent.
    pub fn send(&mut self, items: Vec<Vec<Item>>, outs: Vec<Vec<Keyed>>, end: u64) {
        for (load, items) in self.loads.iter().zip(&items) {
            load.queued.fetch_add(items.len() as u64, Ordering::Relaxed);
        }
        match &mut self.kind {
            Kind::Inline(shards) => {
                let results = shards
                    .iter_mut()
                    .zip(items.into_iter().zip(outs))
                    .zip(&self.loads)
                    .map(|((shard, (items, records)), load)| {
                        run_round(shard, items, records, end, load)
                    })
                    .collect();
                self.done.push_back(results);
            }
            Kind::Threads(workers) => {
                for (worker, (items, records)) in workers.iter().zip(items.into_iter().zip(outs)) {
                    worker.send(Request::Round(items, records, end));
                }
            }
        }
    }

    /// The results of the oldest round sent and not collected, one per shard (waiting for
    /// them on threads).
    pub fn collect(&mut self) -> Vec<RoundResult> {
        match &mut self.kind {
            Kind::Inline(_) => self.done.pop_front().unwrap_or_default(),
            Kind::Threads(workers) => workers
                .iter()
                .map(|worker| match worker.receive() {
                    Reply::Round(result) => result,
                    _ => unreachable_reply(),
                })
                .collect(),
        }
    }

    /// Every shard's share of what a checkpoint of `unit` adds (see [`Shard::delta`]),
    /// together.
    pub fn delta(&mut self, unit: u32, full: bool, pos: u64) -> Result<ShardDelta, SnapshotError> {
        let deltas: Vec<Result<ShardDelta, SnapshotError>> = match &mut self.kind {
            Kind::Inline(shards) => shards
                .iter_mut()
                .map(|s| s.delta(unit, full, pos))
                .collect(),
            Kind::Threads(workers) => {
                for worker in workers.iter() {
                    worker.send(Request::Delta { unit, full, pos });
                }
                workers
                    .iter()
                    .map(|worker| match worker.receive() {
                        Reply::Delta(delta) => delta,
                        _ => unreachable_reply(),
                    })
                    .collect()
            }
        };
        let mut total = ShardDelta::default();
        for delta in deltas {
            let delta = delta?;
            total.images.extend(delta.images);
            total.logs.extend(delta.logs);
            total.covered.extend(delta.covered);
        }
        total.images.sort_by_key(|i| i.kg);
        total.logs.sort_by_key(|l| (l.kg, l.first_pos));
        total.covered.sort_unstable();
        Ok(total)
    }

    /// Restores key groups' state in the shards that own them (see [`Shard::replay`]);
    /// returns the duplicates so far per task.
    pub fn replay(
        &mut self,
        unit: u32,
        remap: Option<u32>,
        groups: Vec<GroupState>,
    ) -> Result<Vec<(u32, u64)>, SnapshotError> {
        let count = self.count();
        let mut per_shard: Vec<Vec<GroupState>> = (0..count).map(|_| Vec::new()).collect();
        for group in groups {
            per_shard[usize::from(group.kg) % count].push(group);
        }
        let results: Vec<Result<Vec<(u32, u64)>, SnapshotError>> = match &mut self.kind {
            Kind::Inline(shards) => shards
                .iter_mut()
                .zip(per_shard)
                .map(|(shard, groups)| shard.replay(unit, remap, groups))
                .collect(),
            Kind::Threads(workers) => {
                for (worker, groups) in workers.iter().zip(per_shard) {
                    worker.send(Request::Replay {
                        unit,
                        remap,
                        groups,
                    });
                }
                workers
                    .iter()
                    .map(|worker| match worker.receive() {
                        Reply::Replayed(result) => result,
                        _ => unreachable_reply(),
                    })
                    .collect()
            }
        };
        let mut duplicates = Vec::new();
        for result in results {
            duplicates.extend(result?);
        }
        Ok(duplicates)
    }

    /// A task's series in every shard: `(number in the task, label, key group, number there)`.
    pub fn series_of(&mut self, task: u32) -> Vec<(u32, Shared<str>, u16, u32)> {
        match &mut self.kind {
            Kind::Inline(shards) => shards.iter().flat_map(|s| s.series_of(task)).collect(),
            Kind::Threads(workers) => {
                for worker in workers.iter() {
                    worker.send(Request::SeriesOf(task));
                }
                workers
                    .iter()
                    .flat_map(|worker| match worker.receive() {
                        Reply::Series(series) => series,
                        _ => unreachable_reply(),
                    })
                    .collect()
            }
        }
    }

    /// Takes a task's state out of every shard.
    pub fn take(&mut self, task: u32) -> Vec<(u16, KgTask)> {
        let mut taken: Vec<(u16, KgTask)> = match &mut self.kind {
            Kind::Inline(shards) => shards.iter_mut().flat_map(|s| s.take_task(task)).collect(),
            Kind::Threads(workers) => {
                for worker in workers.iter() {
                    worker.send(Request::Take(task));
                }
                workers
                    .iter()
                    .flat_map(|worker| match worker.receive() {
                        Reply::Taken(taken) => taken,
                        _ => unreachable_reply(),
                    })
                    .collect()
            }
        };
        taken.sort_by_key(|(kg, _)| *kg);
        taken
    }

    /// Drops the rows of `joins` everywhere.
    pub fn drop_joins(&mut self, joins: &[usize]) {
        match &mut self.kind {
            Kind::Inline(shards) => shards.iter_mut().for_each(|s| s.drop_joins(joins)),
            Kind::Threads(workers) => {
                for worker in workers.iter() {
                    worker.send(Request::DropJoins(joins.to_vec()));
                }
                for worker in workers.iter() {
                    if !matches!(worker.receive(), Reply::Dropped) {
                        unreachable_reply();
                    }
                }
            }
        }
    }

    /// What the shards count, together.
    pub fn stats(&mut self) -> ShardStats {
        let all: Vec<ShardStats> = match &mut self.kind {
            Kind::Inline(shards) => shards.iter().map(Shard::stats).collect(),
            Kind::Threads(workers) => {
                for worker in workers.iter() {
                    worker.send(Request::Stats);
                }
                workers
                    .iter()
                    .map(|worker| match worker.receive() {
                        Reply::Stats(stats) => stats,
                        _ => unreachable_reply(),
                    })
                    .collect()
            }
        };
        let mut total = ShardStats::default();
        for stats in all {
            total.join_rows += stats.join_rows;
            for (task, n) in stats.dedup_entries {
                *total.dedup_entries.entry(task).or_default() += n;
            }
            for (task, n) in stats.series {
                *total.series.entry(task).or_default() += n;
            }
        }
        total
    }
}

fn run_round(
    shard: &mut Shard,
    mut items: Vec<Item>,
    mut records: Vec<Keyed>,
    end: u64,
    load: &LoadCounters,
) -> RoundResult {
    let started = Instant::now();
    let count = items.len() as u64;
    shard.run(&mut items, &mut records);
    shard.take_images(end);
    load.queued.fetch_sub(count, Ordering::Relaxed);
    let busy = started.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
    load.busy_ns.fetch_add(busy, Ordering::Relaxed);
    RoundResult {
        records,
        duplicates: shard.take_duplicates(),
        items,
    }
}

fn unreachable_reply() -> ! {
    // Each request has its one kind of reply, and replies come in the order of requests.
    panic!("a shard answered a request with the reply to another")
}

impl Worker {
    fn send(&self, request: Request) {
        if self.requests.send(request).is_err() {
            self.died();
        }
    }

    fn receive(&self) -> Reply {
        match self.replies.recv() {
            Ok(reply) => reply,
            Err(_) => self.died(),
        }
    }

    /// A shard's thread ended, which only a panic in it does: the same panic here, as on one
    /// thread.
    fn died(&self) -> ! {
        panic!("an engine shard's thread stopped (a panic in it; see above)")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the request channel ends the thread's loop.
        let (closed, _) = sync_channel(0);
        drop(std::mem::replace(&mut self.requests, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts shard `index` on a thread of its own; `None` when the system gives no thread.
fn spawn(plan: &Arc<EnginePlan>, index: usize, load: Arc<LoadCounters>) -> Option<Worker> {
    // Two rounds may wait: the one being read next is sent while this one runs.
    let (requests, inbox) = sync_channel::<Request>(2);
    let (outbox, replies) = sync_channel::<Reply>(2);
    let mut shard = Shard::new(plan.clone());
    let thread = std::thread::Builder::new()
        .name(format!("tidewatch-shard-{index}"))
        .spawn(move || {
            for request in inbox {
                let reply = match request {
                    Request::Round(items, records, end) => {
                        Reply::Round(run_round(&mut shard, items, records, end, &load))
                    }
                    Request::Delta { unit, full, pos } => {
                        Reply::Delta(shard.delta(unit, full, pos))
                    }
                    Request::Replay {
                        unit,
                        remap,
                        groups,
                    } => Reply::Replayed(shard.replay(unit, remap, groups)),
                    Request::SeriesOf(task) => Reply::Series(shard.series_of(task)),
                    Request::Take(task) => Reply::Taken(shard.take_task(task)),
                    Request::DropJoins(joins) => {
                        shard.drop_joins(&joins);
                        Reply::Dropped
                    }
                    Request::Stats => Reply::Stats(shard.stats()),
                };
                if outbox.send(reply).is_err() {
                    break;
                }
            }
        })
        .inspect_err(|error| tracing::warn!(%error, "Could not start an engine shard's thread."))
        .ok()?;
    Some(Worker {
        requests,
        replies,
        thread: Some(thread),
    })
}
