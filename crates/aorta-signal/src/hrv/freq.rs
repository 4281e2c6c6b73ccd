//! Frequency-domain HRV (Task Force 1996 §"Frequency domain methods").
//!
//! Default: Welch on the NN series resampled at 4 Hz, reproducing NeuroKit2
//! 0.2.13's `hrv_frequency(..., psd_method="welch", interpolation_rate=4,
//! normalize=False)`; alternative: Lomb-Scargle on the uneven series.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use super::NnSeries;

/// Very-low-frequency band (Hz), lower edge inclusive, upper exclusive.
pub const VLF_BAND: (f64, f64) = (0.0033, 0.04);
/// Low-frequency band (Hz).
pub const LF_BAND: (f64, f64) = (0.04, 0.15);
/// High-frequency band (Hz).
pub const HF_BAND: (f64, f64) = (0.15, 0.4);
/// Resampling rate (Hz) of the Welch method.
pub const RESAMPLE_HZ: f64 = 4.0;
/// Highest frequency kept in the Welch spectrum (NeuroKit2's VHF upper edge).
const MAX_FREQ: f64 = 0.5;
/// Highest frequency of the Lomb-Scargle grid (HF upper edge; nothing above
/// it is integrated).
const LOMB_MAX_FREQ: f64 = 0.4;
/// Lomb-Scargle frequency-grid oversampling (grid step `1 / (4·T)`).
const LOMB_OVERSAMPLE: f64 = 4.0;

/// Spectral estimator for the frequency domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SpectralMethod {
    /// Welch periodogram of the NN series resampled at 4 Hz with a quadratic
    /// interpolating spline, exactly as NeuroKit2's `hrv_frequency` (the
    /// default).
    #[default]
    Welch,
    /// Lomb-Scargle periodogram of the uneven NN series (no resampling),
    /// scaled to a one-sided PSD in ms²/Hz.
    LombScargle,
}

/// Frequency-domain metrics. NaN when a band holds fewer than two spectral
/// points (window too short for it).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FrequencyDomain {
    /// Power 0.0033–0.04 Hz (ms²).
    pub vlf: f64,
    /// Power 0.04–0.15 Hz (ms²).
    pub lf: f64,
    /// Power 0.15–0.4 Hz (ms²).
    pub hf: f64,
    /// LF / HF.
    pub lf_hf: f64,
    /// 100 · LF / (LF + HF) (normalised units, %).
    pub lfnu: f64,
    /// 100 · HF / (LF + HF) (normalised units, %).
    pub hfnu: f64,
    /// VLF + LF + HF, skipping NaN bands (ms²).
    pub total_power: f64,
}

impl FrequencyDomain {
    fn from_bands(vlf: f64, lf: f64, hf: f64) -> Self {
        let total_power = [vlf, lf, hf].iter().filter(|v| v.is_finite()).sum();
        Self {
            vlf,
            lf,
            hf,
            lf_hf: lf / hf,
            lfnu: 100.0 * lf / (lf + hf),
            hfnu: 100.0 * hf / (lf + hf),
            total_power,
        }
    }

    fn undefined() -> Self {
        Self::from_bands(f64::NAN, f64::NAN, f64::NAN)
    }
}

/// Reusable buffers and FFT plans for the frequency domain.
#[derive(Default)]
pub(crate) struct FreqScratch {
    planner: Option<RealFftPlanner<f64>>,
    fft: Option<(usize, Arc<dyn RealToComplex<f64>>)>,
    resampled: Vec<f64>,
    sub: Vec<f64>,
    diag: Vec<f64>,
    sup: Vec<f64>,
    coef: Vec<f64>,
    knots: Vec<f64>,
    seg: Vec<f64>,
    spec: Vec<Complex<f64>>,
    fft_scratch: Vec<Complex<f64>>,
    window: Vec<f64>,
    /// Hann windows by length: Welch on a stream of windows sees a handful of lengths.
    hann: std::collections::HashMap<usize, Vec<f64>>,
    psd: Vec<f64>,
    freqs: Vec<f64>,
    lomb_z: Vec<Complex<f64>>,
    lomb_step: Vec<Complex<f64>>,
    lomb_y: Vec<f64>,
}

impl std::fmt::Debug for FreqScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreqScratch").finish_non_exhaustive()
    }
}

pub(crate) fn frequency_domain_with(
    nn: &NnSeries,
    method: SpectralMethod,
    s: &mut FreqScratch,
) -> FrequencyDomain {
    match method {
        SpectralMethod::Welch => welch(nn, s),
        SpectralMethod::LombScargle => lomb(nn, s),
    }
}

/// Trapezoidal band power over the points with `lo <= f < hi` (NeuroKit2's
/// `_signal_power_instant_compute`); 0 is reported as NaN, as NeuroKit2 does.
fn band_power(freqs: &[f64], psd: &[f64], band: (f64, f64)) -> f64 {
    let mut acc = 0.0;
    let mut prev: Option<(f64, f64)> = None;
    for (&f, &p) in freqs.iter().zip(psd) {
        if f >= band.0 && f < band.1 {
            if let Some((f0, p0)) = prev {
                acc += (f - f0) * (p + p0) / 2.0;
            }
            prev = Some((f, p));
        }
    }
    if acc == 0.0 { f64::NAN } else { acc }
}

/// Quadratic interpolating B-spline through `(x, y)` (knots as SciPy's
/// `make_interp_spline(x, y, k=2)`: triple end knots, interior knots at the
/// midpoints `(x[j] + x[j+1]) / 2` for `j = 1..n−3`), evaluated at
/// `x0 + i·Δ`, `Δ = (x0 + 1/fs) − x0`, for `i < ceil((x_last + 1/fs − x0)/(1/fs))`
/// (`numpy.arange`); points past `x_last` take `y_last` (SciPy `interp1d`
/// `fill_value=(y[0], y[-1])`). The collocation matrix is tridiagonal and
/// totally positive, so Gaussian elimination without pivoting is stable.
fn resample_quadratic(x: &[f64], y: &[f64], fs: f64, s: &mut FreqScratch) -> bool {
    let n = x.len();
    let (Some(&x0), Some(&xl), Some(&yl)) = (x.first(), x.last(), y.last()) else {
        return false;
    };
    if n < 3 || y.len() != n {
        return false;
    }
    let step = 1.0 / fs;
    let count = ((xl + step - x0) / step).ceil();
    if !(count.is_finite() && count >= 1.0) {
        return false;
    }
    let count = count as usize;
    let delta = (x0 + step) - x0;

    // Knot vector, n + 3 entries.
    let t = &mut s.knots;
    t.clear();
    t.extend_from_slice(&[x0, x0, x0]);
    for w in x.windows(2).skip(1).take(n - 3) {
        if let [a, b] = w {
            t.push((b + a) / 2.0);
        }
    }
    t.extend_from_slice(&[xl, xl, xl]);

    // Collocation rows: row i has basis l−2..l with l = i + 1 (interior).
    s.sub.clear();
    s.diag.clear();
    s.sup.clear();
    s.coef.clear();
    for (i, (&xi, &yi)) in x.iter().zip(y).enumerate() {
        if i == 0 || i == n - 1 {
            s.sub.push(0.0);
            s.diag.push(1.0);
            s.sup.push(0.0);
        } else {
            let b = basis2(t, i + 1, xi);
            s.sub.push(b[0]);
            s.diag.push(b[1]);
            s.sup.push(b[2]);
        }
        s.coef.push(yi);
    }
    // Thomas algorithm (forward sweep, back substitution) in place.
    for i in 1..n {
        let (Some(&d_prev), Some(&u_prev), Some(&c_prev)) =
            (s.diag.get(i - 1), s.sup.get(i - 1), s.coef.get(i - 1))
        else {
            return false;
        };
        if d_prev == 0.0 {
            return false;
        }
        let w = s.sub.get(i).copied().unwrap_or(0.0) / d_prev;
        if let Some(d) = s.diag.get_mut(i) {
            *d -= w * u_prev;
        }
        if let Some(c) = s.coef.get_mut(i) {
            *c -= w * c_prev;
        }
    }
    // Back substitution. The reciprocals are independent of each other, so
    // they are taken off the serial chain (which then only multiplies).
    if s.diag.contains(&0.0) {
        return false;
    }
    for d in s.diag.iter_mut() {
        *d = 1.0 / *d;
    }
    let mut next = 0.0;
    for ((c, &inv_d), &u) in s.coef.iter_mut().zip(&s.diag).zip(&s.sup).rev() {
        *c = (*c - u * next) * inv_d;
        next = *c;
    }

    // Evaluate on the grid.
    s.resampled.clear();
    s.resampled.reserve(count);
    let mut l = 2usize;
    let mut span = SpanBasis::new(t, l);
    for i in 0..count {
        let xv = x0 + i as f64 * delta;
        if xv > xl {
            s.resampled.push(yl);
            continue;
        }
        let l0 = l;
        while l < n - 1 && t.get(l + 1).is_some_and(|&k| xv >= k) {
            l += 1;
        }
        if l != l0 {
            span = SpanBasis::new(t, l);
        }
        let b = span.eval(xv);
        let c = |j: usize| s.coef.get(j).copied().unwrap_or(0.0);
        s.resampled
            .push(b[0] * c(l - 2) + b[1] * c(l - 1) + b[2] * c(l));
    }
    true
}

/// [`basis2`] for many points of one knot span: the three denominators of
/// Cox–de Boor depend only on the span, so their reciprocals are taken once
/// and evaluation needs no division (the grid has ~3 points per span).
struct SpanBasis {
    kl: f64,
    kl1: f64,
    klm1: f64,
    kl2: f64,
    inv0: f64,
    inv1: f64,
    inv2: f64,
}

impl SpanBasis {
    fn new(t: &[f64], l: usize) -> Self {
        let k = |i: usize| t.get(i).copied().unwrap_or(f64::NAN);
        let inv = |d: f64| if d == 0.0 { 0.0 } else { 1.0 / d };
        let (kl, kl1, klm1, kl2) = (k(l), k(l + 1), k(l.wrapping_sub(1)), k(l + 2));
        SpanBasis {
            kl,
            kl1,
            klm1,
            kl2,
            inv0: inv(kl1 - kl),
            inv1: inv(kl1 - klm1),
            inv2: inv(kl2 - kl),
        }
    }

    #[inline]
    fn eval(&self, x: f64) -> [f64; 3] {
        let (left1, right1) = (x - self.kl, self.kl1 - x);
        let (left2, right2) = (x - self.klm1, self.kl2 - x);
        let n0 = right1 * self.inv0;
        let n1 = left1 * self.inv0;
        let t0 = n0 * self.inv1;
        let t1 = n1 * self.inv2;
        [right1 * t0, left2 * t0 + right2 * t1, left1 * t1]
    }
}

/// The three non-zero quadratic B-spline basis values on knot span `l`
/// (`t[l] <= x < t[l+1]`), for `B_{l−2}, B_{l−1}, B_l` (Cox–de Boor).
fn basis2(t: &[f64], l: usize, x: f64) -> [f64; 3] {
    let k = |i: usize| t.get(i).copied().unwrap_or(f64::NAN);
    let div = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
    let (left1, right1) = (x - k(l), k(l + 1) - x);
    let (left2, right2) = (x - k(l.wrapping_sub(1)), k(l + 2) - x);
    // Degree 1.
    let temp = div(1.0, right1 + left1);
    let n0 = right1 * temp;
    let n1 = left1 * temp;
    // Degree 2.
    let temp = div(n0, right1 + left2);
    let b0 = right1 * temp;
    let saved = left2 * temp;
    let temp = div(n1, right2 + left1);
    let b1 = saved + right2 * temp;
    let b2 = left1 * temp;
    [b0, b1, b2]
}

fn welch(nn: &NnSeries, s: &mut FreqScratch) -> FrequencyDomain {
    if !resample_quadratic(nn.t_s(), nn.nn_ms(), RESAMPLE_HZ, s) {
        return FrequencyDomain::undefined();
    }
    let fs = RESAMPLE_HZ;
    let n = s.resampled.len();
    let m = s.resampled.iter().sum::<f64>() / n as f64;
    for v in &mut s.resampled {
        *v -= m;
    }
    // NeuroKit2 signal_psd: min_frequency = 2·fs / (N/2); nperseg = int(2/min_f · fs),
    // capped at int(N/2); nfft = 2·nperseg.
    let half = n as f64 / 2.0;
    let min_f = (2.0 * fs) / half;
    let mut nperseg = ((2.0 / min_f) * fs) as usize;
    if nperseg as f64 > half {
        nperseg = half as usize;
    }
    if nperseg < 4 {
        return FrequencyDomain::undefined();
    }
    let nfft = 2 * nperseg;
    let noverlap = nperseg / 2;
    let hop = nperseg - noverlap;
    let nseg = (n - noverlap) / hop;
    if nseg == 0 {
        return FrequencyDomain::undefined();
    }
    // Periodic Hann window (scipy get_window('hann', nperseg)).
    if s.hann.len() > 64 {
        s.hann.clear();
    }
    let hann = s.hann.entry(nperseg).or_insert_with(|| {
        (0..nperseg)
            .map(|k| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * k as f64 / nperseg as f64).cos())
            .collect()
    });
    s.window.clear();
    s.window.extend_from_slice(hann);
    let wss: f64 = s.window.iter().map(|w| w * w).sum();
    let scale = 1.0 / (fs * wss);

    let fft = match &s.fft {
        Some((len, f)) if *len == nfft => Arc::clone(f),
        _ => {
            let f = s
                .planner
                .get_or_insert_with(RealFftPlanner::new)
                .plan_fft_forward(nfft);
            s.fft = Some((nfft, Arc::clone(&f)));
            f
        }
    };
    let nbins = nfft / 2 + 1;
    s.psd.clear();
    s.psd.resize(nbins, 0.0);
    s.seg.resize(nfft, 0.0);
    s.spec.resize(nbins, Complex::new(0.0, 0.0));
    s.fft_scratch
        .resize(fft.get_scratch_len(), Complex::new(0.0, 0.0));
    for k in 0..nseg {
        let start = k * hop;
        let Some(src) = s.resampled.get(start..start + nperseg) else {
            return FrequencyDomain::undefined();
        };
        for (i, d) in s.seg.iter_mut().enumerate() {
            *d = match (src.get(i), s.window.get(i)) {
                (Some(v), Some(w)) => v * w,
                _ => 0.0,
            };
        }
        if fft
            .process_with_scratch(&mut s.seg, &mut s.spec, &mut s.fft_scratch)
            .is_err()
        {
            return FrequencyDomain::undefined();
        }
        for (p, c) in s.psd.iter_mut().zip(&s.spec) {
            *p += c.norm_sqr();
        }
    }
    let last = nbins - 1;
    for (i, p) in s.psd.iter_mut().enumerate() {
        let two = if i == 0 || i == last { 1.0 } else { 2.0 };
        *p = *p * scale * two / nseg as f64;
    }
    s.freqs.clear();
    s.freqs
        .extend((0..nbins).map(|k| k as f64 * fs / nfft as f64));
    // Keep min_f <= f <= 0.5 Hz as NeuroKit2 does before integrating.
    for (f, p) in s.freqs.iter_mut().zip(s.psd.iter_mut()) {
        if *f < min_f || *f > MAX_FREQ {
            *f = f64::NAN;
            *p = f64::NAN;
        }
    }
    FrequencyDomain::from_bands(
        band_power(&s.freqs, &s.psd, VLF_BAND),
        band_power(&s.freqs, &s.psd, LF_BAND),
        band_power(&s.freqs, &s.psd, HF_BAND),
    )
}

/// Lomb-Scargle periodogram (Lomb 1976, Scargle 1982) of the mean-removed NN
/// series on a grid `f_k = k·df`, `df = 1/(4T)`, `k = 1..` up to 0.4 Hz
/// (`T` = time span), scaled as `PSD(f) = 2·T·P(f)/N` with
/// `P = ½[(Σy·cos ω(t−τ))²/Σcos² + (Σy·sin ω(t−τ))²/Σsin²]`, so that for
/// evenly sampled data the one-sided PSD integrates to the variance.
fn lomb(nn: &NnSeries, s: &mut FreqScratch) -> FrequencyDomain {
    let t = nn.t_s();
    let y = nn.nn_ms();
    let n = y.len();
    let (Some(&t0), Some(&tl)) = (t.first(), t.last()) else {
        return FrequencyDomain::undefined();
    };
    let span = tl - t0;
    if n < 3 || span <= 0.0 {
        return FrequencyDomain::undefined();
    }
    let m = y.iter().sum::<f64>() / n as f64;
    s.lomb_y.clear();
    s.lomb_y.extend(y.iter().map(|v| v - m));
    let df = 1.0 / (LOMB_OVERSAMPLE * span);
    let nf = (LOMB_MAX_FREQ / df).floor() as usize;
    // z_j = exp(i·2π·f_k·(t_j − t0)) advanced by one grid step per frequency.
    s.lomb_z.clear();
    s.lomb_step.clear();
    for &tj in t {
        let ph = 2.0 * std::f64::consts::PI * df * (tj - t0);
        let step = Complex::new(ph.cos(), ph.sin());
        s.lomb_step.push(step);
        s.lomb_z.push(step);
    }
    s.freqs.clear();
    s.psd.clear();
    for k in 1..=nf {
        let f = k as f64 * df;
        let (mut yc, mut ys, mut c2, mut s2) = (0.0, 0.0, 0.0, 0.0);
        for ((z, st), &yj) in s.lomb_z.iter_mut().zip(&s.lomb_step).zip(&s.lomb_y) {
            yc += yj * z.re;
            ys += yj * z.im;
            // cos 2θ, sin 2θ from z = e^{iθ}
            c2 += z.re * z.re - z.im * z.im;
            s2 += 2.0 * z.re * z.im;
            *z *= st;
        }
        // Re-normalise now and then so rounding in the recurrence cannot grow.
        if k % 64 == 0 {
            for (z, &tj) in s.lomb_z.iter_mut().zip(t) {
                let ph = 2.0 * std::f64::consts::PI * (f + df) * (tj - t0);
                *z = Complex::new(ph.cos(), ph.sin());
            }
        }
        let two_tau = s2.atan2(c2);
        let (sin2, cos2) = two_tau.sin_cos();
        // cos ωτ, sin ωτ from 2ωτ
        let tau = two_tau / 2.0;
        let (st, ct) = tau.sin_cos();
        let ycc = yc * ct + ys * st;
        let yss = ys * ct - yc * st;
        let nf64 = n as f64;
        let cc = nf64 / 2.0 + 0.5 * (c2 * cos2 + s2 * sin2);
        let ss = nf64 - cc;
        let mut p = 0.0;
        if cc > 0.0 {
            p += ycc * ycc / cc;
        }
        if ss > 0.0 {
            p += yss * yss / ss;
        }
        s.freqs.push(f);
        s.psd.push(2.0 * span * 0.5 * p / nf64);
    }
    FrequencyDomain::from_bands(
        band_power(&s.freqs, &s.psd, VLF_BAND),
        band_power(&s.freqs, &s.psd, LF_BAND),
        band_power(&s.freqs, &s.psd, HF_BAND),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pure sine in the RR series puts its variance A²/2 into its band.
    fn sine_series(freq: f64, amp: f64, secs: f64) -> NnSeries {
        let mut t = 0.0;
        let mut rr = Vec::new();
        while t < secs {
            let v = 800.0 + amp * (2.0 * std::f64::consts::PI * freq * t).sin();
            rr.push(v);
            t += v / 1000.0;
        }
        NnSeries::from_rr(&rr, &crate::hrv::ArtefactRule::none()).unwrap()
    }

    #[test]
    fn sine_power_lands_in_its_band() {
        for method in [SpectralMethod::Welch, SpectralMethod::LombScargle] {
            let s = sine_series(0.1, 30.0, 300.0);
            let f = frequency_domain_with(&s, method, &mut FreqScratch::default());
            let want = 30.0 * 30.0 / 2.0;
            assert!((f.lf - want).abs() / want < 0.15, "{method:?} lf {}", f.lf);
            assert!(f.hf < 0.05 * want, "{method:?} hf {}", f.hf);
            let s = sine_series(0.25, 20.0, 300.0);
            let f = frequency_domain_with(&s, method, &mut FreqScratch::default());
            let want = 20.0 * 20.0 / 2.0;
            assert!((f.hf - want).abs() / want < 0.15, "{method:?} hf {}", f.hf);
            assert!(f.lfnu < 5.0 && f.hfnu > 95.0);
        }
    }

    #[test]
    fn spline_reproduces_quadratics() {
        // A quadratic is reproduced exactly by a quadratic spline.
        let x: Vec<f64> = (0..20)
            .map(|i| i as f64 * 0.8 + (i % 3) as f64 * 0.1)
            .collect();
        let y: Vec<f64> = x.iter().map(|v| 3.0 + 2.0 * v - 0.5 * v * v).collect();
        let mut s = FreqScratch::default();
        assert!(resample_quadratic(&x, &y, 4.0, &mut s));
        for (i, &v) in s.resampled.iter().enumerate() {
            let xv = x[0] + i as f64 * 0.25;
            if xv <= *x.last().unwrap() {
                let want = 3.0 + 2.0 * xv - 0.5 * xv * xv;
                assert!((v - want).abs() < 1e-9, "at {xv}: {v} vs {want}");
            }
        }
    }
}
