//! Log lines a flood cannot multiply. A stranger can make the server refuse
//! thousands of requests a second; if each refusal wrote a line, the
//! stranger would be writing the operator's log (and filling its disk) at
//! the speed of its requests. A [`LogThrottle`] lets one call site log at
//! most a fixed number of lines a second; the next line it logs says how
//! many it left out (`suppressed=N`). The metrics still count every event:
//! the log keeps a sample, the counters keep the totals.

use std::sync::atomic::{AtomicU64, Ordering};

/// Lines a second for a refusal that any client can cause (a frame or a
/// renegotiation message refused by ingest).
pub const REFUSALS_PER_SEC: u64 = 10;

/// At most `per_sec` lines a second from one call site (a few more when
/// several threads cross a second's boundary at once); see the module doc.
#[derive(Debug)]
pub struct LogThrottle {
    per_sec: u64,
    second: AtomicU64,
    count: AtomicU64,
    suppressed: AtomicU64,
}

impl LogThrottle {
    /// A throttle of `per_sec` lines a second (at least one).
    pub const fn new(per_sec: u64) -> Self {
        LogThrottle {
            per_sec: if per_sec == 0 { 1 } else { per_sec },
            second: AtomicU64::new(0),
            count: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)`: log this event and say that `n` before it were left out;
    /// `None`: leave it out (it is counted for the next line).
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(aorta_base::time::now_s())
    }

    fn allow_at(&self, now_s: u64) -> Option<u64> {
        let second = self.second.load(Ordering::Relaxed);
        if now_s != second
            && self
                .second
                .compare_exchange(second, now_s, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.count.store(1, Ordering::Relaxed);
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        if self.count.fetch_add(1, Ordering::Relaxed) < self.per_sec {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

impl Default for LogThrottle {
    /// One line a second.
    fn default() -> Self {
        LogThrottle::new(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_logs_at_most_its_share_and_the_next_line_counts_the_rest() {
        let t = LogThrottle::new(3);
        let first: Vec<_> = (0..1000).map(|_| t.allow_at(10)).collect();
        assert_eq!(first.iter().filter(|a| a.is_some()).count(), 3);
        assert!(first.iter().take(3).all(|a| *a == Some(0)));
        assert_eq!(
            t.allow_at(11),
            Some(997),
            "the next second's first line counts what was left out"
        );
        assert_eq!(t.allow_at(11), Some(0));
        assert_eq!(t.allow_at(11), Some(0));
        assert_eq!(t.allow_at(11), None);
        assert_eq!(t.allow_at(12), Some(1));
    }

    #[test]
    fn zero_means_one_a_second() {
        let t = LogThrottle::new(0);
        assert_eq!(t.allow_at(5), Some(0));
        assert_eq!(t.allow_at(5), None);
        assert_eq!(LogThrottle::default().allow_at(7), Some(0));
    }
}
