//! Time-domain and geometric HRV metrics (Task Force 1996 §"Time domain
//! methods"), with NeuroKit2 0.2.13's `hrv_time` definitions.

use super::NnSeries;

/// Histogram bin width (ms) for the triangular index and TINN: 1/128 s, the
/// Task Force's recommended bin (NeuroKit2's default `binsize`).
pub const BIN_MS: f64 = 1000.0 / 128.0;

/// Time-domain and geometric metrics. See [`crate::hrv`] for definitions.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TimeDomain {
    /// Mean NN (ms).
    pub mean_nn: f64,
    /// Standard deviation of NN, ddof = 1 (ms).
    pub sdnn: f64,
    /// Root mean square of successive differences (ms).
    pub rmssd: f64,
    /// Standard deviation of successive differences, ddof = 1 (ms).
    pub sdsd: f64,
    /// % of successive differences > 50 ms (denominator: differences + 1).
    pub pnn50: f64,
    /// % of successive differences > 20 ms (denominator: differences + 1).
    pub pnn20: f64,
    /// Mean of the instantaneous heart rates 60000/NN (bpm).
    pub mean_hr: f64,
    /// 60000 / longest NN (bpm).
    pub min_hr: f64,
    /// 60000 / shortest NN (bpm).
    pub max_hr: f64,
    /// HRV triangular index: NN count / height of the 1/128 s histogram.
    pub hti: f64,
    /// Triangular interpolation of the NN histogram, baseline width (ms).
    pub tinn: f64,
}

/// Reusable buffers for [`time_domain_with`].
#[derive(Debug, Default)]
pub(crate) struct TimeScratch {
    pub(crate) diffs: Vec<f64>,
    hist: Vec<f64>,
}

/// Successive differences `nn[i] − nn[i−1]` for directly successive pairs.
pub(crate) fn successive_diffs(nn: &NnSeries, out: &mut Vec<f64>) {
    out.clear();
    for ((w, &s), _) in nn
        .nn_ms()
        .windows(2)
        .zip(nn.successive().iter().skip(1))
        .zip(0..)
    {
        if let ([a, b], true) = (w, s) {
            out.push(b - a);
        }
    }
}

pub(crate) fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Sample standard deviation (ddof = 1), two-pass; NaN for fewer than 2.
pub(crate) fn std1(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return f64::NAN;
    }
    let m = mean(x);
    let ss: f64 = x.iter().map(|v| (v - m) * (v - m)).sum();
    (ss / (x.len() - 1) as f64).sqrt()
}

pub(crate) fn time_domain_with(nn: &NnSeries, scratch: &mut TimeScratch) -> TimeDomain {
    let x = nn.nn_ms();
    successive_diffs(nn, &mut scratch.diffs);
    let d = &scratch.diffs;
    let mean_nn = mean(x);
    let sdnn = std1(x);
    let rmssd = if d.is_empty() {
        f64::NAN
    } else {
        (d.iter().map(|v| v * v).sum::<f64>() / d.len() as f64).sqrt()
    };
    let sdsd = std1(d);
    let denom = (d.len() + 1) as f64;
    let nn50 = d.iter().filter(|v| v.abs() > 50.0).count() as f64;
    let nn20 = d.iter().filter(|v| v.abs() > 20.0).count() as f64;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut hr_sum = 0.0;
    for &v in x {
        lo = lo.min(v);
        hi = hi.max(v);
        hr_sum += 60_000.0 / v;
    }
    let (hti, tinn) = triangular(x, lo, hi, &mut scratch.hist);
    TimeDomain {
        mean_nn,
        sdnn,
        rmssd,
        sdsd,
        pnn50: nn50 / denom * 100.0,
        pnn20: nn20 / denom * 100.0,
        mean_hr: hr_sum / x.len() as f64,
        min_hr: 60_000.0 / hi,
        max_hr: 60_000.0 / lo,
        hti,
        tinn,
    }
}

/// HRV triangular index and TINN, reproducing NeuroKit2's `hrv_time`:
/// histogram edges `0, b, 2b, …` up to `max + b` (b = 1/128 s), bins
/// half-open except the last; `HTI = n / max count`. TINN: the histogram peak
/// at edge `X` (first maximum, height `Y`); `N` fixed at the first edge above
/// the shortest NN; for `M = X + b, X + 2b, … < max NN` the piecewise-linear
/// triangle `(N,0)–(X,Y)–(M,0)` is compared with the counts on edges `N..=M`
/// by squared error; the first `M` with the smallest error below 2¹⁴ wins and
/// `TINN = M − N` (0 when no candidate beats 2¹⁴). NeuroKit2 never resets `M`
/// between candidate `N`s, so only the first `N` is ever searched; we keep
/// that behaviour to stay comparable.
fn triangular(x: &[f64], lo: f64, hi: f64, hist: &mut Vec<f64>) -> (f64, f64) {
    // numpy.arange(0, hi + b, b): ceil((hi + b) / b) edges at i·b (exact: b = 125/16).
    let n_edges = ((hi + BIN_MS) / BIN_MS).ceil() as usize;
    if n_edges < 2 {
        return (f64::NAN, f64::NAN);
    }
    let n_bins = n_edges - 1;
    hist.clear();
    hist.resize(n_bins, 0.0);
    let last_edge = (n_bins as f64) * BIN_MS;
    for &v in x {
        let idx = if v >= last_edge {
            if v == last_edge {
                Some(n_bins - 1)
            } else {
                None
            }
        } else {
            let mut k = (v / BIN_MS).floor() as usize;
            // Correct the division's rounding against the exact edges.
            if (k as f64) * BIN_MS > v {
                k = k.saturating_sub(1);
            } else if ((k + 1) as f64) * BIN_MS <= v {
                k += 1;
            }
            Some(k.min(n_bins - 1))
        };
        if let Some(c) = idx.and_then(|k| hist.get_mut(k)) {
            *c += 1.0;
        }
    }
    let mut x_idx = 0usize;
    let mut y = 0.0f64;
    for (i, &c) in hist.iter().enumerate() {
        if c > y {
            y = c;
            x_idx = i;
        }
    }
    if y == 0.0 {
        return (f64::NAN, f64::NAN);
    }
    let hti = x.len() as f64 / y;

    // First edge strictly above the shortest NN.
    let Some(n_idx) = (0..n_edges).find(|&i| (i as f64) * BIN_MS - lo > 0.0) else {
        return (hti, f64::NAN);
    };
    if n_idx >= x_idx {
        return (hti, 0.0);
    }
    let edge = |i: usize| (i as f64) * BIN_MS;
    let count = |i: usize| hist.get(i).copied().unwrap_or(0.0);
    let (xn, xx) = (edge(n_idx), edge(x_idx));
    // Left side of the triangle (N..X): the same for every M.
    let slope_l = y / (xx - xn);
    let mut left = 0.0;
    for i in n_idx..x_idx {
        let q = slope_l * (edge(i) - xn);
        left += (count(i) - q) * (count(i) - q);
    }
    let mut best = 16_384.0f64;
    let (mut best_n, mut best_m) = (0.0, 0.0);
    let mut m_idx = x_idx + 1;
    while edge(m_idx) < hi && m_idx < n_edges {
        let xm = edge(m_idx);
        let slope_r = -y / (xm - xx);
        let mut err = left;
        for i in x_idx..=m_idx {
            let q = y + slope_r * (edge(i) - xx);
            err += (count(i) - q) * (count(i) - q);
        }
        if err < best {
            best = err;
            best_n = xn;
            best_m = xm;
        }
        m_idx += 1;
    }
    (hti, best_m - best_n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hrv::ArtefactRule;

    #[test]
    fn known_values() {
        let rr = [800.0, 820.0, 780.0, 860.0, 800.0];
        let s = NnSeries::from_rr(&rr, &ArtefactRule::none()).unwrap();
        let t = time_domain_with(&s, &mut TimeScratch::default());
        assert!((t.mean_nn - 812.0).abs() < 1e-12);
        // diffs 20, -40, 80, -60
        let rmssd = ((400.0 + 1600.0 + 6400.0 + 3600.0) / 4.0f64).sqrt();
        assert!((t.rmssd - rmssd).abs() < 1e-12);
        assert!((t.pnn50 - 2.0 / 5.0 * 100.0).abs() < 1e-12);
        assert!((t.pnn20 - 3.0 / 5.0 * 100.0).abs() < 1e-12);
        assert!((t.max_hr - 60_000.0 / 780.0).abs() < 1e-12);
        assert!((t.min_hr - 60_000.0 / 860.0).abs() < 1e-12);
    }
}
