//! One key group's share of the engine state: for each task (a stream, or under a consumer
//! group one partition of it), the dedup, windows and per-point analytics of the task's series
//! whose labels hash to this group; and the rows of the joins whose keys hash here.
//!
//! Series are spread over a fixed number of key groups ([`KEY_GROUPS`]), and key groups over
//! shards. A key group is the unit state moves in: a checkpoint written with some number of
//! shards restores with any other, one key group at a time, and within a group series are
//! numbered densely from 0, so its operators index vectors, not maps.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::dedup::{Dedup, IdKey};
use super::input::{Accepted, LogOrder};
use super::join::{IntervalJoin, JoinInput, Side};
use super::operator::Operator;
use super::output::{Emitted, Keyed, JOIN_OPS};
use super::plan::{EnginePlan, StreamPlan};
use super::points::PointAnalytics;
use super::window::{AlignedWindows, GlobalWindows, SessionWindows, WindowSpec};

/// How many key groups series are spread over, whatever the number of shards: as Flink's
/// maximum parallelism, the most shards a pipeline can use.
pub const KEY_GROUPS: u16 = 128;

/// The key group of a series whose label hashes to `hash`.
pub fn key_group(hash: u64) -> u16 {
    (hash % u64::from(KEY_GROUPS)) as u16
}

/// The stable hash of a series label (or join key): where it goes, and what its dedup keys are
/// salted with. Seedless and fixed by the algorithm, so it means the same after a restart.
pub fn label_hash(label: &str) -> u64 {
    twox_hash::XxHash3_64::oneshot(label.as_bytes())
}

/// The operators a stream can run. An enum rather than trait objects so the state can be
/// checkpointed with serde.
#[derive(Serialize, Deserialize)]
pub enum StreamOperator {
    Aligned(AlignedWindows),
    Session(SessionWindows),
    Global(GlobalWindows),
    /// Boxed: one per stream, and far larger than the window operators.
    Points(Box<PointAnalytics>),
}

impl StreamOperator {
    fn as_operator(&mut self) -> &mut dyn Operator {
        match self {
            StreamOperator::Aligned(op) => op,
            StreamOperator::Session(op) => op,
            StreamOperator::Global(op) => op,
            StreamOperator::Points(op) => op.as_mut(),
        }
    }

    /// The operators of `stream`, in the order their records come out.
    pub fn of(stream: &StreamPlan) -> Vec<StreamOperator> {
        let name = &stream.name;
        let mut operators: Vec<StreamOperator> = stream
            .windows
            .iter()
            .map(|spec| match *spec {
                WindowSpec::Tumbling { size } => {
                    StreamOperator::Aligned(AlignedWindows::tumbling(name.clone(), size.ms()))
                }
                WindowSpec::Sliding { size, slide } => StreamOperator::Aligned(
                    AlignedWindows::sliding(name.clone(), size.ms(), slide.ms()),
                ),
                WindowSpec::Session { gap } => {
                    StreamOperator::Session(SessionWindows::new(name.clone(), gap.ms()))
                }
                WindowSpec::Global { update } => {
                    StreamOperator::Global(GlobalWindows::new(name.clone(), update.ms()))
                }
            })
            .collect();
        if let Some(analytics) = stream.analytics {
            operators.push(StreamOperator::Points(Box::new(PointAnalytics::new(
                name.clone(),
                analytics,
            ))));
        }
        operators
    }
}

/// A series of a key group: its label and its number in its task (the order of its first
/// event), which orders records due at the same time the way one engine would.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GroupSeries {
    label: Arc<str>,
    global: u32,
}

/// An accepted event for a task's state in a key group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventItem {
    pub pos: u64,
    pub task: u32,
    pub kg: u16,
    /// The series' number in this key group.
    pub series: u32,
    pub ts: i64,
    pub value: f64,
    pub seq: LogOrder,
    /// The event's id within its series, when the stream deduplicates and the event has one.
    pub dedup: Option<IdKey>,
}

/// An event offered to a join, in the key group of its join key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinItem {
    pub pos: u64,
    pub join: usize,
    pub side: Side,
    pub kg: u16,
    pub key: Arc<str>,
    pub ts: i64,
    pub seq: LogOrder,
    pub value: f64,
    pub id: Option<Arc<str>>,
}

/// A task's state in one key group.
#[derive(Serialize, Deserialize)]
pub struct KgTask {
    series: Vec<GroupSeries>,
    dedup: Option<Dedup>,
    operators: Vec<StreamOperator>,
    /// Events found to be duplicates, over the task's life.
    pub duplicates: u64,
    /// The watermark this group is registered as due at with its shard (not state).
    #[serde(skip)]
    pub registered: Option<i64>,
}

impl KgTask {
    pub fn new(stream: &StreamPlan) -> Self {
        KgTask {
            series: Vec::new(),
            dedup: stream
                .dedup
                .filter(|_| !stream.dedups_at_router())
                .map(|d| Dedup::new(d.horizon.ms())),
            operators: StreamOperator::of(stream),
            duplicates: 0,
            registered: None,
        }
    }

    /// Adds a series; its number here is the next one.
    pub fn add_series(&mut self, label: Arc<str>, global: u32) -> u32 {
        self.series.push(GroupSeries { label, global });
        (self.series.len() - 1) as u32
    }

    /// Each series' label and number in the task, by its number here.
    pub fn series(&self) -> impl Iterator<Item = (&Arc<str>, u32)> + '_ {
        self.series.iter().map(|s| (&s.label, s.global))
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Runs an event through dedup and the operators; `watermark` is the task's. Returns
    /// false for a duplicate. Operators make no records on an event, only on a watermark:
    /// `scratch` stays empty.
    pub fn on_event(
        &mut self,
        event: &EventItem,
        watermark: i64,
        scratch: &mut Vec<Keyed>,
    ) -> bool {
        if let (Some(dedup), Some(id)) = (self.dedup.as_mut(), event.dedup) {
            dedup.evict(watermark);
            if dedup.check_and_insert_key(id, event.ts) {
                self.duplicates += 1;
                return false;
            }
        }
        let Some(series) = self.series.get(event.series as usize) else {
            return false;
        };
        let accepted = Accepted {
            series: event.series,
            global: series.global,
            label: &series.label,
            ts: event.ts,
            value: event.value,
            seq: event.seq,
            pos: event.pos,
            watermark,
        };
        let mut emitted = Emitted::new(scratch, event.pos, 0);
        for op in &mut self.operators {
            op.as_operator().on_event(&accepted, &mut emitted);
        }
        true
    }

    /// Lets the operators catch up with the task's new watermark (item `pos`); their records
    /// go to `out`, in order.
    pub fn advance(&mut self, watermark: i64, pos: u64, out: &mut Vec<Keyed>) {
        for (i, op) in self.operators.iter_mut().enumerate() {
            op.as_operator()
                .on_watermark(watermark, &mut Emitted::new(out, pos, i as u32));
        }
        if let Some(dedup) = self.dedup.as_mut() {
            dedup.evict(watermark);
        }
    }

    /// The lowest watermark at which an operator has something to do.
    pub fn due(&mut self) -> Option<i64> {
        self.operators
            .iter_mut()
            .filter_map(|op| op.as_operator().due())
            .min()
    }

    pub fn dedup_entries(&self) -> usize {
        self.dedup.as_ref().map_or(0, Dedup::len)
    }
}

/// A join's rows in one key group.
#[derive(Serialize, Deserialize)]
pub struct KgJoin {
    pub join: IntervalJoin,
    #[serde(skip)]
    pub registered: Option<i64>,
}

/// One key group: every task's share of it, and the joins' rows.
#[derive(Default, Serialize, Deserialize)]
pub struct KeyGroup {
    /// By task: a few (a static stream's, and under a consumer group its partitions').
    pub tasks: Vec<(u32, KgTask)>,
    /// By join; a join's rows are made on its first event here.
    pub joins: Vec<Option<KgJoin>>,
}

impl KeyGroup {
    /// Offers a join event; the pairs it makes go to `out` under the item and the join.
    pub fn on_join(&mut self, plan: &EnginePlan, item: &JoinItem, out: &mut Vec<Keyed>) {
        if self.joins.len() < plan.joins.len() {
            self.joins.resize_with(plan.joins.len(), || None);
        }
        let Some(slot) = self.joins.get_mut(item.join) else {
            return;
        };
        let join = slot.get_or_insert_with(|| {
            let j = &plan.joins[item.join];
            KgJoin {
                join: IntervalJoin::new(
                    j.name.clone(),
                    plan.streams[j.left].name.clone(),
                    plan.streams[j.right].name.clone(),
                    j.within_ms,
                    j.kind,
                ),
                registered: None,
            }
        });
        let input = JoinInput {
            key: &item.key,
            ts: item.ts,
            seq: item.seq,
            value: item.value,
            id: item.id.as_deref(),
        };
        let op = JOIN_OPS + item.join as u32;
        join.join
            .on_event(item.side, &input, &mut Emitted::new(out, item.pos, op));
    }

    pub fn task(&self, task: u32) -> Option<&KgTask> {
        self.tasks.iter().find(|(t, _)| *t == task).map(|(_, s)| s)
    }

    pub fn task_mut(&mut self, task: u32) -> Option<&mut KgTask> {
        self.tasks
            .iter_mut()
            .find(|(t, _)| *t == task)
            .map(|(_, s)| s)
    }

    /// Rows buffered in this group's joins.
    pub fn join_rows(&self) -> usize {
        self.joins.iter().flatten().map(|j| j.join.buffered()).sum()
    }
}
