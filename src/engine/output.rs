//! Where records come out in order: every record the engine makes carries a key that says
//! where one engine would have written it, so shards that each make a part of a round's
//! records can be merged into exactly the order one shard gives.
//!
//! The key is `(pos, op, sub)`: `pos` numbers the engine's input items (events, watermark
//! advances) in the order the router made them; `op` is the operator within the item (a
//! stream's operators in config order, then the joins); `sub` is the operator's own order
//! among the records one item makes, which depends only on the series they belong to (a
//! window's due time and the series' number, a point's event time and place in the logs), never
//! on which shard holds the series. Within one shard records are made in key order; the merge
//! of the shards' lists is the order of one engine.

use crate::record::Record;

/// An operator's own order among the records of one item (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct SubKey {
    pub a: i64,
    pub b: u64,
    pub c: u64,
    pub d: u32,
}

impl SubKey {
    pub const fn new(a: i64, b: u64, c: u64, d: u32) -> Self {
        SubKey { a, b, c, d }
    }
}

/// Where a record goes in the engine's output (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct OutputKey {
    pub pos: u64,
    pub op: u32,
    pub sub: SubKey,
}

/// `op` of the joins: after every stream operator.
pub const JOIN_OPS: u32 = 1 << 16;

/// A record with its key.
pub type Keyed = (OutputKey, Record);

/// Where an operator's records go while one item is processed: into the shard's list, under
/// the item's position and the operator's number, with the operator's own order added.
pub struct Emitted<'a> {
    out: &'a mut Vec<Keyed>,
    pos: u64,
    op: u32,
}

impl<'a> Emitted<'a> {
    pub fn new(out: &'a mut Vec<Keyed>, pos: u64, op: u32) -> Self {
        Emitted { out, pos, op }
    }

    pub fn push(&mut self, sub: SubKey, record: Record) {
        let key = OutputKey {
            pos: self.pos,
            op: self.op,
            sub,
        };
        self.out.push((key, record));
    }

    /// Room for `more` records at once.
    pub fn reserve(&mut self, more: usize) {
        self.out.reserve(more);
    }

    /// What was written so far.
    #[cfg(test)]
    pub fn records(&self) -> &[Keyed] {
        self.out
    }
}

/// Puts the records of `records` from `start` on in key order (stable): what several key
/// groups made for one item, each group's in order. Sorts their positions and moves each
/// record once, rather than moving records (a couple of hundred bytes each) around a sort.
pub fn sort_from(records: &mut Vec<Keyed>, start: usize) {
    let tail = &records[start..];
    if tail.windows(2).all(|w| w[0].0 <= w[1].0) {
        return;
    }
    let mut order: Vec<(OutputKey, u32)> = tail
        .iter()
        .enumerate()
        .map(|(i, (key, _))| (*key, i as u32))
        .collect();
    order.sort_by_key(|&(key, _)| key);
    let mut taken: Vec<Option<Keyed>> = records.drain(start..).map(Some).collect();
    records.extend(
        order
            .into_iter()
            .filter_map(|(_, i)| taken[i as usize].take()),
    );
}

/// Appends to `out` the records of `lists` (each in key order) in key order: whole runs of one
/// list at a time, up to the next list's head. Leaves the lists empty, for reuse.
pub fn merge(lists: &mut [Vec<Keyed>], out: &mut Vec<Record>) {
    out.reserve(lists.iter().map(Vec::len).sum());
    let mut lists: Vec<std::iter::Peekable<std::vec::Drain<'_, Keyed>>> = lists
        .iter_mut()
        .filter(|l| !l.is_empty())
        .map(|l| l.drain(..).peekable())
        .collect();
    loop {
        // The list with the lowest head, and the lowest head of the others.
        let mut first: Option<(OutputKey, usize)> = None;
        let mut second: Option<OutputKey> = None;
        for (i, list) in lists.iter_mut().enumerate() {
            let Some(&(key, _)) = list.peek() else {
                continue;
            };
            match first {
                Some((lowest, _)) if key >= lowest => {
                    second = Some(second.map_or(key, |s| s.min(key)));
                }
                _ => {
                    second = first.map(|(lowest, _)| second.map_or(lowest, |s| s.min(lowest)));
                    first = Some((key, i));
                }
            }
        }
        let Some((_, i)) = first else { break };
        let list = &mut lists[i];
        match second {
            None => out.extend(list.map(|(_, record)| record)),
            Some(limit) => {
                while let Some((_, record)) = list.next_if(|(key, _)| *key < limit) {
                    out.push(record);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::LateRecord;
    use std::sync::Arc;

    fn record(ts: i64) -> Record {
        Record::Late(LateRecord {
            stream: Arc::from("s"),
            series: Arc::from("a"),
            ts,
            watermark: 0,
            lateness_ms: 0,
            source: Arc::from("x"),
            partition: 0,
            offset: 0,
        })
    }

    fn key(pos: u64, a: i64) -> OutputKey {
        OutputKey {
            pos,
            op: 0,
            sub: SubKey::new(a, 0, 0, 0),
        }
    }

    #[test]
    fn merging_sorted_lists_interleaves_them_by_key() {
        let a = vec![
            (key(1, 0), record(10)),
            (key(3, 5), record(30)),
            (key(4, 0), record(40)),
        ];
        let b = vec![(key(2, 0), record(20)), (key(3, 1), record(25))];
        let c = vec![(key(3, 2), record(27)), (key(5, 0), record(50))];
        let mut out = Vec::new();
        merge(&mut [a, Vec::new(), b, c], &mut out);
        let ts: Vec<i64> = out
            .iter()
            .map(|r| match r {
                Record::Late(l) => l.ts,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(ts, [10, 20, 25, 27, 30, 40, 50]);
    }

    #[test]
    fn records_are_put_in_key_order_keeping_ties_in_order() {
        let mut out = Vec::new();
        let mut emitted = Emitted::new(&mut out, 7, 3);
        emitted.push(SubKey::new(5, 0, 0, 0), record(1));
        emitted.push(SubKey::new(2, 0, 0, 0), record(2));
        emitted.push(SubKey::new(5, 0, 0, 0), record(3));
        sort_from(&mut out, 0);
        let order: Vec<(i64, u64, u32)> = out
            .iter()
            .map(|(k, r)| match r {
                Record::Late(l) => (l.ts, k.pos, k.op),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(order, [(2, 7, 3), (1, 7, 3), (3, 7, 3)]);
    }
}
