//! The server's pages and the dashboard's script write values the same way: one table of cases
//! through `tidewatch::web::text` and through `static/js/format.js` (run by Node), compared.

use std::process::Command;

use serde_json::{json, Value};
use tidewatch::record::AlertMethod;
use tidewatch::web::text;

/// Values where the two could part: exact halves (JavaScript's `toFixed` rounds them up,
/// Rust's formatting to even), negative zero, the thousand boundary, huge and tiny values.
const NUMBERS: &[f64] = &[
    0.0,
    -0.0,
    1.5,
    -2.25,
    0.0625,
    -0.0625,
    0.0005,
    2.0005,
    12.3456,
    999.9995,
    999.99951,
    1000.0,
    1000.5,
    -1234.5,
    2.5e6,
    1e20,
    1e-7,
    -1e-7,
    0.1,
    0.2 + 0.1,
];
const SPANS_MS: &[i64] = &[
    0,
    1,
    49,
    50,
    1_250,
    -1_250,
    59_999,
    60_000,
    61_500,
    3_599_999,
    3_600_000,
    86_399_999,
    86_400_000,
    200_000_000,
    -7_300_000,
];
const MILLIS: &[f64] = &[0.0, 0.05, 0.25, 12.25, 12.35, 999.95, 1234.5];
const BYTES: &[u64] = &[
    0,
    999,
    1_000,
    1_050,
    1_250,
    999_949,
    999_950,
    1_000_000,
    20_150_000,
    999_999_999,
    1_000_000_000,
    1_005_000_000,
    12_345_678_901,
];
const TIMES_MS: &[i64] = &[0, 1, 500, 1_764_320_400_000, 1_764_320_400_120, -1_000];
/// (method, score, probability)
const SCORES: &[(&str, Option<f64>, Option<f64>)] = &[
    ("likelihood", Some(4.25), Some(1.25e-5)),
    ("spike", Some(6.05), Some(0.125)),
    ("threshold", Some(3.0), Some(0.0027)),
    ("threshold", Some(12.75), None),
    ("likelihood", None, Some(1.0)),
    ("likelihood", None, None),
];
const WHY: &[(&str, Option<&str>)] = &[
    ("likelihood", None),
    ("likelihood", Some("flat")),
    ("spike", Some("1d")),
    ("threshold", Some("1w")),
    ("likelihood", Some("6h")),
];

fn method(name: &str) -> AlertMethod {
    name.parse().expect("an alert method")
}

/// What the Rust side writes for every case, in the order of [`SCRIPT`]'s output.
fn rust_side() -> Value {
    json!({
        "number": NUMBERS.iter().map(|&v| text::number(v)).collect::<Vec<_>>(),
        "band": NUMBERS.windows(2).map(|w| text::band_text(Some(w[0]), Some(w[1]))).chain([text::band_text(None, Some(1.0))]).collect::<Vec<_>>(),
        "span": SPANS_MS.iter().map(|&ms| text::seconds(ms)).collect::<Vec<_>>(),
        "millis": MILLIS.iter().map(|&ms| text::millis(ms)).collect::<Vec<_>>(),
        "bytes": BYTES.iter().map(|&n| text::byte_size(n)).collect::<Vec<_>>(),
        "time": TIMES_MS.iter().map(|&ms| text::format_ms(ms)).collect::<Vec<_>>(),
        "score": SCORES.iter().map(|&(m, s, p)| text::score_text(method(m), s, p)).collect::<Vec<_>>(),
        "why": WHY.iter().map(|&(m, e)| text::why_text(method(m), e)).collect::<Vec<_>>(),
    })
}

/// Formats the same cases with format.js and prints them as JSON.
const SCRIPT: &str = r#"
const f = await import(process.argv[1]);
const cases = JSON.parse(process.argv[2]);
const numbers = cases.numbers.map((v) => (v === "-0" ? -0 : v));
const band = numbers.slice(1).map((v, i) => f.band(numbers[i], v));
band.push(f.band(null, 1));
console.log(JSON.stringify({
  number: numbers.map(f.number),
  band,
  span: cases.spans.map(f.span),
  millis: cases.millis.map(f.millis),
  bytes: cases.bytes.map(f.bytes),
  time: cases.times.map(f.time),
  score: cases.scores.map(([method, score, probability]) => f.score({ method, score, probability })),
  why: cases.why.map(([method, expectation]) => f.why({ method, expectation })),
}));
"#;

fn js_side() -> Value {
    let module = format!("file://{}/static/js/format.js", env!("CARGO_MANIFEST_DIR"));
    let numbers: Vec<Value> = NUMBERS
        .iter()
        .map(|&v| match v == 0.0 && v.is_sign_negative() {
            true => json!("-0"),
            false => json!(v),
        })
        .collect();
    let cases = json!({
        "numbers": numbers,
        "spans": SPANS_MS,
        "millis": MILLIS,
        "bytes": BYTES,
        "times": TIMES_MS,
        "scores": SCORES,
        "why": WHY,
    });
    let output = Command::new("node")
        .args([
            "--input-type=module",
            "-e",
            SCRIPT,
            &module,
            &cases.to_string(),
        ])
        .output()
        .expect("node not found: run ./scripts/test.sh, which installs Debian's nodejs");
    assert!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

#[test]
fn the_pages_and_the_script_write_every_value_alike() {
    let (rust, js) = (rust_side(), js_side());
    let mut differences = Vec::new();
    for (kind, cases) in rust.as_object().unwrap() {
        let theirs = js[kind].as_array().expect(kind);
        for (i, ours) in cases.as_array().unwrap().iter().enumerate() {
            if Some(ours) != theirs.get(i) {
                differences.push(format!("{kind}[{i}]: pages {ours}, script {}", theirs[i]));
            }
        }
        assert_eq!(cases.as_array().unwrap().len(), theirs.len(), "{kind}");
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
