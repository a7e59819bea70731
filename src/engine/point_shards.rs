//! The per-series state of per-point analytics, kept in shards that threads take in turn.
//!
//! A series' points must be computed in order by one thread at a time; different series are
//! independent. The states live in [`SHARDS`] shards by series id (`id mod SHARDS`), so the
//! points of a round are shared out as work items: whichever thread is free takes the next
//! shard — a helper thread, or the engine thread when it would otherwise wait (on its helper,
//! or on decoded input). Fixed ranges of series per thread, the way before, left a fast
//! thread idle while a slow one (sharing its core with the decoder) finished its range.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::anomaly::Detection;
use super::points::{AnalyticsConfig, SeriesAnalytics};
use super::reorder::Buffered;
use crate::record::Record;

/// Shards of series states: enough that threads finishing at different times still end
/// together (a shard of a round of 8,192 points is about 0.1 ms of work), few enough that
/// sorting a round's points into them costs nothing much.
pub const SHARDS: usize = 32;

/// Every series' state, by id: series `id` is at `shards[id % SHARDS][id / SHARDS]`.
#[derive(Serialize, Deserialize)]
pub struct SeriesStates {
    shards: Vec<Vec<Option<SeriesAnalytics>>>,
}

impl Default for SeriesStates {
    fn default() -> Self {
        SeriesStates {
            shards: (0..SHARDS).map(|_| Vec::new()).collect(),
        }
    }
}

fn locate(series: u32) -> (usize, usize) {
    let id = series as usize;
    (id % SHARDS, id / SHARDS)
}

impl SeriesStates {
    pub fn get_mut(&mut self, series: u32) -> Option<&mut SeriesAnalytics> {
        let (shard, index) = locate(series);
        self.shards.get_mut(shard)?.get_mut(index)?.as_mut()
    }

    /// The state of `series`, made by `make` if it has none yet.
    pub fn get_or_insert_with(&mut self, series: u32, make: impl FnOnce() -> SeriesAnalytics) {
        let (shard, index) = locate(series);
        if self.shards.len() < SHARDS {
            self.shards.resize_with(SHARDS, Vec::new);
        }
        let states = &mut self.shards[shard];
        if index >= states.len() {
            states.resize_with(index + 1, || None);
        }
        states[index].get_or_insert_with(make);
    }
}

/// What computing a point reads besides its series' state.
#[derive(Clone)]
pub struct Context {
    pub stream: Arc<str>,
    pub config: AnalyticsConfig,
    pub detection: Detection,
}

/// Computes `points` one after the other on this thread, appending their records to `out`;
/// calls `done` with the length of `out` after each point. A point of a series without state
/// (none is released without one) makes no record.
pub fn compute_in_order<'p>(
    states: &mut SeriesStates,
    points: impl Iterator<Item = &'p Buffered>,
    context: &Context,
    out: &mut Vec<Record>,
    mut done: impl FnMut(usize),
) {
    for &point in points {
        if let Some(state) = states.get_mut(point.series) {
            state.compute(
                &context.stream,
                &context.config,
                &context.detection,
                point,
                out,
            );
        }
        done(out.len());
    }
}

/// The points of a round, shared out by shard among whichever threads call [`RoundJob::work`]
/// or [`RoundJob::help`]; [`RoundJob::finish`] puts the records in release order, as one
/// thread would have written them, and gives the states back.
pub struct RoundJob {
    context: Context,
    /// In release order.
    points: Vec<Buffered>,
    shards: Vec<Mutex<ShardWork>>,
    /// The next shard no thread has taken.
    next: AtomicUsize,
}

/// One shard of a round: its series' states, its points (in release order), and once
/// computed their records and, per point, where its records end among them.
#[derive(Default)]
struct ShardWork {
    states: Vec<Option<SeriesAnalytics>>,
    points: Vec<Buffered>,
    records: Vec<Record>,
    ends: Vec<usize>,
}

impl RoundJob {
    /// Takes the states of every series out of `states` (they come back in
    /// [`RoundJob::finish`]) and sorts `points` into their shards.
    pub fn new(states: &mut SeriesStates, points: Vec<Buffered>, context: Context) -> Self {
        let mut shards: Vec<ShardWork> = std::mem::take(&mut states.shards)
            .into_iter()
            .map(|states| ShardWork {
                states,
                ..ShardWork::default()
            })
            .collect();
        shards.resize_with(SHARDS, ShardWork::default);
        let each = points.len() / SHARDS + points.len() / (4 * SHARDS) + 1;
        for shard in &mut shards {
            shard.points.reserve(each);
        }
        for point in &points {
            shards[locate(point.series).0].points.push(*point);
        }
        RoundJob {
            context,
            points,
            shards: shards.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Points of the round.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Computes the next shard no thread has taken; false when none is left (the others may
    /// still be computing theirs).
    pub fn help(&self) -> bool {
        let shard = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(work) = self.shards.get(shard) else {
            return false;
        };
        let mut work = lock(work);
        let ShardWork {
            states,
            points,
            records,
            ends,
        } = &mut *work;
        // The stream's name in a copy of the shard's own: every point record holds it, and
        // threads counting references to one copy pass its cache line back and forth.
        let stream: Arc<str> = Arc::from(&*self.context.stream);
        records.reserve(points.len() + points.len() / 64);
        ends.reserve(points.len());
        for &point in points.iter() {
            let (_, index) = locate(point.series);
            if let Some(state) = states.get_mut(index).and_then(Option::as_mut) {
                let (config, detection) = (&self.context.config, &self.context.detection);
                state.compute(&stream, config, detection, point, records);
            }
            ends.push(records.len());
        }
        true
    }

    /// Computes shards until none is left.
    pub fn work(&self) {
        while self.help() {}
    }

    /// Once every shard is computed (each thread that called [`RoundJob::work`] returned):
    /// gives the states back to `states` and appends the records to `out` in release order,
    /// calling `done` with the length of `out` after each point's records.
    pub fn finish(
        &self,
        states: &mut SeriesStates,
        out: &mut Vec<Record>,
        mut done: impl FnMut(usize),
    ) {
        // Whatever no thread took (none, when every one worked to the end).
        self.work();
        let mut cursors = Vec::with_capacity(self.shards.len());
        states.shards = Vec::with_capacity(self.shards.len());
        for work in &self.shards {
            let work = std::mem::take(&mut *lock(work));
            states.shards.push(work.states);
            cursors.push((work.records.into_iter(), work.ends.into_iter(), 0usize));
        }
        out.reserve(cursors.iter().map(|(records, ..)| records.len()).sum());
        for point in &self.points {
            let (records, ends, taken) = &mut cursors[locate(point.series).0];
            let end = ends.next().unwrap_or(*taken);
            out.extend(records.by_ref().take(end - *taken));
            *taken = end;
            done(out.len());
        }
    }
}

/// A shard's lock. One thread holds it while it computes the shard, and then only
/// [`RoundJob::finish`]: a panic while computing is re-raised by whoever joins that thread,
/// so a poisoned lock holds nothing anyone goes on with.
fn lock(work: &Mutex<ShardWork>) -> MutexGuard<'_, ShardWork> {
    work.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Computes `points` on `threads` threads (this one among them), taking shards in turn,
/// and appends their records to `out` in release order; calls `done` with the length of `out`
/// after each point's records.
pub fn compute_in_parallel(
    states: &mut SeriesStates,
    points: Vec<Buffered>,
    threads: usize,
    context: &Context,
    out: &mut Vec<Record>,
    done: impl FnMut(usize),
) {
    let job = RoundJob::new(states, points, context.clone());
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(|| job.work())).collect();
        job.work();
        for helper in helpers {
            if let Err(panic) = helper.join() {
                // A panic in the analytics is a bug; let it surface as on one thread.
                std::panic::resume_unwind(panic);
            }
        }
    });
    job.finish(states, out, done);
}
