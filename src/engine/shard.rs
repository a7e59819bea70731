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
use super::keygroup::{EventItem, JoinItem, KeyGroup, KgJoin, KgTask, KEY_GROUPS};
use super::output::{self, Emitted, Keyed, JOIN_OPS};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The key groups with something due, per unit: `(watermark, key group)`.
#[derive(Default)]
struct DueLists {
    /// By task id.
    tasks: Vec<BTreeSet<(i64, u16)>>,
    /// By join.
    joins: Vec<BTreeSet<(i64, u16)>>,
}

impl DueLists {
    fn list(&mut self, unit: Unit) -> &mut BTreeSet<(i64, u16)> {
        let (lists, index) = match unit {
            Unit::Task(task) => (&mut self.tasks, task as usize),
            Unit::Join(join) => (&mut self.joins, join),
        };
        if index >= lists.len() {
            lists.resize_with(index + 1, BTreeSet::new);
        }
        &mut lists[index]
    }

    /// Moves a key group's entry in a unit's list from `registered` to `due`.
    fn reschedule(&mut self, unit: Unit, group: u16, registered: Option<i64>, due: Option<i64>) {
        if registered == due {
            return;
        }
        let list = self.list(unit);
        if let Some(old) = registered {
            list.remove(&(old, group));
        }
        if let Some(new) = due {
            list.insert((new, group));
        }
    }
}

/// A shard's key groups and the bookkeeping to run items through them.
pub struct Shard {
    plan: Arc<EnginePlan>,
    /// By key group; the groups this shard does not own stay `None`.
    kgs: Vec<Option<KeyGroup>>,
    /// By task id.
    tasks: Vec<Option<TaskState>>,
    due: DueLists,
    join_watermarks: Vec<i64>,
    /// Key groups visited for one item, reused.
    visiting: Vec<u16>,
    /// What events write (nothing: operators only emit on watermarks), reused.
    scratch: Vec<Keyed>,
    /// Duplicates found per task since last asked.
    duplicates: HashMap<u32, u64>,
}

impl Shard {
    pub fn new(plan: Arc<EnginePlan>) -> Self {
        let joins = plan.joins.len();
        Shard {
            plan,
            kgs: (0..KEY_GROUPS).map(|_| None).collect(),
            tasks: Vec::new(),
            due: DueLists::default(),
            join_watermarks: vec![i64::MIN; joins],
            visiting: Vec::new(),
            scratch: Vec::new(),
            duplicates: HashMap::new(),
        }
    }

    /// Runs `items` in order (leaving the vector empty), appending their records to `out` in
    /// key order.
    pub fn run(&mut self, items: &mut Vec<Item>, out: &mut Vec<Keyed>) {
        // About a record an item (a point per event), a few more for windows and alerts:
        // room at once rather than doubling a vector of large records.
        out.reserve(items.len() + items.len() / 4);
        for item in items.drain(..) {
            match item {
                Item::Open {
                    task,
                    stream,
                    watermark,
                } => {
                    let index = task as usize;
                    if index >= self.tasks.len() {
                        self.tasks.resize(index + 1, None);
                    }
                    self.tasks[index] = Some(TaskState { stream, watermark });
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

    fn task(&self, task: u32) -> Option<TaskState> {
        self.tasks.get(task as usize).copied().flatten()
    }

    fn group(&mut self, kg: u16) -> &mut KeyGroup {
        self.kgs[usize::from(kg)].get_or_insert_with(KeyGroup::default)
    }

    /// The task's state in key group `kg`, made when it has none.
    fn kg_task(&mut self, task: u32, kg: u16) -> Option<&mut KgTask> {
        let stream = self.task(task)?.stream;
        let plan = self.plan.clone();
        let group = self.group(kg);
        if group.task(task).is_none() {
            group.tasks.push((task, KgTask::new(&plan.streams[stream])));
        }
        group.task_mut(task)
    }

    fn on_event(&mut self, event: &EventItem) {
        let Some(TaskState { watermark, .. }) = self.task(event.task) else {
            return;
        };
        let Some(kg_task) = self.kgs[usize::from(event.kg)]
            .as_mut()
            .and_then(|group| group.task_mut(event.task))
        else {
            return;
        };
        if !kg_task.on_event(event, watermark, &mut self.scratch) {
            *self.duplicates.entry(event.task).or_default() += 1;
        }
        let due = kg_task.due();
        let registered = std::mem::replace(&mut kg_task.registered, due);
        self.due
            .reschedule(Unit::Task(event.task), event.kg, registered, due);
    }

    fn on_join(&mut self, item: &JoinItem, out: &mut Vec<Keyed>) {
        let plan = self.plan.clone();
        let group = self.group(item.kg);
        group.on_join(&plan, item, out);
        if let Some(Some(join)) = group.joins.get_mut(item.join) {
            let due = join.join.due();
            let registered = std::mem::replace(&mut join.registered, due);
            self.due
                .reschedule(Unit::Join(item.join), item.kg, registered, due);
        }
    }

    fn on_watermark(&mut self, pos: u64, task: u32, watermark: i64, out: &mut Vec<Keyed>) {
        let Some(state) = self.tasks.get_mut(task as usize).and_then(Option::as_mut) else {
            return;
        };
        state.watermark = state.watermark.max(watermark);
        let stream = state.stream;
        let start = out.len();
        let mut visiting = std::mem::take(&mut self.visiting);
        self.due_groups(Unit::Task(task), watermark, &mut visiting);
        for &group in &visiting {
            let Some(kg_task) = self.kgs[usize::from(group)]
                .as_mut()
                .and_then(|g| g.task_mut(task))
            else {
                continue;
            };
            kg_task.advance(watermark, pos, out);
            let due = kg_task.due();
            kg_task.registered = due;
            self.due.reschedule(Unit::Task(task), group, None, due);
        }
        if visiting.len() > 1 {
            // Each group's records are in order; together they are put in order.
            output::sort_from(out, start);
        }
        self.visiting = visiting;
        for j in 0..self.plan.streams[stream].joins.len() {
            let join = self.plan.streams[stream].joins[j].0;
            self.advance_join(pos, join, out);
        }
    }

    /// Lets join `j` catch up with its joint watermark (the lower of its streams').
    fn advance_join(&mut self, pos: u64, j: usize, out: &mut Vec<Keyed>) {
        let plan = &self.plan.joins[j];
        let watermark_of =
            |stream: usize| self.task(stream as u32).map_or(i64::MIN, |t| t.watermark);
        let joint = watermark_of(plan.left).min(watermark_of(plan.right));
        if joint <= self.join_watermarks[j] {
            return;
        }
        self.join_watermarks[j] = joint;
        let start = out.len();
        let mut visiting = std::mem::take(&mut self.visiting);
        self.due_groups(Unit::Join(j), joint, &mut visiting);
        let op = JOIN_OPS + j as u32;
        for &group in &visiting {
            let Some(Some(join)) = self.kgs[usize::from(group)]
                .as_mut()
                .and_then(|g| g.joins.get_mut(j))
            else {
                continue;
            };
            join.join
                .on_watermark(joint, &mut Emitted::new(out, pos, op));
            let due = join.join.due();
            join.registered = due;
            self.due.reschedule(Unit::Join(j), group, None, due);
        }
        if visiting.len() > 1 {
            output::sort_from(out, start);
        }
        self.visiting = visiting;
    }

    /// Takes out of the due list of `unit` the key groups due at `watermark` into `groups`
    /// (every group with state for it at the end of input, when the global windows' last
    /// records are due everywhere).
    fn due_groups(&mut self, unit: Unit, watermark: i64, groups: &mut Vec<u16>) {
        groups.clear();
        let list = self.due.list(unit);
        if watermark == WATERMARK_END {
            list.clear();
            for (id, group) in self.kgs.iter().enumerate() {
                let has = group.as_ref().is_some_and(|g| match unit {
                    Unit::Task(task) => g.task(task).is_some(),
                    Unit::Join(j) => matches!(g.joins.get(j), Some(Some(_))),
                });
                if has {
                    groups.push(id as u16);
                }
            }
            return;
        }
        while let Some(&(due, group)) = list.first() {
            if due > watermark {
                break;
            }
            list.pop_first();
            groups.push(group);
        }
    }

    /// Duplicates found per task since the last call.
    pub fn take_duplicates(&mut self) -> Vec<(u32, u64)> {
        self.duplicates.drain().collect()
    }

    /// The images of the key groups of `tasks` (and the joins' rows, with `joins`), by key
    /// group.
    pub fn images(&self, tasks: &[u32], joins: bool) -> Vec<(u16, ImageRef<'_>)> {
        self.kgs
            .iter()
            .enumerate()
            .filter_map(|(id, group)| Some((id as u16, group.as_ref()?)))
            .map(|(id, group)| {
                let image = ImageRef {
                    tasks: group
                        .tasks
                        .iter()
                        .filter(|(task, _)| tasks.contains(task))
                        .map(|(task, state)| (*task, state))
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
            .collect()
    }

    /// Puts restored state into key group `kg`; returns each task's duplicates so far.
    pub fn install(&mut self, kg: u16, image: GroupImage) -> Vec<(u32, u64)> {
        let mut duplicates = Vec::new();
        for (task, mut state) in image.tasks {
            duplicates.push((task, state.duplicates));
            let due = state.due();
            state.registered = due;
            self.due.reschedule(Unit::Task(task), kg, None, due);
            let group = self.group(kg);
            group.tasks.retain(|(t, _)| *t != task);
            group.tasks.push((task, state));
        }
        for (j, join) in image.joins.into_iter().enumerate() {
            if let Some(join) = join {
                let due = join.due();
                self.due.reschedule(Unit::Join(j), kg, None, due);
                let group = self.group(kg);
                if group.joins.len() <= j {
                    group.joins.resize_with(j + 1, || None);
                }
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
        if let Some(state) = self.tasks.get_mut(task as usize) {
            *state = None;
        }
        self.due.list(Unit::Task(task)).clear();
        self.duplicates.remove(&task);
        let mut taken = Vec::new();
        for (id, group) in self.kgs.iter_mut().enumerate() {
            let Some(group) = group else { continue };
            if let Some(at) = group.tasks.iter().position(|(t, _)| *t == task) {
                taken.push((id as u16, group.tasks.swap_remove(at).1));
            }
        }
        taken
    }

    /// Drops the rows of `joins` in every key group: they start afresh.
    pub fn drop_joins(&mut self, joins: &[usize]) {
        for &j in joins {
            for group in self.kgs.iter_mut().flatten() {
                if let Some(slot) = group.joins.get_mut(j) {
                    *slot = None;
                }
            }
            self.due.list(Unit::Join(j)).clear();
            if let Some(watermark) = self.join_watermarks.get_mut(j) {
                *watermark = i64::MIN;
            }
        }
    }

    /// The shard's share of what the engine counts.
    pub fn stats(&self) -> ShardStats {
        let mut stats = ShardStats::default();
        for group in self.kgs.iter().flatten() {
            stats.join_rows += group.join_rows();
            for (task, state) in &group.tasks {
                *stats.dedup_entries.entry(*task).or_default() += state.dedup_entries();
                *stats.series.entry(*task).or_default() += state.series_count();
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
