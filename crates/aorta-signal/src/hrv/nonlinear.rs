//! Non-linear HRV: Poincaré SD1/SD2, sample entropy and DFA α1/α2, with
//! NeuroKit2 0.2.13's `hrv_nonlinear` definitions.

use super::NnSeries;
use super::time::std1;

/// Non-linear metrics. See [`crate::hrv`] for definitions.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct NonLinear {
    /// Poincaré SD1 (ms): ddof-1 SD of `(NN[i] − NN[i+1]) / √2` over successive pairs.
    pub sd1: f64,
    /// Poincaré SD2 (ms): ddof-1 SD of `(NN[i] + NN[i+1]) / √2` over successive pairs.
    pub sd2: f64,
    /// SD1 / SD2.
    pub sd1_sd2: f64,
    /// Sample entropy, m = 2, r = 0.2 · SDNN (ddof 1), Chebyshev distance, `<= r`.
    pub sampen: f64,
    /// DFA short-term exponent, scales 4–11 beats.
    pub dfa_alpha1: f64,
    /// DFA long-term exponent, scales 12 … ⌊(N+1)/10⌋ beats (needs N ≥ 129).
    pub dfa_alpha2: f64,
}

/// Reusable buffers for the non-linear metrics.
#[derive(Debug, Default)]
pub(crate) struct NonLinearScratch {
    a: Vec<f64>,
    b: Vec<f64>,
    profile: Vec<f64>,
    logs: Vec<f64>,
    logf: Vec<f64>,
    order: Vec<u32>,
}

pub(crate) fn nonlinear_with(nn: &NnSeries, s: &mut NonLinearScratch) -> NonLinear {
    let x = nn.nn_ms();
    s.a.clear();
    s.b.clear();
    let r2 = std::f64::consts::SQRT_2;
    for (w, &succ) in x.windows(2).zip(nn.successive().iter().skip(1)) {
        if let ([p, q], true) = (w, succ) {
            s.a.push((p - q) / r2);
            s.b.push((p + q) / r2);
        }
    }
    let sd1 = std1(&s.a);
    let sd2 = std1(&s.b);
    let sampen = sample_entropy_with(x, 0.2 * std1(x), &mut s.order);
    let (dfa_alpha1, dfa_alpha2) = dfa(x, s);
    NonLinear {
        sd1,
        sd2,
        sd1_sd2: sd1 / sd2,
        sampen,
        dfa_alpha1,
        dfa_alpha2,
    }
}

/// Sample entropy (Richman & Moorman 2000) with m = 2 and tolerance `r`, as
/// NeuroKit2's `entropy_sample`: the first N − 2 templates of length 2 and of
/// length 3 are compared pairwise (i ≠ j, Chebyshev distance `<= r`);
/// `SampEn = −ln(A / B)` with A, B the matching pair counts. `+∞` when no
/// length-3 pair matches, `−∞` when no length-2 pair does (NeuroKit2's
/// convention), NaN for fewer than 4 intervals or a non-finite `r`.
pub fn sample_entropy(x: &[f64], r: f64) -> f64 {
    sample_entropy_with(x, r, &mut Vec::new())
}

/// [`sample_entropy`] with a reusable index buffer. Templates are visited in
/// order of their first value, so each one is compared only with those whose
/// first value lies within `r` (the same pairs and the same comparisons as
/// the all-pairs loop, at a fraction of the cost).
fn sample_entropy_with(x: &[f64], r: f64, order: &mut Vec<u32>) -> f64 {
    let n = x.len();
    if n < 4 || !r.is_finite() || n > u32::MAX as usize {
        return f64::NAN;
    }
    let m = n - 2; // templates compared, for both lengths
    order.clear();
    order.extend(0..m as u32);
    let at = |i: u32| x.get(i as usize).copied().unwrap_or(f64::NAN);
    order.sort_unstable_by(|&a, &b| at(a).total_cmp(&at(b)));
    let (mut b, mut a) = (0u64, 0u64);
    for (p, &i) in order.iter().enumerate() {
        let i = i as usize;
        let (Some(&p0), Some(&p1), Some(&p2)) = (x.get(i), x.get(i + 1), x.get(i + 2)) else {
            continue;
        };
        for &j in order.get(p + 1..).unwrap_or(&[]) {
            let j = j as usize;
            let (Some(&q0), Some(&q1), Some(&q2)) = (x.get(j), x.get(j + 1), x.get(j + 2)) else {
                continue;
            };
            // Sorted by first value: q0 >= p0, so |q0 − p0| = q0 − p0.
            if q0 - p0 > r {
                break;
            }
            if (q1 - p1).abs() <= r {
                b += 1;
                if (q2 - p2).abs() <= r {
                    a += 1;
                }
            }
        }
    }
    let mf = m as f64;
    let phi0 = (2 * b) as f64 / (mf * (mf - 1.0));
    if phi0.abs() <= 1e-8 {
        return f64::NEG_INFINITY;
    }
    let ratio = a as f64 / b as f64;
    if ratio.abs() <= 1e-8 {
        return f64::INFINITY;
    }
    -ratio.ln()
}

/// DFA α1 and α2 (Peng et al. 1995) as NeuroKit2's `fractal_dfa` with its
/// `hrv_nonlinear` scales: profile `y = cumsum(x − mean)`; for each scale `s`,
/// overlapping windows starting at `0, s/2, 2·(s/2), … < N − s`, each
/// detrended by a least-squares line; `F(s) = sqrt(mean(var))` over windows
/// with residual variance (ddof 0) above 1e-8; α = least-squares slope of
/// `log2 F` on `log2 s`. α1: s = 4…11 (N ≥ 12); α2: s = 12…⌊(N+1)/10⌋
/// (N ≥ 129). NaN where undefined.
fn dfa(x: &[f64], s: &mut NonLinearScratch) -> (f64, f64) {
    let n = x.len();
    if n < 12 {
        return (f64::NAN, f64::NAN);
    }
    let m = x.iter().sum::<f64>() / n as f64;
    s.profile.clear();
    let mut acc = 0.0;
    for &v in x {
        acc += v - m;
        s.profile.push(acc);
    }
    let a1 = dfa_slope(&s.profile, 4, 11, &mut s.logs, &mut s.logf);
    let max_beats = (n as f64 + 1.0) / 10.0;
    let a2 = if max_beats < 13.0 {
        f64::NAN
    } else {
        dfa_slope(&s.profile, 12, max_beats as usize, &mut s.logs, &mut s.logf)
    };
    (a1, a2)
}

fn dfa_slope(y: &[f64], lo: usize, hi: usize, logs: &mut Vec<f64>, logf: &mut Vec<f64>) -> f64 {
    logs.clear();
    logf.clear();
    for scale in lo..=hi {
        logs.push((scale as f64).log2());
        logf.push(fluctuation(y, scale).log2());
    }
    slope(logs, logf)
}

fn fluctuation(y: &[f64], scale: usize) -> f64 {
    let n = y.len();
    let step = (scale / 2).max(1);
    let sf = scale as f64;
    let xm = (sf - 1.0) / 2.0;
    let sxx = sf * (sf * sf - 1.0) / 12.0;
    let (mut sum_var, mut count) = (0.0, 0usize);
    let mut start = 0usize;
    while start + scale < n {
        let Some(seg) = y.get(start..start + scale) else {
            break;
        };
        // One pass, values taken relative to the segment's first point to
        // keep the sums small (the residual variance is shift-invariant).
        let y0 = seg.first().copied().unwrap_or(0.0);
        let (mut sz, mut sxz, mut szz) = (0.0, 0.0, 0.0);
        for (i, &v) in seg.iter().enumerate() {
            let z = v - y0;
            sz += z;
            sxz += i as f64 * z;
            szz += z * z;
        }
        let sxy = sxz - xm * sz;
        let syy = szz - sz * sz / sf;
        let var = ((syy - sxy * sxy / sxx) / sf).max(0.0);
        if var > 1e-8 {
            sum_var += var;
            count += 1;
        }
        start += step;
    }
    if count == 0 {
        return f64::NAN;
    }
    (sum_var / count as f64).sqrt()
}

/// Least-squares slope of `y` on `x`.
fn slope(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    if x.len() < 2 {
        return f64::NAN;
    }
    let xm = x.iter().sum::<f64>() / n;
    let ym = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - xm) * (b - ym);
        sxx += (a - xm) * (a - xm);
    }
    sxy / sxx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampen_of_periodic_series_is_zero() {
        let x: Vec<f64> = (0..60)
            .map(|i| if i % 2 == 0 { 800.0 } else { 900.0 })
            .collect();
        // r = 0.2·SD ≈ 10 ms: every matching length-2 pair also matches at length 3.
        assert_eq!(sample_entropy(&x, 10.0), 0.0);
    }

    /// The sorted scan counts exactly the pairs of the all-pairs definition.
    #[test]
    fn sorted_sampen_equals_brute_force() {
        fn brute(x: &[f64], r: f64) -> (u64, u64) {
            let m = x.len() - 2;
            let (mut a, mut b) = (0, 0);
            for i in 0..m {
                for j in 0..m {
                    if i != j && (x[i] - x[j]).abs() <= r && (x[i + 1] - x[j + 1]).abs() <= r {
                        b += 1;
                        if (x[i + 2] - x[j + 2]).abs() <= r {
                            a += 1;
                        }
                    }
                }
            }
            (a, b)
        }
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for len in [4usize, 5, 17, 200] {
            // Integer values so distances hit r exactly (ties at the boundary).
            let x: Vec<f64> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    800.0 + (state % 40) as f64
                })
                .collect();
            for r in [0.0, 1.0, 3.0, 7.5, 100.0] {
                let (a, b) = brute(&x, r);
                let want = if b == 0 {
                    f64::NEG_INFINITY
                } else if a == 0 {
                    f64::INFINITY
                } else {
                    -(a as f64 / b as f64).ln()
                };
                assert_eq!(sample_entropy(&x, r), want, "len {len} r {r}");
            }
        }
    }

    #[test]
    fn dfa_of_white_noise_is_about_half() {
        // Deterministic pseudo-random (xorshift) white noise.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let x: Vec<f64> = (0..4000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                800.0 + (state >> 11) as f64 / (1u64 << 53) as f64 * 100.0
            })
            .collect();
        let mut s = NonLinearScratch::default();
        let (a1, a2) = dfa(&x, &mut s);
        assert!((a1 - 0.5).abs() < 0.15, "alpha1 {a1}");
        assert!((a2 - 0.5).abs() < 0.1, "alpha2 {a2}");
    }
}
