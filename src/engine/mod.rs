//! The streaming engine: pure, synchronous and deterministic.
//!
//! It takes decoded events (with the source partition they came from) and explicit processing-time
//! ticks, and returns records. It does no I/O and never reads a clock, so the same input in the
//! same order always gives the same output — which is what lets it be tested against brute-force
//! models, replayed from a checkpoint, and benchmarked without Kafka.
//!
//! # Semantics
//!
//! Times are epoch milliseconds. Each event passes, in this order:
//!
//! 1. **Watermark and lateness**: per source partition, `max event time seen − lateness`. A
//!    stream's watermark is the minimum over its partitions that are not idle; a partition with
//!    no event for `idle_timeout` of processing time (measured by the ticks) is idle and ignored
//!    until it sends again; when all are idle, the maximum over all. A partition that has been
//!    seen but sent no event time yet holds the watermark at its start. The watermark never goes
//!    backwards. An event is *late* when its time is below **its own partition's** watermark
//!    (Kafka Streams' rule: each task judges grace by its own stream time), or below the
//!    stream's when that is further on (only for a partition that was idle while the others
//!    moved on). A late event goes to no dedup, window, analytics or join, but becomes a `late`
//!    record (with the watermark it missed and by how much). Never dropped silently — a re-sent
//!    late event is reported late again. Every other event moves its partition's watermark,
//!    duplicates included (they are found in the shards, after the watermark; a stream that
//!    feeds a join finds them before, and there a duplicate moves nothing). Windows, points
//!    and joins move on the stream's watermark, which is never ahead of a partition's own, so
//!    an accepted event can never reach a closed window, and which events are late depends on
//!    each partition's log alone, not on how the partitions interleave: a replay gives the
//!    same records.
//! 2. **Dedup** (when the stream has `dedup`), for events that are not late: an event whose `id`
//!    was already accepted for an event **of the same series** at most `horizon` away in event
//!    time is a duplicate: dropped and counted. Because only events at or after the watermark
//!    are checked, state can be evicted by the watermark exactly (see [`dedup::Dedup`]), so it
//!    stays bounded. Events without an id are never duplicates.
//! 3. **Windows**, per (stream, series): tumbling and sliding windows aligned to the Unix epoch,
//!    half-open `[start, end)`, sliding built from `gcd(size, slide)` panes; session windows in
//!    which events at most `gap` apart share a session `[first, last + gap)`. Aggregates: count,
//!    sum, mean, min, max, sample stddev (`null` for one event), first and last (by event time,
//!    ties by (partition, offset): [`LogOrder`]). An aligned window is emitted once, as `final`,
//!    when the watermark reaches its end (`watermark ≥ end`); a session when the watermark passes
//!    its end (`watermark > last + gap`). Windows with no events are not emitted. A `global`
//!    window (Spark's complete mode) holds a series' whole history, `[0, i64::MAX)`: after an
//!    event changes it, it is re-emitted with `final: false` when the watermark reaches the next
//!    multiple of its `update` interval, and once as `final` at end of input; sinks upsert it.
//! 4. **Per-point analytics**, per series, in event-time order: events wait in a reorder buffer
//!    until the watermark passes them (`ts < watermark`), ties broken by (partition, offset). For
//!    each point, in that order: the mean of the last `sma_points` values including itself; EWMA
//!    with `ewma_alpha`, seeded with the first value; the least-squares slope (units/second) over
//!    the points in `[ts − trend_window, ts]` released so far, labelled rising/falling when its
//!    t-statistic is at least [`points::TREND_MIN_T`] in size, else flat; the z-score of the
//!    point's residual (value minus the seasonal expectation, when a daily or weekly profile is
//!    in use) against the baseline — the residuals of the series' last `zscore.points` points,
//!    none older than `zscore.window` before the newest, as of the last refresh every
//!    [`anomaly::baseline::REFRESH_EVERY`] points — by median/MAD × 1.4826 or sample
//!    mean/stddev, the spread floored; no z below `min_samples` baseline points. Every point
//!    joins the baseline. The point is anomalous, with `method = "auto"`, when the anomaly
//!    likelihood of the recent z-scores (or of this one alone) is improbable for the series,
//!    else when `|z| ≥ threshold`. The details are in [`anomaly`].
//! 5. **Alerts**: anomalous points of a series form one episode, one alert with a stable id,
//!    re-emitted when a more extreme point joins; `resolve_after` normal points in a row resolve
//!    it; an anomaly within `refractory` points of its last anomalous point reopens it, a later
//!    one starts a new episode and a new alert.
//! 6. **Interval joins** between two streams on the series label or a named field: pairs with
//!    `|t_left − t_right| ≤ within`, emitted as soon as the second one arrives; inner or
//!    left-outer. Rows are evicted once the joint watermark (the minimum of both streams') is
//!    past `t + within`; an unmatched left row is then emitted with an empty right side.
//!
//! **End of input** ([`Engine::finish`]): every watermark moves to +∞, so every window closes,
//! every buffered point is released and every join row is evicted. Open alert episodes stay open.
//!
//! # Keyed shards
//!
//! A stream runs as a *task* (under a consumer group, a task per partition): its
//! [`router`] tracks the partitions' watermarks, judges lateness and numbers its series where
//! the events are read; everything kept per series lives in [`keygroup`]s, 128 hash buckets of
//! series labels, which `engine.threads` [`shard`]s own (group `g` on shard `g mod threads`).
//! Each shard runs on a thread of its own (one shard runs on the caller's), taking the events of
//! its key groups and every step of a task's watermark, a round of input at a time. Every
//! record carries a key that says where one engine would have written it ([`output`]), so the
//! shards' records merge into exactly the records of one shard, in the same order, whatever the
//! number of threads; and a checkpoint taken with some number of shards restores with any
//! other.
//!
//! # Memory
//!
//! Per series and stream: the series label and its place (~100 B, with the router); per aligned
//! window spec, one pane (~90 B) per `gcd(size, slide)` of event time within `size + lateness`;
//! per session spec, one open session (~80 B) per gap-separated burst within `gap + lateness`;
//! for analytics, `sma_points` values (8 B each), the points of `trend_window` (16 B each), the
//! anomaly detector's baseline (8 B per point of `zscore.points`, 16 with a `zscore.window`), its
//! seasonal profiles with `season = "auto"` (two of at most 168 bins, 8 B each: 2.7 KB), about
//! 200 B of running statistics, an open alert episode (~300 B, only while one is open), and the
//! reorder buffer (32 B per event within `lateness`). Dedup keeps each id of the last
//! `horizon + lateness` of event time, at most about twice that between its sweeps (~25 B per
//! id whatever its length: a 128-bit hash of it, see [`dedup::IdKey`]). Nothing grows with the
//! length of the stream; the number of series is capped by `max_series`.

pub mod anomaly;
pub mod changelog;
pub mod dedup;
pub mod input;
pub mod join;
pub mod keygroup;
pub mod operator;
pub mod output;
pub mod plan;
pub mod points;
pub mod reorder;
pub mod router;
pub mod shard;
mod snapshot;
pub mod stats;
pub mod time;
pub mod window;
mod workers;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::event::Event;
use crate::record::Record;

use self::changelog::STATIC_UNIT;
use self::output::{Keyed, OutputKey, SubKey};
use self::plan::EnginePlan;
use self::router::{Round, TaskRouter};
use self::shard::Item;
pub use self::workers::ShardLoad;
use self::workers::Shards;

pub use self::changelog::{StateDelta, StoredState};
pub use self::input::{LogOrder, Origin, RejectError, StreamCounters};
pub use self::snapshot::SnapshotError;

/// Items a shard's share of a round holds before the round is run without being asked: keeps a
/// caller that only ever calls [`Engine::process`] in bounded memory.
const ROUND_ITEMS: usize = 16_384;

/// Emptied vectors of earlier rounds (items, records), kept for the rounds after: a round's
/// records are megabytes, and a fresh vector's pages are faulted in again every round. One
/// grown far beyond a round (by the end of input) is let go instead.
#[derive(Default)]
struct Spares {
    items: Vec<Vec<Item>>,
    records: Vec<Vec<Keyed>>,
}

/// Capacity beyond which an emptied vector is not kept.
const SPARE_ITEMS: usize = 4 * ROUND_ITEMS;

impl Spares {
    fn items(&mut self) -> Vec<Item> {
        self.items.pop().unwrap_or_default()
    }

    fn records(&mut self) -> Vec<Keyed> {
        self.records.pop().unwrap_or_default()
    }

    fn keep_items(&mut self, items: Vec<Item>) {
        if items.capacity() <= SPARE_ITEMS && self.items.len() < 16 {
            self.items.push(items);
        }
    }

    fn keep_records(&mut self, records: Vec<Keyed>) {
        if records.capacity() <= SPARE_ITEMS && self.records.len() < 16 {
            self.records.push(records);
        }
    }
}

/// The engine of a pipeline: every task of its streams and the joins between them.
///
/// Input goes in with [`Engine::process`], [`Engine::reject`], [`Engine::tick`] and
/// [`Engine::finish`], a round at a time; [`Engine::end_round`] hands the round to the shards
/// (and, on threads, the records of the round before to the caller), [`Engine::land`] waits
/// for what is left. With one thread a round is run when it ends.
pub struct Engine {
    plan: Arc<EnginePlan>,
    /// By task id: a static stream's task is the stream's index; tasks of group-assigned
    /// streams come after.
    routers: Vec<Option<TaskRouter>>,
    /// Under a consumer group, per stream: which task each series comes from.
    owners: HashMap<usize, HashMap<Arc<str>, u32>>,
    shards: Shards,
    /// The next input position.
    pos: u64,
    /// The round being read: items per shard, and the records made here.
    items: Vec<Vec<Item>>,
    records: Vec<Keyed>,
    /// Records made here for each round sent to the shards and not collected, oldest first.
    in_flight: VecDeque<Vec<Keyed>>,
    /// Emptied vectors of earlier rounds, for the next ones (see [`Spares`]).
    spares: Spares,
    /// Duplicates the shards found, per task.
    duplicates: HashMap<u32, u64>,
}

impl Engine {
    /// The engine of `plan`'s streams and joins, on its shards.
    pub fn new(plan: EnginePlan) -> Self {
        let plan = Arc::new(plan);
        let shards = Shards::start(&plan);
        let mut engine = Engine {
            routers: Vec::new(),
            owners: HashMap::new(),
            items: (0..shards.count()).map(|_| Vec::new()).collect(),
            shards,
            pos: 0,
            records: Vec::new(),
            in_flight: VecDeque::new(),
            spares: Spares::default(),
            duplicates: HashMap::new(),
            plan,
        };
        for (index, stream) in engine.plan.streams.iter().enumerate() {
            let router = (!stream.group_assigned).then(|| TaskRouter::new(index, stream));
            engine.routers.push(router);
        }
        for index in 0..engine.plan.streams.len() {
            if engine.routers[index].is_some() {
                engine.open(index as u32, index, i64::MIN);
            }
        }
        engine
    }

    pub fn plan(&self) -> &EnginePlan {
        &self.plan
    }

    /// Tells every shard a task starts.
    fn open(&mut self, task: u32, stream: usize, watermark: i64) {
        for items in &mut self.items {
            items.push(Item::Open {
                task,
                stream,
                watermark,
            });
        }
    }

    fn round(&mut self) -> (Round<'_>, &mut Vec<Option<TaskRouter>>) {
        (
            Round {
                pos: &mut self.pos,
                items: &mut self.items,
                records: &mut self.records,
            },
            &mut self.routers,
        )
    }

    /// Processes one event of task `task` (a static stream's index) at processing time `now`.
    /// Records come out of later calls that take `out`, in order.
    pub fn process(
        &mut self,
        task: usize,
        event: &Event<'_>,
        origin: Origin<'_>,
        now: i64,
        out: &mut Vec<Record>,
    ) -> Result<(), RejectError> {
        let Engine {
            plan,
            routers,
            owners,
            pos,
            items,
            records,
            ..
        } = self;
        let Some(router) = routers.get_mut(task).and_then(Option::as_mut) else {
            return Err(RejectError::UnknownStream(task));
        };
        let stream_plan = &plan.streams[router.stream];
        let owners = stream_plan
            .group_assigned
            .then(|| owners.entry(router.stream).or_default());
        let mut round = Round {
            pos,
            items,
            records,
        };
        let task_id = task as u32;
        let claim = |label: &str| match owners {
            None => Ok(()),
            Some(owners) => match owners.get(label) {
                Some(&other) if other != task_id => Err(RejectError::OtherPartition {
                    series: label.to_owned(),
                    partition: other,
                }),
                _ => {
                    owners.insert(Arc::from(label), task_id);
                    Ok(())
                }
            },
        };
        let routed = router.route(task_id, stream_plan, event, origin, now, &mut round, claim);
        if self.items.iter().any(|items| items.len() >= ROUND_ITEMS) {
            self.end_round(out);
        }
        routed
    }

    /// Puts a record the caller made (a dead letter) into the output where it belongs among
    /// the engine's.
    pub fn reject(&mut self, record: Record) {
        let pos = self.pos;
        self.pos += 1;
        self.records.push((
            OutputKey {
                pos,
                op: 0,
                sub: SubKey::default(),
            },
            record,
        ));
    }

    /// Declares a split (source partition) of a task before it delivers anything: until its
    /// first event it holds the task's watermark where it is.
    pub fn assign_split(&mut self, task: usize, split: u32, now: i64) {
        if let Some(Some(router)) = self.routers.get_mut(task) {
            router.assign_split(split, now);
        }
    }

    /// Advances processing time: idle partitions stop holding watermarks back.
    pub fn tick(&mut self, now: i64) {
        let (mut round, routers) = self.round();
        for (task, router) in routers.iter_mut().enumerate() {
            if let Some(router) = router {
                router.tick(task as u32, now, &mut round);
            }
        }
    }

    /// End of input: closes every window, releases every point, evicts every join row, and
    /// hands over every record.
    pub fn finish(&mut self, out: &mut Vec<Record>) {
        let (mut round, routers) = self.round();
        for (task, router) in routers.iter_mut().enumerate() {
            if let Some(router) = router {
                router.finish(task as u32, &mut round);
            }
        }
        self.settle(out);
    }

    /// Hands the round read so far to the shards, and appends to `out` the records of earlier
    /// rounds: on threads, all but the round just sent (which runs while the caller reads the
    /// next); with one shard, all of them.
    pub fn end_round(&mut self, out: &mut Vec<Record>) {
        let nothing = self.records.is_empty() && self.items.iter().all(Vec::is_empty);
        if !nothing {
            let count = self.items.len();
            let fresh = (0..count).map(|_| self.spares.items()).collect();
            let items = std::mem::replace(&mut self.items, fresh);
            let outs = (0..count).map(|_| self.spares.records()).collect();
            self.shards.send(items, outs, self.pos);
            let records = std::mem::replace(&mut self.records, self.spares.records());
            self.in_flight.push_back(records);
        }
        let keep = usize::from(self.shards.count() > 1);
        while self.in_flight.len() > keep {
            self.collect(out);
        }
    }

    /// Appends to `out` the records of every round sent, waiting for them.
    pub fn land(&mut self, out: &mut Vec<Record>) {
        while !self.in_flight.is_empty() {
            self.collect(out);
        }
    }

    /// Ends the round and lands everything: `out` gets every record of the input so far.
    pub fn settle(&mut self, out: &mut Vec<Record>) {
        self.end_round(out);
        self.land(out);
    }

    /// How loaded each shard is.
    pub fn shard_loads(&self) -> Vec<ShardLoad> {
        self.shards.loads()
    }

    /// Whether a round is being run on the shards' threads.
    pub fn in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    fn collect(&mut self, out: &mut Vec<Record>) {
        let Some(records) = self.in_flight.pop_front() else {
            return;
        };
        let results = self.shards.collect();
        let mut lists = Vec::with_capacity(results.len() + 1);
        lists.push(records);
        for result in results {
            for (task, n) in result.duplicates {
                *self.duplicates.entry(task).or_default() += n;
            }
            lists.push(result.records);
            self.spares.keep_items(result.items);
        }
        output::merge(&mut lists, out);
        for list in lists {
            self.spares.keep_records(list);
        }
    }

    /// Starts a task for a partition of group-assigned stream `stream`, from `state` (what a
    /// [`Engine::delta`] of a task stored) when it has one; returns the task's id. A series
    /// the restored task has is its own from now on: the task that had it before is refused
    /// it. Lands what is in flight first (its records go to `out`).
    pub fn open_task(
        &mut self,
        stream: usize,
        state: Option<&StoredState>,
        out: &mut Vec<Record>,
    ) -> Result<usize, SnapshotError> {
        let task = self.routers.len() as u32;
        let plan = self.plan.clone();
        self.settle(out);
        let router = match state {
            Some(state) => {
                let (pos, mut routers) = snapshot::read_head::<TaskRouter>(&state.head)?;
                let (_, mut router) = routers.pop().ok_or(SnapshotError::Damaged)?;
                router.stream = stream;
                // Its logs number entries as the engine that wrote them did: what comes next
                // here must come after them (a jump forward keeps the output's order).
                self.pos = self.pos.max(pos);
                self.open(task, stream, router.watermark.current());
                self.settle(out);
                self.replay(task, Some(task), state)?;
                router.restore_series(self.shards.series_of(task));
                let owners = self.owners.entry(stream).or_default();
                for label in router.labels() {
                    owners.insert(label.clone(), task);
                }
                router
            }
            None => {
                self.open(task, stream, i64::MIN);
                TaskRouter::new(stream, &plan.streams[stream])
            }
        };
        self.routers.push(Some(router));
        Ok(task as usize)
    }

    /// Restores the key groups of `unit` from `state` (see [`Shard::replay`]).
    fn replay(
        &mut self,
        unit: u32,
        remap: Option<u32>,
        state: &StoredState,
    ) -> Result<(), SnapshotError> {
        let mut groups: HashMap<u16, shard::GroupState> = HashMap::new();
        let group = |kg: u16| shard::GroupState {
            kg,
            image: None,
            logs: Vec::new(),
        };
        for image in &state.images {
            groups
                .entry(image.kg)
                .or_insert_with(|| group(image.kg))
                .image = Some(image.clone());
        }
        for segment in &state.logs {
            groups
                .entry(segment.kg)
                .or_insert_with(|| group(segment.kg))
                .logs
                .push(segment.clone());
        }
        let mut groups: Vec<shard::GroupState> = groups.into_values().collect();
        groups.sort_by_key(|g| g.kg);
        for group in &mut groups {
            group.logs.sort_by_key(|l| l.first_pos);
        }
        for (task, n) in self.shards.replay(unit, remap, groups)? {
            *self.duplicates.entry(task).or_default() += n;
        }
        Ok(())
    }

    /// What a checkpoint of a task adds to its stored state (see [`Engine::delta`]). Lands
    /// what is in flight first (its records go to `out`).
    pub fn task_delta(
        &mut self,
        task: usize,
        out: &mut Vec<Record>,
    ) -> Result<StateDelta, SnapshotError> {
        self.settle(out);
        self.unit_delta(task as u32, false)
    }

    /// Ends a task (a partition the group took away): its state is dropped; what it counted
    /// is returned. Lands what is in flight first (its records go to `out`).
    pub fn close_task(&mut self, task: usize, out: &mut Vec<Record>) -> StreamCounters {
        self.settle(out);
        let counters = self.counters(task).unwrap_or_default();
        if let Some(router) = self.routers.get_mut(task).and_then(Option::take) {
            if let Some(owners) = self.owners.get_mut(&router.stream) {
                owners.retain(|_, owner| *owner != task as u32);
            }
        }
        self.shards.take(task as u32);
        self.duplicates.remove(&(task as u32));
        counters
    }

    /// Runs what is queued when no records can come of it: the tasks opening in a fresh or
    /// restored engine.
    fn settle_quietly(&mut self) {
        let mut out = Vec::new();
        self.settle(&mut out);
        debug_assert!(out.is_empty(), "records made while tasks opened");
    }

    /// The ids of the tasks of stream `stream`.
    pub fn tasks_of(&self, stream: usize) -> Vec<usize> {
        self.routers
            .iter()
            .enumerate()
            .filter(|(_, r)| r.as_ref().is_some_and(|r| r.stream == stream))
            .map(|(task, _)| task)
            .collect()
    }

    /// Forgets everything stream `stream` holds: the watermark of each of its partitions,
    /// dedup, windows not yet closed, the per-point analytics and open alert episodes, its
    /// series and counters; and the rows of the joins it feeds, which start afresh on both
    /// sides. The way out of a watermark an event moved too far on; what the stream reads next
    /// is taken as from a new start. Returns whether there is such a static stream. (A restored
    /// engine has nothing in flight: no records are lost here.)
    pub fn reset_stream(&mut self, stream: usize) -> bool {
        let Some(stream_plan) = self.plan.streams.get(stream).cloned() else {
            return false;
        };
        if stream_plan.group_assigned || self.routers.get(stream).is_none_or(Option::is_none) {
            return false;
        }
        self.settle_quietly();
        self.shards.take(stream as u32);
        self.duplicates.remove(&(stream as u32));
        self.routers[stream] = Some(TaskRouter::new(stream, &stream_plan));
        self.open(stream as u32, stream, i64::MIN);
        let joins: Vec<usize> = stream_plan.joins.iter().map(|&(j, _, _)| j).collect();
        self.shards.drop_joins(&joins);
        self.settle_quietly();
        true
    }

    /// What a checkpoint of the static streams and their joins adds to their stored state:
    /// the routers', the key groups' logs since the last checkpoint and the images the shards
    /// took meanwhile (see [`changelog`]). With `full`, every key group's image now instead, and
    /// no log: everything stored before can go. Refused while a round is read or run
    /// ([`SnapshotError::Busy`]).
    pub fn delta(&mut self, full: bool) -> Result<StateDelta, SnapshotError> {
        if self.in_flight()
            || !self.records.is_empty()
            || self
                .items
                .iter()
                .any(|items| items.iter().any(|item| !matches!(item, Item::Open { .. })))
        {
            return Err(SnapshotError::Busy);
        }
        // Open items of a fresh engine: the shards learn of the tasks first.
        self.settle_quietly();
        self.unit_delta(STATIC_UNIT, full)
    }

    fn unit_delta(&mut self, unit: u32, full: bool) -> Result<StateDelta, SnapshotError> {
        let tasks: Vec<u32> = match unit {
            STATIC_UNIT => self
                .routers
                .iter()
                .enumerate()
                .filter(|(task, r)| {
                    r.is_some()
                        && self
                            .plan
                            .streams
                            .get(*task)
                            .is_some_and(|s| !s.group_assigned)
                })
                .map(|(task, _)| task as u32)
                .collect(),
            task => vec![task],
        };
        let routers: Vec<(u32, &TaskRouter)> = tasks
            .iter()
            .filter_map(|&t| self.routers.get(t as usize)?.as_ref().map(|r| (t, r)))
            .collect();
        let head = snapshot::head(self.pos, &routers)?;
        let shards = self.shards.delta(unit, full, self.pos)?;
        Ok(StateDelta {
            head,
            images: shards.images,
            logs: shards.logs,
            covered: shards.covered,
            full,
        })
    }

    /// The whole state of the static streams and joins, as a store would hold it after a full
    /// checkpoint.
    pub fn full_state(&mut self) -> Result<StoredState, SnapshotError> {
        Ok(self.delta(true)?.apply(None))
    }

    /// An engine of `plan` with the state of the static streams and joins `state` holds, on
    /// the plan's shards (whatever the number it was written with).
    pub fn restore(plan: EnginePlan, state: &StoredState) -> Result<Engine, SnapshotError> {
        let (pos, routers) = snapshot::read_head(&state.head)?;
        let mut engine = Engine::new(plan);
        engine.settle_quietly();
        for (task, router) in routers {
            let slot = engine
                .routers
                .get_mut(task as usize)
                .ok_or(SnapshotError::Damaged)?;
            *slot = Some(router);
        }
        // The shards learn the tasks' watermarks now, which the replay ends at.
        for task in 0..engine.routers.len() {
            if let Some(router) = &engine.routers[task] {
                let (stream, watermark) = (router.stream, router.watermark.current());
                engine.open(task as u32, stream, watermark);
            }
        }
        engine.settle_quietly();
        engine.replay(STATIC_UNIT, None, state)?;
        for task in 0..engine.routers.len() {
            if engine.routers[task].is_some() {
                let series = engine.shards.series_of(task as u32);
                if let Some(router) = engine.routers[task].as_mut() {
                    router.restore_series(series);
                }
            }
        }
        engine.pos = pos;
        Ok(engine)
    }

    /// The task's current watermark (`i64::MIN` before any event).
    pub fn watermark(&self, task: usize) -> Option<i64> {
        self.router(task).map(|r| r.watermark.current())
    }

    /// Each source partition's watermark contribution, for the status page.
    pub fn partition_watermarks(&self, task: usize) -> Vec<(u32, time::PartitionWatermark)> {
        self.router(task)
            .map(|r| r.watermark.partitions().collect())
            .unwrap_or_default()
    }

    pub fn counters(&self, task: usize) -> Option<StreamCounters> {
        let duplicates = self.duplicates.get(&(task as u32)).copied().unwrap_or(0);
        self.router(task).map(|r| r.counters(duplicates))
    }

    fn router(&self, task: usize) -> Option<&TaskRouter> {
        self.routers.get(task).and_then(Option::as_ref)
    }

    /// Ids the dedup of a task remembers now (0 without dedup): to check it stays bounded.
    pub fn dedup_entries(&mut self, task: usize) -> usize {
        let stats = self.shards.stats();
        let here = self.router(task).map_or(0, TaskRouter::dedup_entries);
        here + stats
            .dedup_entries
            .get(&(task as u32))
            .copied()
            .unwrap_or(0)
    }

    /// Rows buffered in all joins.
    pub fn join_rows(&mut self) -> usize {
        self.shards.stats().join_rows
    }
}

#[cfg(test)]
mod tests;
