//! A span of time as the config file writes it (`"500ms"`, `"10s"`, `"5m"`, `"1h 30m"`) and as
//! the engine uses it (milliseconds).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::invalid::Invalid;

/// Longest duration any setting accepts: a year. Keeps every `time + duration` far from overflow.
const MAX_MS: i64 = 366 * 24 * 3600 * 1000;

/// A non-negative whole number of milliseconds, at most a year.
///
/// Human-readable formats (TOML, JSON) write it as text such as `"10s"`; binary ones (the
/// engine snapshot) as the number of milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(i64);

impl Duration {
    pub const ZERO: Duration = Duration(0);

    /// `ms` milliseconds; `None` when negative or longer than a year.
    pub const fn from_ms(ms: i64) -> Option<Duration> {
        if ms >= 0 && ms <= MAX_MS {
            Some(Duration(ms))
        } else {
            None
        }
    }

    pub const fn from_secs(secs: i64) -> Duration {
        Duration(secs * 1000)
    }

    pub const fn ms(self) -> i64 {
        self.0
    }

    /// Refuses zero, for settings where nothing would happen (a window of no time).
    pub fn positive(self, key: &str) -> Result<Duration, Invalid> {
        if self.0 > 0 {
            Ok(self)
        } else {
            Err(Invalid::new(key, "must be greater than zero"))
        }
    }
}

impl std::str::FromStr for Duration {
    type Err = String;

    fn from_str(text: &str) -> Result<Duration, String> {
        let parsed = humantime::parse_duration(text).map_err(|e| {
            format!(
                "invalid duration {text:?} ({e}); write e.g. \"500ms\", \"10s\", \"5m\", \"1h\""
            )
        })?;
        if parsed.subsec_nanos() % 1_000_000 != 0 {
            return Err(format!("duration {text:?} is finer than a millisecond"));
        }
        i64::try_from(parsed.as_millis())
            .ok()
            .and_then(Duration::from_ms)
            .ok_or_else(|| format!("duration {text:?} is longer than the maximum of one year"))
    }
}

/// As the config file writes it, in days at most: `"365d"`, `"1h 30m"`, `"52m 33s 600ms"`
/// (humantime's own output has months of 30.44 days: "11months 30days 3h 50m 24s").
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0s");
        }
        const UNITS: [(i64, &str); 5] = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
            (1, "ms"),
        ];
        let mut left = self.0;
        let mut first = true;
        for (size, name) in UNITS {
            if left >= size {
                if !first {
                    f.write_str(" ")?;
                }
                write!(f, "{}{name}", left / size)?;
                left %= size;
                first = false;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"10s\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
                text.parse().map_err(E::custom)
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(Text)
        } else {
            let ms = i64::deserialize(deserializer)?;
            Duration::from_ms(ms)
                .ok_or_else(|| de::Error::custom(format!("duration of {ms} ms is out of range")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_people_write_and_refuses_the_rest() {
        assert_eq!("500ms".parse(), Ok(Duration(500)));
        assert_eq!("1h 30m".parse(), Ok(Duration(5_400_000)));
        assert_eq!("0s".parse(), Ok(Duration::ZERO));
        let error = "10 parsecs".parse::<Duration>().unwrap_err();
        assert!(
            error.starts_with("invalid duration \"10 parsecs\""),
            "{error}"
        );
        assert!("1us".parse::<Duration>().unwrap_err().contains("finer"));
        assert!("400d".parse::<Duration>().unwrap_err().contains("one year"));
        assert_eq!(
            Duration(0).positive("size").unwrap_err().to_string(),
            "size: must be greater than zero"
        );
    }

    #[test]
    fn text_in_toml_and_json_milliseconds_in_binary() {
        let d = Duration(90_000);
        assert_eq!(d.to_string(), "1m 30s");
        for text in ["365d", "1d 1h", "52m 33s 600ms", "500ms", "2h"] {
            assert_eq!(text.parse::<Duration>().unwrap().to_string(), text);
        }
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1m 30s\"");
        assert_eq!(serde_json::from_str::<Duration>("\"1m 30s\"").unwrap(), d);
        let bytes = postcard::to_allocvec(&d).unwrap();
        assert_eq!(postcard::from_bytes::<Duration>(&bytes).unwrap(), d);
        assert!(serde_json::from_str::<Duration>("90000").is_err());
    }
}
