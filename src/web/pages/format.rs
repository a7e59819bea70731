//! How pages write numbers, durations, sizes and the parts of an alert as text. The
//! dashboard's script writes live updates with `static/js/format.js`, which must agree: a
//! test runs both over one table of cases (`tests/it/format.rs`).

use crate::record::AlertMethod;

/// `12.345`, or `1234` from a thousand up.
pub fn number(v: f64) -> String {
    fixed(v, if v.abs() >= 1000.0 { 0 } else { 3 })
}

/// `v` with `digits` decimals as JavaScript's `toFixed` writes it, so that a value reads the
/// same on first paint and after a live update: exact halves round away from zero (Rust's
/// formatting rounds them to even) and zero has no sign.
pub fn fixed(v: f64, digits: usize) -> String {
    let v = if v == 0.0 { 0.0 } else { v };
    format!("{:.*}", digits, past_ties(v, digits, false))
}

/// `v` in scientific notation with `digits` decimals as JavaScript's `toExponential` writes
/// it: halves away from zero, and a sign on every exponent (`1.0e+0`, `2.5e-3`).
pub fn exponential(v: f64, digits: usize) -> String {
    let text = format!("{:.*e}", digits, past_ties(v, digits, true));
    match text.split_once('e') {
        Some((mantissa, exponent)) if !exponent.starts_with('-') => {
            format!("{mantissa}e+{exponent}")
        }
        _ => text,
    }
}

/// `v`, or the next value away from zero when `v` lies exactly halfway between two roundings
/// to `digits` decimals (of its mantissa, with `scientific`): Rust would round it to even.
fn past_ties(v: f64, digits: usize, scientific: bool) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return v;
    }
    // Sixty digits show an f64 in the range pages write exactly enough to tell a true half.
    let exact = match scientific {
        true => format!("{:.60e}", v.abs()),
        false => format!("{:.60}", v.abs()),
    };
    let mantissa = exact.split('e').next().unwrap_or_default();
    let Some((_, decimals)) = mantissa.split_once('.') else {
        return v;
    };
    let rest = decimals.as_bytes().get(digits..).unwrap_or_default();
    let half = rest.first() == Some(&b'5') && rest[1..].iter().all(|&b| b == b'0');
    match half {
        // One step of the magnitude's bits: the next value away from zero, either sign.
        true => f64::from_bits(v.to_bits() + 1),
        false => v,
    }
}

/// Maps `(time, value)` into a 120×28 sparkline box fitted to `points`.
pub(super) fn spark_scale(points: &[(i64, f64)]) -> Option<impl Fn(i64, f64) -> (f64, f64)> {
    let (first, last) = (points.first()?.0, points.last()?.0);
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let span_t = (last - first).max(1) as f64;
    let span_v = if hi > lo { hi - lo } else { 1.0 };
    Some(move |t: i64, v: f64| {
        (
            (t - first) as f64 / span_t * 120.0,
            27.0 - (v - lo) / span_v * 26.0,
        )
    })
}

/// SVG polyline points of a sparkline.
pub(super) fn sparkline(points: &[(i64, f64)]) -> String {
    let Some(scale) = spark_scale(points) else {
        return String::new();
    };
    points
        .iter()
        .map(|&(t, v)| {
            let (x, y) = scale(t, v);
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `10.2 – 14.8`, or "unbounded" where no value would have been anomalous on its own.
pub fn band_text(lower: Option<f64>, upper: Option<f64>) -> String {
    match (lower, upper) {
        (Some(l), Some(u)) => format!("{} – {}", number(l), number(u)),
        _ => "unbounded".into(),
    }
}

/// The likelihood score and tail probability, or |z| and its normal tail for a threshold alert.
pub fn score_text(method: AlertMethod, score: Option<f64>, probability: Option<f64>) -> String {
    let p = probability.map_or(String::new(), |p| format!("p {}", exponential(p, 1)));
    match (method, score) {
        (AlertMethod::Likelihood | AlertMethod::Spike, Some(s)) => {
            format!("{} σ, {p}", fixed(s, 1))
        }
        (AlertMethod::Threshold, Some(s)) => format!("|z| {}, {p}", fixed(s, 1)),
        (_, None) => p,
    }
}

/// What fired, in words: `likelihood, daily pattern`.
pub fn why_text(method: AlertMethod, expectation: Option<&str>) -> String {
    let method = method.as_str();
    match expectation {
        Some("flat") | None => method.to_owned(),
        Some(model) => format!("{method}, {}", expectation_text(model)),
    }
}

/// How the expectation model reads on the dashboard.
fn expectation_text(model: &str) -> String {
    match model {
        "1d" => "daily pattern".to_owned(),
        "1w" => "weekly pattern".to_owned(),
        period => format!("{period} pattern"),
    }
}

/// `12.3 ms`, as format.js `millis`.
pub fn millis(ms: f64) -> String {
    format!("{} ms", fixed(ms, 1))
}

/// `20.1 MB`, as format.js `bytes`.
pub fn byte_size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{} kB", fixed(bytes as f64 / 1e3, 1)),
        1_000_000..1_000_000_000 => format!("{} MB", fixed(bytes as f64 / 1e6, 1)),
        _ => format!("{} GB", fixed(bytes as f64 / 1e9, 2)),
    }
}

/// A span of time as people read it: `12.5 s`, `4 min 10 s`, `3 h 5 min`, `2 d 4 h`.
pub fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let s = ms.unsigned_abs() / 1000;
    match s {
        0..60 => format!("{sign}{} s", fixed(ms.unsigned_abs() as f64 / 1000.0, 1)),
        60..3600 => format!("{sign}{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{sign}{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{sign}{} d {} h", s / 86400, s % 86400 / 3600),
    }
}
