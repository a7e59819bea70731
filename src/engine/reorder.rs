//! The reorder buffer of per-point analytics: holds points until the watermark passes them and
//! releases them in (event time, place in the logs) order.
//!
//! A binary heap does this with a `log n` sift per point, each step a cache miss once the
//! buffer holds a busy stream's ten seconds of lateness. Here points go into a calendar of
//! fixed-width slots by event time instead; a slot is sorted once, when the watermark reaches
//! it, and its points are released in order. Insertion is an append, release a sort of a small,
//! cache-friendly slice. Points too far ahead of the oldest slot (a producer with a clock set
//! in the future) wait in a heap until the calendar reaches them, so a stray timestamp cannot
//! make the calendar huge.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

use serde::{Deserialize, Serialize};

use super::input::LogOrder;

/// Event time one slot covers, in ms.
const SLOT_MS: i64 = 256;
/// Slots at most (about 4.7 hours of event time ahead of the oldest point).
const MAX_SLOTS: usize = 1 << 16;

/// A point waiting for the watermark.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Buffered {
    pub ts: i64,
    /// Place in the stream's logs: breaks ties of equal event times.
    pub seq: LogOrder,
    pub series: u32,
    pub value: f64,
}

impl Buffered {
    fn key(&self) -> (i64, LogOrder) {
        (self.ts, self.seq)
    }
}

impl PartialEq for Buffered {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Buffered {}
impl PartialOrd for Buffered {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Buffered {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Slot {
    points: Vec<Buffered>,
    sorted: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ReorderBuffer {
    /// Start of the first slot's time range (a multiple of `SLOT_MS`).
    base: i64,
    slots: VecDeque<Slot>,
    /// Points beyond the last slot the calendar may have.
    far: BinaryHeap<Reverse<Buffered>>,
    len: usize,
    /// Emptied slots' vectors, for new slots: a busy stream opens a slot every 256 ms, and
    /// growing each one's vector from nothing again was a tenth of the buffer's work.
    #[serde(skip)]
    spare: Vec<Vec<Buffered>>,
    /// [`ReorderBuffer::next_time`] as last found, kept up by pushes (`None`: not known since
    /// the last release). Asked after every event, so not searched for each time.
    #[serde(skip)]
    earliest: Option<Option<i64>>,
}

/// Emptied slot vectors kept for reuse at most, and the largest kept.
const SPARE_SLOTS: usize = 64;
const SPARE_SLOT_POINTS: usize = 4096;

impl ReorderBuffer {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, point: Buffered) {
        let slot_start = point.ts.div_euclid(SLOT_MS) * SLOT_MS;
        if self.slots.is_empty() {
            // An empty calendar starts at the point (the far heap only holds later points).
            self.base = slot_start;
        } else if slot_start < self.base {
            // Earlier than the oldest slot (not late: the watermark is behind it). Grow the
            // calendar backwards; slots that end up beyond its reach go to the far heap, which
            // only ever holds points later than every slot.
            let missing = ((self.base - slot_start) / SLOT_MS) as usize;
            if missing >= MAX_SLOTS {
                for slot in self.slots.drain(..) {
                    self.far.extend(slot.points.into_iter().map(Reverse));
                }
            } else {
                for _ in 0..missing {
                    let slot = self.new_slot();
                    self.slots.push_front(slot);
                }
                while self.slots.len() > MAX_SLOTS {
                    if let Some(slot) = self.slots.pop_back() {
                        self.far.extend(slot.points.into_iter().map(Reverse));
                    }
                }
            }
            self.base = slot_start;
        }
        self.len += 1;
        self.place(point);
        self.adopt_far();
        if let Some(earliest) = &mut self.earliest {
            *earliest = Some(earliest.map_or(point.ts, |t| t.min(point.ts)));
        }
    }

    /// Puts a point into its slot, or into the far heap when the calendar does not reach it.
    fn place(&mut self, point: Buffered) {
        let index = ((point.ts.div_euclid(SLOT_MS) * SLOT_MS - self.base) / SLOT_MS) as usize;
        if index >= MAX_SLOTS {
            self.far.push(Reverse(point));
            return;
        }
        while index >= self.slots.len() {
            let slot = self.new_slot();
            self.slots.push_back(slot);
        }
        let slot = &mut self.slots[index];
        // Appending in order keeps a slot sorted: points mostly arrive in order.
        slot.sorted = (slot.sorted || slot.points.is_empty())
            && slot
                .points
                .last()
                .is_none_or(|last| last.key() < point.key());
        slot.points.push(point);
    }

    /// An empty slot, with a vector an earlier slot left when there is one.
    fn new_slot(&mut self) -> Slot {
        Slot {
            points: self.spare.pop().unwrap_or_default(),
            sorted: false,
        }
    }

    /// Moves far points the calendar now reaches into their slots, so slot order stays the
    /// release order.
    fn adopt_far(&mut self) {
        let horizon = self.base.saturating_add(SLOT_MS * MAX_SLOTS as i64);
        while let Some(&Reverse(next)) = self.far.peek() {
            if next.ts >= horizon {
                break;
            }
            self.far.pop();
            self.place(next);
        }
    }

    /// The earliest event time buffered. Sorts the first slot that holds points, which a
    /// release would do anyway.
    pub fn next_time(&mut self) -> Option<i64> {
        if let Some(earliest) = self.earliest {
            return earliest;
        }
        let earliest = self.find_earliest();
        self.earliest = Some(earliest);
        earliest
    }

    fn find_earliest(&mut self) -> Option<i64> {
        for slot in &mut self.slots {
            if slot.points.is_empty() {
                continue;
            }
            if !slot.sorted {
                slot.points.sort();
                slot.sorted = true;
            }
            return slot.points.first().map(|p| p.ts);
        }
        self.far.peek().map(|Reverse(p)| p.ts)
    }

    /// Releases, in (event time, place in the logs) order, every point with `ts < watermark`.
    pub fn release(&mut self, watermark: i64, mut emit: impl FnMut(Buffered)) {
        self.earliest = None;
        while let Some(slot) = self.slots.front_mut() {
            let slot_end = self.base.saturating_add(SLOT_MS);
            if !slot.sorted {
                // Stable: points with equal keys (lines of two files of one directory) keep
                // their arrival order, which is the order of the files.
                slot.points.sort();
                slot.sorted = true;
            }
            if slot_end <= watermark {
                // The whole slot is behind the watermark.
                self.len -= slot.points.len();
                slot.points.drain(..).for_each(&mut emit);
                if let Some(emptied) = self.slots.pop_front() {
                    if self.spare.len() < SPARE_SLOTS
                        && emptied.points.capacity() <= SPARE_SLOT_POINTS
                    {
                        self.spare.push(emptied.points);
                    }
                }
                self.base = slot_end;
                continue;
            }
            let due = slot.points.partition_point(|p| p.ts < watermark);
            self.len -= due;
            slot.points.drain(..due).for_each(&mut emit);
            break;
        }
        if self.slots.is_empty() {
            // Only far points (if any) remain; they are later than anything released so far.
            while let Some(&Reverse(next)) = self.far.peek() {
                if next.ts >= watermark {
                    break;
                }
                self.far.pop();
                self.len -= 1;
                emit(next);
            }
            if let Some(&Reverse(next)) = self.far.peek() {
                // Restart the calendar at the next far point.
                self.base = next.ts.div_euclid(SLOT_MS) * SLOT_MS;
                self.adopt_far();
            }
        } else {
            self.adopt_far();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(ts: i64, seq: u64) -> Buffered {
        Buffered {
            ts,
            seq: LogOrder {
                split: 0,
                offset: seq,
            },
            series: 0,
            value: seq as f64,
        }
    }

    fn released(buffer: &mut ReorderBuffer, watermark: i64) -> Vec<(i64, u64)> {
        let mut out = Vec::new();
        buffer.release(watermark, |p| out.push((p.ts, p.seq.offset)));
        out
    }

    #[test]
    fn releases_in_time_then_arrival_order_only_behind_the_watermark() {
        let mut b = ReorderBuffer::default();
        for (seq, ts) in [1000, 10, 600, 10, 255, 256, 999, -5]
            .into_iter()
            .enumerate()
        {
            b.push(point(ts, seq as u64));
        }
        assert_eq!(released(&mut b, 10), [(-5, 7)]);
        assert_eq!(
            released(&mut b, 600),
            [(10, 1), (10, 3), (255, 4), (256, 5)]
        );
        b.push(point(700, 8));
        b.push(point(650, 9));
        assert_eq!(
            released(&mut b, 1000),
            [(600, 2), (650, 9), (700, 8), (999, 6)]
        );
        assert_eq!(b.len(), 1);
        assert_eq!(released(&mut b, i64::MAX), [(1000, 0)]);
        assert!(b.is_empty());
    }

    #[test]
    fn a_point_far_in_the_past_of_a_restarted_calendar_comes_out_first() {
        let mut b = ReorderBuffer::default();
        let year = 365 * 24 * 3_600_000i64;
        b.push(point(0, 0));
        b.push(point(year, 1));
        assert_eq!(released(&mut b, 100), [(0, 0)]);
        // The calendar now starts at the far point; a point between is still on time.
        b.push(point(200, 2));
        b.push(point(year - 10, 3));
        assert_eq!(released(&mut b, 300), [(200, 2)]);
        assert_eq!(released(&mut b, i64::MAX), [(year - 10, 3), (year, 1)]);
        assert!(b.is_empty());
    }

    #[test]
    fn the_next_time_is_the_earliest_point_buffered() {
        let mut b = ReorderBuffer::default();
        assert_eq!(b.next_time(), None);
        for (seq, ts) in [900, 300, 1_000_000_000_000, 512].into_iter().enumerate() {
            b.push(point(ts, seq as u64));
        }
        assert_eq!(b.next_time(), Some(300));
        released(&mut b, 600);
        assert_eq!(b.next_time(), Some(900));
        released(&mut b, 901);
        assert_eq!(
            b.next_time(),
            Some(1_000_000_000_000),
            "only the far point is left"
        );
    }

    #[test]
    fn a_point_far_in_the_future_does_not_grow_the_calendar() {
        let mut b = ReorderBuffer::default();
        let year = 365 * 24 * 3_600_000i64;
        b.push(point(0, 0));
        b.push(point(year, 1));
        b.push(point(year - 1, 2));
        b.push(point(5, 3));
        assert!(b.slots.len() <= 2, "{} slots", b.slots.len());
        assert_eq!(released(&mut b, 100), [(0, 0), (5, 3)]);
        b.push(point(year + 3, 4));
        assert_eq!(released(&mut b, year + 1), [(year - 1, 2), (year, 1)]);
        assert_eq!(released(&mut b, i64::MAX), [(year + 3, 4)]);
        assert!(b.is_empty() && b.slots.is_empty() && b.far.is_empty());
    }
}
