//! The worker configuration file and the worker's measurement.
//!
//! The configuration file (TOML) is part of the worker's measurement, so the
//! broker's policy pins the analysis parameters along with the binary.

use std::path::Path;

use aorta_enclave::evidence::Measurement;

use crate::WorkerError;

/// The analysis parameters of `aorta worker stream`, from the worker
/// configuration file (TOML). The file is part of the worker's measurement,
/// so the broker's policy pins the parameters along with the binary.
#[derive(serde::Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Heart-rate sliding window length, seconds.
    pub hr_window_s: f64,
    /// Heart-rate window slide, seconds.
    pub hr_slide_s: f64,
    /// HRV tumbling window, seconds (Task Force: 300).
    pub hrv_window_s: f64,
    /// Allowed out-of-orderness of a device's frames, seconds (later ones
    /// are dropped and counted).
    pub out_of_orderness_s: f64,
    /// Beat-times tumbling window, seconds.
    pub beats_window_s: f64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            hr_window_s: 10.0,
            hr_slide_s: 5.0,
            hrv_window_s: 300.0,
            out_of_orderness_s: 0.0,
            beats_window_s: 30.0,
        }
    }
}

impl StreamConfig {
    /// Parses and checks the configuration (empty bytes: the defaults).
    pub fn parse(bytes: &[u8]) -> Result<StreamConfig, WorkerError> {
        let bad = |m: String| WorkerError::Config(format!("worker config: {m}"));
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8".into()))?;
        let c: StreamConfig = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let ok = |v: f64, lo: f64, hi: f64| v.is_finite() && v >= lo && v <= hi;
        if !ok(c.hr_window_s, 1.0, 3600.0) {
            return Err(bad("hr_window_s must be in [1, 3600]".into()));
        }
        if !ok(c.hr_slide_s, 0.1, c.hr_window_s) {
            return Err(bad("hr_slide_s must be in [0.1, hr_window_s]".into()));
        }
        if !ok(c.hrv_window_s, 30.0, 86_400.0) {
            return Err(bad("hrv_window_s must be in [30, 86400]".into()));
        }
        if !ok(c.out_of_orderness_s, 0.0, 3600.0) {
            return Err(bad("out_of_orderness_s must be in [0, 3600]".into()));
        }
        if !ok(c.beats_window_s, 1.0, 3600.0) {
            return Err(bad("beats_window_s must be in [1, 3600]".into()));
        }
        // Windows of one length would give two kinds of result one id.
        c.ecg().check().map_err(|e| bad(e.to_string()))?;
        Ok(c)
    }

    fn micros(s: f64) -> i64 {
        (s * 1e6).round() as i64
    }

    /// The ECG operator's parameters.
    pub fn ecg(&self) -> aorta_stream::ecg::EcgConfig {
        aorta_stream::ecg::EcgConfig {
            hr_window: Self::micros(self.hr_window_s),
            hr_slide: Self::micros(self.hr_slide_s),
            hrv_window: Self::micros(self.hrv_window_s),
            beats_window: Self::micros(self.beats_window_s),
            ..aorta_stream::ecg::EcgConfig::default()
        }
    }

    /// The engine's parameters.
    pub fn engine(&self) -> aorta_stream::EngineConfig {
        aorta_stream::EngineConfig {
            out_of_orderness: Self::micros(self.out_of_orderness_s),
            ..aorta_stream::EngineConfig::default()
        }
    }
}

/// The bytes of the worker configuration file (none: empty, the defaults).
pub fn read_config(config: Option<&Path>) -> Result<Vec<u8>, WorkerError> {
    match config {
        Some(p) => std::fs::read(p).map_err(|e| {
            WorkerError::Config(format!("cannot read worker config {}: {e}", p.display()))
        }),
        None => Ok(Vec::new()),
    }
}

/// The measurement of this executable with the configuration file `config`
/// (what a policy lists in `allowed_measurements` for sim workers).
pub fn measure(config: Option<&Path>) -> Result<Measurement, WorkerError> {
    measure_bytes(&read_config(config)?)
}

/// The measurement of this executable with configuration bytes `config`:
/// a worker measures the very bytes it then runs with (read once, so the
/// file cannot change between the two).
pub fn measure_bytes(config: &[u8]) -> Result<Measurement, WorkerError> {
    Measurement::of_current_exe(config)
        .map_err(|e| WorkerError::Config(format!("cannot read this executable to measure it: {e}")))
}

#[cfg(test)]
mod tests {
    use super::StreamConfig;

    #[test]
    fn stream_config_defaults_and_hostile_values() {
        assert_eq!(StreamConfig::parse(b"").unwrap(), StreamConfig::default());
        let c =
            StreamConfig::parse(b"hr_window_s = 20\nhr_slide_s = 2\nhrv_window_s = 120\n").unwrap();
        assert_eq!(c.ecg().hr_slide, 2_000_000);
        assert_eq!(c.ecg().hrv_window, 120_000_000);
        for bad in [
            &b"hr_slide_s = 0"[..],
            b"hr_slide_s = 11",
            b"hr_window_s = nan",
            b"hrv_window_s = 1",
            b"out_of_orderness_s = -1",
            b"what = 1",
            b"\xff\xfe",
            b"hr_window_s = \"ten\"",
            // Heart-rate and beat-times results would share ids.
            b"hr_window_s = 30",
            b"beats_window_s = 0.5",
        ] {
            assert!(
                StreamConfig::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
