//! Checkpoints that cost what changed: each key group's state is kept as an image taken now and
//! then plus a log of what reached the group since, so a checkpoint writes what came in since
//! the last one, not the whole state.
//!
//! Every item a shard runs for a key group (a series' first event, an event, a join event) is
//! appended to the group's log, with the watermark its task had just before it. A group's
//! state is a function of those entries alone: the watermark steps between two of its entries
//! can be taken as one step to the later watermark without changing its state (a window closes,
//! a point is computed, a row is evicted the same, only the records come at another moment,
//! and a replay throws records away). So no watermark step is logged; restoring a group is its
//! image, then its log after the image, each entry after moving to the watermark it was logged
//! with, then the task's watermark now.
//!
//! A shard takes a group's image itself, between two rounds, once the group's log since its
//! last image has grown to half the image's size (a quarter of a megabyte at first), as long
//! as the images it took since the last checkpoint are no larger than the log written since
//! (plus a quarter of a megabyte): the bytes written per checkpoint grow with the events since
//! the last one (a log entry each, and at most as many bytes of images), never with the state,
//! and a restore replays on the order of an image's worth of log per group. A checkpoint hands over the logs since the last one and the
//! images taken since, with what each group's image covers, so the store can drop the log
//! segments an image has made useless.
//!
//! What a checkpoint covers is a *unit*: the static streams and their joins together (the
//! pipeline's checkpoint), or one task of a group-assigned stream (a partition's checkpoint).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::join::IntervalJoin;
use super::keygroup::{EventItem, JoinItem, KgTask};

/// The unit of the static streams and joins; a group-assigned task's unit is its task id.
pub const STATIC_UNIT: u32 = u32::MAX;

/// One entry of a key group's log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LogEntry {
    /// A series' first event comes next, at `pos`.
    Series {
        pos: u64,
        task: u32,
        label: Arc<str>,
        global: u32,
    },
    /// An event, with its task's watermark just before it.
    Event { watermark: i64, item: EventItem },
    /// A join event, with the join's joint watermark just before it.
    Join { watermark: i64, item: JoinItem },
}

/// [`LogEntry`] as written, borrowing what it holds (same variants, same order).
#[derive(Serialize)]
pub enum LogEntryOut<'a> {
    Series {
        pos: u64,
        task: u32,
        label: &'a Arc<str>,
        global: u32,
    },
    Event {
        watermark: i64,
        item: &'a EventItem,
    },
    Join {
        watermark: i64,
        item: &'a JoinItem,
    },
}

impl LogEntry {
    pub fn pos(&self) -> u64 {
        match self {
            LogEntry::Series { pos, .. } => *pos,
            LogEntry::Event { item, .. } => item.pos,
            LogEntry::Join { item, .. } => item.pos,
        }
    }
}

/// What a shard keeps of one unit's share of a key group for checkpoints.
#[derive(Debug, Default)]
pub struct Book {
    /// Log entries since the last checkpoint.
    pub log: Vec<u8>,
    pub first_pos: Option<u64>,
    pub last_pos: u64,
    /// The position the group's last image covers up to (0: none; everything is in logs).
    pub image_pos: u64,
    /// The size of that image.
    pub image_bytes: u64,
    /// Log bytes since that image (in checkpoints already written, and in `log`).
    pub since_image: u64,
    /// An image taken since the last checkpoint: its position and bytes.
    pub pending: Option<(u64, Vec<u8>)>,
}

impl Book {
    /// Appends an entry at `pos`; returns its size.
    pub fn append(&mut self, pos: u64, entry: &LogEntryOut<'_>) -> usize {
        let before = self.log.len();
        // Writing to a vector cannot fail.
        let log = std::mem::take(&mut self.log);
        self.log = postcard::to_extend(entry, log).unwrap_or_default();
        self.first_pos.get_or_insert(pos);
        self.last_pos = pos;
        let appended = self.log.len() - before;
        self.since_image += appended as u64;
        appended
    }

    /// Whether the log since the last image is worth an image now: half the last image's
    /// size, or `first` bytes before the first.
    pub fn wants_image(&self, first: u64) -> bool {
        let enough = match self.image_bytes {
            0 => first,
            bytes => bytes / 2,
        };
        self.pending.is_none() && self.since_image >= enough.max(1)
    }

    /// An image at `pos` was taken.
    pub fn imaged(&mut self, pos: u64, bytes: Vec<u8>) {
        self.image_pos = pos;
        self.image_bytes = bytes.len() as u64;
        self.since_image = 0;
        self.pending = Some((pos, bytes));
    }

    /// Takes the log since the last checkpoint as a segment.
    pub fn take_segment(&mut self, kg: u16) -> Option<LogSegment> {
        let first = self.first_pos.take()?;
        Some(LogSegment {
            kg,
            first_pos: first,
            last_pos: self.last_pos,
            bytes: super::snapshot::seal_bytes(std::mem::take(&mut self.log)),
        })
    }
}

/// A key group's image: the watermarks its state is at, and the state (see
/// [`super::shard::ImageRef`]).
#[derive(Serialize)]
pub struct ImageOut<'a> {
    pub watermarks: Vec<(u32, i64)>,
    pub join_watermarks: Vec<i64>,
    pub tasks: Vec<(u32, &'a KgTask)>,
    pub joins: Vec<Option<&'a IntervalJoin>>,
}

/// [`ImageOut`] as read back.
#[derive(Deserialize)]
pub struct ImageIn {
    pub watermarks: Vec<(u32, i64)>,
    pub join_watermarks: Vec<i64>,
    pub tasks: Vec<(u32, KgTask)>,
    pub joins: Vec<Option<IntervalJoin>>,
}

/// A key group's image in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupImage {
    pub kg: u16,
    /// Covers every entry before this position.
    pub pos: u64,
    pub bytes: Vec<u8>,
}

/// A stretch of a key group's log in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSegment {
    pub kg: u16,
    pub first_pos: u64,
    pub last_pos: u64,
    pub bytes: Vec<u8>,
}

/// A unit's state as a checkpoint stores it: the routers' (`head`), then each key group's
/// newest image and the log segments after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredState {
    pub head: Vec<u8>,
    pub images: Vec<GroupImage>,
    pub logs: Vec<LogSegment>,
}

/// What a checkpoint adds to a unit's stored state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateDelta {
    /// Replaces the stored head.
    pub head: Vec<u8>,
    /// Replace the stored images of their groups.
    pub images: Vec<GroupImage>,
    /// Come after the stored segments.
    pub logs: Vec<LogSegment>,
    /// Per key group, the position its newest image covers up to: segments that end before it
    /// are no longer needed.
    pub covered: Vec<(u16, u64)>,
    /// The images are every group's: everything stored before can go.
    pub full: bool,
}

impl StateDelta {
    /// Bytes it adds.
    pub fn len(&self) -> usize {
        self.head.len()
            + self.images.iter().map(|i| i.bytes.len()).sum::<usize>()
            + self.logs.iter().map(|l| l.bytes.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored state this delta makes of `stored` (how a store applies it).
    pub fn apply(&self, stored: Option<StoredState>) -> StoredState {
        let mut state = match (self.full, stored) {
            (false, Some(stored)) => stored,
            _ => StoredState::default(),
        };
        state.head = self.head.clone();
        for image in &self.images {
            state.images.retain(|i| i.kg != image.kg);
            state.images.push(image.clone());
        }
        state.images.sort_by_key(|i| i.kg);
        state.logs.extend(self.logs.iter().cloned());
        for &(kg, covered) in &self.covered {
            state.logs.retain(|l| l.kg != kg || l.last_pos >= covered);
        }
        state
    }
}
