//! The engine's shards and the threads they run on: one shard on the caller's thread, or one
//! thread per shard, each owning its shard's state outright (no locks: requests and replies
//! go over bounded channels, a round of items at a time).
//!
//! A round is sent to every shard and its results are collected in the order rounds were
//! sent; on threads, the caller goes on reading the next round meanwhile.

use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::keygroup::KgTask;
use super::output::Keyed;
use super::plan::EnginePlan;
use super::shard::{GroupImage, Item, Shard, ShardStats};
use super::SnapshotError;

/// What a shard made of one round: its records in key order and the duplicates it found per
/// task; and the round's item vector, emptied, for the next round to reuse.
pub struct RoundResult {
    pub records: Vec<Keyed>,
    pub duplicates: Vec<(u32, u64)>,
    pub items: Vec<Item>,
}

enum Request {
    /// A round's items, and a vector for its records (reused: a round's records are a few
    /// megabytes, and a fresh vector's pages are faulted in anew each round).
    Round(Vec<Item>, Vec<Keyed>),
    Images {
        tasks: Vec<u32>,
        joins: bool,
    },
    Install(Vec<(u16, GroupImage)>),
    Take(u32),
    DropJoins(Vec<usize>),
    Stats,
}

enum Reply {
    Round(RoundResult),
    Images(Result<(u32, Vec<u8>), SnapshotError>),
    Installed(Vec<(u32, u64)>),
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
}

enum Kind {
    Inline(Vec<Shard>),
    Threads(Vec<Worker>),
}

impl Shards {
    /// `plan.threads` shards: on the caller's thread when it is 1, else each on its own.
    pub fn start(plan: &Arc<EnginePlan>) -> Shards {
        let count = plan.threads.max(1);
        let kind = if count == 1 {
            Kind::Inline(vec![Shard::new(plan.clone())])
        } else {
            let workers: Option<Vec<Worker>> = (0..count).map(|i| spawn(plan, i)).collect();
            match workers {
                Some(workers) => Kind::Threads(workers),
                // Without threads, the same shards on the caller's thread.
                None => Kind::Inline((0..count).map(|_| Shard::new(plan.clone())).collect()),
            }
        };
        Shards {
            kind,
            done: VecDeque::new(),
        }
    }

    pub fn count(&self) -> usize {
        match &self.kind {
            Kind::Inline(shards) => shards.len(),
            Kind::Threads(workers) => workers.len(),
        }
    }

    /// Sends a round (items per shard, and an empty vector per shard for its records); its
    /// results come from [`Shards::collect`], rounds in the order sent.
    pub fn send(&mut self, items: Vec<Vec<Item>>, outs: Vec<Vec<Keyed>>) {
        match &mut self.kind {
            Kind::Inline(shards) => {
                let results = shards
                    .iter_mut()
                    .zip(items.into_iter().zip(outs))
                    .map(|(shard, (items, records))| run_round(shard, items, records))
                    .collect();
                self.done.push_back(results);
            }
            Kind::Threads(workers) => {
                for (worker, (items, records)) in workers.iter().zip(items.into_iter().zip(outs)) {
                    worker.send(Request::Round(items, records));
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

    /// Each shard's images of the key groups of `tasks` (and the joins' rows, with `joins`):
    /// how many, and their bytes. On threads each shard encodes its own at once.
    pub fn images(
        &mut self,
        tasks: &[u32],
        joins: bool,
    ) -> Result<Vec<(u32, Vec<u8>)>, SnapshotError> {
        match &mut self.kind {
            Kind::Inline(shards) => shards
                .iter()
                .map(|shard| encode_images(shard, tasks, joins))
                .collect(),
            Kind::Threads(workers) => {
                for worker in workers.iter() {
                    worker.send(Request::Images {
                        tasks: tasks.to_vec(),
                        joins,
                    });
                }
                workers
                    .iter()
                    .map(|worker| match worker.receive() {
                        Reply::Images(images) => images,
                        _ => unreachable_reply(),
                    })
                    .collect()
            }
        }
    }

    /// Puts key groups' state into the shards that own them; returns the duplicates found so
    /// far per task.
    pub fn install(&mut self, groups: Vec<(u16, GroupImage)>) -> Vec<(u32, u64)> {
        let count = self.count();
        let mut per_shard: Vec<Vec<(u16, GroupImage)>> = (0..count).map(|_| Vec::new()).collect();
        for (kg, image) in groups {
            per_shard[usize::from(kg) % count].push((kg, image));
        }
        match &mut self.kind {
            Kind::Inline(shards) => shards
                .iter_mut()
                .zip(per_shard)
                .flat_map(|(shard, groups)| {
                    groups
                        .into_iter()
                        .flat_map(|(kg, image)| shard.install(kg, image))
                        .collect::<Vec<_>>()
                })
                .collect(),
            Kind::Threads(workers) => {
                for (worker, groups) in workers.iter().zip(per_shard) {
                    worker.send(Request::Install(groups));
                }
                workers
                    .iter()
                    .flat_map(|worker| match worker.receive() {
                        Reply::Installed(duplicates) => duplicates,
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

fn run_round(shard: &mut Shard, mut items: Vec<Item>, mut records: Vec<Keyed>) -> RoundResult {
    shard.run(&mut items, &mut records);
    RoundResult {
        records,
        duplicates: shard.take_duplicates(),
        items,
    }
}

/// A shard's images as one run of bytes: each `(key group, image)` encoded after the other.
fn encode_images(
    shard: &Shard,
    tasks: &[u32],
    joins: bool,
) -> Result<(u32, Vec<u8>), SnapshotError> {
    let images = shard.images(tasks, joins);
    let mut bytes = Vec::new();
    for image in &images {
        bytes = postcard::to_extend(image, bytes).map_err(SnapshotError::Encoding)?;
    }
    Ok((images.len() as u32, bytes))
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
fn spawn(plan: &Arc<EnginePlan>, index: usize) -> Option<Worker> {
    // Two rounds may wait: the one being read next is sent while this one runs.
    let (requests, inbox) = sync_channel::<Request>(2);
    let (outbox, replies) = sync_channel::<Reply>(2);
    let mut shard = Shard::new(plan.clone());
    let thread = std::thread::Builder::new()
        .name(format!("tidewatch-shard-{index}"))
        .spawn(move || {
            for request in inbox {
                let reply = match request {
                    Request::Round(items, records) => {
                        Reply::Round(run_round(&mut shard, items, records))
                    }
                    Request::Images { tasks, joins } => {
                        Reply::Images(encode_images(&shard, &tasks, joins))
                    }
                    Request::Install(groups) => Reply::Installed(
                        groups
                            .into_iter()
                            .flat_map(|(kg, image)| shard.install(kg, image))
                            .collect(),
                    ),
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
