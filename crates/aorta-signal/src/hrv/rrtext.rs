//! The one RR text format of aorta (`aorta hrv --rr FILE`, `aorta device run
//! --rr FILE`).
//!
//! One RR interval per line, either `RR_MS` or `TIME_S,RR_MS` (TIME_S: time
//! of the beat that ends the interval, seconds from the start of the
//! recording; `;` or a tab may separate the fields instead of `,`). All data
//! lines of a file have the same shape. Blank lines and `#` comments
//! (whole-line or trailing) are ignored; surrounding whitespace and a CRLF
//! ending are allowed. Lines before the first data line that hold letters and
//! do not parse are a column header (e.g. `time_s,rr_ms`) and are skipped.
//!
//! [`parse_rr_lines`] reads the lines as written (every value a finite number
//! within ±10⁹); [`parse_rr_text`] keeps the intervals alone and requires each
//! to be in (0, 60000] ms, as HRV does. What a device does with intervals
//! outside the physiological range is its own rule (it cuts its stream
//! there), so the line reader leaves them in.

/// With a time column, an interval whose opening beat (`TIME_S − RR_MS/1000`)
/// is more than this many milliseconds from the previous line's `TIME_S`
/// follows a gap: `aorta device run --rr` starts a new segment there and
/// `aorta hrv --rr` takes no successive difference across it.
pub const GAP_TOLERANCE_MS: f64 = 50.0;

/// The largest magnitude of a value on a line (ms or s): beyond it, a value
/// is an error rather than an interval to judge.
pub const MAX_ABS_VALUE: f64 = 1e9;

/// A line of an RR text file that is not an RR interval.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RrParseError {
    /// The line is not a number.
    #[error("line {line}: not a number: {text:?}")]
    NotANumber {
        /// 1-based line number.
        line: usize,
        /// The offending text (at most 64 characters).
        text: String,
    },
    /// The number is not a usable RR interval.
    #[error("line {line}: {value} is not an RR interval in (0, 60000] ms")]
    OutOfRange {
        /// 1-based line number.
        line: usize,
        /// The value.
        value: f64,
    },
    /// The file is not UTF-8 text.
    #[error("line {line}: not UTF-8 text")]
    NotText {
        /// 1-based line number.
        line: usize,
    },
    /// The line has neither one field (`RR_MS`) nor two (`TIME_S,RR_MS`).
    #[error("line {line}: expected RR_MS or TIME_S,RR_MS, got {text:?}")]
    Fields {
        /// 1-based line number.
        line: usize,
        /// The offending text (at most 64 characters).
        text: String,
    },
    /// The line has a time column and an earlier one has not, or the reverse.
    #[error("line {line}: mixes lines with and without a time column")]
    MixedColumns {
        /// 1-based line number.
        line: usize,
    },
    /// The time column is not a finite number of seconds within ±10⁹.
    #[error("line {line}: {value} is not a beat time in seconds")]
    BadTime {
        /// 1-based line number.
        line: usize,
        /// The value.
        value: f64,
    },
}

/// One data line of an RR text file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RrLine {
    /// 1-based line number.
    pub line: usize,
    /// Time of the beat that ends the interval, seconds, if the file has a
    /// time column.
    pub time_s: Option<f64>,
    /// The interval, milliseconds (finite, within ±[`MAX_ABS_VALUE`]; not
    /// checked against a physiological range).
    pub rr_ms: f64,
}

fn excerpt(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Reads the data lines of RR text (bytes, so a binary file gets a
/// line-numbered error). See the module doc for the format.
pub fn parse_rr_lines(bytes: &[u8]) -> Result<Vec<RrLine>, RrParseError> {
    let mut out: Vec<RrLine> = Vec::new();
    let mut with_time: Option<bool> = None;
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let text = std::str::from_utf8(raw).map_err(|_| RrParseError::NotText { line })?;
        let text = text.split('#').next().unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.split([',', ';', '\t']).map(str::trim).collect();
        let nums: Result<Vec<f64>, _> = fields.iter().map(|f| f.parse::<f64>()).collect();
        let nums = match nums {
            Ok(n) => n,
            Err(_) if out.is_empty() && text.chars().any(|c| c.is_ascii_alphabetic()) => {
                continue; // a column header
            }
            Err(_) => {
                return Err(RrParseError::NotANumber {
                    line,
                    text: excerpt(text),
                });
            }
        };
        let (time_s, rr_ms) = match nums.as_slice() {
            [rr] => (None, *rr),
            [t, rr] => (Some(*t), *rr),
            _ => {
                return Err(RrParseError::Fields {
                    line,
                    text: excerpt(text),
                });
            }
        };
        if *with_time.get_or_insert(time_s.is_some()) != time_s.is_some() {
            return Err(RrParseError::MixedColumns { line });
        }
        if !(rr_ms.is_finite() && rr_ms.abs() <= MAX_ABS_VALUE) {
            return Err(RrParseError::OutOfRange { line, value: rr_ms });
        }
        if let Some(t) = time_s
            && !(t.is_finite() && t.abs() <= MAX_ABS_VALUE)
        {
            return Err(RrParseError::BadTime { line, value: t });
        }
        out.push(RrLine {
            line,
            time_s,
            rr_ms,
        });
    }
    Ok(out)
}

/// Parses RR text into its intervals (ms), each in (0, [`super::MAX_INTERVAL_MS`]].
pub fn parse_rr_text(bytes: &[u8]) -> Result<Vec<f64>, RrParseError> {
    Ok(parse_rr_series(bytes)?.0)
}

/// Parses RR text into its intervals (ms, each in (0,
/// [`super::MAX_INTERVAL_MS`]]) and, when the file has a time column, the
/// time (s) of each interval's closing beat.
pub fn parse_rr_series(bytes: &[u8]) -> Result<(Vec<f64>, Option<Vec<f64>>), RrParseError> {
    let lines = parse_rr_lines(bytes)?;
    let mut rr = Vec::with_capacity(lines.len());
    let mut times = Vec::with_capacity(lines.len());
    for l in &lines {
        if !(l.rr_ms > 0.0 && l.rr_ms <= super::MAX_INTERVAL_MS) {
            return Err(RrParseError::OutOfRange {
                line: l.line,
                value: l.rr_ms,
            });
        }
        rr.push(l.rr_ms);
        if let Some(t) = l.time_s {
            times.push(t);
        }
    }
    // All lines have the same shape (parse_rr_lines' rule).
    let timed = !lines.is_empty() && times.len() == rr.len();
    Ok((rr, timed.then_some(times)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_blanks_crlf() {
        let t = b"# header\r\n800\r\n\r\n  812.5  # note\n790\n";
        assert_eq!(parse_rr_text(t).unwrap(), vec![800.0, 812.5, 790.0]);
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(
            parse_rr_text(b"800\nabc\n"),
            Err(RrParseError::NotANumber {
                line: 2,
                text: "abc".into()
            })
        );
        assert!(matches!(
            parse_rr_text(b"800\n\n-5\n"),
            Err(RrParseError::OutOfRange { line: 3, .. })
        ));
        assert!(matches!(
            parse_rr_text(b"NaN\n"),
            Err(RrParseError::OutOfRange { line: 1, .. })
        ));
        assert!(matches!(
            parse_rr_text(b"800\n\xff\xfe\n"),
            Err(RrParseError::NotText { line: 2 })
        ));
    }

    #[test]
    fn time_column_header_and_separators() {
        let t = b"time_s,rr_ms\n1.0,800\n1.8;800\n2.6\t810 # x\n";
        let lines = parse_rr_lines(t).unwrap();
        assert_eq!(
            lines,
            vec![
                RrLine {
                    line: 2,
                    time_s: Some(1.0),
                    rr_ms: 800.0
                },
                RrLine {
                    line: 3,
                    time_s: Some(1.8),
                    rr_ms: 800.0
                },
                RrLine {
                    line: 4,
                    time_s: Some(2.6),
                    rr_ms: 810.0
                },
            ]
        );
        assert_eq!(parse_rr_text(t).unwrap(), vec![800.0, 800.0, 810.0]);
        // Out-of-range intervals are lines; judging them is the caller's.
        assert_eq!(parse_rr_lines(b"rr_ms\n-5\n70000\n").unwrap().len(), 2);
        assert!(parse_rr_text(b"rr_ms\n-5\n70000\n").is_err());
    }

    #[test]
    fn shape_errors_are_typed() {
        assert_eq!(
            parse_rr_lines(b"1,800\n800\n"),
            Err(RrParseError::MixedColumns { line: 2 })
        );
        assert_eq!(
            parse_rr_lines(b"1,2,3\n"),
            Err(RrParseError::Fields {
                line: 1,
                text: "1,2,3".into()
            })
        );
        assert!(matches!(
            parse_rr_lines(b"800\ninf\n"),
            Err(RrParseError::OutOfRange { line: 2, .. })
        ));
        assert!(matches!(
            parse_rr_lines(b"1e300\n"),
            Err(RrParseError::OutOfRange { line: 1, .. })
        ));
        assert!(matches!(
            parse_rr_lines(b"NaN,800\n"),
            Err(RrParseError::BadTime { line: 1, .. })
        ));
        // A header is only a header before the data.
        assert!(matches!(
            parse_rr_lines(b"800\nrr_ms\n"),
            Err(RrParseError::NotANumber { line: 2, .. })
        ));
    }
}
