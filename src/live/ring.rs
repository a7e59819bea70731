//! A series' recent points, as compactly as a chart allows: 13 bytes a point instead of the
//! 64 of the full record's chart fields, so 100,000 series can keep 600 points each in about
//! 780 MB.
//!
//! - Time is the gap since the previous point, in 3 bytes: milliseconds up to 2²³ − 1 (2.3
//!   hours), whole seconds above (up to 97 days). The ring keeps the oldest and newest times
//!   in full, so every time is exact except after a gap of more than 2.3 hours that is not a
//!   whole number of seconds, which rounds to the second (the gaps after it are taken from the
//!   rounded time, so the error does not carry on). A longer gap than 97 days empties the ring.
//! - The value and the expectation are `f32`: seven significant digits, more than a chart's
//!   pixels resolve (the series' last point is kept in full, for the figures the pages print).
//!   A ring that holds a number beyond the `f32` range (3.4e38) keeps them all in units of a
//!   power of two (its `scale`), so that none of them becomes infinite; until then, and once
//!   such points have left, the unit is 1.
//! - The band's half width is a `bf16` (within 0.4 %): the band is symmetric around the
//!   expectation (`anomaly::Assessment`), so one number gives both edges. The flags take no
//!   bytes of their own: NaN for the expectation says there is none, and the half width is
//!   never negative, so its sign bit says the point is anomalous.
//! - The SMA and the EWMA are not stored: they are functions of the values, so the ring
//!   computes them again when it is read, from its [`Lines`] (the stream's `sma_points` and
//!   `ewma_alpha`). The EWMA needs one number to start from, the EWMA at the oldest point held,
//!   which the ring carries forward as old points leave; the SMA needs the `sma_points − 1`
//!   values before a point, so the ring holds up to [`MAX_HISTORY`] points more than it shows.
//!   Where that history is missing (a ring that started mid-series, or `sma_points` above 31)
//!   the first points have no SMA. Both agree with the records to the `f32` rounding of the
//!   values they are taken from.
//!
//! 13 bytes matters because of how the allocator rounds: 630 points of 13 bytes (8,190) fit
//! jemalloc's 8,192-byte size class, where 600 points of 17 bytes (the SMA and EWMA stored as
//! `bf16` offsets) took its 10,240-byte one: 195 MiB more at 100,000 series.
//!
//! The ring is a `VecDeque` allocated once at the series' share of the budget, so a full ring
//! reuses its slots and never reallocates, and every slot is written once when it is
//! allocated: the memory is resident from the series' first point, so the process's RSS is
//! what the view holds when full. Left to fill, a ring touched its pages one by one (a 4 KiB
//! page every 240 points): at 0.2 points a second per series the RSS of 100,000 series rose in
//! 400 MB steps for the first 50 minutes, which looked like a leak.

use std::collections::VecDeque;

use half::bf16;

use crate::engine::points::AnalyticsConfig;
use crate::engine::stats::Ewma;
use crate::record::PointRecord;

/// Bytes one point takes in a ring.
pub const POINT_BYTES: usize = std::mem::size_of::<Packed>();

/// Most points a ring holds beyond those it shows, as the SMA's history.
pub const MAX_HISTORY: usize = 30;

// A full ring within jemalloc's 8,192-byte size class (see above).
/// Most recent points kept per series for sparklines and charts.
pub const RECENT_POINTS: usize = 600;

const _: () = assert!((RECENT_POINTS + MAX_HISTORY) * POINT_BYTES <= 8_192);

/// A gap with this bit set counts seconds; without it, milliseconds.
const IN_SECONDS: u32 = 1 << 23;
/// The longest gap either unit holds.
const MAX_GAP: u32 = IN_SECONDS - 1;
/// The sign bit of a `bf16`: on the half width, the point is anomalous.
const SIGN: u16 = 0x8000;

/// How a stream's SMA and EWMA are taken, so a ring can compute them from its values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lines {
    pub sma_points: usize,
    pub ewma_alpha: f64,
}

impl Default for Lines {
    fn default() -> Self {
        Lines::from(&AnalyticsConfig::default())
    }
}

impl From<&AnalyticsConfig> for Lines {
    fn from(config: &AnalyticsConfig) -> Self {
        Lines {
            sma_points: config.sma_points.max(1),
            ewma_alpha: config.ewma_alpha,
        }
    }
}

impl Lines {
    /// Points held before the shown ones for the first shown one's SMA.
    fn history(&self) -> usize {
        (self.sma_points - 1).min(MAX_HISTORY)
    }
}

/// What a chart draws of one point, decoded from a ring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartPoint {
    pub ts: i64,
    pub value: f64,
    /// `None` where the ring does not hold the `sma_points − 1` values before this one.
    pub sma: Option<f64>,
    pub ewma: f64,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub expected: Option<f64>,
    pub anomaly: bool,
}

/// Packed to byte alignment: 13 bytes (fields are only ever copied, never borrowed).
#[derive(Debug, Clone, Copy)]
#[repr(C, packed)]
struct Packed {
    /// Time since the previous point, little-endian (see [`encode_gap`]); unused on the oldest.
    gap: [u8; 3],
    value: f32,
    /// NaN: no expectation.
    expected: f32,
    /// The band's half width (NaN for none; negative: anomalous).
    width: bf16,
}

impl Packed {
    /// What unused slots hold.
    const UNUSED: Packed = Packed {
        gap: [0; 3],
        value: 0.0,
        expected: 0.0,
        width: bf16::ZERO,
    };

    fn gap_ms(&self) -> i64 {
        let [a, b, c] = self.gap;
        let code = u32::from_le_bytes([a, b, c, 0]);
        match code & IN_SECONDS {
            0 => i64::from(code),
            _ => i64::from(code & MAX_GAP) * 1000,
        }
    }

    /// The value, in the ring's units of `unit` (a power of two, see [`PointRing::scale`]).
    fn value(&self, unit: f64) -> f64 {
        in_units(f64::from(self.value), unit)
    }

    fn decode(&self, ts: i64, sma: Option<f64>, ewma: f64, unit: f64) -> ChartPoint {
        let expected = Some(self.expected).filter(|e| !e.is_nan()).map(f64::from);
        let width = self.width.to_bits();
        let half_width = Some(bf16::from_bits(width & !SIGN).to_f64()).filter(|w| !w.is_nan());
        // Rounded to the digits an f32 holds, in the ring's units.
        let short = |x: f64| in_units(widen((x / unit) as f32), unit);
        let shown = |x: f64| in_units(widen(x as f32), unit);
        ChartPoint {
            ts,
            value: in_units(widen(self.value), unit),
            sma: sma.map(short),
            ewma: short(ewma),
            lower: expected.zip(half_width).map(|(e, w)| shown(e - w)),
            upper: expected.zip(half_width).map(|(e, w)| shown(e + w)),
            expected: expected.map(shown),
            anomaly: width & SIGN != 0,
        }
    }

    /// The largest magnitude the point holds (value, expectation, band), in ring units.
    fn magnitude(&self) -> f64 {
        let width = bf16::from_bits(self.width.to_bits() & !SIGN).to_f64();
        [f64::from(self.value), f64::from(self.expected), width]
            .into_iter()
            .filter(|x| !x.is_nan())
            .fold(0.0, |max, x| max.max(x.abs()))
    }

    /// The same point in units `2^shift` times larger.
    fn rescaled(self, shift: i32) -> Packed {
        let factor = 2f64.powi(-shift);
        let bits = self.width.to_bits();
        let width = bf16::from_f64(bf16::from_bits(bits & !SIGN).to_f64() * factor);
        Packed {
            gap: self.gap,
            value: (f64::from(self.value) * factor) as f32,
            expected: (f64::from(self.expected) * factor) as f32,
            width: bf16::from_bits(width.to_bits() | (bits & SIGN)),
        }
    }
}

/// Largest magnitude a ring keeps in its current units: below `f32::MAX` (2¹²⁸), with room for
/// the band's edges (expectation ± width) and the SMA's sums.
const LARGEST_IN_UNITS: f64 = (1u128 << 120) as f64;

/// `x` ring units of `unit` each, as a number: within the f64 range, where rounding to an
/// `f32` may have carried the largest numbers just past it.
fn in_units(x: f64, unit: f64) -> f64 {
    (x * unit).clamp(-f64::MAX, f64::MAX)
}

/// The ring scale (a power of two) that keeps `magnitude` at most [`LARGEST_IN_UNITS`].
fn scale_for(magnitude: f64) -> i32 {
    if magnitude <= LARGEST_IN_UNITS || !magnitude.is_finite() {
        return 0;
    }
    (magnitude / LARGEST_IN_UNITS).log2().ceil() as i32
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
    /// Times of the oldest and the newest point held (as decoded).
    first: i64,
    last: i64,
    /// The EWMA at the oldest point held: the record's when that point was the ring's first,
    /// carried forward from the values as older points leave.
    front_ewma: f64,
    lines: Lines,
    /// How many of the oldest points are held only as the SMA's history, not shown.
    hidden: usize,
    points: VecDeque<Packed>,
    /// The points' numbers are in units of 2^scale: 0 unless one of them is beyond what an
    /// `f32` holds.
    scale: i32,
}

impl PointRing {
    /// Points shown.
    pub fn len(&self) -> usize {
        self.points.len() - self.hidden
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Points the ring has room for without growing, history included: what its memory is.
    pub fn slots(&self) -> usize {
        self.points.capacity()
    }

    /// Heap bytes held, for the live view's memory budget.
    pub fn heap_bytes(&self) -> usize {
        self.slots() * POINT_BYTES
    }

    /// Appends `p` (not older than the newest point), showing at most `capacity` points and
    /// holding up to [`MAX_HISTORY`] more before them for the SMA (`lines` are the stream's).
    pub fn push(&mut self, p: &PointRecord, capacity: usize, lines: Lines) {
        let capacity = capacity.max(1);
        if lines != self.lines {
            // The SMA and EWMA of the points held were taken otherwise: start again.
            self.points.clear();
            self.scale = 0;
            self.lines = lines;
        }
        let room = capacity + lines.history();
        self.drop_oldest_beyond(room - 1);
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
                self.scale = 0;
                self.first = p.ts;
                self.last = p.ts;
                self.front_ewma = p.ewma;
                [0; 3]
            }
        };
        if self.points.capacity() < room {
            // The whole share at once: growing by doubling left the freed smaller blocks
            // scattered over the heap, and the process held a third more than the rings.
            self.points.reserve_exact(room - self.points.len());
            self.make_resident();
        }
        let half_width = p.upper.zip(p.expected).map(|(upper, e)| (upper - e).abs());
        let largest = [Some(p.value), p.expected, half_width]
            .into_iter()
            .flatten()
            .fold(0.0f64, |max, x| max.max(x.abs()));
        let needed = scale_for(largest);
        if needed > self.scale {
            self.rescale(needed);
        }
        let unit = self.unit();
        let mut width = half_width
            .map_or(bf16::NAN, |w| bf16::from_f64(w / unit))
            .to_bits()
            & !SIGN;
        if p.anomaly {
            width |= SIGN;
        }
        self.points.push_back(Packed {
            gap,
            value: (p.value / unit) as f32,
            expected: p.expected.map_or(f32::NAN, |e| (e / unit) as f32),
            width: bf16::from_bits(width),
        });
        self.hidden = self.points.len().saturating_sub(capacity);
        if self.scale > 0 {
            // The points that needed the larger units may have left.
            self.shrink_scale();
        }
    }

    /// What one of the points' units is worth: 2^scale.
    fn unit(&self) -> f64 {
        2f64.powi(self.scale)
    }

    /// Keeps the points in units of 2^`scale` from now on.
    fn rescale(&mut self, scale: i32) {
        let shift = scale - self.scale;
        for p in &mut self.points {
            *p = p.rescaled(shift);
        }
        self.scale = scale;
    }

    /// Goes back to the smallest units the points held allow.
    fn shrink_scale(&mut self) {
        // In ring units: the largest number itself may be just beyond the f64 range.
        let largest = self.points.iter().fold(0.0f64, |m, p| m.max(p.magnitude()));
        let needed = match largest > 0.0 {
            true => (self.scale + (largest / LARGEST_IN_UNITS).log2().ceil() as i32).max(0),
            false => 0,
        };
        if needed < self.scale {
            self.rescale(needed);
        }
    }

    /// Shows at most `capacity` points, drops the history beyond that, and gives the memory
    /// back.
    pub fn keep(&mut self, capacity: usize) {
        let room = capacity + self.lines.history();
        self.drop_oldest_beyond(room);
        if self.points.capacity() > room.max(4) {
            self.points.shrink_to(room.max(4));
            self.make_resident();
        }
        self.hidden = self.points.len().saturating_sub(capacity);
    }

    fn drop_oldest_beyond(&mut self, room: usize) {
        let unit = self.unit();
        while self.points.len() > room {
            self.points.pop_front();
            if let Some(oldest) = self.points.front() {
                self.first += oldest.gap_ms();
                self.front_ewma =
                    Ewma::step(self.lines.ewma_alpha, self.front_ewma, oldest.value(unit));
            }
        }
    }

    /// Writes every unused slot once, so that the ring's memory is resident now rather than a
    /// page at a time as it fills (see the module's doc).
    fn make_resident(&mut self) {
        let len = self.points.len();
        self.points.resize(self.points.capacity(), Packed::UNUSED);
        self.points.truncate(len);
    }

    /// The points shown, oldest first.
    pub fn iter(&self) -> Points<'_> {
        Points {
            ring: self,
            next: 0,
            ts: self.first,
            ewma: self.front_ewma,
        }
    }

    /// The last `n` points shown as `(ts, value)`, for a sparkline.
    pub fn last_values(&self, n: usize) -> Vec<(i64, f64)> {
        let mut ts = self.last;
        let unit = self.unit();
        let mut values: Vec<(i64, f64)> = self
            .points
            .iter()
            .skip(self.hidden)
            .rev()
            .take(n)
            .map(|p| {
                let point = (ts, in_units(widen(p.value), unit));
                ts -= p.gap_ms();
                point
            })
            .collect();
        values.reverse();
        values
    }
}

/// The points a ring shows, each with its time, SMA and EWMA: taken from the oldest point held
/// forward.
pub struct Points<'a> {
    ring: &'a PointRing,
    /// Index of the next point held, and its time and EWMA once it is reached.
    next: usize,
    ts: i64,
    ewma: f64,
}

impl Iterator for Points<'_> {
    type Item = ChartPoint;

    fn next(&mut self) -> Option<ChartPoint> {
        let ring = self.ring;
        let unit = ring.unit();
        loop {
            let i = self.next;
            let p = ring.points.get(i)?;
            if i > 0 {
                self.ts += p.gap_ms();
                self.ewma = Ewma::step(ring.lines.ewma_alpha, self.ewma, p.value(unit));
            }
            self.next += 1;
            if i < ring.hidden {
                continue;
            }
            let k = ring.lines.sma_points;
            // Summed afresh for each point, not as a running sum: subtracting a large value
            // that left the window would cancel the small ones that follow.
            let sma = (i + 1 >= k).then(|| {
                // In the ring's units, where no sum of its values can overflow.
                let sum: f64 = ring
                    .points
                    .range(i + 1 - k..=i)
                    .map(|p| f64::from(p.value))
                    .sum();
                sum / k as f64 * unit
            });
            return Some(p.decode(self.ts, sma, self.ewma, unit));
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.ring.points.len() - self.next.max(self.ring.hidden);
        (left, Some(left))
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
    use crate::engine::stats::MovingAverage;
    use proptest::prelude::*;

    /// A point with the engine's defaults: the SMA of 20 and the EWMA of 0.1 of `values` so far.
    fn record(ts: i64, value: f64, band: Option<(f64, f64)>) -> PointRecord {
        PointRecord {
            stream: "s".into(),
            series: "a".into(),
            ts,
            value,
            sma: value,
            ewma: value,
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

    fn lines(sma_points: usize, ewma_alpha: f64) -> Lines {
        Lines {
            sma_points,
            ewma_alpha,
        }
    }

    #[test]
    fn values_print_with_the_digits_they_have() {
        let mut ring = PointRing::default();
        ring.push(&record(0, 2.1, Some((2.2, 0.5))), 10, lines(1, 0.1));
        let p = ring.iter().next().unwrap();
        assert_eq!(
            serde_json::json!([p.value, p.sma, p.ewma, p.expected, p.upper]).to_string(),
            "[2.1,2.1,2.1,2.2,2.7]"
        );
        assert_eq!(ring.last_values(1), [(0, 2.1)]);
    }

    /// Numbers beyond the f32 range are shown (to f32 precision), not as infinities; the ring
    /// goes back to plain units once they have left, and small numbers show exactly again.
    #[test]
    fn numbers_beyond_the_f32_range_are_kept_finite() {
        let lines = lines(3, 0.5);
        for values in [&[1e39, -2e39, 5e38, 7.0][..], &[f64::MAX, -f64::MAX, 1e300]] {
            let mut ring = PointRing::default();
            for (i, &v) in values.iter().enumerate() {
                let band = Some((v / 2.0, v.abs() / 4.0));
                ring.push(&record(i as i64 * 1000, v, band), 10, lines);
            }
            let points: Vec<ChartPoint> = ring.iter().collect();
            for (point, &expected) in points.iter().zip(values) {
                assert!(point.value.is_finite(), "{point:?}");
                let error = ((point.value - expected) / expected).abs();
                assert!(error < 1e-6, "{expected} shown as {}", point.value);
                assert!(point.ewma.is_finite(), "{point:?}");
                assert!(point.expected.is_some_and(f64::is_finite), "{point:?}");
                assert!(point.upper.is_some_and(f64::is_finite), "{point:?}");
            }
            assert!(points[2].sma.is_some_and(f64::is_finite), "{:?}", points[2]);
            let (_, last) = ring.last_values(1)[0];
            let newest = values[values.len() - 1];
            assert!(((last - newest) / newest).abs() < 1e-6, "{last}");
            // Ordinary points push the large ones out (the history too): plain units, small
            // values exact.
            for i in 4..17 {
                ring.push(&record(i * 1000, 0.1 * i as f64, None), 10, lines);
            }
            assert_eq!(ring.scale, 0);
            assert_eq!(ring.iter().last().unwrap().value, 1.6);
        }
    }

    #[test]
    fn a_point_takes_thirteen_bytes() {
        assert_eq!(POINT_BYTES, 13);
    }

    #[test]
    fn shows_the_newest_points_within_capacity_and_holds_the_sma_history_besides() {
        let mut ring = PointRing::default();
        for ts in 0..1_000 {
            ring.push(&record(ts, ts as f64, None), 600, Lines::default());
        }
        assert_eq!(ring.len(), 600);
        assert_eq!(ring.slots(), 600 + 19, "19 values before the first shown");
        assert_eq!(ring.heap_bytes(), 619 * POINT_BYTES);
        let points: Vec<ChartPoint> = ring.iter().collect();
        assert_eq!(ring.iter().len(), 600);
        assert_eq!(points[0].ts, 400);
        assert_eq!(points[0].sma, Some(390.5), "the mean of 381..=400");
        assert_eq!(points[599].ts, 999);
        assert!(points.iter().all(|p| p.anomaly == (p.ts % 3 == 0)));
        assert_eq!(points[599].lower, None);
        ring.keep(10);
        assert_eq!(ring.len(), 10);
        assert_eq!(ring.last_values(2), [(998, 998.0), (999, 999.0)]);
        assert!(ring.heap_bytes() <= 29 * POINT_BYTES);
        assert_eq!(
            ring.iter().next().map(|p| (p.ts, p.sma)),
            Some((990, Some(980.5)))
        );
    }

    #[test]
    fn without_the_history_the_first_points_have_no_sma() {
        let mut ring = PointRing::default();
        for ts in 0..5 {
            ring.push(&record(ts, ts as f64, None), 600, lines(3, 0.5));
        }
        let sma: Vec<Option<f64>> = ring.iter().map(|p| p.sma).collect();
        assert_eq!(sma, [None, None, Some(1.0), Some(2.0), Some(3.0)]);
        let ewma: Vec<f64> = ring.iter().map(|p| p.ewma).collect();
        assert_eq!(ewma, [0.0, 0.5, 1.25, 2.125, 3.0625]);
        // Other lines than the points held were taken with: the ring starts again.
        ring.push(&record(5, 5.0, None), 600, lines(2, 0.5));
        assert_eq!(ring.len(), 1);
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
            ring.push(&record(ts, 1.0, None), 600, lines(1, 0.1));
        }
        let forward: Vec<i64> = ring.iter().map(|p| p.ts).collect();
        let mut want = times.to_vec();
        want[5] = 1_700_000_000_124 + 9 * hour + 1_000;
        assert_eq!(forward, want);
        let backward: Vec<i64> = ring.last_values(7).iter().map(|&(t, _)| t).collect();
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
        ring.push(&record(0, 1.0, None), 600, Lines::default());
        ring.push(&record(90 * day, 2.0, None), 600, Lines::default());
        let ts: Vec<i64> = ring.iter().map(|p| p.ts).collect();
        assert_eq!(ts, [0, 90 * day]);
        let mut far = record(190 * day + 7, 3.0, Some((3.0, 1.0)));
        far.ewma = 2.5;
        ring.push(&far, 600, Lines::default());
        let points: Vec<(i64, f64)> = ring.iter().map(|p| (p.ts, p.ewma)).collect();
        assert_eq!(
            points,
            [(190 * day + 7, 2.5)],
            "the others are 100 days older"
        );
    }

    #[test]
    fn flags_survive_without_a_band_and_without_an_expectation() {
        let mut ring = PointRing::default();
        let mut anomalous_without_band = record(3, 5.0, None);
        anomalous_without_band.anomaly = true;
        ring.push(&anomalous_without_band, 10, Lines::default());
        let mut banded = record(4, 5.0, Some((4.5, 0.25)));
        banded.anomaly = false;
        ring.push(&banded, 10, Lines::default());
        let mut expectation_without_band = record(5, 5.0, None);
        expectation_without_band.expected = Some(4.0);
        ring.push(&expectation_without_band, 10, Lines::default());
        let points: Vec<ChartPoint> = ring.iter().collect();
        assert!(points[0].anomaly);
        assert_eq!((points[0].expected, points[0].upper), (None, None));
        assert!(!points[1].anomaly);
        assert_eq!(points[1].expected, Some(4.5));
        assert_eq!(points[1].upper, Some(4.75));
        assert_eq!((points[2].expected, points[2].upper), (Some(4.0), None));
    }

    proptest! {
        /// Values and the expectation are f32s, the band within 0.4 % of its width (plus the
        /// f32 rounding), times and flags are exact.
        #[test]
        fn decodes_within_the_stated_precision(
            value in -1e9f64..1e9,
            expected in -1e9f64..1e9,
            width in 0f64..1e8,
            ts in 0i64..4_000_000_000_000,
        ) {
            let mut ring = PointRing::default();
            let p = record(ts, value, Some((expected, width)));
            ring.push(&p, 10, Lines::default());
            let got = ring.iter().next().unwrap();
            prop_assert_eq!(got.ts, ts);
            prop_assert_eq!(got.anomaly, p.anomaly);
            prop_assert!((got.value - value).abs() <= value.abs() * 2.4e-7);
            prop_assert!((got.expected.unwrap() - expected).abs() <= expected.abs() * 2.4e-7);
            let got_width = got.upper.unwrap() - got.expected.unwrap();
            prop_assert!(
                (got_width - width).abs() <= width * 0.004 + expected.abs() * 4.8e-7 + 1e-30
            );
        }

        /// The SMA and EWMA a ring computes are the engine's, to the f32 rounding of the values:
        /// wherever the ring holds the SMA's history, and after any number of points left it.
        #[test]
        fn smas_and_ewmas_are_the_engines(
            values in proptest::collection::vec(-1e6f64..1e6, 1..900),
            sma_points in 1usize..40,
            ewma_alpha in 0.01f64..1.0,
            capacity in 1usize..700,
            skip in 0usize..3,
        ) {
            let lines = lines(sma_points, ewma_alpha);
            let (mut sma, mut ewma) = (MovingAverage::new(sma_points), Ewma::new(ewma_alpha));
            let mut ring = PointRing::default();
            let mut want = Vec::new();
            for (i, &value) in values.iter().enumerate() {
                let mut p = record(i as i64 * 1_000, value, None);
                (p.sma, p.ewma) = (sma.push(value), ewma.push(value));
                // The view may start mid-series (it evicted the series, or started later).
                if i >= skip.min(values.len() - 1) {
                    ring.push(&p, capacity, lines);
                    want.push(p);
                }
            }
            let got: Vec<ChartPoint> = ring.iter().collect();
            let shown = want.len().min(capacity);
            prop_assert_eq!(got.len(), shown);
            let scale = values.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let close = |a: f64, b: f64| (a - b).abs() <= scale * 4e-7;
            let held = want.len().min(capacity + lines.history());
            for (j, (got, want)) in got.iter().zip(&want[want.len() - shown..]).enumerate() {
                prop_assert_eq!(got.ts, want.ts);
                prop_assert!(close(got.ewma, want.ewma), "ewma {} for {}", got.ewma, want.ewma);
                // Index of this point among the points held.
                let index = held - shown + j;
                match got.sma {
                    Some(sma) => prop_assert!(close(sma, want.sma), "sma {} for {}", sma, want.sma),
                    None => prop_assert!(index + 1 < sma_points, "no sma at {}", index),
                }
            }
        }
    }
}
