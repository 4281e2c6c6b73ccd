//! Standard exports of opened results (`aorta results export`):
//!
//! - [`fhir`]: a FHIR R4 (4.0.1) `collection` Bundle of Observations, with
//!   a `Device` and a pseudonymous `Patient` per device serial
//!   (`docs/fhir.md`);
//! - [`csv`]: one row per result, ISO-8601 UTC times (`docs/cli.md`,
//!   "results export");
//! - [`wfdb`]: per patient, a WFDB header and an annotation file of the
//!   detected beats and rhythm events, readable by PhysioNet's tools and
//!   wfdb-python's `rdann`.
//!
//! Every export is a pure function of the results, in the order given:
//! the same results give the same bytes (FHIR ids are derived from the
//! content, never random, and nothing reads the clock).
//!
//! ```
//! use aorta_clinician::export;
//! use aorta_stream::ecg::EcgResult;
//! use aorta_worker::clinician::OpenedResult;
//! let hr = OpenedResult {
//!     patient: "SN-1".into(),
//!     start: 1_700_000_000_000_000,
//!     end: 1_700_000_010_000_000,
//!     result: EcgResult::HeartRate { beats: 12, bpm: 72.0 },
//! };
//! let bundle = export::fhir::bundle(&[hr.clone()])?;
//! assert_eq!(bundle["type"], "collection");
//! let csv = export::csv::to_csv(&[hr]);
//! assert!(csv.lines().nth(1).unwrap_or_default().contains("2023-11-14T22:13:20.000Z"));
//! # Ok::<(), export::ExportError>(())
//! ```

pub mod csv;
pub mod fhir;
pub mod wfdb;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use aorta_worker::clinician::OpenedResult;

/// Largest `--from` file read, bytes (a whole day of a ward's results with
/// strips is far below it).
pub const MAX_INPUT_BYTES: u64 = 1 << 30;

/// Why an export could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The input file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The input is not what `aorta results fetch --json` prints.
    #[error("{path}: not a JSON array of results as `aorta results fetch --json` prints: {detail}")]
    BadInput {
        /// The file.
        path: PathBuf,
        /// What is wrong (the JSON parser's message, with line and column).
        detail: String,
    },
    /// The input is larger than [`MAX_INPUT_BYTES`].
    #[error("{path}: larger than {max} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The bound.
        max: u64,
    },
    /// A value the format cannot carry (a time before 1970 or after 9999,
    /// a sampling rate that is not positive).
    #[error("{0}")]
    Unrepresentable(String),
    /// The WFDB annotation encoder refused the annotations.
    #[error("WFDB annotations of {record}: {source}")]
    Wfdb {
        /// The record.
        record: String,
        /// The encoder's error.
        source: aorta_signal::wfdb::AnnotationError,
    },
    /// Posting the Bundle failed: the network, or a non-2xx answer.
    #[error("posting the FHIR Bundle to {url}: {detail}")]
    Post {
        /// The FHIR server's URL.
        url: String,
        /// What went wrong (the status and the start of the answer).
        detail: String,
    },
}

/// Reads the JSON array `aorta results fetch --json` prints (at most
/// [`MAX_INPUT_BYTES`]).
pub fn read_results(path: &Path) -> Result<Vec<OpenedResult>, ExportError> {
    let read = |source| ExportError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    f.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(ExportError::TooLarge {
            path: path.to_path_buf(),
            max: MAX_INPUT_BYTES,
        });
    }
    parse_results(&bytes).map_err(|detail| ExportError::BadInput {
        path: path.to_path_buf(),
        detail,
    })
}

/// Parses the JSON array `aorta results fetch --json` prints.
pub fn parse_results(bytes: &[u8]) -> Result<Vec<OpenedResult>, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// The last µs RFC 3339 can write (9999-12-31T23:59:59.999999Z).
const MAX_US: i64 = 253_402_300_799_999_999;

/// µs since the epoch as RFC 3339 UTC with milliseconds
/// (`2023-11-14T22:13:20.250Z`, truncated toward the past), or `None`
/// outside 1970..=9999.
pub fn iso_ms(us: i64) -> Option<String> {
    if !(0..=MAX_US).contains(&us) {
        return None;
    }
    let ms = u64::try_from(us / 1000).ok()?;
    Some(humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string())
}

fn iso(us: i64) -> Result<String, ExportError> {
    iso_ms(us).ok_or_else(|| {
        ExportError::Unrepresentable(format!(
            "time {us} µs since the epoch is outside 1970..9999"
        ))
    })
}

/// A name-based UUID (RFC 9562 version 8, SHA-256): the first 16 bytes of
/// SHA-256(`aorta-fhir-v1` NUL `kind` NUL `name`), with the version and
/// variant bits set, as `8-4-4-4-12` lower-case hex.
pub fn content_uuid(kind: &str, name: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"aorta-fhir-v1\0");
    ctx.update(kind.as_bytes());
    ctx.update(b"\0");
    ctx.update(name);
    let d = ctx.finish();
    let mut b = [0u8; 16];
    for (o, i) in b.iter_mut().zip(d.as_ref()) {
        *o = *i;
    }
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = aorta_base::hex::encode(&b);
    format!(
        "{}-{}-{}-{}-{}",
        h.get(0..8).unwrap_or_default(),
        h.get(8..12).unwrap_or_default(),
        h.get(12..16).unwrap_or_default(),
        h.get(16..20).unwrap_or_default(),
        h.get(20..32).unwrap_or_default()
    )
}

/// The snake_case name of a rhythm event kind, as in the results' JSON
/// (`af_onset`, `pause`…).
pub fn event_name(e: &aorta_signal::rhythm::RhythmEvent) -> String {
    serde_json::to_value(e)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The length of a pause event, seconds.
pub fn pause_duration(e: &aorta_signal::rhythm::RhythmEvent) -> Option<f64> {
    match e.kind {
        aorta_signal::rhythm::RhythmEventKind::Pause { duration_s } => Some(duration_s),
        _ => None,
    }
}

/// A one-line summary of a result for people (`aorta results fetch`):
/// `heart_rate 72.0 bpm (12 beats)`, `strip af_onset 2 leads 10.0 s @ 360 Hz`,
/// `beats 412`…
pub fn summary(r: &aorta_stream::ecg::EcgResult) -> String {
    use aorta_stream::ecg::EcgResult;
    let num = |v: f64, d: usize| {
        if v.is_finite() {
            format!("{v:.d$}")
        } else {
            "-".to_owned()
        }
    };
    match r {
        EcgResult::HeartRate { beats, bpm } => {
            format!("heart_rate {} bpm ({beats} beats)", num(*bpm, 1))
        }
        EcgResult::Hrv(h) => format!(
            "hrv n_nn {} mean_nn {} ms sdnn {} ms rmssd {} ms pnn50 {} % lf {} hf {} ms² lf/hf {} sd1 {} sd2 {} ms",
            h.n_nn,
            num(h.mean_nn, 1),
            num(h.sdnn, 1),
            num(h.rmssd, 1),
            num(h.pnn50, 1),
            num(h.lf, 1),
            num(h.hf, 1),
            num(h.lf_hf, 2),
            num(h.sd1, 1),
            num(h.sd2, 1)
        ),
        EcgResult::Rhythm(e) => match pause_duration(e) {
            Some(d) => format!("rhythm {} {} s", event_name(e), num(d, 1)),
            None => format!("rhythm {}", event_name(e)),
        },
        EcgResult::Strip(s) => {
            let n = s
                .leads
                .iter()
                .map(|l| l.samples_uv.len())
                .max()
                .unwrap_or(0);
            let secs = if s.fs > 0.0 {
                n as f64 / s.fs
            } else {
                f64::NAN
            };
            format!(
                "strip {} {} lead{} {} s @ {} Hz",
                event_name(&s.event),
                s.leads.len(),
                if s.leads.len() == 1 { "" } else { "s" },
                num(secs, 1),
                num(s.fs, 0)
            )
        }
        EcgResult::Beats(b) => format!("beats {}", b.r_peaks_us.len()),
        EcgResult::Gap {
            first_missing_sequence,
            missing_frames,
        } => {
            format!("gap {missing_frames} frame(s) missing from sequence {first_missing_sequence}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_uuids() {
        assert_eq!(iso_ms(0).as_deref(), Some("1970-01-01T00:00:00.000Z"));
        assert_eq!(
            iso_ms(1_700_000_000_250_999).as_deref(),
            Some("2023-11-14T22:13:20.250Z")
        );
        assert_eq!(iso_ms(-1), None);
        assert_eq!(iso_ms(MAX_US + 1), None);
        let u = content_uuid("Patient", b"SN-1");
        assert_eq!(u.len(), 36);
        assert_eq!(u.as_bytes()[14], b'8', "version 8: {u}");
        assert!(matches!(u.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{u}");
        assert_eq!(u, content_uuid("Patient", b"SN-1"));
        assert_ne!(u, content_uuid("Device", b"SN-1"));
    }
}
