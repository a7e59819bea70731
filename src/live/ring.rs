//! A series' recent points, as compactly as a chart allows: 18 bytes a point instead of the
//! 64 of the full record's chart fields, so 100,000 series can keep 600 points each in about
//! 1.1 GB.
//!
//! - Time is a `u32` of milliseconds since the ring's base (the oldest point it may hold); its
//!   top two bits are flags. 2³⁰ ms is 12 days, far more than 600 points span at any cadence a
//!   dashboard charts; a wider gap re-bases the ring, and points more than 12 days older than
//!   the newest are dropped.
//! - The value and the baseline (the detector's expectation, or the SMA without one) are `f32`:
//!   seven significant digits, more than a chart's pixels resolve (the series' last point is
//!   kept in full, for the figures the pages print).
//! - SMA, EWMA and the band's half width are `bf16` offsets from the baseline: a `bf16` has an
//!   `f32`'s range and 8 significant bits, so each is within 0.4 % of its distance from the
//!   baseline. The baseline lines stay close to each other even where the value spikes, which
//!   is why they are not stored as offsets from the value. The band is symmetric around the
//!   expectation (`anomaly::Assessment`), so one number gives both edges.
//!
//! The ring is a `VecDeque` allocated once at the series' share of the budget, so a full ring
//! reuses its slots and never reallocates.

use std::collections::VecDeque;

use half::bf16;

use crate::record::PointRecord;

/// Bytes one point takes in a ring.
pub const POINT_BYTES: usize = std::mem::size_of::<Packed>();

/// The flags in [`Packed::offset`]: the point is anomalous; the baseline is an expectation.
const ANOMALY: u32 = 1 << 31;
const EXPECTED: u32 = 1 << 30;
const FLAGS: u32 = ANOMALY | EXPECTED;
/// Largest time offset from the base.
const MAX_OFFSET: i64 = (EXPECTED - 1) as i64;

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

/// Packed to 2-byte alignment: 18 bytes, not 20 (fields are only ever copied, never borrowed).
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(2))]
struct Packed {
    /// Milliseconds since the ring's base, and the flags.
    offset: u32,
    value: f32,
    /// The expectation, or the SMA where there is none.
    baseline: f32,
    /// SMA, EWMA and the band's half width (NaN for none) as offsets from `baseline`.
    lines: [bf16; 3],
}

/// The recent points of one series, oldest first.
#[derive(Debug, Default)]
pub struct PointRing {
    base: i64,
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
        if self.points.is_empty() {
            self.base = p.ts;
        }
        if p.ts - self.base > MAX_OFFSET {
            self.rebase(p.ts);
        }
        if self.points.capacity() < capacity {
            // The whole share at once: growing by doubling left the freed smaller blocks
            // scattered over the heap, and the process held a third more than the rings.
            self.points.reserve_exact(capacity - self.points.len());
        }
        let mut offset = (p.ts - self.base).max(0) as u32;
        if p.anomaly {
            offset |= ANOMALY;
        }
        if p.expected.is_some() {
            offset |= EXPECTED;
        }
        let baseline = p.expected.unwrap_or(p.sma) as f32;
        let from_baseline = |line: f64| bf16::from_f64(line - f64::from(baseline));
        let half_width = p.upper.zip(p.expected).map(|(upper, e)| upper - e);
        self.points.push_back(Packed {
            offset,
            value: p.value as f32,
            baseline,
            lines: [
                from_baseline(p.sma),
                from_baseline(p.ewma),
                half_width.map_or(bf16::NAN, bf16::from_f64),
            ],
        });
    }

    /// Drops the oldest points beyond `capacity` and gives their memory back.
    pub fn keep(&mut self, capacity: usize) {
        let excess = self.points.len().saturating_sub(capacity);
        if excess > 0 {
            self.points.drain(..excess);
        }
        if self.points.capacity() > capacity.max(4) {
            self.points.shrink_to(capacity.max(4));
        }
    }

    /// Moves the base to the oldest point still within reach of `newest`.
    fn rebase(&mut self, newest: i64) {
        while let Some(front) = self.points.front() {
            if newest - self.ts_of(front) <= MAX_OFFSET {
                break;
            }
            self.points.pop_front();
        }
        let base = self.points.front().map_or(newest, |p| self.ts_of(p));
        let shift = (base - self.base) as u32;
        for p in &mut self.points {
            let offset = p.offset;
            p.offset = (offset & FLAGS) | ((offset & !FLAGS) - shift);
        }
        self.base = base;
    }

    fn ts_of(&self, p: &Packed) -> i64 {
        let offset = p.offset;
        self.base + i64::from(offset & !FLAGS)
    }

    /// The points, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = ChartPoint> + ExactSizeIterator + '_ {
        self.points.iter().map(|p| {
            let (offset, baseline, lines) = (p.offset, f64::from(p.baseline), p.lines);
            let expected = (offset & EXPECTED != 0).then_some(baseline);
            let half_width = Some(lines[2].to_f64()).filter(|w| !w.is_nan());
            let short = |x: f64| widen(x as f32);
            ChartPoint {
                ts: self.ts_of(p),
                value: widen(p.value),
                sma: short(baseline + lines[0].to_f64()),
                ewma: short(baseline + lines[1].to_f64()),
                lower: expected.zip(half_width).map(|(e, w)| short(e - w)),
                upper: expected.zip(half_width).map(|(e, w)| short(e + w)),
                expected: expected.map(short),
                anomaly: offset & ANOMALY != 0,
            }
        })
    }

    /// The last `n` points as `(ts, value)`, for a sparkline.
    pub fn last_values(&self, n: usize) -> Vec<(i64, f64)> {
        let skip = self.len().saturating_sub(n);
        self.points
            .iter()
            .skip(skip)
            .map(|p| (self.ts_of(p), widen(p.value)))
            .collect()
    }
}

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
    fn a_point_takes_eighteen_bytes() {
        assert_eq!(POINT_BYTES, 18);
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
    fn a_gap_wider_than_the_offset_rebases_and_drops_what_is_out_of_reach() {
        let mut ring = PointRing::default();
        let day = 86_400_000;
        ring.push(&record(0, 1.0, 1.0, None), 600);
        ring.push(&record(20 * day, 2.0, 2.0, None), 600);
        ring.push(&record(25 * day, 3.0, 3.0, Some((3.0, 1.0))), 600);
        let ts: Vec<i64> = ring.iter().map(|p| p.ts).collect();
        assert_eq!(ts, [20 * day, 25 * day], "the first is 25 days older");
        ring.push(&record(100 * day, 4.0, 4.0, None), 600);
        let ts: Vec<i64> = ring.iter().map(|p| p.ts).collect();
        assert_eq!(ts, [100 * day]);
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
