//! `.hea` header parsing (record line + signal specification lines).
//!
//! Grammar, after PhysioNet's `header(5)`:
//!
//! ```text
//! record-line = name ["/" nseg] SP nsig [SP fs ["/" counter-freq ["(" base-counter ")"]]
//!               [SP nsamp [SP base-time [SP base-date]]]]
//! signal-line = file SP format ["x" spf] [":" skew] ["+" offset]
//!               [SP gain ["(" baseline ")"] ["/" units] [SP adc-res [SP adc-zero
//!               [SP init-value [SP checksum [SP block-size [SP description]]]]]]]
//! ```
//!
//! Lines starting with `#` are comments; blank lines are skipped; both LF and
//! CRLF line ends are accepted.

use super::HeaderError;

/// Storage format of a signal in its signal file (WFDB `signal(5)`). Its
/// JSON is the WFDB number (`212`), as in a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// 8-bit offset binary (sample + 128 stored as `u8`).
    F80,
    /// 16-bit two's complement, little-endian.
    F16,
    /// 16-bit two's complement, big-endian.
    F61,
    /// 24-bit two's complement, little-endian.
    F24,
    /// 32-bit two's complement, little-endian.
    F32,
    /// Two 12-bit two's-complement samples packed in 3 bytes.
    F212,
    /// Three 10-bit samples packed in two 16-bit little-endian words (4 bytes).
    F310,
    /// Three 10-bit samples packed in one 32-bit little-endian word (4 bytes).
    F311,
}

impl serde::Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.code())
    }
}

impl Format {
    /// Every format this crate reads and writes.
    pub const ALL: [Format; 8] = [
        Format::F80,
        Format::F16,
        Format::F61,
        Format::F24,
        Format::F32,
        Format::F212,
        Format::F310,
        Format::F311,
    ];

    /// Parses the numeric format code of a signal line.
    pub fn from_code(code: u32) -> Option<Format> {
        Some(match code {
            80 => Format::F80,
            16 => Format::F16,
            61 => Format::F61,
            24 => Format::F24,
            32 => Format::F32,
            212 => Format::F212,
            310 => Format::F310,
            311 => Format::F311,
            _ => return None,
        })
    }

    /// The numeric code used in headers.
    pub fn code(self) -> u32 {
        match self {
            Format::F80 => 80,
            Format::F16 => 16,
            Format::F61 => 61,
            Format::F24 => 24,
            Format::F32 => 32,
            Format::F212 => 212,
            Format::F310 => 310,
            Format::F311 => 311,
        }
    }

    /// Smallest and largest digital value the format can store.
    pub fn range(self) -> (i32, i32) {
        match self {
            Format::F80 => (-128, 127),
            Format::F16 | Format::F61 => (i16::MIN as i32, i16::MAX as i32),
            Format::F24 => (-(1 << 23), (1 << 23) - 1),
            Format::F32 => (i32::MIN, i32::MAX),
            Format::F212 => (-2048, 2047),
            Format::F310 | Format::F311 => (-512, 511),
        }
    }
}

/// One signal line of a header.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SignalSpec {
    /// Signal file name, relative to the header's directory.
    pub file_name: String,
    /// Storage format.
    pub format: Format,
    /// Samples of this signal per frame (1 unless the record is multi-frequency).
    pub samples_per_frame: u32,
    /// Skew in frames (recorded, not applied).
    pub skew: u32,
    /// Byte offset of the first sample in the signal file.
    pub byte_offset: u64,
    /// ADC gain in digital units per physical unit; WFDB's default 200 when
    /// the header gives none or 0.
    pub gain: f64,
    /// Digital value that corresponds to 0 physical units.
    pub baseline: i32,
    /// Physical units (default `mV`).
    pub units: String,
    /// ADC resolution in bits (0 if not given).
    pub adc_resolution: u32,
    /// ADC zero.
    pub adc_zero: i32,
    /// Value of the first sample, if the header gives one.
    pub initial_value: Option<i32>,
    /// 16-bit signed sum of all samples, if the header gives one.
    pub checksum: Option<i16>,
    /// Block size (0: not blocked).
    pub block_size: u32,
    /// Free-text description (lead name).
    pub description: String,
}

impl SignalSpec {
    /// Converts a digital sample to physical units.
    pub fn to_physical(&self, digital: i32) -> f64 {
        (f64::from(digital) - f64::from(self.baseline)) / self.gain
    }
}

/// A parsed `.hea` header of a single-segment record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Header {
    /// Record name from the record line.
    pub record_name: String,
    /// Sampling frequency in frames per second (WFDB default 250).
    pub sampling_frequency: f64,
    /// Counter frequency, if given.
    pub counter_frequency: Option<f64>,
    /// Number of samples per signal, if given.
    pub samples_per_signal: Option<u64>,
    /// Base time string (`HH:MM:SS`), if given.
    pub base_time: Option<String>,
    /// Base date string (`DD/MM/YYYY`), if given.
    pub base_date: Option<String>,
    /// Signal specifications, in order.
    pub signals: Vec<SignalSpec>,
    /// Comment lines, without the leading `#`.
    pub comments: Vec<String>,
}

fn parse_num<T: std::str::FromStr>(
    s: &str,
    line: usize,
    what: &'static str,
) -> Result<T, HeaderError> {
    s.parse::<T>().map_err(|_| HeaderError::BadField {
        line,
        field: what,
        value: s.chars().take(64).collect(),
    })
}

fn parse_positive_f64(s: &str, line: usize, what: &'static str) -> Result<f64, HeaderError> {
    let v: f64 = parse_num(s, line, what)?;
    if !v.is_finite() || v <= 0.0 {
        return Err(HeaderError::BadField {
            line,
            field: what,
            value: s.chars().take(64).collect(),
        });
    }
    Ok(v)
}

/// Largest number of signals a header may declare (guards allocations).
pub const MAX_SIGNALS: usize = 4096;

/// Parses the text of a `.hea` file.
pub fn parse_header(text: &str) -> Result<Header, HeaderError> {
    let mut comments = Vec::new();
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter_map(|(i, l)| {
            let t = l.trim();
            if let Some(c) = t.strip_prefix('#') {
                comments.push(c.trim().to_string());
                None
            } else if t.is_empty() {
                None
            } else {
                Some((i, t))
            }
        })
        .collect::<Vec<_>>()
        .into_iter();

    let (lno, record_line) = lines.next().ok_or(HeaderError::Empty)?;
    let mut fields = record_line.split_ascii_whitespace();
    let name_field = fields.next().ok_or(HeaderError::Empty)?;
    if name_field.contains('/') {
        return Err(HeaderError::Unsupported {
            line: lno,
            what: "multi-segment records",
        });
    }
    let nsig_s = fields.next().ok_or(HeaderError::MissingField {
        line: lno,
        field: "number of signals",
    })?;
    let nsig: usize = parse_num(nsig_s, lno, "number of signals")?;
    if nsig > MAX_SIGNALS {
        return Err(HeaderError::BadField {
            line: lno,
            field: "number of signals",
            value: nsig_s.to_string(),
        });
    }
    let mut sampling_frequency = 250.0;
    let mut counter_frequency = None;
    if let Some(fs_field) = fields.next() {
        let (fs_s, rest) = match fs_field.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (fs_field, None),
        };
        sampling_frequency = parse_positive_f64(fs_s, lno, "sampling frequency")?;
        if let Some(rest) = rest {
            let cf = rest.split_once('(').map_or(rest, |(a, _)| a);
            counter_frequency = Some(parse_positive_f64(cf, lno, "counter frequency")?);
        }
    }
    let samples_per_signal = match fields.next() {
        Some(s) => Some(parse_num::<u64>(s, lno, "number of samples")?),
        None => None,
    };
    let base_time = fields.next().map(str::to_string);
    let base_date = fields.next().map(str::to_string);

    let mut signals = Vec::with_capacity(nsig);
    for k in 0..nsig {
        let (lno, line) = lines.next().ok_or(HeaderError::MissingSignalLines {
            declared: nsig,
            found: k,
        })?;
        signals.push(parse_signal_line(line, lno)?);
    }
    if let Some((lno, _)) = lines.next() {
        return Err(HeaderError::TrailingLine {
            line: lno,
            declared: nsig,
        });
    }
    Ok(Header {
        record_name: name_field.to_string(),
        sampling_frequency,
        counter_frequency,
        samples_per_signal,
        base_time,
        base_date,
        signals,
        comments,
    })
}

fn parse_signal_line(line: &str, lno: usize) -> Result<SignalSpec, HeaderError> {
    // The description is the rest of the line after the 8th field and may hold spaces.
    let mut rest = line;
    let mut next = || -> Option<&str> {
        let t = rest.trim_start();
        if t.is_empty() {
            return None;
        }
        let end = t.find(|c: char| c.is_ascii_whitespace()).unwrap_or(t.len());
        let (f, r) = t.split_at(end);
        rest = r;
        Some(f)
    };
    let file_name = next()
        .ok_or(HeaderError::MissingField {
            line: lno,
            field: "file name",
        })?
        .to_string();
    let fmt_field = next().ok_or(HeaderError::MissingField {
        line: lno,
        field: "format",
    })?;

    // format ["x" spf] [":" skew] ["+" offset]
    let (fmt_field, byte_offset) = match fmt_field.split_once('+') {
        Some((a, b)) => (a, parse_num::<u64>(b, lno, "byte offset")?),
        None => (fmt_field, 0),
    };
    let (fmt_field, skew) = match fmt_field.split_once(':') {
        Some((a, b)) => (a, parse_num::<u32>(b, lno, "skew")?),
        None => (fmt_field, 0),
    };
    let (fmt_field, samples_per_frame) = match fmt_field.split_once('x') {
        Some((a, b)) => (a, parse_num::<u32>(b, lno, "samples per frame")?),
        None => (fmt_field, 1),
    };
    if samples_per_frame == 0 || samples_per_frame > 1_000_000 {
        return Err(HeaderError::BadField {
            line: lno,
            field: "samples per frame",
            value: samples_per_frame.to_string(),
        });
    }
    let code: u32 = parse_num(fmt_field, lno, "format")?;
    let format = Format::from_code(code).ok_or(HeaderError::UnsupportedFormat {
        line: lno,
        format: code,
    })?;

    // gain ["(" baseline ")"] ["/" units]
    let mut gain = 0.0;
    let mut baseline = None;
    let mut units = String::from("mV");
    if let Some(g) = next() {
        let (g, u) = match g.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (g, None),
        };
        if let Some(u) = u {
            units = u.to_string();
        }
        let g = match g.split_once('(') {
            Some((a, b)) => {
                let b = b.strip_suffix(')').ok_or(HeaderError::BadField {
                    line: lno,
                    field: "baseline",
                    value: b.to_string(),
                })?;
                baseline = Some(parse_num::<i32>(b, lno, "baseline")?);
                a
            }
            None => g,
        };
        gain = parse_num::<f64>(g, lno, "gain")?;
        if !gain.is_finite() || gain < 0.0 {
            return Err(HeaderError::BadField {
                line: lno,
                field: "gain",
                value: g.to_string(),
            });
        }
    }
    if gain == 0.0 {
        gain = 200.0;
    }
    let adc_resolution = match next() {
        Some(s) => parse_num::<u32>(s, lno, "ADC resolution")?,
        None => 0,
    };
    let adc_zero = match next() {
        Some(s) => parse_num::<i32>(s, lno, "ADC zero")?,
        None => 0,
    };
    let initial_value = match next() {
        Some(s) => Some(parse_num::<i32>(s, lno, "initial value")?),
        None => None,
    };
    let checksum = match next() {
        Some(s) => Some(parse_num::<i32>(s, lno, "checksum")? as i16),
        None => None,
    };
    let block_size = match next() {
        Some(s) => parse_num::<u32>(s, lno, "block size")?,
        None => 0,
    };
    let description = rest.trim().to_string();
    Ok(SignalSpec {
        file_name,
        format,
        samples_per_frame,
        skew,
        byte_offset,
        gain,
        baseline: baseline.unwrap_or(adc_zero),
        units,
        adc_resolution,
        adc_zero,
        initial_value,
        checksum,
        block_size,
        description,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mitdb_100() {
        let h = parse_header(
            "100 2 360 650000\r\n100.dat 212 200 11 1024 995 -22131 0 MLII\r\n100.dat 212 200 11 1024 1011 20052 0 V5\r\n# 69 M 1085 1629 x1\r\n# Aldomet, Inderal\r\n",
        )
        .unwrap();
        assert_eq!(h.record_name, "100");
        assert_eq!(h.sampling_frequency, 360.0);
        assert_eq!(h.samples_per_signal, Some(650000));
        assert_eq!(h.signals.len(), 2);
        let s = &h.signals[0];
        assert_eq!(s.format, Format::F212);
        assert_eq!(s.gain, 200.0);
        assert_eq!(s.baseline, 1024);
        assert_eq!(s.adc_zero, 1024);
        assert_eq!(s.initial_value, Some(995));
        assert_eq!(s.checksum, Some(-22131));
        assert_eq!(s.description, "MLII");
        assert_eq!(h.comments[1], "Aldomet, Inderal");
    }

    #[test]
    fn parses_offsets_units_baseline() {
        let h = parse_header(
            "A00001 1 300 9000\r\nA00001.mat 16x2:3+24 1000(5)/uV 16 0 -127 0 0 ECG lead I \r\n",
        )
        .unwrap();
        let s = &h.signals[0];
        assert_eq!(s.format, Format::F16);
        assert_eq!(s.byte_offset, 24);
        assert_eq!(s.samples_per_frame, 2);
        assert_eq!(s.skew, 3);
        assert_eq!(s.gain, 1000.0);
        assert_eq!(s.baseline, 5);
        assert_eq!(s.units, "uV");
        assert_eq!(s.description, "ECG lead I");
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(matches!(parse_header(""), Err(HeaderError::Empty)));
        assert!(matches!(parse_header("# only\n"), Err(HeaderError::Empty)));
        assert!(matches!(
            parse_header("r 2 360\nr.dat 212\n"),
            Err(HeaderError::MissingSignalLines {
                declared: 2,
                found: 1
            })
        ));
        assert!(matches!(
            parse_header("r 1 -5\nr.dat 16\n"),
            Err(HeaderError::BadField {
                field: "sampling frequency",
                ..
            })
        ));
        assert!(matches!(
            parse_header("r 1 360\nr.dat 999\n"),
            Err(HeaderError::UnsupportedFormat { format: 999, .. })
        ));
        assert!(matches!(
            parse_header("r/2 2 360\n"),
            Err(HeaderError::Unsupported { .. })
        ));
        assert!(matches!(
            parse_header("r 1 360\nr.dat 16 200(x\n"),
            Err(HeaderError::BadField {
                field: "baseline",
                ..
            })
        ));
        assert!(matches!(
            parse_header("r 1 360\nr.dat 16\nextra 16\n"),
            Err(HeaderError::TrailingLine { .. })
        ));
        assert!(matches!(
            parse_header("r 99999999999 360\n"),
            Err(HeaderError::BadField { .. })
        ));
    }
}
