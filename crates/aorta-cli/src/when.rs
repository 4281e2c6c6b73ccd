//! Times as people read them: RFC 3339 (ISO 8601) in UTC, e.g.
//! `2026-12-07T14:41:01Z`, in every human-facing output (`docs/cli.md`);
//! JSON output keeps the formats' numbers (unix seconds or µs).

use std::time::{Duration, UNIX_EPOCH};

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z).
const MAX_S: u64 = 253_402_300_799;

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (out of range: `unix time N`).
pub(crate) fn iso_s(secs: u64) -> String {
    if secs > MAX_S {
        return format!("unix time {secs}");
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Microseconds since the epoch as RFC 3339, with the fraction only when
/// there is one (`…T14:41:01Z`, `…T14:41:01.250000Z`).
pub(crate) fn iso_us(us: i64) -> String {
    let Ok(u) = u64::try_from(us) else {
        return format!("unix time {us} µs");
    };
    if u / 1_000_000 > MAX_S {
        return format!("unix time {us} µs");
    }
    let t = UNIX_EPOCH + Duration::from_micros(u);
    if u % 1_000_000 == 0 {
        humantime::format_rfc3339_seconds(t).to_string()
    } else {
        humantime::format_rfc3339_micros(t).to_string()
    }
}

/// `text` with every `expires <unix seconds>` written as `expires <RFC 3339>`
/// (the audit log stores the number).
pub(crate) fn iso_expires(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(i) = rest.find("expires ") {
        let (head, tail) = rest.split_at(i + "expires ".len());
        out.push_str(head);
        let digits = tail.len() - tail.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        match tail[..digits].parse::<u64>() {
            Ok(secs) if digits > 0 => out.push_str(&iso_s(secs)),
            _ => out.push_str(&tail[..digits]),
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_utc() {
        assert_eq!(iso_s(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_s(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(iso_s(u64::MAX), format!("unix time {}", u64::MAX));
        assert_eq!(iso_us(1_700_000_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(iso_us(1_700_000_000_250_000), "2023-11-14T22:13:20.250000Z");
        assert_eq!(iso_us(-1), "unix time -1 µs");
        assert_eq!(
            iso_expires("to aorta-clinician-1ab expires 1700086400"),
            "to aorta-clinician-1ab expires 2023-11-15T22:13:20Z"
        );
        assert_eq!(iso_expires("expires never"), "expires never");
    }
}
