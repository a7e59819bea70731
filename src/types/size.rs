//! An amount of memory as the config file writes it: `"512MiB"`, `"1.5GB"`, `"800k"`, or a
//! plain number of bytes.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub usize);

/// Units by suffix, lower-cased: SI (powers of 1000) and IEC (powers of 1024), as `ls`, `df`
/// and Kubernetes write them.
const UNITS: [(&str, f64); 13] = [
    ("", 1.0),
    ("b", 1.0),
    ("k", 1e3),
    ("kb", 1e3),
    ("kib", 1024.0),
    ("m", 1e6),
    ("mb", 1e6),
    ("mib", 1_048_576.0),
    ("g", 1e9),
    ("gb", 1e9),
    ("gib", 1_073_741_824.0),
    ("tb", 1e12),
    ("tib", 1_099_511_627_776.0),
];

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<ByteSize, String> {
        let invalid =
            || format!("invalid size {text:?}; write e.g. \"512MiB\", \"2GB\", \"800kB\"");
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let number: f64 = number.parse().map_err(|_| invalid())?;
        let unit = unit.trim().to_ascii_lowercase();
        let (_, factor) = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .ok_or_else(invalid)?;
        let bytes = number * factor;
        if !bytes.is_finite() || bytes >= usize::MAX as f64 {
            return Err(format!("size {text:?} is too large"));
        }
        Ok(ByteSize(bytes.round() as usize))
    }
}

impl fmt::Display for ByteSize {
    /// The largest IEC unit that divides the size exactly, so it reads back the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if self.0 != 0 && self.0.trailing_zeros() >= shift {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
        struct Size;
        impl Visitor<'_> for Size {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"512MiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
                text.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<ByteSize, E> {
                usize::try_from(bytes)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("size {bytes} is negative")))
            }
            fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<ByteSize, E> {
                usize::try_from(bytes)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("size {bytes} is too large")))
            }
        }
        deserializer.deserialize_any(Size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_people_write_and_refuses_the_rest() {
        assert_eq!("512MiB".parse(), Ok(ByteSize(512 << 20)));
        assert_eq!("1.5GB".parse(), Ok(ByteSize(1_500_000_000)));
        assert_eq!("800 kB".parse(), Ok(ByteSize(800_000)));
        assert_eq!("4096".parse(), Ok(ByteSize(4096)));
        let error = "lots".parse::<ByteSize>().unwrap_err();
        assert!(error.starts_with("invalid size \"lots\""), "{error}");
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("-1MB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn reads_back_what_it_writes() {
        for size in [ByteSize(512 << 20), ByteSize(3 << 30), ByteSize(1000)] {
            assert_eq!(size.to_string().parse(), Ok(size));
        }
        assert_eq!(ByteSize(512 << 20).to_string(), "512MiB");
        let toml: toml::Table = toml::from_str("a = \"1GiB\"\nb = 2048").unwrap();
        let a: ByteSize = toml["a"].clone().try_into().unwrap();
        let b: ByteSize = toml["b"].clone().try_into().unwrap();
        assert_eq!((a, b), (ByteSize(1 << 30), ByteSize(2048)));
    }
}
