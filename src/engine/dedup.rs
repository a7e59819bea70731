//! Deduplication by event id within an event-time horizon, with state evicted by the watermark.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Expiry buckets per horizon: eviction runs a bucket at a time, so an entry may outlive its
/// expiry by a bucket's width. That costs a little memory, never correctness: the duplicate
/// test compares event times exactly.
const BUCKETS_PER_HORIZON: i64 = 64;

/// Remembers the ids of accepted events.
///
/// An event is a duplicate when an earlier accepted event had the same id and an event time at
/// most `horizon` away. An entry `(id, t)` is forgotten once the watermark is past `t + horizon`:
/// any event still to come has a time at or after the watermark, so it is too far from `t` to
/// be its duplicate. That makes eviction exact, not an approximation, and bounds the state to
/// the ids of about `horizon + lateness` of event time.
#[derive(Debug, Default)]
pub struct Dedup {
    horizon_ms: i64,
    bucket_ms: i64,
    seen: HashMap<Arc<str>, SeenAt>,
    /// Expiry bucket (`(t + horizon) / bucket_ms`) → the `(t, id)` entries expiring in it.
    /// Event times are nearly ordered, so this stays a short map of long vectors: much cheaper
    /// than a heap of every entry.
    expiry: BTreeMap<i64, Vec<(i64, Arc<str>)>>,
}

/// Event times an id was accepted at. Almost always one; several only when a producer reuses an
/// id for events further apart than the horizon.
#[derive(Debug)]
enum SeenAt {
    One(i64),
    Many(Vec<i64>),
}

impl Dedup {
    pub fn new(horizon_ms: i64) -> Self {
        Dedup {
            horizon_ms,
            bucket_ms: (horizon_ms / BUCKETS_PER_HORIZON).max(1),
            ..Dedup::default()
        }
    }

    /// Returns `true` for a duplicate; otherwise remembers the event and returns `false`.
    pub fn check_and_insert(&mut self, id: &str, ts: i64) -> bool {
        let horizon = self.horizon_ms;
        let near = |t0: i64| (ts - t0).abs() <= horizon;
        let key: Arc<str> = match self.seen.get_mut(id) {
            Some(SeenAt::One(t0)) if near(*t0) => return true,
            Some(SeenAt::Many(times)) if times.iter().any(|&t0| near(t0)) => return true,
            Some(entry) => {
                match entry {
                    SeenAt::One(t0) => *entry = SeenAt::Many(vec![*t0, ts]),
                    SeenAt::Many(times) => times.push(ts),
                }
                // The id is stored already: share its allocation with the expiry entry.
                match self.seen.get_key_value(id) {
                    Some((key, _)) => key.clone(),
                    None => Arc::from(id),
                }
            }
            None => {
                let key: Arc<str> = Arc::from(id);
                self.seen.insert(key.clone(), SeenAt::One(ts));
                key
            }
        };
        let bucket = ts.saturating_add(horizon).div_euclid(self.bucket_ms);
        self.expiry.entry(bucket).or_default().push((ts, key));
        false
    }

    /// Forgets entries whose `t + horizon` is below the watermark, a bucket at a time.
    pub fn evict(&mut self, watermark: i64) {
        while let Some(entry) = self.expiry.first_entry() {
            // Every expiry in the bucket is below its end; all are passed once the end is.
            let bucket_end = entry.key().saturating_add(1).saturating_mul(self.bucket_ms);
            if bucket_end > watermark {
                break;
            }
            for (ts, id) in entry.remove() {
                self.forget(&id, ts);
            }
        }
    }

    fn forget(&mut self, id: &Arc<str>, ts: i64) {
        let now_empty = match self.seen.get_mut(id) {
            Some(SeenAt::One(t0)) => *t0 == ts,
            Some(SeenAt::Many(times)) => {
                if let Some(i) = times.iter().position(|&t0| t0 == ts) {
                    times.swap_remove(i);
                }
                times.is_empty()
            }
            None => false,
        };
        if now_empty {
            self.seen.remove(id);
        }
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_within_horizon_and_exact_eviction() {
        let mut d = Dedup::new(100);
        assert!(!d.check_and_insert("a", 1000));
        assert!(d.check_and_insert("a", 1100));
        assert!(d.check_and_insert("a", 900));
        assert!(!d.check_and_insert("a", 1101)); // too far: a new event with a reused id
        assert!(d.check_and_insert("a", 1201));
        d.evict(1100); // 1000 + 100 is not below 1100
        assert!(d.check_and_insert("a", 1100));
        d.evict(1101);
        assert_eq!(d.len(), 1);
        d.evict(1202);
        assert!(d.is_empty());
        assert!(!d.check_and_insert("a", 5000));
    }
}
