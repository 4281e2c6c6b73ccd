//! How much data each HRV metric needs, and how much of a window its beats
//! cover (see `docs/hrv.md`, "Minimum data per metric").
//!
//! A metric computed from less NN time than its minimum is withheld (NaN,
//! JSON `null`) by [`HrvReport::withhold_short`]; a window whose beat
//! intervals cover less than [`MIN_COVERAGE`] of its length is *partial*
//! ([`WindowCoverage`]) and is never presented as a full-length result.

use super::HrvReport;

/// NN seconds needed for the beat-to-beat metrics and the mean level
/// (`mean_nn`, `mean_hr`, `min_hr`, `max_hr`, `rmssd`, `sdsd`, `pnn50`,
/// `pnn20`, `sd1`): 10 s, the shortest recording Munoz et al. 2015 (PLoS One
/// 10:e0138921, 3,387 adults) found valid for RMSSD against 240–300 s.
pub const MIN_NN_S_BEAT: f64 = 10.0;
/// NN seconds needed for the spread and shape metrics (`sdnn`, `sd2`,
/// `sd1_sd2`, `hti`, `tinn`, `sampen`, `dfa_alpha1`): 30 s, Munoz et al.'s
/// recommendation for SDNN.
pub const MIN_NN_S_SPREAD: f64 = 30.0;
/// NN seconds needed for `hf`: 60 s, the Task Force's "approximately 1 min
/// is needed to assess the HF components" (ten periods of 0.15 Hz).
pub const MIN_NN_S_HF: f64 = 60.0;
/// NN seconds needed for `lf` and everything that divides by it (`lf_hf`,
/// `lfnu`, `hfnu`): 120 s, the Task Force's "approximately 2 min are needed
/// to address the LF component".
pub const MIN_NN_S_LF: f64 = 120.0;
/// NN seconds needed for `vlf` and `total_power`: 240 s, four fifths of the
/// Task Force's 5-minute short-term recording (the Task Force calls VLF from
/// 5 minutes or less "a dubious measure"; aorta reports it, as NeuroKit2
/// does, only from nearly whole 5-minute windows).
pub const MIN_NN_S_VLF: f64 = 240.0;
/// Fraction of a window its beat intervals must cover for the window to be
/// complete (0.9: a 5-minute window missing more than 30 s is partial).
pub const MIN_COVERAGE: f64 = 0.9;

impl HrvReport {
    /// Sets to NaN every metric whose family needs more NN time than
    /// [`HrvReport::nn_s`] (the minima above); returns how many metrics were
    /// withheld. Metrics already NaN stay NaN.
    pub fn withhold_short(&mut self) -> usize {
        let s = self.nn_s;
        let mut n = 0;
        let mut cut = |need: f64, vals: &mut [&mut f64]| {
            if s < need {
                for v in vals.iter_mut() {
                    if !v.is_nan() {
                        **v = f64::NAN;
                        n += 1;
                    }
                }
            }
        };
        let t = &mut self.time;
        let f = &mut self.freq;
        let nl = &mut self.nonlinear;
        cut(
            MIN_NN_S_BEAT,
            &mut [
                &mut t.mean_nn,
                &mut t.mean_hr,
                &mut t.min_hr,
                &mut t.max_hr,
                &mut t.rmssd,
                &mut t.sdsd,
                &mut t.pnn50,
                &mut t.pnn20,
                &mut nl.sd1,
            ],
        );
        cut(
            MIN_NN_S_SPREAD,
            &mut [
                &mut t.sdnn,
                &mut t.hti,
                &mut t.tinn,
                &mut nl.sd2,
                &mut nl.sd1_sd2,
                &mut nl.sampen,
                &mut nl.dfa_alpha1,
            ],
        );
        cut(MIN_NN_S_HF, &mut [&mut f.hf]);
        cut(
            MIN_NN_S_LF,
            &mut [&mut f.lf, &mut f.lf_hf, &mut f.lfnu, &mut f.hfnu],
        );
        cut(MIN_NN_S_VLF, &mut [&mut f.vlf, &mut f.total_power]);
        n
    }
}

/// How much of an analysis window its beats cover.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct WindowCoverage {
    /// Fraction of the window spanned by beat intervals inside it (0..=1;
    /// intervals across a gap or a window edge do not count).
    pub coverage: f64,
    /// True when `coverage` < [`MIN_COVERAGE`]: the window is not a
    /// full-length result.
    pub partial: bool,
}

impl WindowCoverage {
    /// Coverage of a `window_s`-second window by `covered_s` seconds of beat
    /// intervals.
    pub fn new(covered_s: f64, window_s: f64) -> Self {
        let c = if window_s > 0.0 && covered_s.is_finite() {
            (covered_s / window_s).clamp(0.0, 1.0)
        } else {
            0.0
        };
        Self {
            coverage: c,
            partial: c < MIN_COVERAGE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ArtefactRule, HrvEngine, HrvOptions, NnSeries};
    use super::*;

    fn report(n: usize) -> HrvReport {
        let rr: Vec<f64> = (0..n)
            .map(|i| 800.0 + 40.0 * (i as f64 * 0.7).sin())
            .collect();
        let nn = NnSeries::from_rr(&rr, &ArtefactRule::none()).unwrap();
        HrvEngine::new()
            .report(&nn, &HrvOptions::default())
            .unwrap()
    }

    #[test]
    fn each_family_needs_its_minimum() {
        // 8 NN of ~0.8 s: 6.4 s, below every minimum.
        let mut r = report(8);
        assert!(r.time.rmssd.is_finite() && r.time.sdnn.is_finite());
        assert!(r.withhold_short() > 0);
        assert!(r.time.rmssd.is_nan() && r.time.mean_nn.is_nan() && r.time.sdnn.is_nan());
        // 50 NN: 40 s: beat-to-beat and spread, no spectrum.
        let mut r = report(50);
        r.withhold_short();
        assert!(r.time.rmssd.is_finite() && r.time.sdnn.is_finite());
        assert!(r.freq.hf.is_nan() && r.freq.lf.is_nan() && r.freq.vlf.is_nan());
        // 100 NN (80 s): HF but not LF.
        let mut r = report(100);
        r.withhold_short();
        assert!(r.freq.hf.is_finite() && r.freq.lf.is_nan() && r.freq.lf_hf.is_nan());
        // 375 NN (300 s): everything the series defines.
        let mut r = report(375);
        let before = r;
        assert_eq!(r.withhold_short(), 0);
        assert_eq!(format!("{r:?}"), format!("{before:?}"));
    }

    #[test]
    fn coverage_is_a_clamped_fraction() {
        assert_eq!(
            WindowCoverage::new(6.0, 300.0),
            WindowCoverage {
                coverage: 0.02,
                partial: true
            }
        );
        assert!(!WindowCoverage::new(299.0, 300.0).partial);
        assert_eq!(WindowCoverage::new(400.0, 300.0).coverage, 1.0);
        assert!(WindowCoverage::new(f64::NAN, 300.0).partial);
        assert!(WindowCoverage::new(10.0, 0.0).partial);
    }
}
