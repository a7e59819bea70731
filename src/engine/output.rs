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

/// Records an operator makes while one item is processed, with their [`SubKey`]s; the caller
/// adds the item's position and the operator's number.
#[derive(Default)]
pub struct Emitted {
    pub records: Vec<(SubKey, Record)>,
}

impl Emitted {
    pub fn push(&mut self, sub: SubKey, record: Record) {
        self.records.push((sub, record));
    }

    /// Moves the records into `out` under item `pos` and operator `op`, in sub-key order
    /// (stable: records of one sub-key keep the order they were made in).
    pub fn drain_into(&mut self, pos: u64, op: u32, out: &mut Vec<Keyed>) {
        if !self.records.windows(2).all(|w| w[0].0 <= w[1].0) {
            self.records.sort_by_key(|(sub, _)| *sub);
        }
        out.extend(
            self.records
                .drain(..)
                .map(|(sub, record)| (OutputKey { pos, op, sub }, record)),
        );
    }
}

/// Appends to `out` the records of `lists` (each in key order) in key order.
pub fn merge(lists: Vec<Vec<Keyed>>, out: &mut Vec<Record>) {
    let mut lists: Vec<std::iter::Peekable<std::vec::IntoIter<Keyed>>> = lists
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(|l| l.into_iter().peekable())
        .collect();
    out.reserve(lists.iter().map(|l| l.len()).sum());
    match lists.len() {
        0 => {}
        1 => out.extend(lists.pop().into_iter().flatten().map(|(_, r)| r)),
        _ => loop {
            let next = lists
                .iter_mut()
                .enumerate()
                .filter_map(|(i, l)| l.peek().map(|(key, _)| (*key, i)))
                .min();
            let Some((_, i)) = next else { break };
            if let Some((_, record)) = lists[i].next() {
                out.push(record);
            }
        },
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
        let a = vec![(key(1, 0), record(10)), (key(3, 5), record(30))];
        let b = vec![(key(2, 0), record(20)), (key(3, 1), record(25))];
        let mut out = Vec::new();
        merge(vec![a, Vec::new(), b], &mut out);
        let ts: Vec<i64> = out
            .iter()
            .map(|r| match r {
                Record::Late(l) => l.ts,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(ts, [10, 20, 25, 30]);
    }

    #[test]
    fn emitted_records_are_put_in_sub_key_order_keeping_ties_in_order() {
        let mut emitted = Emitted::default();
        emitted.push(SubKey::new(5, 0, 0, 0), record(1));
        emitted.push(SubKey::new(2, 0, 0, 0), record(2));
        emitted.push(SubKey::new(5, 0, 0, 0), record(3));
        let mut out = Vec::new();
        emitted.drain_into(7, 3, &mut out);
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
