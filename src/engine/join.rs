//! Stream-stream interval join: left and right events with equal keys and event times at most
//! `within` apart, inner or left-outer, with state evicted by the joint watermark.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::input::LogOrder;
use super::output::{Emitted, SubKey};
use crate::record::{JoinRecord, Record};
use crate::types::{Duration, Invalid};

/// One `[[joins]]` table: events of two streams with equal keys at most `within` apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinConfig {
    /// Unique; appears as `join` in every join record.
    pub name: String,
    /// The streams joined, by name.
    pub left: String,
    pub right: String,
    /// `"series"` (default) or the name of a field both streams carry.
    #[serde(default)]
    pub on: JoinOn,
    pub within: Duration,
    #[serde(default)]
    pub kind: JoinKind,
    /// Indices of `left` and `right` in the config's streams (set once the config is valid).
    #[serde(skip)]
    pub sides: (usize, usize),
}

impl JoinConfig {
    /// What can be checked without the other streams (the config checks the names).
    pub fn validate(&self) -> Result<(), Invalid> {
        if let JoinOn::Field(field) = &self.on {
            if field.is_empty() {
                return Err(Invalid::new("on", "must be \"series\" or a field name"));
            }
        }
        Ok(())
    }
}

/// What makes a left and a right event match besides their times.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum JoinOn {
    /// The same series label.
    #[default]
    Series,
    /// The same value of this field.
    Field(String),
}

impl Serialize for JoinOn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            JoinOn::Series => serializer.serialize_str("series"),
            JoinOn::Field(field) => serializer.serialize_str(field),
        }
    }
}

impl<'de> Deserialize<'de> for JoinOn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(match text.as_str() {
            "series" => JoinOn::Series,
            _ => JoinOn::Field(text),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinKind {
    /// Only pairs that match (default).
    #[default]
    Inner,
    /// Also every left event that matched nothing, once nothing can match it any more.
    #[serde(rename = "left", alias = "left_outer")]
    LeftOuter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    Left,
    Right,
}

/// One side's buffered events: by time for eviction, by key for matching.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Rows {
    by_time: BTreeMap<(i64, LogOrder), Row>,
    by_key: HashMap<Arc<str>, BTreeSet<(i64, LogOrder)>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Row {
    key: Arc<str>,
    value: f64,
    id: Option<Arc<str>>,
    matched: bool,
}

impl Rows {
    fn insert(&mut self, ts: i64, seq: LogOrder, row: Row) {
        self.by_key
            .entry(row.key.clone())
            .or_default()
            .insert((ts, seq));
        self.by_time.insert((ts, seq), row);
    }

    /// Rows of `key` with times in `[from, to]`.
    fn matching(&self, key: &str, from: i64, to: i64) -> Vec<(i64, LogOrder)> {
        self.by_key
            .get(key)
            .map(|set| {
                set.range((from, LogOrder::MIN)..=(to, LogOrder::MAX))
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Removes the rows with `ts < limit`, oldest first.
    fn pop_before(&mut self, limit: i64) -> Option<(i64, LogOrder, Row)> {
        let entry = self.by_time.first_entry()?;
        let (ts, seq) = *entry.key();
        if ts >= limit {
            return None;
        }
        let row = entry.remove();
        if let Some(set) = self.by_key.get_mut(&row.key) {
            set.remove(&(ts, seq));
            if set.is_empty() {
                self.by_key.remove(&row.key);
            }
        }
        Some((ts, seq, row))
    }

    fn first_time(&self) -> Option<i64> {
        self.by_time.first_key_value().map(|(&(ts, _), _)| ts)
    }

    fn len(&self) -> usize {
        self.by_time.len()
    }
}

/// An event offered to the join (already deduplicated and not late on its own stream).
pub struct JoinInput<'a> {
    pub key: &'a str,
    pub ts: i64,
    pub seq: LogOrder,
    pub value: f64,
    pub id: Option<&'a str>,
}

/// The join's state. Its watermark is the minimum of both streams' watermarks.
///
/// A row at `t` can only match events with times in `[t − within, t + within]`; every event
/// still to come on either side is at or after its own stream's watermark, so at or after the
/// joint one. Once the joint watermark is past `t + within` the row can match nothing more: it is
/// dropped, and a left row that never matched is emitted with an empty right side (left-outer).
#[derive(Serialize, Deserialize)]
pub struct IntervalJoin {
    name: Arc<str>,
    left_stream: Arc<str>,
    right_stream: Arc<str>,
    within_ms: i64,
    kind: JoinKind,
    left: Rows,
    right: Rows,
}

impl IntervalJoin {
    pub fn new(
        name: Arc<str>,
        left_stream: Arc<str>,
        right_stream: Arc<str>,
        within_ms: i64,
        kind: JoinKind,
    ) -> Self {
        IntervalJoin {
            name,
            left_stream,
            right_stream,
            within_ms,
            kind,
            left: Rows::default(),
            right: Rows::default(),
        }
    }

    /// Pairs `input` with the other side's rows it matches (their records in the order of
    /// those rows: time, then place in the logs) and keeps it for the rows still to come.
    pub fn on_event(&mut self, side: Side, input: &JoinInput<'_>, out: &mut Emitted<'_>) {
        let from = input.ts.saturating_sub(self.within_ms);
        let to = input.ts.saturating_add(self.within_ms);
        let (mine, theirs) = match side {
            Side::Left => (&mut self.left, &mut self.right),
            Side::Right => (&mut self.right, &mut self.left),
        };
        let matches = theirs.matching(input.key, from, to);
        let key: Arc<str> = match theirs.by_key.get_key_value(input.key) {
            Some((k, _)) => k.clone(),
            None => Arc::from(input.key),
        };
        let id: Option<Arc<str>> = input.id.map(Arc::from);
        for at in &matches {
            let Some(other) = theirs.by_time.get_mut(at) else {
                continue;
            };
            other.matched = true;
            let (left, right) = match side {
                Side::Left => (
                    (input.ts, input.value, id.clone()),
                    (at.0, other.value, other.id.clone()),
                ),
                Side::Right => (
                    (at.0, other.value, other.id.clone()),
                    (input.ts, input.value, id.clone()),
                ),
            };
            let place = SubKey::new(at.0, u64::from(at.1.split), at.1.offset, 0);
            out.push(
                place,
                Record::Join(JoinRecord {
                    join: self.name.clone(),
                    key: key.clone(),
                    left_stream: self.left_stream.clone(),
                    right_stream: self.right_stream.clone(),
                    left_ts: left.0,
                    left_value: left.1,
                    left_id: left.2,
                    right_ts: Some(right.0),
                    right_value: Some(right.1),
                    right_id: right.2,
                }),
            );
        }
        mine.insert(
            input.ts,
            input.seq,
            Row {
                key,
                value: input.value,
                id,
                matched: !matches.is_empty(),
            },
        );
    }

    /// Evicts rows the joint watermark has passed by more than `within`.
    pub fn on_watermark(&mut self, watermark: i64, out: &mut Emitted<'_>) {
        // Row at t is done when watermark > t + within, i.e. t < watermark − within.
        let limit = watermark.saturating_sub(self.within_ms);
        while let Some((ts, seq, row)) = self.left.pop_before(limit) {
            if !row.matched && self.kind == JoinKind::LeftOuter {
                let place = SubKey::new(ts, u64::from(seq.split), seq.offset, 0);
                out.push(
                    place,
                    Record::Join(JoinRecord {
                        join: self.name.clone(),
                        key: row.key,
                        left_stream: self.left_stream.clone(),
                        right_stream: self.right_stream.clone(),
                        left_ts: ts,
                        left_value: row.value,
                        left_id: row.id,
                        right_ts: None,
                        right_value: None,
                        right_id: None,
                    }),
                );
            }
        }
        while self.right.pop_before(limit).is_some() {}
    }

    /// The lowest joint watermark that evicts a row: past the earliest one by `within`.
    pub fn due(&self) -> Option<i64> {
        let first = match (self.left.first_time(), self.right.first_time()) {
            (Some(l), Some(r)) => l.min(r),
            (one, other) => one.or(other)?,
        };
        Some(first.saturating_add(self.within_ms).saturating_add(1))
    }

    /// Buffered rows on both sides.
    pub fn buffered(&self) -> usize {
        self.left.len() + self.right.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(key: &str, ts: i64, seq: u64) -> JoinInput<'_> {
        let seq = LogOrder {
            split: 0,
            offset: seq,
        };
        JoinInput {
            key,
            ts,
            seq,
            value: ts as f64,
            id: None,
        }
    }

    fn pairs(out: &[crate::engine::output::Keyed]) -> Vec<(i64, Option<i64>)> {
        out.iter()
            .map(|(_, r)| match r {
                Record::Join(j) => (j.left_ts, j.right_ts),
                _ => panic!(),
            })
            .collect()
    }

    #[test]
    fn matches_both_ways_and_emits_unmatched_left_after_within() {
        let mut j = IntervalJoin::new("j".into(), "l".into(), "r".into(), 10, JoinKind::LeftOuter);
        let mut keyed = Vec::new();
        let mut out = Emitted::new(&mut keyed, 0, 0);
        j.on_event(Side::Left, &input("k", 100, 0), &mut out);
        j.on_event(Side::Right, &input("k", 110, 1), &mut out); // exactly within
        j.on_event(Side::Right, &input("x", 100, 2), &mut out); // other key
        j.on_event(Side::Left, &input("k", 200, 3), &mut out);
        j.on_event(Side::Left, &input("k", 105, 4), &mut out);
        assert_eq!(
            pairs(out.records()),
            vec![(100, Some(110)), (105, Some(110))]
        );
        j.on_watermark(210, &mut out);
        assert_eq!(pairs(out.records()).len(), 2, "200 + 10 is not passed yet");
        j.on_watermark(211, &mut out);
        assert_eq!(pairs(out.records())[2..], [(200, None)]);
        assert_eq!(j.buffered(), 0);
    }
}
