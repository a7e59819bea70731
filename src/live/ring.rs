//! A series' recent points, as compactly as a chart allows: 17 bytes a point instead of the
//! 64 of the full record's chart fields, so 100,000 series can keep 600 points each in about
//! 1 GB.
//!
//! - Time is the gap since the previous point, in 3 bytes: milliseconds up to 2²³ − 1 (2.3
//!   hours), whole seconds above (up to 97 days). The ring keeps the oldest and newest times
//!   in full, so every time is exact except after a gap of more than 2.3 hours that is not a
//!   whole number of seconds, which rounds to the second (the gaps after it are taken from the
//!   rounded time, so the error does not carry on). A longer gap than 97 days empties the ring.
//! - The value and the baseline (the detector's expectation, or the SMA without one) are `f32`:
//!   seven significant digits, more than a chart's pixels resolve (the series' last point is
//!   kept in full, for the figures the pages print).
//! - SMA, EWMA and the band's half width are `bf16` offsets from the baseline: a `bf16` has an
//!   `f32`'s range and 8 significant bits, so each is within 0.4 % of its distance from the
//!   baseline. The baseline lines stay close to each other even where the value spikes, which
//!   is why they are not stored as offsets from the value. The band is symmetric around the
//!   expectation (`anomaly::Assessment`), so one number gives both edges.
//! - The flags take no bytes of their own: without an expectation the SMA is the baseline, so
//!   its offset is NaN to say so; the half width is never negative, so its sign bit says the
//!   point is anomalous.
//!
//! 17 bytes, not 18, matters because of how the allocator rounds: 600 points of 17 bytes
//! (10,200) fit jemalloc's 10,240-byte size class, 600 of 18 (10,800) took a 12,288-byte one —
//! 205 MB more at 100,000 series.
//!
//! The ring is a `VecDeque` allocated once at the series' share of the budget, so a full ring
//! reuses its slots and never reallocates, and every slot is written once when it is
//! allocated: the memory is resident from the series' first point, so the process's RSS is
//! what the view holds when full. Left to fill, a ring touched its pages one by one (a 4 KiB
//! page every 240 points): at 0.2 points a second per series the RSS of 100,000 series rose in
//! 400 MB steps for the first 50 minutes, which looked like a leak.

use std::collections::VecDeque;

use half::bf16;

use crate::record::PointRecord;

/// Bytes one point takes in a ring.
pub const POINT_BYTES: usize = std::mem::size_of::<Packed>();

// A full ring within jemalloc's 10,240-byte size class (see above).
const _: () = assert!(super::RECENT_POINTS * POINT_BYTES <= 10_240);

/// A gap with this bit set counts seconds; without it, milliseconds.
const IN_SECONDS: u32 = 1 << 23;
/// The longest gap either unit holds.
const MAX_GAP: u32 = IN_SECONDS - 1;
/// The sign bit of a `bf16`: on the half width, the point is anomalous.
const SIGN: u16 = 0x8000;

/// What a chart draws of one point, decoded from a ring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartPoint {
    pub ts: i64,
    pub value: f64,
    pub sma: f64,
    pub ewma: f64,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub expected: Option<f64>,
    pub anomaly: bool,
}

/// Packed to byte alignment: 17 bytes (fields are only ever copied, never borrowed).
#[derive(Debug, Clone, Copy)]
#[repr(C, packed)]
struct Packed {
    /// Time since the previous point, little-endian (see [`encode_gap`]); unused on the oldest.
    gap: [u8; 3],
    value: f32,
    /// The expectation, or the SMA where there is none.
    baseline: f32,
    /// SMA (NaN: no expectation), EWMA and the band's half width (NaN for none; negative:
    /// anomalous) as offsets from `baseline`.
    lines: [bf16; 3],
}

impl Packed {
    /// What unused slots hold.
    const UNUSED: Packed = Packed {
        gap: [0; 3],
        value: 0.0,
        baseline: 0.0,
        lines: [bf16::ZERO; 3],
    };

    fn gap_ms(&self) -> i64 {
        let [a, b, c] = self.gap;
        let code = u32::from_le_bytes([a, b, c, 0]);
        match code & IN_SECONDS {
            0 => i64::from(code),
            _ => i64::from(code & MAX_GAP) * 1000,
        }
    }

    fn decode(&self, ts: i64) -> ChartPoint {
        let (baseline, lines) = (f64::from(self.baseline), self.lines);
        let has_expectation = !lines[0].is_nan();
        let expected = has_expectation.then_some(baseline);
        let width = lines[2].to_bits();
        let half_width = Some(bf16::from_bits(width & !SIGN).to_f64()).filter(|w| !w.is_nan());
        let short = |x: f64| widen(x as f32);
        ChartPoint {
            ts,
            value: widen(self.value),
            sma: match has_expectation {
                true => short(baseline + lines[0].to_f64()),
                false => widen(self.baseline),
            },
            ewma: short(baseline + lines[1].to_f64()),
            lower: expected.zip(half_width).map(|(e, w)| short(e - w)),
            upper: expected.zip(half_width).map(|(e, w)| short(e + w)),
            expected: expected.map(short),
            anomaly: width & SIGN != 0,
        }
    }
}

/// The 3-byte code of a gap of `ms` (not negative) and the gap it decodes to; `None` beyond
/// 97 days.
fn encode_gap(ms: i64) -> Option<([u8; 3], i64)> {
    let ms = ms.max(0);
    let (code, decoded) = if ms <= i64::from(MAX_GAP) {
        (ms as u32, ms)
    } else {
        let seconds = (ms + 500) / 1000;
        if seconds > i64::from(MAX_GAP) {
            return None;
        }
        (IN_SECONDS | seconds as u32, seconds * 1000)
    };
    let [a, b, c, _] = code.to_le_bytes();
    Some(([a, b, c], decoded))
}

/// The recent points of one series, oldest first.
#[derive(Debug, Default)]
pub struct PointRing {
    /// Times of the oldest and the newest point (as decoded).
    first: i64,
    last: i64,
    points: VecDeque<Packed>,
}

impl PointRing {
    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Points the ring has room for without growing: what its memory is.
    pub fn slots(&self) -> usize {
        self.points.capacity()
    }

    /// Heap bytes held, for the live view's memory budget.
    pub fn heap_bytes(&self) -> usize {
        self.slots() * POINT_BYTES
    }

    /// Appends `p` (not older than the newest point), keeping at most `capacity` points.
    pub fn push(&mut self, p: &PointRecord, capacity: usize) {
        let capacity = capacity.max(1);
        self.keep(capacity - 1);
        let gap = match self.points.is_empty() {
            true => None,
            false => encode_gap(p.ts - self.last),
        };
        let gap = match gap {
            Some((code, decoded)) => {
                self.last += decoded;
                code
            }
            // The first point, or one too far from the others to share a ring with them.
            None => {
                self.points.clear();
                self.first = p.ts;
                self.last = p.ts;
                [0; 3]
            }
        };
        if self.points.capacity() < capacity {
            // The whole share at once: growing by doubling left the freed smaller blocks
            // scattered over the heap, and the process held a third more than the rings.
            self.points.reserve_exact(capacity - self.points.len());
            self.make_resident();
        }
        let baseline = p.expected.unwrap_or(p.sma) as f32;
        let from_baseline = |line: f64| bf16::from_f64(line - f64::from(baseline));
        let sma = match p.expected {
            // Finite, so that it does not read as "no expectation".
            Some(_) => Some(from_baseline(p.sma))
                .filter(|o| !o.is_nan())
                .unwrap_or(bf16::INFINITY),
            None => bf16::NAN,
        };
        let half_width = p.upper.zip(p.expected).map(|(upper, e)| (upper - e).abs());
        let mut width = half_width.map_or(bf16::NAN, bf16::from_f64).to_bits() & !SIGN;
        if p.anomaly {
            width |= SIGN;
        }
        self.points.push_back(Packed {
            gap,
            value: p.value as f32,
            baseline,
            lines: [sma, from_baseline(p.ewma), bf16::from_bits(width)],
        });
    }

    /// Drops the oldest points beyond `capacity` and gives their memory back.
    pub fn keep(&mut self, capacity: usize) {
        while self.points.len() > capacity {
            self.points.pop_front();
            if let Some(oldest) = self.points.front() {
                self.first += oldest.gap_ms();
            }
        }
        if self.points.capacity() > capacity.max(4) {
            self.points.shrink_to(capacity.max(4));
            self.make_resident();
        }
    }

    /// Writes every unused slot once, so that the ring's memory is resident now rather than a
    /// page at a time as it fills (see the module's doc).
    fn make_resident(&mut self) {
        let len = self.points.len();
        self.points.resize(self.points.capacity(), Packed::UNUSED);
        self.points.truncate(len);
    }

    /// The points, oldest first.
    pub fn iter(&self) -> Points<'_> {
        Points {
            points: self.points.range(..),
            front_ts: self.first,
            back_ts: self.last,
        }
    }

    /// The last `n` points as `(ts, value)`, for a sparkline.
    pub fn last_values(&self, n: usize) -> Vec<(i64, f64)> {
        let mut values: Vec<(i64, f64)> =
            self.iter().rev().take(n).map(|p| (p.ts, p.value)).collect();
        values.reverse();
        values
    }
}

/// The points of a ring, each with its time: from the front, the oldest's time plus the gaps;
/// from the back, the newest's time minus them.
pub struct Points<'a> {
    points: std::collections::vec_deque::Iter<'a, Packed>,
    /// Times of the next point from the front and from the back.
    front_ts: i64,
    back_ts: i64,
}

impl Iterator for Points<'_> {
    type Item = ChartPoint;

    fn next(&mut self) -> Option<ChartPoint> {
        let p = self.points.next()?;
        let point = p.decode(self.front_ts);
        if let Some(next) = self.points.clone().next() {
            self.front_ts += next.gap_ms();
        }
        Some(point)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.points.size_hint()
    }
}

impl DoubleEndedIterator for Points<'_> {
    fn next_back(&mut self) -> Option<ChartPoint> {
        let p = self.points.next_back()?;
        let point = p.decode(self.back_ts);
        self.back_ts -= p.gap_ms();
        Some(point)
    }
}

impl ExactSizeIterator for Points<'_> {}

/// The `f64` that prints as the `f32` does (`2.1`, not `2.0999999046325684`): JSON stays short
/// and shows only the digits the ring keeps.
fn widen(v: f32) -> f64 {
    if v.is_finite() {
        v.to_string().parse().unwrap_or(f64::from(v))
    } else {
        f64::from(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(ts: i64, value: f64, sma: f64, band: Option<(f64, f64)>) -> PointRecord {
        PointRecord {
            stream: "s".into(),
            series: "a".into(),
            ts,
            value,
            sma,
            ewma: value * 0.5,
            slope: None,
            trend: crate::record::Trend::Flat,
            z: None,
            anomaly: ts % 3 == 0,
            expected: band.map(|(e, _)| e),
            spread: None,
            lower: band.map(|(e, w)| e - w),
            upper: band.map(|(e, w)| e + w),
        }
    }

    #[test]
    fn values_print_with_the_digits_they_have() {
        let mut ring = PointRing::default();
        ring.push(&record(0, 2.1, 2.1, Some((2.2, 0.5))), 10);
        let p = ring.iter().next().unwrap();
        assert_eq!(
            serde_json::json!([p.value, p.expected, p.upper]).to_string(),
            "[2.1,2.2,2.7]"
        );
        assert_eq!(ring.last_values(1), [(0, 2.1)]);
    }

    #[test]
    fn a_point_takes_seventeen_bytes() {
        assert_eq!(POINT_BYTES, 17);
    }

    #[test]
    fn keeps_the_newest_points_within_capacity_and_exact_memory() {
        let mut ring = PointRing::default();
        for ts in 0..1_000 {
            ring.push(&record(ts, ts as f64, 0.0, None), 600);
        }
        assert_eq!(ring.len(), 600);
        assert_eq!(ring.heap_bytes(), 600 * POINT_BYTES);
        let points: Vec<ChartPoint> = ring.iter().collect();
        assert_eq!(points[0].ts, 400);
        assert_eq!(points[599].ts, 999);
        assert!(points.iter().all(|p| p.anomaly == (p.ts % 3 == 0)));
        assert_eq!(points[599].lower, None);
        ring.keep(10);
        assert_eq!(ring.last_values(2), [(998, 998.0), (999, 999.0)]);
        assert!(ring.heap_bytes() <= 10 * POINT_BYTES);
    }

    #[test]
    fn times_are_exact_up_to_hours_apart_and_to_the_second_beyond() {
        let mut ring = PointRing::default();
        let hour = 3_600_000;
        let times = [
            1_700_000_000_123,
            1_700_000_000_124,
            1_700_000_000_124,                    // the same time twice
            1_700_000_000_124 + 2 * hour,         // 2 hours: milliseconds
            1_700_000_000_124 + 5 * hour,         // 3 hours later, whole seconds: exact
            1_700_000_000_124 + 9 * hour + 1_499, // 4 hours and 1.499 s: to the second
            1_700_000_000_124 + 9 * hour + 1_500, // 1 ms later: exact again
        ];
        for &ts in &times {
            ring.push(&record(ts, 1.0, 1.0, None), 600);
        }
        let forward: Vec<i64> = ring.iter().map(|p| p.ts).collect();
        let mut want = times.to_vec();
        want[5] = 1_700_000_000_124 + 9 * hour + 1_000;
        assert_eq!(forward, want);
        let mut backward: Vec<i64> = ring.iter().rev().map(|p| p.ts).collect();
        backward.reverse();
        assert_eq!(backward, want, "the same times from the newest back");

        // Dropping the oldest keeps the others' times.
        ring.keep(3);
        let kept: Vec<i64> = ring.iter().map(|p| p.ts).collect();
        assert_eq!(kept, want[4..]);
        assert_eq!(
            ring.last_values(2)
                .iter()
                .map(|&(t, _)| t)
                .collect::<Vec<_>>(),
            want[5..]
        );
    }

    #[test]
    fn a_gap_beyond_97_days_starts_the_ring_again() {
        let mut ring = PointRing::default();
        let day = 86_400_000;
        ring.push(&record(0, 1.0, 1.0, None), 600);
        ring.push(&record(90 * day, 2.0, 2.0, None), 600);
        let ts: Vec<i64> = ring.iter().map(|p| p.ts).collect();
        assert_eq!(ts, [0, 90 * day]);
        ring.push(&record(190 * day + 7, 3.0, 3.0, Some((3.0, 1.0))), 600);
        let ts: Vec<i64> = ring.iter().map(|p| p.ts).collect();
        assert_eq!(ts, [190 * day + 7], "the others are 100 days older");
    }

    #[test]
    fn flags_survive_without_a_band_and_a_nan_sma() {
        let mut ring = PointRing::default();
        let mut anomalous_without_band = record(3, 5.0, 4.0, None);
        anomalous_without_band.anomaly = true;
        ring.push(&anomalous_without_band, 10);
        let mut nan_sma = record(4, 5.0, f64::NAN, Some((4.5, 0.25)));
        nan_sma.anomaly = false;
        ring.push(&nan_sma, 10);
        let points: Vec<ChartPoint> = ring.iter().collect();
        assert!(points[0].anomaly);
        assert_eq!((points[0].expected, points[0].upper), (None, None));
        assert_eq!(points[0].sma, 4.0);
        assert!(!points[1].anomaly);
        assert_eq!(points[1].expected, Some(4.5));
        assert_eq!(points[1].upper, Some(4.75));
    }

    proptest! {
        /// Values and the expectation are f32s, every other line lands within 0.4 % of its
        /// distance from the expectation (plus the f32 rounding), times and flags are exact.
        #[test]
        fn decodes_within_the_stated_precision(
            value in -1e9f64..1e9,
            sma in -1e9f64..1e9,
            expected in -1e9f64..1e9,
            width in 0f64..1e8,
            ts in 0i64..4_000_000_000_000,
        ) {
            let mut ring = PointRing::default();
            let p = record(ts, value, sma, Some((expected, width)));
            ring.push(&p, 10);
            let got = ring.iter().next().unwrap();
            let close = |got: f64, want: f64| {
                let f32_error = expected.abs() * 2.4e-7;
                (got - want).abs() <= (want - expected).abs() * 0.004 + 2.0 * f32_error + 1e-30
            };
            prop_assert_eq!(got.ts, ts);
            prop_assert_eq!(got.anomaly, p.anomaly);
            prop_assert!((got.value - value).abs() <= value.abs() * 2.4e-7);
            prop_assert!((got.expected.unwrap() - expected).abs() <= expected.abs() * 2.4e-7);
            prop_assert!(close(got.sma, sma), "sma {} for {}", got.sma, sma);
            prop_assert!(close(got.ewma, p.ewma));
            let got_width = got.upper.unwrap() - got.expected.unwrap();
            prop_assert!((got_width - width).abs() <= width * 0.004 + 1e-30);
        }
    }
}
