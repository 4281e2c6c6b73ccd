//! Value parsers shared by the subcommands' numeric flags: a bad value (0,
//! negative, NaN, infinite, too large, not a number) is clap's usage error,
//! exit 2, naming the flag, before the command starts anything. A length of
//! zero never reaches a loop that would then never end.
//!
//! Use: `#[arg(long, default_value_t = 30.0, value_parser = args::secs(1.0, DAY))]`.
//! The defaults go through the same parser, so a default outside its own
//! range fails the CLI's own tests (`cli_numeric_args.rs`).

use std::fmt::Display;
use std::str::FromStr;

/// One day, in seconds (an upper bound for intervals and segment lengths).
pub(crate) const DAY: f64 = 86_400.0;
/// An upper bound for run lengths and timeouts: about 31 years (any
/// `Duration` built from it fits).
pub(crate) const LONG: f64 = 1e9;
/// The longest frame a device seals, in seconds (the sources' own limit).
pub(crate) const MAX_FRAME_SECONDS: f64 = 3600.0;

/// A finite number in `min..=max`, where `min > 0` is inclusive; with
/// `min == 0.0` it means "greater than zero" (a length, an interval).
pub(crate) fn secs(
    min: f64,
    max: f64,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s| {
        let x = finite(s)?;
        let ok = if min == 0.0 {
            x > 0.0 && x <= max
        } else {
            (min..=max).contains(&x)
        };
        if ok {
            Ok(x)
        } else if min == 0.0 {
            Err(format!("must be greater than 0 and at most {max}"))
        } else {
            Err(format!("must be between {min} and {max}"))
        }
    }
}

/// A finite number in `0..=max` (an offset or a timeout where 0 means
/// "at once").
pub(crate) fn non_negative(
    max: f64,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s| {
        let x = finite(s)?;
        if (0.0..=max).contains(&x) {
            Ok(x)
        } else {
            Err(format!("must be between 0 and {max}"))
        }
    }
}

/// An integer in `min..=max` (a count, a size, a length).
pub(crate) fn int<T>(
    min: T,
    max: T,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + PartialOrd + Display + Copy + Send + Sync + 'static,
{
    move |s| {
        let x: T = s
            .trim()
            .parse()
            .map_err(|_| format!("not a whole number between {min} and {max}"))?;
        if (min..=max).contains(&x) {
            Ok(x)
        } else {
            Err(format!("must be between {min} and {max}"))
        }
    }
}

/// `HOST:PORT` to listen on: a port in 0..=65535 (0 picks a free one).
pub(crate) fn listen_addr(s: &str) -> Result<String, String> {
    host_port(s, 0)
}

/// `HOST:PORT` to connect to: a port in 1..=65535.
pub(crate) fn connect_addr(s: &str) -> Result<String, String> {
    host_port(s, 1)
}

fn host_port(s: &str, min_port: u16) -> Result<String, String> {
    let bad = || format!("expected HOST:PORT with a port between {min_port} and 65535");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port < min_port {
        return Err(bad());
    }
    Ok(s.to_owned())
}

fn finite(s: &str) -> Result<f64, String> {
    let x: f64 = s.trim().parse().map_err(|_| "not a number".to_owned())?;
    if x.is_finite() {
        Ok(x)
    } else {
        Err("must be a finite number".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_refuse_zero_negative_nan_and_infinity() {
        let p = secs(0.0, DAY);
        for bad in [
            "0", "-1", "nan", "NaN", "inf", "-inf", "1e400", "86401", "x", "",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
        assert_eq!(p("0.05"), Ok(0.05));
        assert_eq!(p(" 30 "), Ok(30.0));
        let p = secs(1.0, 10.0);
        assert!(p("0.5").is_err());
        assert_eq!(p("1"), Ok(1.0));
        let p = non_negative(LONG);
        assert_eq!(p("0"), Ok(0.0));
        for bad in ["-0.001", "nan", "inf"] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn integers_stay_in_range() {
        let p = int(1usize, 500);
        for bad in ["0", "-1", "501", "1.5", "nan", ""] {
            assert!(p(bad).is_err(), "{bad}");
        }
        assert_eq!(p("500"), Ok(500));
    }

    /// Every default goes through its flag's parser: each command parses
    /// with only its required arguments (a default out of its own range
    /// would fail here, not in a user's hands).
    #[test]
    fn every_default_is_in_range() {
        use clap::{CommandFactory, Parser};
        crate::Cli::command().debug_assert();
        for args in [
            &["eval", "af", "--db", "d"][..],
            &["eval", "rpeaks", "--db", "d"],
            &["hrv", "--record", "r"],
            &["bench", "compress", "--db", "d"],
            &["bench", "pipeline"],
            &["bench", "rr-stream", "--input", "i"],
            &["bench", "se"],
            &["demo"],
            &[
                "device", "seal", "--device", "d", "--record", "r", "--out", "o",
            ],
            &[
                "device", "run", "--device", "d", "--record", "r", "--server", "s", "--ca", "c",
            ],
            &[
                "device", "run", "--device", "d", "--record", "r", "--server", "s", "--ca", "c",
                "--follow",
            ],
            &["factory", "init", "--registry", "r"],
            &[
                "worker",
                "stream",
                "--broker",
                "h:1",
                "--assignment",
                "a",
                "--ca",
                "c",
                "--token-file",
                "t",
            ],
            &["broker", "serve", "--policy", "p", "--keys", "k"],
        ] {
            let argv = std::iter::once("aorta").chain(args.iter().copied());
            if let Err(e) = crate::Cli::try_parse_from(argv) {
                panic!("{args:?}: {e}");
            }
        }
    }

    #[test]
    fn addresses_need_a_port_in_range() {
        assert!(listen_addr("127.0.0.1:0").is_ok());
        assert!(listen_addr("[::1]:7450").is_ok());
        assert!(connect_addr("broker.example:7450").is_ok());
        for bad in ["127.0.0.1", "127.0.0.1:65536", "127.0.0.1:-1", ":80", "h:x"] {
            assert!(listen_addr(bad).is_err(), "{bad}");
        }
        assert!(connect_addr("127.0.0.1:0").is_err());
    }
}
