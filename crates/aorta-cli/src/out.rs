//! Standard output that ends quietly on a closed pipe: `aorta … | head`
//! exits 0 once `head` has read enough, as ripgrep does, instead of
//! `println!`'s "failed printing to stdout: Broken pipe" panic (exit 101).
//!
//! Every command prints its report with [`out!`] / [`outln!`] (or
//! [`crate::show`]). Another write error (a full disk behind `>`) is
//! reported on stderr with exit status 2.

use std::io::Write;

/// `print!` to stdout; a closed pipe ends the process with status 0.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))
    };
}

/// `println!` to stdout; a closed pipe ends the process with status 0.
macro_rules! outln {
    () => {
        $crate::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes `args` to stdout (line-buffered, as `print!`).
pub(crate) fn write(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args) {
        fail(&e);
    }
}

fn fail(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        // The reader is gone: nothing more to say, to no one.
        std::process::exit(0);
    }
    eprintln!("error: writing to standard output: {e}");
    std::process::exit(2);
}
