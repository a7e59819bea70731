//! Deduplication by event id within an event-time horizon, with state bounded by the watermark.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::types::{Duration, Invalid};

/// A stream's `dedup` table: an event whose id was seen within `horizon` is a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    pub horizon: Duration,
}

impl DedupConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        self.horizon.positive("horizon")?;
        Ok(())
    }
}

/// An event id as dedup remembers it: the id's 128-bit XXH3 hash, not the id.
///
/// A key is 16 bytes whatever the id's length, compares in one instruction where strings took a
/// `memcmp`, and is already uniformly spread, so the map uses it as its hash as is. Two ids share
/// a key with a probability of about 2⁻¹²⁸ per pair: among the 10⁶ ids a busy stream holds
/// within a horizon, the chance that any two collide (and a distinct event is taken for a
/// duplicate) is about 10⁻²⁷, far below that of a corrupted disk. The hash is seedless and
/// fixed by the algorithm, so a key means the same in a checkpoint read by another process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdKey(u128);

impl IdKey {
    #[cfg(test)]
    pub fn of(id: &str) -> IdKey {
        IdKey(twox_hash::XxHash3_128::oneshot(id.as_bytes()))
    }

    /// The key of `id` within the series whose label hashes to `series`: an id is a
    /// duplicate only of an earlier event of the same series.
    pub fn of_series(series: u64, id: &str) -> IdKey {
        IdKey(twox_hash::XxHash3_128::oneshot_with_seed(
            series,
            id.as_bytes(),
        ))
    }
}

/// Sixteen bytes in a checkpoint, not a variable-length integer of up to nineteen.
impl Serialize for IdKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.to_le_bytes().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for IdKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <[u8; 16]>::deserialize(deserializer).map(|bytes| IdKey(u128::from_le_bytes(bytes)))
    }
}

/// The map's hasher: an [`IdKey`] is a hash already, so it is folded to 64 bits, not hashed again.
type KeyHash = BuildHasherDefault<KeyHasher>;

#[derive(Debug, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write_u128(&mut self, key: u128) {
        self.0 = (key as u64) ^ ((key >> 64) as u64);
    }

    /// Only [`IdKey`]s are hashed with it; anything else still gets a usable (if weak) hash.
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Sweeps never run more often than every this many new ids, so tiny maps do not sweep
/// constantly.
const MIN_SWEEP_INTERVAL: usize = 1024;

/// Remembers the ids of accepted events.
///
/// An event is a duplicate when an earlier accepted event had the same id and an event time at
/// most `horizon` away. An entry `(id, t)` is no longer needed once the watermark is past
/// `t + horizon`: any event still to come has a time at or after the watermark, so it is too far
/// from `t` to be its duplicate.
///
/// Such stale entries are not removed one by one (a random lookup each); instead the whole map
/// is swept in one sequential pass whenever it has taken in as many new ids as it held after the
/// previous sweep. A stale entry may so outlive its expiry for a while, which changes no result
/// (the duplicate test compares times exactly) and bounds the map at about twice the ids of the
/// last `horizon + lateness` of event time.
///
/// The map is the hottest state of a busy stream (hundreds of thousands of live ids, one random
/// probe per event), so an entry is kept to 24 bytes: the id's [`IdKey`] and one time. The rare
/// id reused for events further apart than the horizon keeps its other times in `earlier`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Dedup {
    horizon_ms: i64,
    /// Id → the latest event time it was accepted at.
    seen: HashMap<IdKey, i64, KeyHash>,
    /// Reused ids → their earlier accepted times that can still match.
    earlier: HashMap<IdKey, Vec<i64>, KeyHash>,
    inserted_since_sweep: usize,
    sweep_after: usize,
    watermark: i64,
}

impl Dedup {
    pub fn new(horizon_ms: i64) -> Self {
        Dedup {
            horizon_ms,
            seen: HashMap::default(),
            earlier: HashMap::default(),
            inserted_since_sweep: 0,
            sweep_after: MIN_SWEEP_INTERVAL,
            watermark: i64::MIN,
        }
    }

    /// Returns `true` for a duplicate; otherwise remembers the event and returns `false`.
    #[cfg(test)]
    pub fn check_and_insert(&mut self, id: &str, ts: i64) -> bool {
        self.check_and_insert_key(IdKey::of(id), ts)
    }

    /// Returns `true` for a duplicate of the event with key `id` at `ts`; otherwise remembers
    /// it and returns `false`.
    pub fn check_and_insert_key(&mut self, id: IdKey, ts: i64) -> bool {
        let horizon = self.horizon_ms;
        let near = |t0: i64| (ts - t0).abs() <= horizon;
        match self.seen.entry(id) {
            std::collections::hash_map::Entry::Occupied(mut entry) => {
                let latest = *entry.get();
                if near(latest)
                    || self
                        .earlier
                        .get(&id)
                        .is_some_and(|t| t.iter().any(|&t| near(t)))
                {
                    return true;
                }
                // A reused id: keep the latest time here, the others that can still match
                // something in `earlier`.
                let live_after = self.watermark.saturating_sub(horizon);
                let mut times = self.earlier.remove(&id).unwrap_or_default();
                times.push(latest.min(ts));
                times.retain(|&t| t >= live_after);
                entry.insert(latest.max(ts));
                if !times.is_empty() {
                    self.earlier.insert(id, times);
                }
            }
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(ts);
                self.inserted_since_sweep += 1;
                if self.inserted_since_sweep >= self.sweep_after {
                    self.sweep();
                }
            }
        }
        false
    }

    /// Records the stream's watermark; entries with `t + horizon < watermark` become removable.
    pub fn evict(&mut self, watermark: i64) {
        self.watermark = self.watermark.max(watermark);
        if watermark == i64::MAX {
            // End of input: nothing can be a duplicate any more.
            self.seen.clear();
            self.earlier.clear();
        }
    }

    fn sweep(&mut self) {
        let live_after = self.watermark.saturating_sub(self.horizon_ms);
        // An id's earlier times are older than its latest: when that is stale, all are.
        self.seen.retain(|_, &mut t| t >= live_after);
        self.earlier.retain(|_, times| {
            times.retain(|&t| t >= live_after);
            !times.is_empty()
        });
        self.inserted_since_sweep = 0;
        self.sweep_after = self.seen.len().max(MIN_SWEEP_INTERVAL);
    }

    /// Ids remembered now (live and not yet swept).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_within_horizon_and_reused_ids() {
        let mut d = Dedup::new(100);
        assert!(!d.check_and_insert("a", 1000));
        assert!(d.check_and_insert("a", 1100));
        assert!(d.check_and_insert("a", 900));
        assert!(!d.check_and_insert("a", 1101)); // too far: a new event with a reused id
        assert!(d.check_and_insert("a", 1201));
        assert!(d.check_and_insert("a", 1000));
        d.evict(i64::MAX);
        assert!(d.is_empty());
    }

    /// A key is written as its sixteen bytes and read back the same; a restored map still
    /// knows its ids.
    #[test]
    fn keys_round_trip_through_a_checkpoint() {
        let key = IdKey::of("order-17");
        assert_ne!(key, IdKey::of("order-18"));
        let bytes = postcard::to_allocvec(&key).unwrap();
        assert_eq!(bytes.len(), 16);
        assert_eq!(postcard::from_bytes::<IdKey>(&bytes).unwrap(), key);

        let mut d = Dedup::new(100);
        assert!(!d.check_and_insert("order-17", 1000));
        assert!(!d.check_and_insert("order-17", 1200));
        let mut restored: Dedup =
            postcard::from_bytes(&postcard::to_allocvec(&d).unwrap()).unwrap();
        assert!(
            restored.check_and_insert("order-17", 1050),
            "latest time kept"
        );
        assert!(
            restored.check_and_insert("order-17", 950),
            "earlier time kept"
        );
        assert!(!restored.check_and_insert("order-18", 1000));
    }

    #[test]
    fn sweeps_keep_the_map_bounded_by_the_live_horizon() {
        let mut d = Dedup::new(100);
        // One new id per ms for a long time; the watermark trails by 10 ms.
        let mut peak = 0;
        for t in 0..200_000i64 {
            assert!(!d.check_and_insert(&format!("id-{t}"), t));
            d.evict(t - 10);
            peak = peak.max(d.len());
        }
        // Live ids: the last horizon + lateness = 110 ms, so ~110; sweeps every 1024 inserts.
        assert!(peak <= 110 + MIN_SWEEP_INTERVAL + 1, "peak {peak}");
        // A stale entry never makes a later event a duplicate.
        assert!(!d.check_and_insert("id-199000", 199_900));
    }
}
