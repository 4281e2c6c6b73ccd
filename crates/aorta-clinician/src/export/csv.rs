//! Opened results as CSV (RFC 4180; `docs/cli.md`, "results export").
//!
//! One row per result, in the order given, under [`HEADER`]. Times are
//! RFC 3339 / ISO 8601 UTC with milliseconds (`2023-11-14T22:13:20.250Z`,
//! truncated toward the past), and again as exact µs since the Unix epoch
//! (`start_us`, `end_us`) for programs. Numbers use `.` as the decimal
//! separator and no thousands separator; a value the result does not carry,
//! or NaN, is an empty cell. A strip is summarised (event, rate, channels,
//! samples per channel), never its samples; an HRV row carries its window's
//! coverage and whether it is partial (`hrv_coverage`, `hrv_partial`); a `beats` row carries the beat
//! count (the beat times are in the WFDB export). A field holding a comma,
//! quote or line break is quoted, quotes doubled.

use aorta_stream::ecg::EcgResult;
use aorta_worker::clinician::OpenedResult;

use super::{event_name, iso_ms, pause_duration};

/// The header row (`docs/cli.md` describes each column).
pub const HEADER: &str = "patient,type,start,end,start_us,end_us,bpm,beats,n_nn,mean_nn_ms,sdnn_ms,rmssd_ms,pnn50_pct,lf_ms2,hf_ms2,lf_hf,sd1_ms,sd2_ms,event,pause_s,strip_fs_hz,strip_channels,strip_samples,first_missing_sequence,missing_frames,hrv_coverage,hrv_partial";

const COLUMNS: usize = 27;

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn num(v: f64) -> String {
    if v.is_finite() {
        // Rust's `Display` of f64 is the shortest exact decimal, with `.`
        // and never an exponent.
        format!("{v}")
    } else {
        String::new()
    }
}

/// The row of one result (without a line ending).
pub fn row(r: &OpenedResult) -> String {
    let mut c = vec![String::new(); COLUMNS];
    let mut set = |i: usize, v: String| {
        if let Some(cell) = c.get_mut(i) {
            *cell = v;
        }
    };
    set(0, quote(&r.patient));
    set(2, iso_ms(r.start).unwrap_or_default());
    set(3, iso_ms(r.end).unwrap_or_default());
    set(4, r.start.to_string());
    set(5, r.end.to_string());
    let kind = match &r.result {
        EcgResult::HeartRate { beats, bpm } => {
            set(6, num(*bpm));
            set(7, beats.to_string());
            "heart_rate"
        }
        EcgResult::Hrv(h) => {
            set(8, h.n_nn.to_string());
            for (i, v) in [
                h.mean_nn, h.sdnn, h.rmssd, h.pnn50, h.lf, h.hf, h.lf_hf, h.sd1, h.sd2,
            ]
            .into_iter()
            .enumerate()
            {
                set(9 + i, num(v));
            }
            // Coverage and the partial flag: empty where the result predates
            // them (docs/hrv.md, "Minimum data per metric").
            if let Some(cov) = h.coverage {
                set(25, num(cov));
                set(26, h.partial.to_string());
            }
            "hrv"
        }
        EcgResult::Rhythm(e) => {
            set(18, quote(&event_name(e)));
            set(19, pause_duration(e).map(num).unwrap_or_default());
            "rhythm"
        }
        EcgResult::Strip(s) => {
            set(18, quote(&event_name(&s.event)));
            set(20, num(s.fs));
            set(21, s.leads.len().to_string());
            let n = s
                .leads
                .iter()
                .map(|l| l.samples_uv.len())
                .max()
                .unwrap_or(0);
            set(22, n.to_string());
            "strip"
        }
        EcgResult::Beats(b) => {
            set(7, b.r_peaks_us.len().to_string());
            "beats"
        }
        EcgResult::Gap {
            first_missing_sequence,
            missing_frames,
        } => {
            set(23, first_missing_sequence.to_string());
            set(24, missing_frames.to_string());
            "gap"
        }
    };
    set(1, kind.to_owned());
    c.join(",")
}

/// `results` as CSV: [`HEADER`], then one row per result, each line ended
/// by `\n`.
pub fn to_csv(results: &[OpenedResult]) -> String {
    let mut out = String::with_capacity(HEADER.len() + 1 + results.len() * 96);
    out.push_str(HEADER);
    out.push('\n');
    for r in results {
        out.push_str(&row(r));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        reason = "a test fails by panicking"
    )]
    use super::*;
    use aorta_stream::ecg::HrvSummary;

    fn at(start: i64, end: i64, result: EcgResult) -> OpenedResult {
        OpenedResult {
            patient: "SN-1".into(),
            start,
            end,
            result,
        }
    }

    /// A minimal RFC 4180 reader (no quoted line breaks in these rows).
    fn cells(line: &str) -> Vec<String> {
        let mut out = vec![String::new()];
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(ch) = chars.next() {
            match (ch, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    chars.next();
                    out.last_mut().unwrap().push('"');
                }
                ('"', _) => quoted = !quoted,
                (',', false) => out.push(String::new()),
                (c, _) => out.last_mut().unwrap().push(c),
            }
        }
        out
    }

    #[test]
    fn times_round_trip_and_every_row_has_every_column() {
        let nan = f64::NAN;
        let rows = vec![
            at(
                1_700_000_000_250_999,
                1_700_000_010_250_999,
                EcgResult::HeartRate { beats: 1, bpm: nan },
            ),
            at(
                1_700_000_000_000_000,
                1_700_000_300_000_000,
                EcgResult::Hrv(HrvSummary {
                    n_nn: 300,
                    mean_nn: 812.5,
                    sdnn: 41.25,
                    rmssd: 30.0,
                    pnn50: 7.5,
                    lf: 900.0,
                    hf: 450.0,
                    lf_hf: 2.0,
                    sd1: nan,
                    sd2: 55.0,
                    coverage: Some(0.5),
                    partial: true,
                }),
            ),
            OpenedResult {
                patient: "odd,\"serial\"".into(),
                ..at(
                    1_700_000_001_000_000,
                    1_700_000_001_000_001,
                    EcgResult::Gap {
                        first_missing_sequence: 7,
                        missing_frames: 3,
                    },
                )
            },
        ];
        let text = to_csv(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER);
        let header = cells(HEADER);
        assert_eq!(header.len(), COLUMNS);
        for (line, r) in lines[1..].iter().zip(&rows) {
            let c = cells(line);
            assert_eq!(c.len(), COLUMNS, "{line}");
            assert_eq!(c[0], r.patient);
            // ISO times parse back to the µs columns, truncated to ms.
            for (iso_col, us_col, us) in [(2, 4, r.start), (3, 5, r.end)] {
                let t = humantime::parse_rfc3339(&c[iso_col]).unwrap();
                let back = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64;
                assert_eq!(back, us - us.rem_euclid(1000), "{}", c[iso_col]);
                assert_eq!(c[us_col].parse::<i64>().unwrap(), us);
                assert!(c[iso_col].ends_with('Z'));
            }
        }
        let hr = cells(lines[1]);
        assert_eq!(
            (hr[1].as_str(), hr[6].as_str(), hr[7].as_str()),
            ("heart_rate", "", "1")
        );
        assert_eq!(hr[2], "2023-11-14T22:13:20.250Z");
        let hrv = cells(lines[2]);
        assert_eq!(hrv[10], "41.25");
        assert_eq!(hrv[16], "", "NaN is an empty cell");
        assert_eq!(hrv[17], "55");
        assert_eq!((hrv[25].as_str(), hrv[26].as_str()), ("0.5", "true"));
        let gap = cells(lines[3]);
        assert_eq!((gap[23].as_str(), gap[24].as_str()), ("7", "3"));
        assert!(lines[3].starts_with("\"odd,\"\"serial\"\"\","));
    }
}
