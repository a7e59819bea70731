//! A shard: the key groups one thread owns, and how it runs a round of items through them.
//!
//! The router (see [`super::router`]) turns a round of input into items per shard: a series'
//! first event, events, join events, and every advance of a task's watermark, which goes to
//! every shard (punctuation). A shard takes its items in order. An advance visits only the key
//! groups with something due at or before it: each group is registered, per task and per join,
//! at the lowest watermark at which one of its operators would emit, so a shard of a hundred
//! key groups does not look at each of them for every step of the watermark.
//!
//! Records carry their [`OutputKey`]; a shard makes them in key order, so the engine can merge
//! the shards' lists into the order of one engine.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::join::IntervalJoin;
use super::keygroup::{EventItem, JoinItem, KeyGroup, KgJoin, KgTask};
use super::output::{Emitted, Keyed, JOIN_OPS};
use super::plan::EnginePlan;
use super::time::WATERMARK_END;

/// One unit of work for a shard.
#[derive(Debug, Clone)]
pub enum Item {
    /// A task starts on this shard (every shard hears of it): it runs `stream`, and its
    /// watermark is `watermark` (a restored task's).
    Open {
        task: u32,
        stream: usize,
        watermark: i64,
    },
    /// A series' first event is coming: its number in the key group is the next one.
    Series {
        task: u32,
        kg: u16,
        label: Arc<str>,
        global: u32,
    },
    Event(EventItem),
    Join(Box<JoinItem>),
    /// The task's watermark advanced (to `i64::MAX` at end of input).
    Watermark {
        pos: u64,
        task: u32,
        watermark: i64,
    },
}

/// What a task is on a shard: the stream it runs and its watermark as the items said.
#[derive(Debug, Clone, Copy)]
struct TaskState {
    stream: usize,
    watermark: i64,
}

/// Something a key group can be due for: a task's operators, or a join's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Unit {
    Task(u32),
    Join(usize),
}

/// A shard's key groups of one task or join, as sent from one shard to the engine and back:
/// what a checkpoint or a hand-over moves.
#[derive(Default, Serialize, Deserialize)]
pub struct GroupImage {
    pub tasks: Vec<(u32, KgTask)>,
    pub joins: Vec<Option<IntervalJoin>>,
}

/// What a shard counts, for status pages and checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub dedup_entries: HashMap<u32, usize>,
    pub join_rows: usize,
    pub series: HashMap<u32, usize>,
}

/// A shard's key groups and the bookkeeping to run items through them.
pub struct Shard {
    plan: Arc<EnginePlan>,
    kgs: HashMap<u16, KeyGroup>,
    tasks: HashMap<u32, TaskState>,
    /// Per unit, the key groups with something due: `(watermark, key group)`.
    due: HashMap<Unit, BTreeSet<(i64, u16)>>,
    join_watermarks: Vec<i64>,
    /// One list per operator of a stream, reused.
    emitted: Vec<Emitted>,
    /// Duplicates found per task since last asked.
    duplicates: HashMap<u32, u64>,
}

impl Shard {
    pub fn new(plan: Arc<EnginePlan>) -> Self {
        let joins = plan.joins.len();
        Shard {
            plan,
            kgs: HashMap::new(),
            tasks: HashMap::new(),
            due: HashMap::new(),
            join_watermarks: vec![i64::MIN; joins],
            emitted: Vec::new(),
            duplicates: HashMap::new(),
        }
    }

    /// Runs `items` in order, appending their records to `out` in key order.
    pub fn run(&mut self, items: Vec<Item>, out: &mut Vec<Keyed>) {
        for item in items {
            match item {
                Item::Open {
                    task,
                    stream,
                    watermark,
                } => {
                    self.tasks.insert(task, TaskState { stream, watermark });
                }
                Item::Series {
                    task,
                    kg,
                    label,
                    global,
                } => {
                    if let Some(kg_task) = self.kg_task(task, kg) {
                        kg_task.add_series(label, global);
                    }
                }
                Item::Event(event) => self.on_event(&event),
                Item::Join(join) => self.on_join(&join, out),
                Item::Watermark {
                    pos,
                    task,
                    watermark,
                } => self.on_watermark(pos, task, watermark, out),
            }
        }
    }

    /// The task's state in key group `kg`, made when it has none.
    fn kg_task(&mut self, task: u32, kg: u16) -> Option<&mut KgTask> {
        let stream = self.tasks.get(&task)?.stream;
        let plan = &self.plan.streams[stream];
        let group = self.kgs.entry(kg).or_default();
        Some(group.tasks.entry(task).or_insert_with(|| KgTask::new(plan)))
    }

    fn on_event(&mut self, event: &EventItem) {
        let Some(&TaskState { watermark, .. }) = self.tasks.get(&event.task) else {
            return;
        };
        let Some(kg_task) = self
            .kgs
            .get_mut(&event.kg)
            .and_then(|group| group.tasks.get_mut(&event.task))
        else {
            return;
        };
        if self.emitted.is_empty() {
            self.emitted.push(Emitted::default());
        }
        if !kg_task.on_event(event, watermark, &mut self.emitted[0]) {
            *self.duplicates.entry(event.task).or_default() += 1;
        }
        let due = kg_task.due();
        let registered = std::mem::replace(&mut kg_task.registered, due);
        reschedule(
            &mut self.due,
            Unit::Task(event.task),
            event.kg,
            registered,
            due,
        );
    }

    fn on_join(&mut self, item: &JoinItem, out: &mut Vec<Keyed>) {
        let group = self.kgs.entry(item.kg).or_default();
        group.on_join(&self.plan, item, out);
        if let Some(Some(join)) = group.joins.get_mut(item.join) {
            let due = join.join.due();
            let registered = std::mem::replace(&mut join.registered, due);
            reschedule(
                &mut self.due,
                Unit::Join(item.join),
                item.kg,
                registered,
                due,
            );
        }
    }

    fn on_watermark(&mut self, pos: u64, task: u32, watermark: i64, out: &mut Vec<Keyed>) {
        let Some(state) = self.tasks.get_mut(&task) else {
            return;
        };
        state.watermark = state.watermark.max(watermark);
        let stream = state.stream;
        let operators = self.plan.streams[stream].windows.len()
            + usize::from(self.plan.streams[stream].analytics.is_some());
        if self.emitted.len() < operators.max(1) {
            self.emitted.resize_with(operators.max(1), Emitted::default);
        }
        for group in self.due_groups(Unit::Task(task), watermark) {
            let Some(kg_task) = self
                .kgs
                .get_mut(&group)
                .and_then(|g| g.tasks.get_mut(&task))
            else {
                continue;
            };
            kg_task.advance(watermark, &mut self.emitted[..operators]);
            let due = kg_task.due();
            kg_task.registered = due;
            reschedule(&mut self.due, Unit::Task(task), group, None, due);
        }
        for (op, emitted) in self.emitted[..operators].iter_mut().enumerate() {
            emitted.drain_into(pos, op as u32, out);
        }
        let joins: Vec<usize> = self.plan.streams[stream]
            .joins
            .iter()
            .map(|&(j, _, _)| j)
            .collect();
        for j in joins {
            self.advance_join(pos, j, out);
        }
    }

    /// Lets join `j` catch up with its joint watermark (the lower of its streams').
    fn advance_join(&mut self, pos: u64, j: usize, out: &mut Vec<Keyed>) {
        let plan = &self.plan.joins[j];
        let watermark_of = |stream: usize| {
            self.tasks
                .get(&(stream as u32))
                .map_or(i64::MIN, |t| t.watermark)
        };
        let joint = watermark_of(plan.left).min(watermark_of(plan.right));
        if joint <= self.join_watermarks[j] {
            return;
        }
        self.join_watermarks[j] = joint;
        let mut emitted = Emitted::default();
        for group in self.due_groups(Unit::Join(j), joint) {
            let Some(Some(join)) = self.kgs.get_mut(&group).and_then(|g| g.joins.get_mut(j)) else {
                continue;
            };
            join.join.on_watermark(joint, &mut emitted);
            let due = join.join.due();
            join.registered = due;
            reschedule(&mut self.due, Unit::Join(j), group, None, due);
        }
        emitted.drain_into(pos, JOIN_OPS + j as u32, out);
    }

    /// Takes out of the due list of `unit` the key groups due at `watermark` (every group
    /// with state for it at the end of input, when the global windows' last records are due
    /// everywhere).
    fn due_groups(&mut self, unit: Unit, watermark: i64) -> Vec<u16> {
        let mut groups = Vec::new();
        if let Some(set) = self.due.get_mut(&unit) {
            while let Some(&(due, group)) = set.first() {
                if due > watermark {
                    break;
                }
                set.pop_first();
                groups.push(group);
            }
        }
        if watermark == WATERMARK_END {
            groups = self
                .kgs
                .iter()
                .filter(|(_, g)| match unit {
                    Unit::Task(task) => g.tasks.contains_key(&task),
                    Unit::Join(j) => matches!(g.joins.get(j), Some(Some(_))),
                })
                .map(|(&id, _)| id)
                .collect();
            groups.sort_unstable();
            self.due.remove(&unit);
        }
        groups
    }

    /// Duplicates found per task since the last call.
    pub fn take_duplicates(&mut self) -> Vec<(u32, u64)> {
        self.duplicates.drain().collect()
    }

    /// The images of the key groups of `tasks` (and the joins' rows, with `joins`), by key
    /// group.
    pub fn images(&self, tasks: &[u32], joins: bool) -> Vec<(u16, ImageRef<'_>)> {
        let mut images: Vec<(u16, ImageRef<'_>)> = self
            .kgs
            .iter()
            .map(|(&id, group)| {
                let image = ImageRef {
                    tasks: group
                        .tasks
                        .iter()
                        .filter(|(task, _)| tasks.contains(task))
                        .map(|(&task, state)| (task, state))
                        .collect(),
                    joins: if joins {
                        group
                            .joins
                            .iter()
                            .map(|j| j.as_ref().map(|j| &j.join))
                            .collect()
                    } else {
                        Vec::new()
                    },
                };
                (id, image)
            })
            .filter(|(_, image)| !image.tasks.is_empty() || image.joins.iter().any(Option::is_some))
            .collect();
        images.sort_by_key(|(id, _)| *id);
        images
    }

    /// Puts restored state into key group `kg`; returns each task's duplicates so far.
    pub fn install(&mut self, kg: u16, image: GroupImage) -> Vec<(u32, u64)> {
        let mut duplicates = Vec::new();
        let group = self.kgs.entry(kg).or_default();
        for (task, mut state) in image.tasks {
            duplicates.push((task, state.duplicates));
            let due = state.due();
            state.registered = due;
            reschedule(&mut self.due, Unit::Task(task), kg, None, due);
            group.tasks.insert(task, state);
        }
        if group.joins.len() < image.joins.len() {
            group.joins.resize_with(image.joins.len(), || None);
        }
        for (j, join) in image.joins.into_iter().enumerate() {
            if let Some(join) = join {
                let due = join.due();
                reschedule(&mut self.due, Unit::Join(j), kg, None, due);
                group.joins[j] = Some(KgJoin {
                    join,
                    registered: due,
                });
            }
        }
        duplicates
    }

    /// Removes a task's state from every key group of the shard and returns it.
    pub fn take_task(&mut self, task: u32) -> Vec<(u16, KgTask)> {
        self.tasks.remove(&task);
        self.due.remove(&Unit::Task(task));
        self.duplicates.remove(&task);
        let mut taken: Vec<(u16, KgTask)> = self
            .kgs
            .iter_mut()
            .filter_map(|(&id, group)| group.tasks.remove(&task).map(|state| (id, state)))
            .collect();
        taken.sort_by_key(|(id, _)| *id);
        taken
    }

    /// Drops the rows of `joins` in every key group: they start afresh.
    pub fn drop_joins(&mut self, joins: &[usize]) {
        for &j in joins {
            for group in self.kgs.values_mut() {
                if let Some(slot) = group.joins.get_mut(j) {
                    *slot = None;
                }
            }
            self.due.remove(&Unit::Join(j));
            if let Some(watermark) = self.join_watermarks.get_mut(j) {
                *watermark = i64::MIN;
            }
        }
    }

    /// The shard's share of what the engine counts.
    pub fn stats(&self) -> ShardStats {
        let mut stats = ShardStats::default();
        for group in self.kgs.values() {
            stats.join_rows += group.join_rows();
            for (&task, state) in &group.tasks {
                *stats.dedup_entries.entry(task).or_default() += state.dedup_entries();
                *stats.series.entry(task).or_default() += state.series_count();
            }
        }
        stats
    }
}

/// A key group's image as written: references into the shard's state.
#[derive(Serialize)]
pub struct ImageRef<'a> {
    pub tasks: Vec<(u32, &'a KgTask)>,
    pub joins: Vec<Option<&'a IntervalJoin>>,
}

/// Moves a key group's entry in a unit's due list from `registered` to `due`.
fn reschedule(
    lists: &mut HashMap<Unit, BTreeSet<(i64, u16)>>,
    unit: Unit,
    group: u16,
    registered: Option<i64>,
    due: Option<i64>,
) {
    if registered == due {
        return;
    }
    let list = lists.entry(unit).or_default();
    if let Some(old) = registered {
        list.remove(&(old, group));
    }
    if let Some(new) = due {
        list.insert((new, group));
    }
}
