//! Event time: the per-partition watermark tracker of one stream, and per-series timers.
//!
//! Owns the watermark rule (see the engine's module doc); does not own what happens when the
//! watermark moves — operators react to it through their `on_watermark` hook.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::types::{Duration, Invalid};

/// How far a stream's watermark trails its events (its `watermark` table).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatermarkConfig {
    /// Events up to this much older than the newest one seen still count; default "5s".
    pub lateness: Duration,
    /// A partition silent this long (processing time) stops holding the watermark back;
    /// default "30s".
    pub idle_timeout: Duration,
    /// Events stamped further than this ahead of the wall clock when they are read are dead
    /// letters, and never move the watermark; default "1h" (as Kafka's
    /// `message.timestamp.after.max.ms`). One event from year 9999, or in microseconds, would
    /// otherwise make every later event late.
    pub max_ahead: Duration,
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        WatermarkConfig {
            lateness: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_ahead: Duration::from_secs(3600),
        }
    }
}

impl WatermarkConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        self.idle_timeout.positive("idle_timeout")?;
        Ok(())
    }

    /// Refuses an event stamped `ts` that was read when the wall clock said `clock`, if it is
    /// further ahead than `max_ahead`.
    ///
    /// The reference is the wall clock, not the partition's watermark: real series pause for
    /// hours or days (a week in one of the NAB files) and resume, and a bound on the jump
    /// from the last event would refuse everything after such a gap for good.
    pub fn check_ahead(&self, ts: i64, clock: i64) -> Result<(), TooFarAhead> {
        if ts.saturating_sub(clock) > self.max_ahead.ms() {
            Err(TooFarAhead {
                ts,
                clock,
                max_ahead: self.max_ahead,
            })
        } else {
            Ok(())
        }
    }
}

/// An event stamped too far in the future (see [`WatermarkConfig::check_ahead`]); its
/// `Display` is the dead letter's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooFarAhead {
    pub ts: i64,
    pub clock: i64,
    pub max_ahead: Duration,
}

impl std::fmt::Display for TooFarAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ahead = self.ts.saturating_sub(self.clock);
        write!(
            f,
            "event time {} is {} ahead of the clock when it was read ({}), more than \
             watermark.max_ahead = {}: refused so that it cannot move the watermark",
            crate::clock::format_ms(self.ts),
            roughly(ahead),
            crate::clock::format_ms(self.clock),
            self.max_ahead,
        )?;
        // A time in the wrong unit is the usual cause; say which one it looks like.
        let hint = match self.ts / self.clock.max(1) {
            900..=1_100 => Some("microseconds"),
            900_000..=1_100_000 => Some("nanoseconds"),
            _ => None,
        };
        if let Some(unit) = hint {
            write!(f, " (the time looks like {unit}, not milliseconds)")?;
        }
        Ok(())
    }
}

/// A span of milliseconds in its largest whole unit: "7973 years", "3 days", "2 hours".
fn roughly(ms: i64) -> String {
    const UNITS: [(i64, &str); 5] = [
        (365 * 86_400_000, "years"),
        (86_400_000, "days"),
        (3_600_000, "hours"),
        (60_000, "minutes"),
        (1_000, "seconds"),
    ];
    for (size, name) in UNITS {
        if ms >= 2 * size {
            return format!("{} {name}", ms / size);
        }
    }
    format!("{ms} ms")
}

/// Watermark before any event: nothing is late, nothing closes.
pub const WATERMARK_MIN: i64 = i64::MIN;
/// Watermark at end of input: everything closes.
pub const WATERMARK_END: i64 = i64::MAX;

/// What one source partition contributes to its stream's watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionWatermark {
    /// Max event time seen minus lateness.
    Active(i64),
    /// No event for `idle_timeout` of processing time: ignored until it sends again.
    Idle(i64),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartitionClock {
    id: u32,
    max_event_time: i64,
    last_active: i64,
    idle: bool,
}

/// Tracks a stream's watermark over its source partitions.
///
/// The watermark is the minimum of `max event time − lateness` over the partitions that are not
/// idle; when all are idle, the maximum over all of them (nothing is holding time back). It
/// never goes backwards: a partition that appears late or wakes up behind simply finds its events
/// late until it catches up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatermarkTracker {
    lateness_ms: i64,
    idle_timeout_ms: i64,
    partitions: Vec<PartitionClock>,
    current: i64,
}

impl WatermarkTracker {
    pub fn new(lateness_ms: i64, idle_timeout_ms: i64) -> Self {
        WatermarkTracker {
            lateness_ms,
            idle_timeout_ms,
            partitions: Vec::new(),
            current: WATERMARK_MIN,
        }
    }

    pub fn current(&self) -> i64 {
        self.current
    }

    /// The time below which an event of `partition` is late: the partition's own watermark
    /// (its max event time − lateness), or the stream's when that is further on.
    ///
    /// A partition that has been active since it was declared is never behind the stream's
    /// watermark (the stream's is the minimum over such partitions), so for it this is its own
    /// watermark alone: whether an event is late depends on the events before it in its own
    /// partition, never on how partitions interleave. The stream's watermark only takes over
    /// for a partition that was idle while the others moved on (idleness is processing time);
    /// it keeps an accepted event out of a window that has closed.
    pub fn late_bound(&self, partition: u32) -> i64 {
        let own = self
            .partitions
            .iter()
            .find(|p| p.id == partition)
            .map_or(WATERMARK_MIN, |p| {
                p.max_event_time.saturating_sub(self.lateness_ms)
            });
        own.max(self.current)
    }

    /// Each partition's contribution, for the status page.
    pub fn partitions(&self) -> impl Iterator<Item = (u32, PartitionWatermark)> + '_ {
        self.partitions.iter().map(|p| {
            let wm = p.max_event_time.saturating_sub(self.lateness_ms);
            let state = if p.idle {
                PartitionWatermark::Idle(wm)
            } else {
                PartitionWatermark::Active(wm)
            };
            (p.id, state)
        })
    }

    fn clock(&mut self, partition: u32, now: i64) -> &mut PartitionClock {
        // Linear search: a stream has a handful of partitions, and this beats hashing them.
        let index = match self.partitions.iter().position(|p| p.id == partition) {
            Some(i) => i,
            None => {
                self.partitions.push(PartitionClock {
                    id: partition,
                    max_event_time: WATERMARK_MIN,
                    last_active: now,
                    idle: false,
                });
                self.partitions.len() - 1
            }
        };
        &mut self.partitions[index]
    }

    /// Marks the partition as alive at processing time `now` without an event time (a duplicate,
    /// or a freshly assigned partition). Waking a partition can only hold the watermark back,
    /// and the watermark never goes back, so this never moves it.
    pub fn touch(&mut self, partition: u32, now: i64) {
        let clock = self.clock(partition, now);
        clock.last_active = clock.last_active.max(now);
        clock.idle = false;
    }

    /// Records an event time seen on a partition; returns whether the watermark advanced.
    pub fn observe(&mut self, partition: u32, event_time: i64, now: i64) -> bool {
        let clock = self.clock(partition, now);
        clock.last_active = clock.last_active.max(now);
        clock.idle = false;
        if event_time <= clock.max_event_time {
            return false;
        }
        clock.max_event_time = event_time;
        self.recompute()
    }

    /// Advances processing time: partitions silent for `idle_timeout` become idle. Returns
    /// whether the watermark advanced.
    pub fn tick(&mut self, now: i64) -> bool {
        let mut changed = false;
        for p in &mut self.partitions {
            let idle = now.saturating_sub(p.last_active) >= self.idle_timeout_ms;
            changed |= idle != p.idle;
            p.idle = idle;
        }
        changed && self.recompute()
    }

    /// End of input: every window may close.
    pub fn finish(&mut self) {
        self.current = WATERMARK_END;
    }

    fn recompute(&mut self) -> bool {
        let lateness = self.lateness_ms;
        let contribution = |p: &PartitionClock| p.max_event_time.saturating_sub(lateness);
        let active = self
            .partitions
            .iter()
            .filter(|p| !p.idle && p.max_event_time != WATERMARK_MIN)
            .map(contribution)
            .min();
        // A partition that has sent nothing but is not idle yet holds the watermark back:
        // we cannot know how old its first event will be.
        let waiting = self
            .partitions
            .iter()
            .any(|p| !p.idle && p.max_event_time == WATERMARK_MIN);
        let candidate = if waiting {
            WATERMARK_MIN
        } else {
            match active {
                Some(min) => min,
                None => self
                    .partitions
                    .iter()
                    .map(contribution)
                    .max()
                    .unwrap_or(WATERMARK_MIN),
            }
        };
        if candidate > self.current {
            self.current = candidate;
            true
        } else {
            false
        }
    }
}

/// One timer per series, ordered by time: lets an operator find the series due at a watermark
/// without scanning every series (a stream may have 100,000).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SeriesTimers {
    queue: BTreeSet<(i64, u32)>,
    scheduled: Vec<Option<i64>>,
}

impl SeriesTimers {
    /// Sets the series' timer to `at`, replacing an earlier setting.
    pub fn schedule(&mut self, series: u32, at: i64) {
        let slot = series as usize;
        if slot >= self.scheduled.len() {
            self.scheduled.resize(slot + 1, None);
        }
        match self.scheduled[slot] {
            Some(old) if old == at => return,
            Some(old) => {
                self.queue.remove(&(old, series));
            }
            None => {}
        }
        self.scheduled[slot] = Some(at);
        self.queue.insert((at, series));
    }

    #[cfg(test)]
    pub fn cancel(&mut self, series: u32) {
        if let Some(Some(old)) = self.scheduled.get_mut(series as usize).map(Option::take) {
            self.queue.remove(&(old, series));
        }
    }

    /// Pops the earliest timer set at or before `limit`: its time and series.
    pub fn pop_due(&mut self, limit: i64) -> Option<(i64, u32)> {
        let &(at, series) = self.queue.first()?;
        if at > limit {
            return None;
        }
        self.queue.pop_first();
        self.scheduled[series as usize] = None;
        Some((at, series))
    }

    /// The earliest time a timer is set at.
    pub fn next(&self) -> Option<i64> {
        self.queue.first().map(|&(at, _)| at)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_is_min_over_active_partitions_and_monotonic() {
        let mut wm = WatermarkTracker::new(10, 1000);
        assert!(wm.observe(0, 100, 0));
        assert_eq!(wm.current(), 90);
        // A new partition that has an older max does not pull the watermark back.
        assert!(!wm.observe(1, 50, 0));
        assert_eq!(wm.current(), 90);
        assert!(!wm.observe(0, 200, 0));
        assert!(wm.observe(1, 150, 0));
        assert_eq!(wm.current(), 140);
    }

    #[test]
    fn idle_partitions_are_skipped_until_they_speak() {
        let mut wm = WatermarkTracker::new(0, 1000);
        // Known partitions that have sent nothing yet hold the watermark.
        wm.touch(0, 0);
        wm.touch(1, 0);
        assert!(!wm.observe(0, 100, 0));
        assert_eq!(wm.current(), WATERMARK_MIN);
        wm.observe(1, 10, 0);
        assert_eq!(wm.current(), 10);
        wm.observe(0, 500, 900);
        assert!(!wm.tick(999));
        assert!(wm.tick(1000)); // partition 1 silent for 1000 ms
        assert_eq!(wm.current(), 500);
        wm.observe(1, 20, 1100); // wakes up, behind: holds nothing back
        assert_eq!(wm.current(), 500);
        assert!(!wm.tick(5000)); // all idle: the most advanced partition, 500, still rules
        assert_eq!(wm.current(), 500);
        wm.finish();
        assert_eq!(wm.current(), WATERMARK_END);
    }

    #[test]
    fn lateness_is_judged_by_the_partition_s_own_watermark() {
        let mut wm = WatermarkTracker::new(10, 1000);
        wm.touch(0, 0);
        wm.touch(1, 0);
        wm.observe(0, 500, 0);
        // Partition 1 has sent nothing: the stream's watermark is held back, but partition 0's
        // own events are judged by partition 0 alone.
        assert_eq!(wm.current(), WATERMARK_MIN);
        assert_eq!(wm.late_bound(0), 490);
        assert_eq!(wm.late_bound(1), WATERMARK_MIN);
        wm.observe(1, 100, 0);
        assert_eq!((wm.current(), wm.late_bound(1)), (90, 90));
        // Partition 1 goes idle; the stream moves on with partition 0, and partition 1 waking
        // up behind finds the stream's watermark, not its own.
        wm.observe(0, 800, 999);
        assert!(wm.tick(1000));
        assert_eq!(wm.current(), 790);
        assert_eq!(wm.late_bound(1), 790);
    }

    #[test]
    fn events_too_far_ahead_of_the_clock_are_refused_with_the_reason() {
        let config = WatermarkConfig::default();
        let clock = 1_765_000_000_000; // 2025-12-06
        assert!(config.check_ahead(clock + 3_600_000, clock).is_ok());
        assert!(
            config.check_ahead(i64::MIN, clock).is_ok(),
            "the past is lateness' job"
        );
        let year_9999 = config.check_ahead(253_402_300_799_000, clock).unwrap_err();
        let reason = year_9999.to_string();
        assert!(
            reason.starts_with("event time 9999-12-31T23:59:59Z is 7979 years ahead of the clock")
                && reason.contains("watermark.max_ahead = 1h")
                && !reason.contains("looks like"),
            "{reason}"
        );
        let micros = config.check_ahead(clock * 1000 + 5, clock).unwrap_err();
        assert!(
            micros
                .to_string()
                .ends_with("(the time looks like microseconds, not milliseconds)"),
            "{micros}"
        );
        let nanos = config.check_ahead(clock * 1_000_000, clock).unwrap_err();
        assert!(
            nanos.to_string().contains("looks like nanoseconds"),
            "{nanos}"
        );
        let soon = config.check_ahead(clock + 3_600_001, clock).unwrap_err();
        assert!(soon.to_string().contains("is 60 minutes ahead"), "{soon}");
    }

    #[test]
    fn timers_fire_in_order_and_reschedule() {
        let mut t = SeriesTimers::default();
        t.schedule(3, 50);
        t.schedule(1, 20);
        t.schedule(3, 10);
        assert_eq!(t.next(), Some(10));
        assert_eq!(t.pop_due(15), Some((10, 3)));
        assert_eq!(t.pop_due(15), None);
        t.cancel(1);
        assert!(t.is_empty());
    }
}
