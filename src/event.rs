//! Events and their decoding from JSON bytes: the field mapping, and why an input was rejected.
//!
//! Decoding borrows from the input buffer wherever serde_json can (strings without escapes), and
//! walks the object once, skipping fields nobody asked for without building them. Every failure
//! is a [`DecodeError`] value, never a panic: the caller turns it into a dead letter.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use thiserror::Error;

/// Event times outside ±8.64e15 ms (the range of a JavaScript `Date`, ±273,790 years) are
/// rejected, so window arithmetic on them can never overflow an `i64`.
pub const MAX_ABS_EVENT_TIME_MS: i64 = 8_640_000_000_000_000;

/// Label used for the series of a stream that names no series field and no grouping field.
pub const DEFAULT_SERIES: &str = "all";

/// Longest series label a stream accepts by default (`max_label_bytes`), as Loki and
/// Prometheus cap label values: a label is in every record, URL, page and WebSocket message of
/// its series, so a megabyte-long one is a denial of service, never a name.
pub const DEFAULT_MAX_LABEL_BYTES: usize = 1024;

/// A decoded event, borrowing its strings from the input where it can.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// Event time, epoch milliseconds.
    pub ts: i64,
    /// Series label: the series field, then each grouping field, joined by `/`.
    pub series: Cow<'a, str>,
    /// The measured value; `1.0` when the stream maps no value field (pure counting).
    pub value: f64,
    pub id: Option<Cow<'a, str>>,
    /// Value of the join key field, when a join names one for this stream.
    pub join_key: Option<Cow<'a, str>>,
}

/// How epoch times are written in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum TimeFormat {
    /// Milliseconds since 1970 (default).
    #[default]
    #[serde(rename = "epoch_ms")]
    EpochMillis,
    #[serde(rename = "epoch_s")]
    EpochSeconds,
    #[serde(rename = "rfc3339")]
    Rfc3339,
}

/// Which JSON fields hold what: a stream's `fields` table.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    pub time: String,
    #[serde(default)]
    pub time_format: TimeFormat,
    pub series: Option<String>,
    /// More fields whose values join the series label (`host/cpu0`).
    #[serde(default)]
    pub group_by: Vec<String>,
    pub value: Option<String>,
    pub id: Option<String>,
    /// Extra field to extract for a join on a named key (not a config key of `fields`: joins set it).
    #[serde(skip)]
    pub join_key: Option<String>,
}

impl FieldMapping {
    pub fn validate(&self) -> Result<(), crate::types::Invalid> {
        use crate::types::Invalid;
        let mut named = vec![("time", &self.time)];
        named.extend(self.series.as_ref().map(|s| ("series", s)));
        named.extend(self.value.as_ref().map(|s| ("value", s)));
        named.extend(self.id.as_ref().map(|s| ("id", s)));
        named.extend(self.group_by.iter().map(|s| ("group_by", s)));
        if let Some((name, _)) = named.iter().find(|(_, field)| field.is_empty()) {
            return Err(Invalid::new(*name, "field name must not be empty"));
        }
        let mut seen = std::collections::HashSet::new();
        for field in &self.group_by {
            if !seen.insert(field) || Some(field) == self.series.as_ref() {
                return Err(Invalid::new(
                    "group_by",
                    format!("field {field:?} is listed twice as a grouping key"),
                ));
            }
        }
        Ok(())
    }
}

/// Why an input could not become an event. The `Display` text is the dead letter's reason.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DecodeError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("expected a JSON object, found {0}")]
    NotAnObject(&'static str),
    #[error("missing field `{0}`")]
    MissingField(String),
    #[error("field `{field}` appears more than once")]
    DuplicateField { field: String },
    #[error("field `{field}`: expected {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("field `{field}`: number is not finite")]
    NonFinite { field: String },
    #[error("field `{field}`: cannot parse time {value:?}: {reason}")]
    BadTime {
        field: String,
        value: String,
        reason: String,
    },
    #[error("field `{field}`: time {ms} ms is outside the supported range of ±{MAX_ABS_EVENT_TIME_MS} ms")]
    TimeOutOfRange { field: String, ms: i128 },
    #[error(
        "series label is {bytes} bytes long, more than the stream's max_label_bytes = {limit}"
    )]
    LabelTooLong { bytes: usize, limit: usize },
    #[error(
        "message is longer than {limit} bytes, the most this source takes (the rest of it was \
         skipped)"
    )]
    TooLong { limit: usize },
}

/// A JSON scalar as found in the input, before the mapping says what it must be.
#[derive(Debug, Clone, PartialEq)]
enum Scalar<'a> {
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    /// Anything else (object, array, bool, null), kept only to name it in an error.
    Other(&'static str),
}

impl Scalar<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Scalar::Int(_) | Scalar::UInt(_) | Scalar::Float(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::Other(name) => name,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match *self {
            Scalar::Int(i) => Some(i as f64),
            Scalar::UInt(u) => Some(u as f64),
            Scalar::Float(f) => Some(f),
            _ => None,
        }
    }
}

/// Roles a JSON key can play; one key may play several (e.g. `id` both as id and join key).
const ROLE_TIME: u8 = 1;
const ROLE_SERIES: u8 = 2;
const ROLE_VALUE: u8 = 4;
const ROLE_ID: u8 = 8;
const ROLE_JOIN: u8 = 16;
const ROLE_GROUP: u8 = 32;

/// Decodes JSON objects into [`Event`]s for one stream's [`FieldMapping`].
#[derive(Debug, Clone)]
pub struct Decoder {
    mapping: FieldMapping,
    max_label_bytes: usize,
    /// Messages longer than this are refused unread (a source that cuts longer ones).
    max_message_bytes: Option<usize>,
}

impl Decoder {
    pub fn new(mapping: FieldMapping) -> Self {
        Decoder {
            mapping,
            max_label_bytes: DEFAULT_MAX_LABEL_BYTES,
            max_message_bytes: None,
        }
    }

    /// Refuses messages longer than `bytes`, if given: the source's limit (see
    /// `SourceConfig::max_message_bytes`).
    pub fn with_message_limit(mut self, bytes: Option<usize>) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Refuses events whose series label is longer than `bytes` (instead of
    /// [`DEFAULT_MAX_LABEL_BYTES`]).
    pub fn with_label_limit(mut self, bytes: usize) -> Self {
        self.max_label_bytes = bytes;
        self
    }

    /// Decodes one JSON document (one line of NDJSON, one Kafka message).
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Result<Event<'a>, DecodeError> {
        if let Some(limit) = self.max_message_bytes.filter(|&limit| bytes.len() > limit) {
            return Err(DecodeError::TooLong { limit });
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let found = de::Deserializer::deserialize_any(&mut de, TopVisitor { decoder: self })
            .map_err(|e| DecodeError::Json(e.to_string()))?;
        de.end().map_err(|e| DecodeError::Json(e.to_string()))?;
        match found {
            Top::Object(fields) => self.assemble(*fields),
            Top::NotAnObject(kind) => Err(DecodeError::NotAnObject(kind)),
            Top::Duplicate(field) => Err(DecodeError::DuplicateField { field }),
        }
    }

    fn roles_of(&self, key: &str) -> (u8, usize) {
        let m = &self.mapping;
        let mut roles = 0;
        if key == m.time {
            roles |= ROLE_TIME;
        }
        if m.series.as_deref() == Some(key) {
            roles |= ROLE_SERIES;
        }
        if m.value.as_deref() == Some(key) {
            roles |= ROLE_VALUE;
        }
        if m.id.as_deref() == Some(key) {
            roles |= ROLE_ID;
        }
        if m.join_key.as_deref() == Some(key) {
            roles |= ROLE_JOIN;
        }
        let mut group_index = usize::MAX;
        if let Some(i) = m.group_by.iter().position(|g| g == key) {
            roles |= ROLE_GROUP;
            group_index = i;
        }
        (roles, group_index)
    }

    fn assemble<'a>(&self, found: Found<'a>) -> Result<Event<'a>, DecodeError> {
        let m = &self.mapping;
        let time = found
            .time
            .ok_or_else(|| DecodeError::MissingField(m.time.clone()))?;
        let ts = parse_time(&m.time, m.time_format, &time)?;

        let value = match &m.value {
            None => 1.0,
            Some(field) => {
                let scalar = found
                    .value
                    .ok_or_else(|| DecodeError::MissingField(field.clone()))?;
                let v = scalar.as_f64().ok_or_else(|| DecodeError::WrongType {
                    field: field.clone(),
                    expected: "a number",
                    found: scalar.type_name(),
                })?;
                if !v.is_finite() {
                    return Err(DecodeError::NonFinite {
                        field: field.clone(),
                    });
                }
                v
            }
        };

        let series_part = match &m.series {
            None => None,
            Some(field) => Some(required_str(field, found.series)?),
        };
        let series = if m.group_by.is_empty() {
            series_part.unwrap_or(Cow::Borrowed(DEFAULT_SERIES))
        } else {
            // Every part, separated by `/`, with `/` and `\` inside a part escaped by `\`: the
            // number of parts is fixed by the mapping, so two different events never share a
            // label (`"a/b"` + `"c"` is `a\/b/c`, `"a"` + `"b/c"` is `a/b\/c`).
            let mut label = String::new();
            if let Some(part) = series_part {
                push_label_part(&mut label, &part, false);
            }
            for (i, field) in m.group_by.iter().enumerate() {
                let part = required_str(field, found.groups.get(i).cloned().flatten())?;
                push_label_part(&mut label, &part, i > 0 || m.series.is_some());
            }
            Cow::Owned(label)
        };
        if series.len() > self.max_label_bytes {
            return Err(DecodeError::LabelTooLong {
                bytes: series.len(),
                limit: self.max_label_bytes,
            });
        }

        let id = match &m.id {
            None => None,
            Some(field) => Some(required_key(field, found.id)?),
        };
        let join_key = match &m.join_key {
            None => None,
            Some(field) => Some(required_key(field, found.join)?),
        };
        Ok(Event {
            ts,
            series,
            value,
            id,
            join_key,
        })
    }
}

fn required_str<'a>(field: &str, found: Option<Scalar<'a>>) -> Result<Cow<'a, str>, DecodeError> {
    match found {
        None => Err(DecodeError::MissingField(field.to_owned())),
        Some(Scalar::Str(s)) => Ok(s),
        Some(other) => Err(DecodeError::WrongType {
            field: field.to_owned(),
            expected: "a string",
            found: other.type_name(),
        }),
    }
}

/// Ids and join keys are often integers in real feeds; accept those too, as their decimal text.
fn required_key<'a>(field: &str, found: Option<Scalar<'a>>) -> Result<Cow<'a, str>, DecodeError> {
    match found {
        Some(Scalar::Int(i)) => Ok(Cow::Owned(i.to_string())),
        Some(Scalar::UInt(u)) => Ok(Cow::Owned(u.to_string())),
        other => required_str(field, other).map_err(|e| match e {
            DecodeError::WrongType { field, found, .. } => DecodeError::WrongType {
                field,
                expected: "a string or an integer",
                found,
            },
            e => e,
        }),
    }
}

/// Appends one part of a composite series label, escaping what would make it ambiguous.
fn push_label_part(label: &mut String, part: &str, separate: bool) {
    if separate {
        label.push('/');
    }
    for c in part.chars() {
        if c == '/' || c == '\\' {
            label.push('\\');
        }
        label.push(c);
    }
}

fn parse_time(field: &str, format: TimeFormat, raw: &Scalar<'_>) -> Result<i64, DecodeError> {
    let out_of_range = |ms: i128| DecodeError::TimeOutOfRange {
        field: field.to_owned(),
        ms,
    };
    let ms: i128 = match (format, raw) {
        (TimeFormat::EpochMillis, Scalar::Int(i)) => *i as i128,
        (TimeFormat::EpochMillis, Scalar::UInt(u)) => *u as i128,
        (TimeFormat::EpochSeconds, Scalar::Int(i)) => *i as i128 * 1000,
        (TimeFormat::EpochSeconds, Scalar::UInt(u)) => *u as i128 * 1000,
        (TimeFormat::EpochMillis | TimeFormat::EpochSeconds, Scalar::Float(f)) => {
            if !f.is_finite() {
                return Err(DecodeError::NonFinite {
                    field: field.to_owned(),
                });
            }
            let ms = if format == TimeFormat::EpochSeconds {
                (f * 1000.0).round()
            } else {
                f.floor()
            };
            // Compare as floats first: casting a huge float to i128 saturates, which is fine,
            // but the range check must see it.
            if ms.abs() > MAX_ABS_EVENT_TIME_MS as f64 {
                return Err(out_of_range(ms as i128));
            }
            ms as i128
        }
        (TimeFormat::Rfc3339, Scalar::Str(s)) => {
            let parsed =
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| DecodeError::BadTime {
                        field: field.to_owned(),
                        value: s.to_string(),
                        reason: e.to_string(),
                    })?;
            parsed.unix_timestamp_nanos().div_euclid(1_000_000)
        }
        (TimeFormat::Rfc3339, other) => {
            return Err(DecodeError::WrongType {
                field: field.to_owned(),
                expected: "an RFC 3339 string",
                found: other.type_name(),
            })
        }
        (_, other) => {
            return Err(DecodeError::WrongType {
                field: field.to_owned(),
                expected: "a number (epoch time)",
                found: other.type_name(),
            })
        }
    };
    if ms.abs() > MAX_ABS_EVENT_TIME_MS as i128 {
        return Err(out_of_range(ms));
    }
    Ok(ms as i64)
}

/// What the single pass over the object found for each role.
#[derive(Default)]
struct Found<'a> {
    time: Option<Scalar<'a>>,
    series: Option<Scalar<'a>>,
    value: Option<Scalar<'a>>,
    id: Option<Scalar<'a>>,
    join: Option<Scalar<'a>>,
    groups: Vec<Option<Scalar<'a>>>,
}

enum Top<'a> {
    Object(Box<Found<'a>>),
    NotAnObject(&'static str),
    Duplicate(String),
}

struct TopVisitor<'d> {
    decoder: &'d Decoder,
}

impl<'de> Visitor<'de> for TopVisitor<'_> {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
        let mut found = Found {
            groups: match self.decoder.mapping.group_by.len() {
                0 => Vec::new(),
                n => vec![None; n],
            },
            ..Found::default()
        };
        let mut seen: u8 = 0;
        let mut duplicate: Option<String> = None;
        while let Some(key) = map.next_key_seed(StrSeed)? {
            let (roles, group_index) = self.decoder.roles_of(&key);
            if roles == 0 {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value = map.next_value_seed(ScalarSeed)?;
            let group_seen = roles & ROLE_GROUP != 0 && found.groups[group_index].is_some();
            if (seen & roles & !ROLE_GROUP) != 0 || group_seen {
                duplicate.get_or_insert_with(|| key.to_string());
                continue;
            }
            seen |= roles;
            if roles & ROLE_TIME != 0 {
                found.time = Some(value.clone());
            }
            if roles & ROLE_SERIES != 0 {
                found.series = Some(value.clone());
            }
            if roles & ROLE_VALUE != 0 {
                found.value = Some(value.clone());
            }
            if roles & ROLE_ID != 0 {
                found.id = Some(value.clone());
            }
            if roles & ROLE_JOIN != 0 {
                found.join = Some(value.clone());
            }
            if roles & ROLE_GROUP != 0 {
                found.groups[group_index] = Some(value);
            }
        }
        Ok(match duplicate {
            Some(field) => Top::Duplicate(field),
            None => Top::Object(Box::new(found)),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Top::NotAnObject("an array"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Top<'de>, E> {
        Ok(Top::NotAnObject("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Top<'de>, E> {
        Ok(Top::NotAnObject("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Top<'de>, E> {
        Ok(Top::NotAnObject("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Top<'de>, E> {
        Ok(Top::NotAnObject("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Top<'de>, E> {
        Ok(Top::NotAnObject("a string"))
    }
    fn visit_unit<E>(self) -> Result<Top<'de>, E> {
        Ok(Top::NotAnObject("null"))
    }
}

/// Deserializes a string, borrowing it from the input when it has no escapes.
struct StrSeed;

impl<'de> DeserializeSeed<'de> for StrSeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(StrVisitor)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// Deserializes any JSON value into a [`Scalar`], draining (not building) nested values.
struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other("a boolean"))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> FieldMapping {
        FieldMapping {
            time: "ts".into(),
            time_format: TimeFormat::EpochMillis,
            series: Some("series".into()),
            group_by: vec![],
            value: Some("value".into()),
            id: Some("id".into()),
            join_key: None,
        }
    }

    fn decode(mapping: FieldMapping, input: &str) -> Result<Event<'_>, DecodeError> {
        Decoder::new(mapping).decode(input.as_bytes())
    }

    #[test]
    fn decodes_and_borrows_plain_strings() {
        let input =
            r#"{"ts":1700000000123,"series":"cpu","value":4.5,"id":"e1","extra":{"a":[1,2]}}"#;
        let ev = decode(mapping(), input).unwrap();
        assert_eq!(ev.ts, 1_700_000_000_123);
        assert_eq!(ev.value, 4.5);
        assert!(matches!(ev.series, Cow::Borrowed("cpu")));
        assert_eq!(ev.id.as_deref(), Some("e1"));
    }

    #[test]
    fn escaped_strings_are_owned_and_unescaped() {
        let ev = decode(mapping(), r#"{"ts":1,"series":"a\"b","value":1,"id":7}"#).unwrap();
        assert_eq!(ev.series, "a\"b");
        assert_eq!(ev.id.as_deref(), Some("7"));
    }

    #[test]
    fn time_formats() {
        let mut m = mapping();
        m.time_format = TimeFormat::EpochSeconds;
        assert_eq!(
            decode(m.clone(), r#"{"ts":1.5,"series":"a","value":1,"id":"x"}"#)
                .unwrap()
                .ts,
            1500
        );
        assert_eq!(
            decode(m, r#"{"ts":2,"series":"a","value":1,"id":"x"}"#)
                .unwrap()
                .ts,
            2000
        );
        let mut m = mapping();
        m.time_format = TimeFormat::Rfc3339;
        let ev = decode(
            m.clone(),
            r#"{"ts":"2026-11-24T13:00:00.250+01:00","series":"a","value":1,"id":"x"}"#,
        )
        .unwrap();
        assert_eq!(ev.ts, 1_795_521_600_250); // 12:00:00.250Z
        let err = decode(m, r#"{"ts":"yesterday","series":"a","value":1,"id":"x"}"#).unwrap_err();
        assert!(matches!(err, DecodeError::BadTime { .. }), "{err}");
    }

    #[test]
    fn group_by_builds_a_composite_label_and_no_value_counts() {
        let mut m = mapping();
        m.series = None;
        m.value = None;
        m.id = None;
        m.group_by = vec!["event_type".into(), "country".into()];
        let ev = decode(m.clone(), r#"{"ts":5,"event_type":"click","country":"NL"}"#).unwrap();
        assert_eq!(ev.series, "click/NL");
        assert_eq!(ev.value, 1.0);
        // Parts that contain the separator cannot make two events share a label.
        let a = decode(m.clone(), r#"{"ts":5,"event_type":"a/b","country":"c"}"#).unwrap();
        let b = decode(m.clone(), r#"{"ts":5,"event_type":"a","country":"b/c"}"#).unwrap();
        assert_ne!(a.series, b.series);
        assert_eq!((&*a.series, &*b.series), (r"a\/b/c", r"a/b\/c"));
        let empty = decode(m.clone(), r#"{"ts":5,"event_type":"","country":"x"}"#).unwrap();
        assert_eq!(empty.series, "/x");
        m.group_by.clear();
        assert_eq!(decode(m, r#"{"ts":5}"#).unwrap().series, DEFAULT_SERIES);
    }

    #[test]
    fn labels_longer_than_the_limit_are_refused_with_their_length() {
        let event = |series: &str| format!(r#"{{"ts":1,"series":"{series}","value":1,"id":"x"}}"#);
        let at_limit = "a".repeat(DEFAULT_MAX_LABEL_BYTES);
        assert!(decode(mapping(), &event(&at_limit)).is_ok());
        let over = event(&"a".repeat(DEFAULT_MAX_LABEL_BYTES + 1));
        let refused = decode(mapping(), &over).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "series label is 1025 bytes long, more than the stream's max_label_bytes = 1024"
        );
        // Composite labels count whole, escapes included.
        let mut grouped = mapping();
        grouped.group_by = vec!["host".into()];
        let decoder = Decoder::new(grouped).with_label_limit(8);
        let fits = r#"{"ts":1,"series":"a/b","host":"cde","value":1,"id":"x"}"#;
        assert_eq!(decoder.decode(fits.as_bytes()).unwrap().series, r"a\/b/cde");
        let long = r#"{"ts":1,"series":"a/b","host":"cdef","value":1,"id":"x"}"#;
        assert!(matches!(
            decoder.decode(long.as_bytes()),
            Err(DecodeError::LabelTooLong { bytes: 9, limit: 8 })
        ));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        type Check = fn(&DecodeError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("nope", |e| matches!(e, DecodeError::Json(_))),
            ("[1,2]", |e| {
                matches!(e, DecodeError::NotAnObject("an array"))
            }),
            ("3", |e| matches!(e, DecodeError::NotAnObject("a number"))),
            (
                r#"{"series":"a","value":1,"id":"x"}"#,
                |e| matches!(e, DecodeError::MissingField(f) if f == "ts"),
            ),
            (
                r#"{"ts":1,"series":"a","value":"1","id":"x"}"#,
                |e| matches!(e, DecodeError::WrongType { field, .. } if field == "value"),
            ),
            (
                r#"{"ts":1,"series":5,"value":1,"id":"x"}"#,
                |e| matches!(e, DecodeError::WrongType { field, .. } if field == "series"),
            ),
            (r#"{"ts":1,"series":"a","value":1e999,"id":"x"}"#, |e| {
                matches!(e, DecodeError::Json(_) | DecodeError::NonFinite { .. })
            }),
            (r#"{"ts":1e300,"series":"a","value":1,"id":"x"}"#, |e| {
                matches!(e, DecodeError::TimeOutOfRange { .. })
            }),
            (
                r#"{"ts":1,"ts":2,"series":"a","value":1,"id":"x"}"#,
                |e| matches!(e, DecodeError::DuplicateField { field } if field == "ts"),
            ),
            (
                r#"{"ts":1,"series":"a","value":1,"id":"x"} trailing"#,
                |e| matches!(e, DecodeError::Json(_)),
            ),
            (r#"{"ts":null,"series":"a","value":1,"id":"x"}"#, |e| {
                matches!(e, DecodeError::WrongType { found: "null", .. })
            }),
        ];
        for (input, check) in cases {
            let err = decode(mapping(), input).expect_err(input);
            assert!(check(&err), "{input}: {err}");
            assert!(!err.to_string().is_empty());
        }
    }
}
