//! How pages write numbers, durations, sizes and the parts of an alert as text.

use crate::record::AlertMethod;

pub(super) fn number(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
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
pub(super) fn band_text(lower: Option<f64>, upper: Option<f64>) -> String {
    match (lower, upper) {
        (Some(l), Some(u)) => format!("{} – {}", number(l), number(u)),
        _ => "unbounded".into(),
    }
}

/// The likelihood score and tail probability, or |z| and its normal tail for a threshold alert.
pub(super) fn score_text(
    method: AlertMethod,
    score: Option<f64>,
    probability: Option<f64>,
) -> String {
    let p = probability.map_or(String::new(), |p| format!("p {p:.1e}"));
    match (method, score) {
        (AlertMethod::Likelihood | AlertMethod::Spike, Some(s)) => format!("{s:.1} σ, {p}"),
        (AlertMethod::Threshold, Some(s)) => format!("|z| {s:.1}, {p}"),
        (_, None) => p,
    }
}

/// What fired, in words: `likelihood, daily pattern`.
pub(super) fn why_text(method: AlertMethod, expectation: Option<&str>) -> String {
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
pub(super) fn millis(ms: f64) -> String {
    format!("{ms:.1} ms")
}

/// `20.1 MB`, as format.js `bytes`.
pub(super) fn byte_size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.2} GB", bytes as f64 / 1e9),
    }
}

/// A span of time as people read it: `12.5 s`, `4 min 10 s`, `3 h 5 min`, `2 d 4 h`.
pub(super) fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let s = ms.unsigned_abs() / 1000;
    match s {
        0..60 => format!("{sign}{:.1} s", ms.unsigned_abs() as f64 / 1000.0),
        60..3600 => format!("{sign}{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{sign}{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{sign}{} d {} h", s / 86400, s % 86400 / 3600),
    }
}
