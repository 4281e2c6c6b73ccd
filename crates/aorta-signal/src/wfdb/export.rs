//! A record's samples and annotations as text, as WFDB's `rdsamp` and
//! `rdann` print them (`aorta wfdb export`).
//!
//! Samples ([`write_samples`]): `rdsamp -p -v` (tab-separated, right-aligned
//! columns) or `rdsamp -c -p -v` (comma-separated): a line of column names
//! (`'Elapsed time'` then each signal's description), a line of units
//! (`'seconds'` then each signal's units), then one line per frame: the
//! elapsed time in seconds and each signal in physical units
//! (`(digital − baseline) / gain`). Where `rdsamp -p` rounds values to 3
//! decimals (`-P`: 8), they are written exactly here: the shortest decimal
//! that reads back to the same `f64`. A sample holding the format's invalid-sample
//! value (WFDB's `WFDB_INVALID_SAMPLE`, the format's smallest value) is
//! written `-`, as `rdsamp` does. A signal with several samples per frame is
//! written as their mean, as WFDB's `getvec` returns it.
//!
//! Annotations ([`write_annotations`]): one line per annotation as `rdann`
//! prints it: time (`M:SS.mmm`), sample number, mnemonic, subtype, channel,
//! number and, after a tab, the aux text.

use std::io::{self, Write};

use super::{Annotation, Format, Record, wfdb_time};

/// Field separator of [`write_samples`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Separator {
    /// Tab (`rdsamp -p -v`).
    Tab,
    /// Comma (`rdsamp -c -p -v`).
    Comma,
}

impl Separator {
    fn as_str(self) -> &'static str {
        match self {
            Separator::Tab => "\t",
            Separator::Comma => ",",
        }
    }
}

/// Decimal places that keep consecutive sample times at `fs` Hz distinct
/// (at least 3, as `rdsamp` writes milliseconds).
fn time_decimals(fs: f64) -> usize {
    let mut d = 3;
    while d < 9 && 10f64.powi(d as i32) < fs {
        d += 1;
    }
    d
}

/// The value WFDB reserves for "no sample" in `format`.
fn invalid_sample(format: Format) -> i32 {
    format.range().0
}

/// Writes the record's samples in physical units (see the module doc).
pub fn write_samples(rec: &Record, sep: Separator, out: &mut impl Write) -> io::Result<()> {
    let h = &rec.header;
    let csv = sep == Separator::Comma;
    // Column headings and units: quoted for CSV, right-aligned columns
    // (time 15 wide, signals 7) otherwise, as rdsamp prints them.
    let mut line = if csv {
        String::from("'Elapsed time'")
    } else {
        format!("{:>15}", "Elapsed time")
    };
    for sig in &h.signals {
        line.push_str(&if csv {
            format!(",'{}'", sig.description)
        } else {
            format!("\t{:>7}", sig.description)
        });
    }
    writeln!(out, "{line}")?;
    let mut line = if csv {
        String::from("'seconds'")
    } else {
        format!("{:>15}", "(seconds)")
    };
    for sig in &h.signals {
        line.push_str(&if csv {
            format!(",'{}'", sig.units)
        } else {
            format!("\t{:>7}", format!("({})", sig.units))
        });
    }
    writeln!(out, "{line}")?;
    let frames = h
        .signals
        .iter()
        .zip(&rec.samples)
        .map(|(sig, v)| v.len() / sig.samples_per_frame.max(1) as usize)
        .min()
        .unwrap_or(0);
    let dec = time_decimals(h.sampling_frequency);
    let (s, width) = (sep.as_str(), if csv { 0 } else { 7 });
    for f in 0..frames {
        line.clear();
        let t = format!("{:.dec$}", f as f64 / h.sampling_frequency);
        line.push_str(&if csv { t } else { format!("{t:>15}") });
        for (sig, v) in h.signals.iter().zip(&rec.samples) {
            let spf = sig.samples_per_frame.max(1) as usize;
            let group = v.get(f * spf..(f + 1) * spf).unwrap_or_default();
            line.push_str(s);
            let invalid = invalid_sample(sig.format);
            let value = if group.is_empty() || group.contains(&invalid) {
                "-".to_owned()
            } else {
                let mean = group.iter().map(|&d| f64::from(d)).sum::<f64>() / spf as f64;
                format!("{}", (mean - f64::from(sig.baseline)) / sig.gain)
            };
            line.push_str(&format!("{value:>width$}"));
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Writes annotations as `rdann` prints them; `fs` converts sample numbers
/// to times.
pub fn write_annotations(anns: &[Annotation], fs: f64, out: &mut impl Write) -> io::Result<()> {
    for a in anns {
        write!(
            out,
            "{:>12}  {:>7}{:>6}{:>5}{:>5}{:>5}",
            wfdb_time(a.sample as f64 / fs),
            a.sample,
            a.symbol(),
            a.subtype,
            a.chan,
            a.num
        )?;
        match &a.aux {
            Some(aux) => writeln!(out, "\t{aux}")?,
            None => writeln!(out)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wfdb::parse_header;

    #[test]
    fn samples_in_physical_units_with_invalid_as_dash() {
        let header = parse_header(
            "r 2 360 3\nr.dat 212 200 11 1024 0 0 0 MLII\nr.dat 16 1000(0)/uV 16 0 0 0 0 V5\n",
        )
        .unwrap();
        let rec = Record {
            header,
            samples: vec![vec![995, 1024, -2048], vec![-32768, 5, -1]],
        };
        let mut out = Vec::new();
        write_samples(&rec, Separator::Comma, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "'Elapsed time','MLII','V5'\n'seconds','mV','uV'\n0.000,-0.145,-\n0.003,0,0.005\n0.006,-,-0.001\n"
        );
    }

    #[test]
    fn tab_separated_columns_as_rdsamp() {
        let header = parse_header("r 1 360 2\nr.dat 212 200 11 1024 0 0 0 MLII\n").unwrap();
        let rec = Record {
            header,
            samples: vec![vec![995, -2048]],
        };
        let mut out = Vec::new();
        write_samples(&rec, Separator::Tab, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "   Elapsed time\t   MLII\n      (seconds)\t   (mV)\n          0.000\t -0.145\n          0.003\t      -\n"
        );
    }

    #[test]
    fn annotations_as_rdann() {
        let a = Annotation {
            sample: 18,
            code: 28,
            subtype: 0,
            chan: 0,
            num: 0,
            aux: Some("(N".into()),
        };
        let mut out = Vec::new();
        write_annotations(&[a], 360.0, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "    0:00.050       18     +    0    0    0\t(N\n"
        );
    }
}
