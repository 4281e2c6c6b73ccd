//! What SIGINT (Ctrl-C) and SIGTERM do, one rule for every command
//! (`docs/cli.md`, "Signals"):
//!
//! - **Batch commands** (`eval`, `bench`, `hrv`, `wfdb`) abort at once with
//!   exit status 130. They write their report to stdout only when done, so
//!   an interrupted run leaves no partial output.
//! - **Services** (`server`, `broker serve`, `worker run`/`stream`,
//!   `device run`) treat the signal as a stop request: they stop cleanly
//!   (flushing what they keep: checkpoints, queued frames) and exit 0.
//!   Those with nothing to flush (`broker serve`, `worker run`) exit 0 at
//!   once; the others use [`crate::stop_on_signals`] or their own handler,
//!   where a second signal exits at once with 130.
//! - **`demo`** stops its devices, worker and server
//!   ([`crate::stop_on_signals`]), prints a partial summary and exits 130.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use signal_hook::consts::{SIGINT, SIGTERM};

/// A batch command: SIGINT/SIGTERM end the process at once with status 130.
pub(crate) fn abort_on_signals() -> anyhow::Result<()> {
    exit_on_signals(130)
}

/// A service with nothing to flush: SIGINT/SIGTERM end it at once with
/// status 0 (a requested shutdown).
pub(crate) fn shut_down_on_signals() -> anyhow::Result<()> {
    exit_on_signals(0)
}

fn exit_on_signals(status: i32) -> anyhow::Result<()> {
    let always = Arc::new(AtomicBool::new(true));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, status, Arc::clone(&always))
            .context("installing the signal handler")?;
    }
    Ok(())
}
