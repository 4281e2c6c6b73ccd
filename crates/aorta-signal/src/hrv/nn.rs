//! NN series: normal-to-normal intervals with their times, built from RR
//! intervals or beat annotations, with a documented artefact rule.

use super::HrvError;

/// Longest interval accepted as an RR interval at all (60 s). Anything longer
/// is not a heartbeat interval; refusing it also bounds every buffer.
pub const MAX_INTERVAL_MS: f64 = 60_000.0;
/// Longest span an [`NnSeries`] may cover (7 days), which bounds the 4 Hz
/// resampled series of the frequency domain to ~2.4 M samples.
pub const MAX_SPAN_S: f64 = 7.0 * 86_400.0;
/// Gap tolerance (ms) when successiveness is inferred from times, as
/// NeuroKit2's `_intervals_successive` (`thresh_unequal=10`).
pub const SUCCESSIVE_TOLERANCE_MS: f64 = 10.0;

/// Which RR intervals are dropped as artefacts or ectopic-related before the
/// HRV metrics (Task Force 1996: "only NN intervals", ectopic beats and
/// artefacts removed; the rule itself is left to the analyst).
///
/// aorta's default ([`ArtefactRule::default`]) is the two-stage rule used in
/// Kubios-style preprocessing and in cardio-rs:
/// 1. **range**: drop RR outside `[300, 2000]` ms (200–30 bpm);
/// 2. **local median**: drop RR deviating by more than 20 % from the median of
///    up to 5 in-range neighbours on each side (the 20 % criterion of Malik et
///    al., "Heart rate variability in relation to prognosis after myocardial
///    infarction", Am J Cardiol 1989; measured against a local median instead
///    of the previous interval so one ectopic beat does not also remove the
///    compensatory pause's neighbour).
///
/// [`ArtefactRule::none`] keeps every interval; agreement tests use it so that
/// aorta and NeuroKit2 see the identical NN series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArtefactRule {
    /// Keep only RR in `[min, max]` ms.
    pub range_ms: Option<(f64, f64)>,
    /// Drop RR with `|rr − median| > max_rel_dev · median`, the median taken
    /// over up to `half_window` in-range neighbours on each side.
    pub local_median: Option<LocalMedian>,
}

/// Parameters of the local-median stage of [`ArtefactRule`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalMedian {
    /// Largest accepted relative deviation (0.2 = 20 %).
    pub max_rel_dev: f64,
    /// Neighbours taken on each side.
    pub half_window: usize,
}

impl Default for ArtefactRule {
    fn default() -> Self {
        Self {
            range_ms: Some((300.0, 2000.0)),
            local_median: Some(LocalMedian {
                max_rel_dev: 0.2,
                half_window: 5,
            }),
        }
    }
}

impl ArtefactRule {
    /// Keeps every interval (no artefact handling).
    pub fn none() -> Self {
        Self {
            range_ms: None,
            local_median: None,
        }
    }

    /// Marks which of `rr` (ms) to keep; `candidate[i] == false` intervals are
    /// dropped regardless and not used as neighbours.
    fn keep(&self, rr: &[f64], candidate: &[bool]) -> Vec<bool> {
        let mut keep: Vec<bool> = rr
            .iter()
            .zip(candidate)
            .map(|(&r, &c)| c && self.range_ms.is_none_or(|(lo, hi)| r >= lo && r <= hi))
            .collect();
        let Some(lm) = self.local_median else {
            return keep;
        };
        let in_range = keep.clone();
        let mut buf: Vec<f64> = Vec::with_capacity(2 * lm.half_window);
        for (i, k) in keep.iter_mut().enumerate() {
            if !*k {
                continue;
            }
            buf.clear();
            let lo = i.saturating_sub(lm.half_window);
            let hi = i
                .saturating_add(lm.half_window)
                .min(rr.len().saturating_sub(1));
            for j in lo..=hi {
                if j != i
                    && in_range.get(j).copied().unwrap_or(false)
                    && let Some(&v) = rr.get(j)
                {
                    buf.push(v);
                }
            }
            if let (Some(med), Some(&r)) = (median(&mut buf), rr.get(i))
                && (r - med).abs() > lm.max_rel_dev * med
            {
                *k = false;
            }
        }
        keep
    }
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v.get(n / 2).copied()
    } else {
        Some((v.get(n / 2 - 1)? + v.get(n / 2)?) / 2.0)
    }
}

/// Normal-to-normal intervals (ms), the time of each interval's closing beat
/// (s), and which intervals directly follow the previous one (no dropped
/// interval in between). Differences (RMSSD, SDSD, pNNx, Poincaré) use only
/// successive pairs; everything else uses all NN intervals.
#[derive(Debug, Clone, PartialEq)]
pub struct NnSeries {
    nn_ms: Vec<f64>,
    t_s: Vec<f64>,
    successive: Vec<bool>,
    n_rr: usize,
}

fn check_interval(index: usize, value: f64) -> Result<(), HrvError> {
    if !value.is_finite() {
        return Err(HrvError::NonFinite { index, value });
    }
    if value <= 0.0 || value > MAX_INTERVAL_MS {
        return Err(HrvError::OutOfRange { index, value });
    }
    Ok(())
}

impl NnSeries {
    /// An NN series from intervals (ms) and the times (s) of their closing
    /// beats. Intervals must be finite, in `(0, 60000]` ms; times finite and
    /// strictly increasing, spanning at most 7 days. Interval `i` counts as
    /// directly following `i − 1` when `|1000·(t[i] − t[i−1]) − nn[i]| ≤ 10 ms`
    /// (NeuroKit2's rule), so gaps left by removed beats are recognised.
    pub fn new(nn_ms: Vec<f64>, t_s: Vec<f64>) -> Result<Self, HrvError> {
        if nn_ms.len() != t_s.len() {
            return Err(HrvError::LengthMismatch {
                intervals: nn_ms.len(),
                times: t_s.len(),
            });
        }
        for (i, &v) in nn_ms.iter().enumerate() {
            check_interval(i, v)?;
        }
        check_times(&t_s)?;
        let mut successive = Vec::with_capacity(nn_ms.len());
        successive.push(false);
        for (w, &nn) in t_s.windows(2).zip(nn_ms.iter().skip(1)) {
            if let [a, b] = w {
                successive.push(((b - a) * 1000.0 - nn).abs() <= SUCCESSIVE_TOLERANCE_MS);
            }
        }
        successive.truncate(nn_ms.len());
        let n_rr = nn_ms.len();
        Ok(Self {
            nn_ms,
            t_s,
            successive,
            n_rr,
        })
    }

    /// NN series from consecutive RR intervals (ms), after `rule`. Interval
    /// times are the running sum of *all* RR intervals, so a dropped interval
    /// leaves a gap.
    pub fn from_rr(rr_ms: &[f64], rule: &ArtefactRule) -> Result<Self, HrvError> {
        for (i, &v) in rr_ms.iter().enumerate() {
            check_interval(i, v)?;
        }
        let mut t = Vec::with_capacity(rr_ms.len());
        let mut acc = 0.0;
        for (index, &r) in rr_ms.iter().enumerate() {
            let next = acc + r / 1000.0;
            // An interval too short to move the beat time in f64 (e.g. a
            // subnormal value) is out of range, not a time-order error.
            if next <= acc {
                return Err(HrvError::OutOfRange { index, value: r });
            }
            acc = next;
            t.push(acc);
        }
        check_times(&t)?;
        let candidate = vec![true; rr_ms.len()];
        Ok(Self::assemble(rr_ms, &t, &candidate, None, rule))
    }

    /// NN series from RR intervals (ms) with the time (s) of each interval's
    /// closing beat, as in `TIME_S,RR_MS` RR text ([`super::rrtext`]), after
    /// `rule`. Interval `i` continues interval `i − 1` only when its opening
    /// beat, `t[i] − rr[i]/1000`, is within `tolerance_ms` of `t[i − 1]`;
    /// otherwise a gap (lost beats, a strap taken off) separates them and no
    /// successive difference is taken across it.
    pub fn from_timed_rr(
        rr_ms: &[f64],
        t_s: &[f64],
        tolerance_ms: f64,
        rule: &ArtefactRule,
    ) -> Result<Self, HrvError> {
        if rr_ms.len() != t_s.len() {
            return Err(HrvError::LengthMismatch {
                intervals: rr_ms.len(),
                times: t_s.len(),
            });
        }
        for (i, &v) in rr_ms.iter().enumerate() {
            check_interval(i, v)?;
        }
        check_times(t_s)?;
        let mut contiguous = Vec::with_capacity(rr_ms.len());
        contiguous.push(false);
        for (w, &r) in t_s.windows(2).zip(rr_ms.iter().skip(1)) {
            if let [a, b] = w {
                contiguous.push(((b - a) * 1000.0 - r).abs() <= tolerance_ms);
            }
        }
        contiguous.truncate(rr_ms.len());
        let candidate = vec![true; rr_ms.len()];
        Ok(Self::assemble(
            rr_ms,
            t_s,
            &candidate,
            Some(&contiguous),
            rule,
        ))
    }

    /// NN series from beat positions (sample indices at `fs` Hz), e.g. the
    /// reference beats of a WFDB `.atr` file or a detector's output. The RR
    /// interval between beats `i − 1` and `i` is `(s[i] − s[i−1]) / fs · 1000`
    /// ms, timed at `s[i] / fs` s. With `normal` (one flag per beat, e.g. true
    /// for the symbols `N`, `L`, `R`), only intervals whose two beats are both
    /// normal are candidates; then `rule` applies.
    pub fn from_beats(
        samples: &[u64],
        fs: f64,
        normal: Option<&[bool]>,
        rule: &ArtefactRule,
    ) -> Result<Self, HrvError> {
        if !(fs.is_finite() && fs > 0.0) {
            return Err(HrvError::BadSamplingFrequency { fs });
        }
        if let Some(n) = normal
            && n.len() != samples.len()
        {
            return Err(HrvError::LengthMismatch {
                intervals: samples.len(),
                times: n.len(),
            });
        }
        let n = samples.len().saturating_sub(1);
        let mut rr = Vec::with_capacity(n);
        let mut t = Vec::with_capacity(n);
        let mut candidate = Vec::with_capacity(n);
        for (i, w) in samples.windows(2).enumerate() {
            let [a, b] = w else { continue };
            if b <= a {
                return Err(HrvError::BeatsNotIncreasing { index: i + 1 });
            }
            let v = (b - a) as f64 / fs * 1000.0;
            check_interval(i, v)?;
            rr.push(v);
            t.push(*b as f64 / fs);
            candidate.push(match normal {
                Some(flags) => {
                    flags.get(i).copied().unwrap_or(false)
                        && flags.get(i + 1).copied().unwrap_or(false)
                }
                None => true,
            });
        }
        check_times(&t)?;
        Ok(Self::assemble(&rr, &t, &candidate, None, rule))
    }

    /// `contiguous[i]`: interval `i` starts where `i − 1` ends (default: all).
    fn assemble(
        rr: &[f64],
        t: &[f64],
        candidate: &[bool],
        contiguous: Option<&[bool]>,
        rule: &ArtefactRule,
    ) -> Self {
        let keep = rule.keep(rr, candidate);
        let kept = keep.iter().filter(|&&k| k).count();
        let mut nn_ms = Vec::with_capacity(kept);
        let mut t_s = Vec::with_capacity(kept);
        let mut successive = Vec::with_capacity(kept);
        let mut prev_kept = false;
        for (i, ((&r, &ti), &k)) in rr.iter().zip(t).zip(&keep).enumerate() {
            let joined = contiguous.is_none_or(|c| c.get(i).copied().unwrap_or(false));
            if k {
                successive.push(prev_kept && joined && !nn_ms.is_empty());
                nn_ms.push(r);
                t_s.push(ti);
            }
            prev_kept = k;
        }
        Self {
            nn_ms,
            t_s,
            successive,
            n_rr: rr.len(),
        }
    }

    /// The NN intervals (ms).
    pub fn nn_ms(&self) -> &[f64] {
        &self.nn_ms
    }
    /// Time (s) of each interval's closing beat.
    pub fn t_s(&self) -> &[f64] {
        &self.t_s
    }
    /// `successive()[i]`: interval `i` directly follows interval `i − 1`.
    pub fn successive(&self) -> &[bool] {
        &self.successive
    }
    /// Number of NN intervals.
    pub fn len(&self) -> usize {
        self.nn_ms.len()
    }
    /// True when there is no NN interval.
    pub fn is_empty(&self) -> bool {
        self.nn_ms.is_empty()
    }
    /// Number of RR intervals before artefact/label filtering.
    pub fn n_rr(&self) -> usize {
        self.n_rr
    }
}

/// One analysis window of a beat list (see [`windows_from_beats`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BeatWindow {
    /// Window start (s, inclusive).
    pub start_s: f64,
    /// Window end (s, exclusive).
    pub end_s: f64,
    /// NN series of the beats inside the window.
    pub nn: NnSeries,
}

/// Splits beats into consecutive windows `[k·w, (k+1)·w)` seconds (by beat
/// time `sample / fs`) and builds each window's NN series with
/// [`NnSeries::from_beats`] from the beats inside it only (as
/// `tools/hrv_reference.py` does), so no interval crosses a window edge.
/// Only windows that contain at least one beat are returned; the last window
/// may be partial (its `end_s` is still `start_s + w`).
pub fn windows_from_beats(
    samples: &[u64],
    fs: f64,
    normal: Option<&[bool]>,
    window_s: f64,
    rule: &ArtefactRule,
) -> Result<Vec<BeatWindow>, HrvError> {
    if !(fs.is_finite() && fs > 0.0) {
        return Err(HrvError::BadSamplingFrequency { fs });
    }
    if !(window_s.is_finite() && window_s > 0.0) {
        return Err(HrvError::BadWindow { seconds: window_s });
    }
    if let Some(n) = normal
        && n.len() != samples.len()
    {
        return Err(HrvError::LengthMismatch {
            intervals: samples.len(),
            times: n.len(),
        });
    }
    if let Some(i) = samples
        .windows(2)
        .position(|p| matches!(p, [a, b] if b <= a))
    {
        return Err(HrvError::BeatsNotIncreasing { index: i + 1 });
    }
    // Window index of each beat: floor(t / w), monotone in t.
    let window_of = |s: u64| (s as f64 / fs / window_s).floor();
    for (i, &s) in samples.iter().enumerate() {
        let t = s as f64 / fs;
        if !(t.is_finite() && window_of(s).is_finite()) {
            return Err(HrvError::NonFinite { index: i, value: t });
        }
    }
    let mut out = Vec::new();
    let mut start = 0usize;
    while let Some(&first) = samples.get(start) {
        let k = window_of(first);
        let mut end = start + 1;
        while samples.get(end).is_some_and(|&s| window_of(s) == k) {
            end += 1;
        }
        let beats = samples.get(start..end).unwrap_or(&[]);
        let flags = normal.and_then(|n| n.get(start..end));
        let nn = NnSeries::from_beats(beats, fs, flags, rule)?;
        out.push(BeatWindow {
            start_s: k * window_s,
            end_s: (k + 1.0) * window_s,
            nn,
        });
        start = end;
    }
    if out
        .windows(2)
        .any(|p| matches!(p, [a, b] if b.start_s <= a.start_s))
    {
        // Beats are increasing (checked above), so the window starts are no
        // longer distinguishable at this magnitude: the window is unusable.
        return Err(HrvError::BadWindow { seconds: window_s });
    }
    Ok(out)
}

fn check_times(t: &[f64]) -> Result<(), HrvError> {
    for (i, &v) in t.iter().enumerate() {
        if !v.is_finite() {
            return Err(HrvError::NonFinite { index: i, value: v });
        }
    }
    for (i, w) in t.windows(2).enumerate() {
        if let [a, b] = w
            && b <= a
        {
            return Err(HrvError::TimeNotIncreasing { index: i + 1 });
        }
    }
    if let (Some(a), Some(b)) = (t.first(), t.last())
        && b - a > MAX_SPAN_S
    {
        return Err(HrvError::SpanTooLong { seconds: b - a });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_none_keeps_everything() {
        let rr = [800.0, 100.0, 5000.0, 810.0];
        let s = NnSeries::from_rr(&rr, &ArtefactRule::none()).unwrap();
        assert_eq!(s.nn_ms(), &rr);
        assert_eq!(s.successive(), &[false, true, true, true]);
    }

    #[test]
    fn default_rule_drops_out_of_range_and_ectopic() {
        // A premature beat (short RR) followed by a compensatory pause.
        let rr = [
            800.0, 810.0, 790.0, 805.0, 500.0, 1100.0, 800.0, 795.0, 2500.0, 800.0,
        ];
        let s = NnSeries::from_rr(&rr, &ArtefactRule::default()).unwrap();
        assert_eq!(
            s.nn_ms(),
            &[800.0, 810.0, 790.0, 805.0, 800.0, 795.0, 800.0]
        );
        assert_eq!(s.n_rr(), 10);
        // Gaps after 805 and after 795 are not successive.
        assert_eq!(
            s.successive(),
            &[false, true, true, true, false, true, false]
        );
        // Times keep running across dropped intervals.
        assert!(
            (s.t_s()[4] - (800.0 + 810.0 + 790.0 + 805.0 + 500.0 + 1100.0 + 800.0) / 1000.0).abs()
                < 1e-12
        );
    }

    #[test]
    fn from_beats_uses_labels() {
        let samples = [0u64, 360, 720, 900, 1440, 1800];
        let normal = [true, true, true, false, true, true];
        let s =
            NnSeries::from_beats(&samples, 360.0, Some(&normal), &ArtefactRule::none()).unwrap();
        assert_eq!(s.nn_ms(), &[1000.0, 1000.0, 1000.0]);
        assert_eq!(s.successive(), &[false, true, false]);
        assert_eq!(s.n_rr(), 5);
    }

    #[test]
    fn windows_split_beats_without_crossing_edges() {
        // Beats every 0.8 s at 100 Hz for 25 s; 10 s windows.
        let samples: Vec<u64> = (0..32).map(|i| i * 80).collect();
        let w = windows_from_beats(&samples, 100.0, None, 10.0, &ArtefactRule::none()).unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!((w[0].start_s, w[0].end_s), (0.0, 10.0));
        assert_eq!((w[2].start_s, w[2].end_s), (20.0, 30.0));
        // 0..=9.6 s: 13 beats, 12 intervals; 10.4..=19.2: 12 beats, 11 intervals.
        assert_eq!(w[0].nn.len(), 12);
        assert_eq!(w[1].nn.len(), 11);
        assert!(w.iter().all(|x| x.nn.nn_ms().iter().all(|&v| v == 800.0)));
        assert!(matches!(
            windows_from_beats(&samples, 100.0, None, 0.0, &ArtefactRule::none()),
            Err(HrvError::BadWindow { .. })
        ));
        assert!(matches!(
            windows_from_beats(&[5, 1], 100.0, None, 10.0, &ArtefactRule::none()),
            Err(HrvError::BeatsNotIncreasing { .. })
        ));
    }

    #[test]
    fn timed_rr_breaks_at_time_gaps() {
        // 1.0, 1.8, then a 10 s gap, then 10.8: the third interval starts
        // at 10.0, not at 1.8.
        let s = NnSeries::from_timed_rr(
            &[800.0, 800.0, 800.0, 800.0],
            &[1.0, 1.8, 10.0, 10.8],
            50.0,
            &ArtefactRule::none(),
        )
        .unwrap();
        assert_eq!(s.successive(), &[false, true, false, true]);
        assert_eq!(s.t_s(), &[1.0, 1.8, 10.0, 10.8]);
        assert!(matches!(
            NnSeries::from_timed_rr(&[800.0], &[1.0, 2.0], 50.0, &ArtefactRule::none()),
            Err(HrvError::LengthMismatch { .. })
        ));
        assert!(matches!(
            NnSeries::from_timed_rr(&[800.0, 800.0], &[2.0, 1.0], 50.0, &ArtefactRule::none()),
            Err(HrvError::TimeNotIncreasing { .. })
        ));
    }

    #[test]
    fn new_infers_gaps_from_times() {
        let s = NnSeries::new(vec![800.0, 800.0, 800.0], vec![0.8, 1.6, 3.2]).unwrap();
        assert_eq!(s.successive(), &[false, true, false]);
    }

    #[test]
    fn hostile_inputs_are_typed_errors() {
        assert!(matches!(
            NnSeries::from_rr(&[800.0, f64::NAN], &ArtefactRule::none()),
            Err(HrvError::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            NnSeries::from_rr(&[-1.0], &ArtefactRule::none()),
            Err(HrvError::OutOfRange { index: 0, .. })
        ));
        assert!(matches!(
            NnSeries::new(vec![800.0, 800.0], vec![1.0, 1.0]),
            Err(HrvError::TimeNotIncreasing { index: 1 })
        ));
        assert!(matches!(
            NnSeries::from_beats(&[10, 5], 360.0, None, &ArtefactRule::none()),
            Err(HrvError::BeatsNotIncreasing { index: 1 })
        ));
        assert!(matches!(
            NnSeries::from_beats(&[1, 5], f64::NAN, None, &ArtefactRule::none()),
            Err(HrvError::BadSamplingFrequency { .. })
        ));
    }
}
