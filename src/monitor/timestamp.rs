//! RFC 3339 timestamps for CRI log lines, formatted exactly like Go's
//! `time.RFC3339Nano` in UTC (what containerd writes and the kubelet parses):
//! `2024-05-01T12:00:00.123456789Z`, trailing zeros of the fraction dropped
//! and the dot too when the fraction is zero.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Formats `t` (clamped to the Unix epoch) as RFC3339Nano UTC.
pub(crate) fn rfc3339_nano(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let nanos = since.subsec_nanos();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        let _ = write!(out, ".{}", frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Nanoseconds since the Unix epoch, saturating.
pub(super) fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> String {
        rfc3339_nano(UNIX_EPOCH + Duration::new(secs, nanos))
    }

    #[test]
    fn formats_like_go_rfc3339nano() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            at(1_700_000_000, 123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(at(1_700_000_000, 120_000_000), "2023-11-14T22:13:20.12Z");
        assert_eq!(at(1_700_000_000, 1), "2023-11-14T22:13:20.000000001Z");
    }

    #[test]
    fn handles_leap_days_and_year_ends() {
        // 2024-02-29 12:00:00 and 2000-12-31 23:59:59 (both leap years).
        assert_eq!(at(1_709_208_000, 0), "2024-02-29T12:00:00Z");
        assert_eq!(at(978_307_199, 500_000_000), "2000-12-31T23:59:59.5Z");
        assert_eq!(at(978_307_200, 0), "2001-01-01T00:00:00Z");
        // 2100 is not a leap year.
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn unix_nanos_of_epoch_offsets() {
        assert_eq!(unix_nanos(UNIX_EPOCH + Duration::new(2, 5)), 2_000_000_005);
        assert_eq!(unix_nanos(UNIX_EPOCH), 0);
    }
}
