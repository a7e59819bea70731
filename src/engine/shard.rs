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

use super::changelog::{
    Book, GroupImage, ImageIn, ImageOut, LogEntry, LogEntryOut, LogSegment, STATIC_UNIT,
};
use super::keygroup::{EventItem, JoinItem, KeyGroup, KgJoin, KgTask, KEY_GROUPS};
use super::output::{self, Emitted, Keyed, JOIN_OPS};
use super::plan::EnginePlan;
use super::snapshot;
use super::snapshot::SnapshotError;
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
    /// A series' first event is coming (at `pos`): its number in the key group is the next one.
    Series {
        pos: u64,
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

/// A shard's share of what a checkpoint adds to a unit's stored state (see
/// [`super::changelog`]).
#[derive(Debug, Default)]
pub struct ShardDelta {
    pub images: Vec<GroupImage>,
    pub logs: Vec<LogSegment>,
    pub covered: Vec<(u16, u64)>,
}

/// A key group's stored state to restore: its image, if it has one, and the log after it.
pub struct GroupState {
    pub kg: u16,
    pub image: Option<GroupImage>,
    pub logs: Vec<LogSegment>,
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
    /// For checkpoints, per key group, each unit's book (empty unless the plan logs).
    books: Vec<Vec<(u32, Book)>>,
    /// Where the search for groups that want an image starts: every group gets its turn.
    image_cursor: usize,
    /// Image bytes this shard may still take before the next checkpoint: the log bytes since
    /// the last one plus `plan.first_image_after`, less the images taken (a debt carries over).
    /// Without it the groups, whose logs grow alike, would all want an image in the same
    /// checkpoint interval, and that checkpoint would write the whole state.
    image_allowance: i64,
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
            books: (0..KEY_GROUPS).map(|_| Vec::new()).collect(),
            image_cursor: 0,
            image_allowance: 0,
        }
    }

    /// The checkpoint unit of a task: its own under a consumer group, else the static one.
    fn unit_of(&self, task: u32) -> u32 {
        match self.task(task) {
            Some(state) if self.plan.streams[state.stream].group_assigned => task,
            _ => STATIC_UNIT,
        }
    }

    fn book(&mut self, unit: u32, kg: u16) -> &mut Book {
        let books = &mut self.books[usize::from(kg)];
        let at = match books.iter().position(|(u, _)| *u == unit) {
            Some(at) => at,
            None => {
                books.push((unit, Book::default()));
                books.len() - 1
            }
        };
        &mut books[at].1
    }

    /// Appends a log entry to the book of `unit` in `kg`, when the plan logs.
    fn log(&mut self, unit: u32, kg: u16, pos: u64, entry: &LogEntryOut<'_>) {
        if self.plan.changelog {
            let appended = self.book(unit, kg).append(pos, entry);
            self.image_allowance += appended as i64;
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
                    pos,
                    task,
                    kg,
                    label,
                    global,
                } => {
                    let entry = LogEntryOut::Series {
                        pos,
                        task,
                        label: &label,
                        global,
                    };
                    let unit = self.unit_of(task);
                    self.log(unit, kg, pos, &entry);
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
        let unit = self.unit_of(event.task);
        let entry = LogEntryOut::Event {
            watermark,
            item: event,
        };
        self.log(unit, event.kg, event.pos, &entry);
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
        let watermark = self
            .join_watermarks
            .get(item.join)
            .copied()
            .unwrap_or(i64::MIN);
        self.log(
            STATIC_UNIT,
            item.kg,
            item.pos,
            &LogEntryOut::Join { watermark, item },
        );
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

    /// After a round that ended before position `end`: takes the images groups want (see
    /// [`super::changelog`]) while the allowance lasts, so no checkpoint has to.
    pub fn take_images(&mut self, end: u64) {
        if !self.plan.changelog {
            return;
        }
        let count = usize::from(KEY_GROUPS);
        for step in 0..count {
            if self.image_allowance <= 0 {
                self.image_cursor = (self.image_cursor + step) % count;
                return;
            }
            let kg = ((self.image_cursor + step) % count) as u16;
            for at in 0..self.books[usize::from(kg)].len() {
                let (unit, book) = &self.books[usize::from(kg)][at];
                if !book.wants_image(self.plan.first_image_after) {
                    continue;
                }
                let unit = *unit;
                // An image that cannot be encoded now is taken whole at the next checkpoint.
                if let Ok(bytes) = self.encode_group(unit, kg) {
                    self.image_allowance -= bytes.len() as i64;
                    self.books[usize::from(kg)][at].1.imaged(end, bytes);
                }
            }
        }
    }

    /// The image of `unit`'s share of key group `kg`: the watermarks it is at and its state.
    fn encode_group(&self, unit: u32, kg: u16) -> Result<Vec<u8>, SnapshotError> {
        let group = self.kgs[usize::from(kg)].as_ref();
        let tasks: Vec<(u32, &KgTask)> = group
            .map(|g| {
                g.tasks
                    .iter()
                    .filter(|(task, _)| self.unit_of(*task) == unit)
                    .map(|(task, state)| (*task, state))
                    .collect()
            })
            .unwrap_or_default();
        let statics = unit == STATIC_UNIT;
        let image = ImageOut {
            watermarks: tasks
                .iter()
                .map(|&(task, _)| (task, self.task(task).map_or(i64::MIN, |t| t.watermark)))
                .collect(),
            join_watermarks: if statics {
                self.join_watermarks.clone()
            } else {
                Vec::new()
            },
            tasks,
            joins: match (statics, group) {
                (true, Some(g)) => g
                    .joins
                    .iter()
                    .map(|j| j.as_ref().map(|j| &j.join))
                    .collect(),
                _ => Vec::new(),
            },
        };
        snapshot::seal(&image)
    }

    /// This shard's share of what a checkpoint of `unit` adds (see [`super::changelog`]). With
    /// `full`, every group's image now, at position `pos`, and no log.
    pub fn delta(&mut self, unit: u32, full: bool, pos: u64) -> Result<ShardDelta, SnapshotError> {
        let mut delta = ShardDelta::default();
        self.image_allowance = self.image_allowance.min(0) + self.plan.first_image_after as i64;
        for kg in 0..KEY_GROUPS {
            if full {
                let has_state = self.kgs[usize::from(kg)].as_ref().is_some_and(|g| {
                    g.tasks.iter().any(|(task, _)| self.unit_of(*task) == unit)
                        || (unit == STATIC_UNIT && g.joins.iter().any(Option::is_some))
                });
                if !has_state {
                    continue;
                }
                let bytes = self.encode_group(unit, kg)?;
                let book = self.book(unit, kg);
                *book = Book::default();
                book.image_pos = pos;
                book.image_bytes = bytes.len() as u64;
                delta.covered.push((kg, pos));
                delta.images.push(GroupImage { kg, pos, bytes });
                continue;
            }
            let Some((_, book)) = self.books[usize::from(kg)]
                .iter_mut()
                .find(|(u, _)| *u == unit)
            else {
                continue;
            };
            delta.logs.extend(book.take_segment(kg));
            if let Some((pos, bytes)) = book.pending.take() {
                delta.images.push(GroupImage { kg, pos, bytes });
            }
            delta.covered.push((kg, book.image_pos));
        }
        Ok(delta)
    }

    /// Restores `unit`'s share of key groups: each group's image, then its log after the image
    /// (task ids read as `remap` when given: a partition's task on another instance), then the
    /// tasks' watermarks now, `finals` (which the tasks must be open at already). Records made
    /// on the way were written before the checkpoint and are thrown away. Returns the
    /// duplicates so far per task.
    pub fn replay(
        &mut self,
        unit: u32,
        remap: Option<u32>,
        groups: Vec<GroupState>,
    ) -> Result<Vec<(u32, u64)>, SnapshotError> {
        let task_of = |task: u32| remap.unwrap_or(task);
        let mut sink = Vec::new();
        for GroupState { kg, image, logs } in groups {
            let mut applied: HashMap<u32, i64> = HashMap::new();
            let mut join_applied: Vec<i64> = vec![i64::MIN; self.plan.joins.len()];
            let image_pos = image.as_ref().map_or(0, |i| i.pos);
            let image_bytes = image.as_ref().map_or(0, |i| i.bytes.len()) as u64;
            if let Some(image) = image {
                let restored: ImageIn = snapshot::unseal(&image.bytes)?;
                for (task, watermark) in restored.watermarks {
                    applied.insert(task_of(task), watermark);
                }
                for (j, watermark) in restored.join_watermarks.into_iter().enumerate() {
                    if let Some(applied) = join_applied.get_mut(j) {
                        *applied = watermark;
                    }
                }
                let group = self.group(kg);
                for (task, state) in restored.tasks {
                    let task = task_of(task);
                    group.tasks.retain(|(t, _)| *t != task);
                    group.tasks.push((task, state));
                }
                for (j, join) in restored.joins.into_iter().enumerate() {
                    if let Some(join) = join {
                        if group.joins.len() <= j {
                            group.joins.resize_with(j + 1, || None);
                        }
                        group.joins[j] = Some(KgJoin {
                            join,
                            registered: None,
                        });
                    }
                }
            }
            let mut logged = 0u64;
            for segment in &logs {
                logged += segment.bytes.len() as u64;
                let mut rest = snapshot::unseal_bytes(&segment.bytes)?;
                while !rest.is_empty() {
                    let (entry, next): (LogEntry, &[u8]) =
                        postcard::take_from_bytes(rest).map_err(SnapshotError::Encoding)?;
                    rest = next;
                    if entry.pos() < image_pos {
                        continue;
                    }
                    self.replay_entry(
                        kg,
                        entry,
                        task_of,
                        &mut applied,
                        &mut join_applied,
                        &mut sink,
                    );
                    sink.clear();
                }
            }
            // The tasks' watermarks now: whatever moved after the group's last entry.
            let tasks: Vec<u32> = self.kgs[usize::from(kg)]
                .as_ref()
                .map(|g| g.tasks.iter().map(|(t, _)| *t).collect())
                .unwrap_or_default();
            for task in tasks {
                if self.unit_of(task) != unit {
                    continue;
                }
                let now = self.task(task).map_or(i64::MIN, |t| t.watermark);
                if now > applied.get(&task).copied().unwrap_or(i64::MIN) {
                    if let Some(state) = self.kgs[usize::from(kg)]
                        .as_mut()
                        .and_then(|g| g.task_mut(task))
                    {
                        state.advance(now, 0, &mut sink);
                        sink.clear();
                    }
                }
            }
            if unit == STATIC_UNIT {
                for (j, applied) in join_applied.iter().enumerate() {
                    let joint = self.joint_watermark(j);
                    self.join_watermarks[j] = self.join_watermarks[j].max(joint);
                    if joint > *applied {
                        if let Some(Some(join)) = self.kgs[usize::from(kg)]
                            .as_mut()
                            .and_then(|g| g.joins.get_mut(j))
                        {
                            join.join
                                .on_watermark(joint, &mut Emitted::new(&mut sink, 0, 0));
                            sink.clear();
                        }
                    }
                }
            }
            self.reschedule_group(kg);
            let book = self.book(unit, kg);
            book.image_pos = image_pos;
            book.image_bytes = image_bytes;
            book.since_image = logged;
        }
        let mut duplicates: HashMap<u32, u64> = HashMap::new();
        for group in self.kgs.iter().flatten() {
            for (task, state) in &group.tasks {
                if self.unit_of(*task) == unit {
                    *duplicates.entry(*task).or_default() += state.duplicates;
                }
            }
        }
        Ok(duplicates.into_iter().collect())
    }

    /// One log entry of key group `kg`, after moving the group to the watermark it was
    /// logged with.
    fn replay_entry(
        &mut self,
        kg: u16,
        entry: LogEntry,
        task_of: impl Fn(u32) -> u32,
        applied: &mut HashMap<u32, i64>,
        join_applied: &mut [i64],
        sink: &mut Vec<Keyed>,
    ) {
        match entry {
            LogEntry::Series {
                task,
                label,
                global,
                ..
            } => {
                if let Some(state) = self.kg_task(task_of(task), kg) {
                    state.add_series(label, global);
                }
            }
            LogEntry::Event {
                watermark,
                mut item,
            } => {
                item.task = task_of(item.task);
                let seen = applied.entry(item.task).or_insert(i64::MIN);
                let Some(state) = self.kg_task(item.task, kg) else {
                    return;
                };
                if watermark > *seen {
                    state.advance(watermark, 0, sink);
                    *seen = watermark;
                }
                state.on_event(&item, watermark, sink);
            }
            LogEntry::Join { watermark, item } => {
                let plan = self.plan.clone();
                let group = self.group(kg);
                if let (Some(seen), Some(Some(join))) = (
                    join_applied.get_mut(item.join),
                    group.joins.get_mut(item.join),
                ) {
                    if watermark > *seen {
                        join.join
                            .on_watermark(watermark, &mut Emitted::new(sink, 0, 0));
                        *seen = watermark;
                    }
                }
                if let Some(seen) = join_applied.get_mut(item.join) {
                    *seen = (*seen).max(watermark);
                }
                group.on_join(&plan, &item, sink);
            }
        }
    }

    fn joint_watermark(&self, j: usize) -> i64 {
        let plan = &self.plan.joins[j];
        let of = |stream: usize| self.task(stream as u32).map_or(i64::MIN, |t| t.watermark);
        of(plan.left).min(of(plan.right))
    }

    /// Registers key group `kg`'s due times afresh, for every task and join it has.
    fn reschedule_group(&mut self, kg: u16) {
        let Some(group) = self.kgs[usize::from(kg)].as_mut() else {
            return;
        };
        for (task, state) in &mut group.tasks {
            let due = state.due();
            let registered = std::mem::replace(&mut state.registered, due);
            self.due.reschedule(Unit::Task(*task), kg, registered, due);
        }
        for (j, join) in group.joins.iter_mut().enumerate() {
            if let Some(join) = join {
                let due = join.join.due();
                let registered = std::mem::replace(&mut join.registered, due);
                self.due.reschedule(Unit::Join(j), kg, registered, due);
            }
        }
    }

    /// A task's series here: `(number in the task, label, key group, number there)`.
    pub fn series_of(&self, task: u32) -> Vec<(u32, Arc<str>, u16, u32)> {
        let mut series = Vec::new();
        for (kg, group) in self.kgs.iter().enumerate() {
            let Some(state) = group.as_ref().and_then(|g| g.task(task)) else {
                continue;
            };
            for (local, (label, global)) in state.series().enumerate() {
                series.push((global, label.clone(), kg as u16, local as u32));
            }
        }
        series
    }

    /// Removes a task's state from every key group of the shard and returns it.
    pub fn take_task(&mut self, task: u32) -> Vec<(u16, KgTask)> {
        let unit = self.unit_of(task);
        if unit != STATIC_UNIT {
            for books in &mut self.books {
                books.retain(|(u, _)| *u != unit);
            }
        }
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
