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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_after_2020() {
        assert!(now_us() > 1_577_836_800_000_000);
        assert!(now_s() > 1_577_836_800);
    }
}
