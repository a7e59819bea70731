//! Wall-clock time as records carry it: epoch milliseconds, shown as RFC 3339 UTC.
//!
//! Event time comes from the events; this is processing time (acknowledgements, checkpoints,
//! the demo generator's timestamps, how far a watermark trails the clock).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The wall clock in epoch milliseconds (0 should the clock read before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Epoch milliseconds as RFC 3339 UTC, or the number when it is out of range.
pub fn format_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_range_times_and_falls_back_to_the_number() {
        assert_eq!(format_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_ms(i64::MAX), i64::MAX.to_string());
    }
}
