//! The router of a task: what is decided where events are read, before any series' state is
//! touched. It tracks the watermark of each of the task's source partitions, judges lateness,
//! numbers the task's series (and refuses series beyond `max_series`), and sends each event to
//! the key group of its series, with an item for every step of the task's watermark to every
//! shard (punctuation).
//!
//! Its state is small (the partitions' clocks and the series' labels), so it lives with the
//! caller; everything that grows with the series lives in the shards.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::dedup::{Dedup, IdKey};
use super::input::{LogOrder, Origin, RejectError, StreamCounters};
use super::keygroup::{key_group, label_hash, EventItem, JoinItem, KEY_GROUPS};
use super::output::{Keyed, OutputKey, SubKey};
use super::plan::StreamPlan;
use super::shard::Item;
use super::time::WatermarkTracker;
use crate::event::Event;
use crate::record::{LateRecord, Record};

/// Where a series' state is: its key group, its number there, and its number in the task.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct SeriesEntry {
    global: u32,
    kg: u16,
    local: u32,
    hash: u64,
}

/// The router's state. A checkpoint keeps its watermarks and counters; its series are the key
/// groups' (each keeps its series' labels and numbers), from which a restore rebuilds them.
#[derive(Serialize, Deserialize)]
pub struct TaskRouter {
    /// Index of the task's stream in the plan.
    pub stream: usize,
    pub watermark: WatermarkTracker,
    /// Labels in the order of their first event (a series' global number is its place here).
    #[serde(skip)]
    labels: Vec<Arc<str>>,
    #[serde(skip)]
    entries: Vec<SeriesEntry>,
    /// Series per key group so far: the next one's number there.
    #[serde(skip, default = "no_series_per_group")]
    per_group: Vec<u32>,
    #[serde(skip)]
    ids: HashMap<Arc<str>, u32, foldhash::fast::RandomState>,
    /// Dedup, for a stream that feeds a join (see [`StreamPlan::dedups_at_router`]); the
    /// shards deduplicate the others.
    dedup: Option<Dedup>,
    /// Events past lateness (duplicates found by the shards included), late events, and
    /// duplicates found here.
    pub passed: u64,
    pub late: u64,
    pub duplicates: u64,
}

fn no_series_per_group() -> Vec<u32> {
    vec![0; usize::from(KEY_GROUPS)]
}

/// Where the router's items and records go in one round.
pub struct Round<'a> {
    /// The next item's position; advanced by each item and record.
    pub pos: &'a mut u64,
    /// Items per shard.
    pub items: &'a mut [Vec<Item>],
    /// Records the router makes itself (late events).
    pub records: &'a mut Vec<Keyed>,
}

impl Round<'_> {
    fn next_pos(&mut self) -> u64 {
        let pos = *self.pos;
        *self.pos += 1;
        pos
    }

    fn shard_of(&self, kg: u16) -> usize {
        kg as usize % self.items.len()
    }

    /// Tells every shard the task's watermark moved.
    fn punctuate(&mut self, task: u32, watermark: i64) {
        let pos = self.next_pos();
        for items in self.items.iter_mut() {
            items.push(Item::Watermark {
                pos,
                task,
                watermark,
            });
        }
    }
}

impl TaskRouter {
    pub fn new(stream: usize, plan: &StreamPlan) -> Self {
        TaskRouter {
            stream,
            watermark: WatermarkTracker::new(
                plan.watermark.lateness.ms(),
                plan.watermark.idle_timeout.ms(),
            ),
            labels: Vec::new(),
            entries: Vec::new(),
            per_group: no_series_per_group(),
            ids: HashMap::default(),
            dedup: plan
                .dedup
                .filter(|_| plan.dedups_at_router())
                .map(|d| Dedup::new(d.horizon.ms())),
            passed: 0,
            late: 0,
            duplicates: 0,
        }
    }

    /// After a restore: the task's series, from the key groups' lists: `(number in the task,
    /// label, key group, number there)`, in any order.
    pub fn restore_series(&mut self, mut series: Vec<(u32, Arc<str>, u16, u32)>) {
        series.sort_unstable_by_key(|(global, ..)| *global);
        self.labels.clear();
        self.entries.clear();
        self.ids.clear();
        self.per_group = no_series_per_group();
        for (global, label, kg, local) in series {
            self.per_group[usize::from(kg)] = self.per_group[usize::from(kg)].max(local + 1);
            self.ids.insert(label.clone(), global);
            self.entries.push(SeriesEntry {
                global,
                kg,
                local,
                hash: label_hash(&label),
            });
            self.labels.push(label);
        }
    }

    /// The task's counters, with the duplicates its shards found.
    pub fn counters(&self, shard_duplicates: u64) -> StreamCounters {
        StreamCounters {
            accepted: self.passed.saturating_sub(shard_duplicates),
            late: self.late,
            duplicates: self.duplicates + shard_duplicates,
        }
    }

    /// Ids the router's dedup remembers (0 when the shards deduplicate).
    pub fn dedup_entries(&self) -> usize {
        self.dedup.as_ref().map_or(0, Dedup::len)
    }

    /// The series' labels, in the order of their first event.
    pub fn labels(&self) -> &[Arc<str>] {
        &self.labels
    }

    /// Routes one event of task `task` (stream `plan`), read at processing time `now`. `claim`
    /// is asked before a series new to the task is taken (under a consumer group a series
    /// must come from one partition); its error is the refusal.
    #[allow(clippy::too_many_arguments)]
    pub fn route(
        &mut self,
        task: u32,
        plan: &StreamPlan,
        event: &Event<'_>,
        origin: Origin<'_>,
        now: i64,
        round: &mut Round<'_>,
        claim: impl FnOnce(&str) -> Result<(), RejectError>,
    ) -> Result<(), RejectError> {
        let id = match self.ids.get(event.series.as_ref()) {
            Some(&id) => id,
            None => {
                if self.labels.len() >= plan.max_series {
                    return Err(RejectError::TooManySeries {
                        stream: plan.name.to_string(),
                        max: plan.max_series,
                    });
                }
                claim(&event.series)?;
                self.add_series(task, &event.series, round)
            }
        };
        let entry = self.entries[id as usize];
        let seq = LogOrder::from(origin);

        let bound = self.watermark.late_bound(origin.split);
        if event.ts < bound {
            self.watermark.observe(origin.split, event.ts, now);
            self.late += 1;
            let pos = round.next_pos();
            round.records.push((
                OutputKey {
                    pos,
                    op: 0,
                    sub: SubKey::default(),
                },
                Record::Late(LateRecord {
                    stream: plan.name.clone(),
                    series: self.labels[id as usize].clone(),
                    ts: event.ts,
                    watermark: bound,
                    lateness_ms: bound.saturating_sub(event.ts),
                    source: Arc::from(origin.source),
                    partition: origin.partition,
                    offset: origin.offset,
                }),
            ));
            return Ok(());
        }

        if let (Some(dedup), Some(id)) = (self.dedup.as_mut(), event.id.as_deref()) {
            if dedup.check_and_insert_key(IdKey::of_series(entry.hash, id), event.ts) {
                // A duplicate still shows its partition is alive, but moves no watermark.
                self.watermark.touch(origin.split, now);
                self.duplicates += 1;
                return Ok(());
            }
        }
        self.passed += 1;
        let pos = round.next_pos();
        let shard = round.shard_of(entry.kg);
        round.items[shard].push(Item::Event(EventItem {
            pos,
            task,
            kg: entry.kg,
            series: entry.local,
            ts: event.ts,
            value: event.value,
            seq,
            dedup: match (&plan.dedup, event.id.as_deref()) {
                (Some(_), Some(id)) if self.dedup.is_none() => {
                    Some(IdKey::of_series(entry.hash, id))
                }
                _ => None,
            },
        }));
        for &(join, side, by_field) in &plan.joins {
            let key: Arc<str> = match (by_field, event.join_key.as_deref()) {
                (true, Some(key)) => Arc::from(key),
                (true, None) => Arc::from(""),
                (false, _) => self.labels[id as usize].clone(),
            };
            let kg = if by_field {
                key_group(label_hash(&key))
            } else {
                entry.kg
            };
            let shard = round.shard_of(kg);
            round.items[shard].push(Item::Join(Box::new(JoinItem {
                pos,
                join,
                side,
                kg,
                key,
                ts: event.ts,
                seq,
                value: event.value,
                id: event.id.as_deref().map(Arc::from),
            })));
        }
        if self.watermark.observe(origin.split, event.ts, now) {
            self.advanced(task, round);
        }
        Ok(())
    }

    /// The task's watermark moved: every shard hears of it.
    fn advanced(&mut self, task: u32, round: &mut Round<'_>) {
        let watermark = self.watermark.current();
        if let Some(dedup) = self.dedup.as_mut() {
            dedup.evict(watermark);
        }
        round.punctuate(task, watermark);
    }

    fn add_series(&mut self, task: u32, label: &str, round: &mut Round<'_>) -> u32 {
        // The position of the event that brings it (a log replays the series before it).
        let pos = *round.pos;
        let hash = label_hash(label);
        let kg = key_group(hash);
        let local = self.per_group[usize::from(kg)];
        self.per_group[usize::from(kg)] += 1;
        let global = self.labels.len() as u32;
        let label: Arc<str> = Arc::from(label);
        self.ids.insert(label.clone(), global);
        self.labels.push(label.clone());
        self.entries.push(SeriesEntry {
            global,
            kg,
            local,
            hash,
        });
        let shard = round.shard_of(kg);
        round.items[shard].push(Item::Series {
            pos,
            task,
            kg,
            label,
            global,
        });
        global
    }

    /// A split of the task is known before it sends anything: it holds the watermark back.
    pub fn assign_split(&mut self, split: u32, now: i64) {
        self.watermark.touch(split, now);
    }

    /// Processing time moved on: idle partitions stop holding the watermark back.
    pub fn tick(&mut self, task: u32, now: i64, round: &mut Round<'_>) {
        if self.watermark.tick(now) {
            self.advanced(task, round);
        }
    }

    /// End of input: the watermark moves to the end of time.
    pub fn finish(&mut self, task: u32, round: &mut Round<'_>) {
        self.watermark.finish();
        self.advanced(task, round);
    }
}
