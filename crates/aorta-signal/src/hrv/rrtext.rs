//! The RR text format of `aorta hrv --rr FILE`: one RR interval in
//! milliseconds per line; blank lines and `#` comments (whole-line or
//! trailing) are ignored; surrounding whitespace and a CRLF ending are allowed.

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
}

/// Parses RR text (bytes, so a binary file gets a line-numbered error).
pub fn parse_rr_text(bytes: &[u8]) -> Result<Vec<f64>, RrParseError> {
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let text = std::str::from_utf8(raw).map_err(|_| RrParseError::NotText { line })?;
        let text = text.split('#').next().unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        let value: f64 = text.parse().map_err(|_| RrParseError::NotANumber {
            line,
            text: text.chars().take(64).collect(),
        })?;
        if !(value.is_finite() && value > 0.0 && value <= super::MAX_INTERVAL_MS) {
            return Err(RrParseError::OutOfRange { line, value });
        }
        out.push(value);
    }
    Ok(out)
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
}
