//! The wall clock, in the units aorta's formats use.
//!
//! Event times are microseconds since the Unix epoch (UTC) as `i64`. A clock
//! set before 1970 reads as 0 rather than failing: nothing aorta timestamps
//! predates the epoch, and a negative time would be refused downstream.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (0 if the clock reads earlier; saturates
/// at `i64::MAX`).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Whole seconds since the Unix epoch (0 if the clock reads earlier).
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// ISO-8601 / RFC 3339 UTC text of a time in µs since the epoch, with
/// millisecond precision: `2026-12-07T06:49:22.123Z`.
pub fn iso8601_us(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let millis = us.rem_euclid(1_000_000) / 1000;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// ISO-8601 UTC text of whole seconds since the epoch: `2026-12-07T06:49:22Z`.
pub fn iso8601_s(s: u64) -> String {
    let s = i64::try_from(s).unwrap_or(i64::MAX / 1_000_000);
    let secs = s.min(i64::MAX / 1_000_000);
    let full = iso8601_us(secs.saturating_mul(1_000_000));
    // Drop the ".000" milliseconds.
    match full.len().checked_sub(5) {
        Some(cut) => format!("{}Z", full.get(..cut).unwrap_or(&full)),
        None => full,
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(iso8601_us(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_s(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(
            iso8601_us(1_796_629_762_123_456),
            "2026-12-07T07:49:22.123Z"
        );
        assert_eq!(iso8601_us(-1_000), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn clock_is_after_2020() {
        assert!(now_us() > 1_577_836_800_000_000);
        assert!(now_s() > 1_577_836_800);
    }
}
