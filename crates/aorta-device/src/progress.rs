//! The operator's view of a running agent: one status line on stderr,
//! redrawn in place on a terminal (every 250 ms) or printed every 10 s
//! otherwise, with refusals and the first (then every 20th) upload retry on
//! lines of their own. Feed it the agent's events
//! ([`crate::agent::run`]'s callback).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::agent::{AgentEvent, AgentReport};

/// A status line on stderr.
pub struct ProgressLine {
    tty: bool,
    every: Duration,
    last: Option<Instant>,
    drawn: bool,
}

impl Default for ProgressLine {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressLine {
    /// A line for this process's stderr.
    pub fn new() -> Self {
        let tty = std::io::stderr().is_terminal();
        ProgressLine {
            tty,
            every: if tty {
                Duration::from_millis(250)
            } else {
                Duration::from_secs(10)
            },
            last: None,
            drawn: false,
        }
    }

    /// The status of a run so far.
    pub fn line(r: &AgentReport) -> String {
        let mut s = format!(
            "sealed {} · acked {} · queued {} · retries {} · refused {}",
            r.frames_sealed,
            r.acked,
            r.queued_left,
            r.retries,
            r.refused.len()
        );
        if r.dropped > 0 {
            s.push_str(&format!(" · dropped {}", r.dropped));
        }
        s
    }

    /// Shows what `e` says and, when due, the status.
    pub fn on_event(&mut self, e: &AgentEvent<'_>, r: &AgentReport) {
        match e {
            AgentEvent::Refused { sequence, reason } => {
                self.clear();
                eprintln!("frame {sequence} refused: {reason}");
            }
            AgentEvent::Renegotiated {
                max_key_uses: Some(v),
            } => {
                self.clear();
                eprintln!("max_key_uses renegotiated: now {v} frames per key");
            }
            AgentEvent::RenegFailed { error } => {
                self.clear();
                eprintln!("renegotiation failed ({error}); the current schedule stays");
            }
            AgentEvent::Retry { error, wait } if r.retries == 1 || r.retries.is_multiple_of(20) => {
                self.clear();
                eprintln!(
                    "upload failed ({error}); frames stay queued, retrying in {:.1} s",
                    wait.as_secs_f64()
                );
            }
            _ => {}
        }
        if self.last.is_none_or(|t| t.elapsed() >= self.every) {
            self.last = Some(Instant::now());
            if self.tty {
                eprint!("\r\x1b[2K{}", Self::line(r));
                self.drawn = true;
            } else {
                eprintln!("{}", Self::line(r));
            }
        }
    }

    /// Erases the redrawn line (before other output).
    pub fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
            self.drawn = false;
        }
    }
}
