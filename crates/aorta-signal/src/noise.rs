//! A reproducible ECG noise mix for robustness tests.
//!
//! The MIT-BIH Noise Stress Test Database (NSTDB) is not in the shared data,
//! so `aorta eval rpeaks --snr DB` adds this synthetic mix instead. It has
//! four components, each scaled to a quarter of the noise power:
//!
//! 1. **baseline wander**: three sinusoids at 0.05–0.5 Hz (respiration and
//!    body movement) with random phases;
//! 2. **mains**: a 60 Hz sinusoid (MIT-BIH was recorded in the USA) with a
//!    third harmonic at a fifth of its amplitude, its amplitude drifting
//!    slowly by ±30 %;
//! 3. **muscle (EMG-like)**: white Gaussian noise, high-passed at 10 Hz
//!    (first order), amplitude-modulated by random bursts (contractions of
//!    0.2–2 s that double its amplitude);
//! 4. **electrode motion**: Brownian noise band-limited to 0.5–10 Hz plus
//!    transients (steps decaying with a 0.3 s time constant, Poisson
//!    arrivals at 0.5 per second, random signs and sizes).
//!
//! The noise is scaled to the signal-to-noise ratio the NSTDB uses:
//! `SNR = 10·log10(S / N)` with `S = A²/8`, `A` the median peak-to-peak QRS
//! amplitude (see [`qrs_amplitude`]) and `N` the noise variance. At 0 dB
//! the noise RMS is `A/√8`.
//!
//! The generator is a SplitMix64 stream seeded by the caller: the same seed,
//! length and rate give the same noise bit for bit on every platform.

use crate::filter::Biquad;

/// SplitMix64: a small, well-mixed, seedable generator (Steele, Lea, Flood
/// 2014); not for cryptography.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// The four components of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseKind {
    /// Baseline wander.
    BaselineWander,
    /// Mains interference.
    Mains,
    /// Muscle (EMG-like) noise.
    Muscle,
    /// Electrode-motion-like artefacts.
    ElectrodeMotion,
}

/// `len` samples of one noise component at `fs` Hz, zero-mean and unit
/// variance (empty or constant output only for `len < 2`).
pub fn component(kind: NoiseKind, len: usize, fs: f64, rng: &mut SplitMix64) -> Vec<f64> {
    let tau = std::f64::consts::TAU;
    let mut x: Vec<f64> = match kind {
        NoiseKind::BaselineWander => {
            let parts: Vec<(f64, f64, f64)> = (0..3)
                .map(|_| {
                    (
                        0.05 + 0.45 * rng.uniform(),
                        tau * rng.uniform(),
                        0.5 + rng.uniform(),
                    )
                })
                .collect();
            (0..len)
                .map(|i| {
                    let t = i as f64 / fs;
                    parts
                        .iter()
                        .map(|(f, ph, a)| a * (tau * f * t + ph).sin())
                        .sum()
                })
                .collect()
        }
        NoiseKind::Mains => {
            let ph = tau * rng.uniform();
            let drift_f = 0.05 + 0.1 * rng.uniform();
            let drift_ph = tau * rng.uniform();
            (0..len)
                .map(|i| {
                    let t = i as f64 / fs;
                    let a = 1.0 + 0.3 * (tau * drift_f * t + drift_ph).sin();
                    a * ((tau * 60.0 * t + ph).sin() + 0.2 * (tau * 180.0 * t + 3.0 * ph).sin())
                })
                .collect()
        }
        NoiseKind::Muscle => {
            let mut hp = Biquad::highpass(fs, 10.0_f64.min(fs / 5.0));
            let mut out = Vec::with_capacity(len);
            let mut burst_left = 0usize;
            for _ in 0..len {
                if burst_left == 0 && rng.uniform() < 0.3 / fs {
                    burst_left = ((0.2 + 1.8 * rng.uniform()) * fs) as usize;
                }
                let gain = if burst_left > 0 {
                    burst_left -= 1;
                    2.0
                } else {
                    1.0
                };
                out.push(gain * hp.step(rng.normal()));
            }
            out
        }
        NoiseKind::ElectrodeMotion => {
            let mut hp = Biquad::highpass(fs, 0.5);
            let mut lp = Biquad::lowpass(fs, 10.0_f64.min(fs / 5.0));
            let mut walk = 0.0;
            let mut step = 0.0;
            let decay = (-1.0 / (0.3 * fs)).exp();
            let mut brown = Vec::with_capacity(len);
            let mut steps = Vec::with_capacity(len);
            for _ in 0..len {
                walk += rng.normal();
                brown.push(lp.step(hp.step(walk)));
                if rng.uniform() < 0.5 / fs {
                    step += (if rng.uniform() < 0.5 { -1.0 } else { 1.0 }) * (0.5 + rng.uniform());
                }
                step *= decay;
                steps.push(step);
            }
            normalise(&mut brown);
            normalise(&mut steps);
            brown.iter().zip(&steps).map(|(a, b)| a + b).collect()
        }
    };
    normalise(&mut x);
    x
}

fn normalise(x: &mut [f64]) {
    if x.len() < 2 {
        return;
    }
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let sd = var.sqrt();
    for v in x.iter_mut() {
        *v = if sd > 0.0 { (*v - mean) / sd } else { 0.0 };
    }
}

/// The full mix: the four components at equal power, unit variance in total.
pub fn mix(len: usize, fs: f64, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    let mut out = vec![0.0; len];
    for kind in [
        NoiseKind::BaselineWander,
        NoiseKind::Mains,
        NoiseKind::Muscle,
        NoiseKind::ElectrodeMotion,
    ] {
        let c = component(kind, len, fs, &mut rng);
        for (o, v) in out.iter_mut().zip(c) {
            *o += 0.5 * v;
        }
    }
    out
}

/// Median peak-to-peak amplitude of the QRS complexes at `beats` (sample
/// indices): the range of `signal` within ±50 ms of each beat. `None` when no
/// beat lies inside the signal.
pub fn qrs_amplitude(signal: &[f64], beats: &[u64], fs: f64) -> Option<f64> {
    let half = (0.05 * fs).round() as usize;
    let mut amps: Vec<f64> = beats
        .iter()
        .filter_map(|&b| {
            let b = usize::try_from(b).ok()?;
            let w = signal.get(b.saturating_sub(half)..(b + half + 1).min(signal.len()))?;
            let hi = w
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(f64::MIN, f64::max);
            let lo = w
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(f64::MAX, f64::min);
            (hi >= lo).then_some(hi - lo)
        })
        .collect();
    if amps.is_empty() {
        return None;
    }
    amps.sort_unstable_by(f64::total_cmp);
    amps.get(amps.len() / 2).copied()
}

/// Adds the noise mix to `signal` at `snr_db` (NSTDB definition, relative to
/// a QRS amplitude `qrs_ptp` in the signal's unit), seeded by `seed`.
pub fn add_noise(signal: &mut [f64], fs: f64, qrs_ptp: f64, snr_db: f64, seed: u64) {
    let noise = mix(signal.len(), fs, seed);
    let s = qrs_ptp * qrs_ptp / 8.0;
    let scale = (s / 10f64.powf(snr_db / 10.0)).sqrt();
    for (x, n) in signal.iter_mut().zip(noise) {
        *x += scale * n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_is_reproducible_and_unit_variance() {
        let a = mix(36_000, 360.0, 7);
        let b = mix(36_000, 360.0, 7);
        let c = mix(36_000, 360.0, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let var = a.iter().map(|v| v * v).sum::<f64>() / a.len() as f64;
        assert!((var - 1.0).abs() < 0.1, "variance {var}");
    }

    #[test]
    fn snr_scaling() {
        let mut x = vec![0.0; 36_000];
        add_noise(&mut x, 360.0, 2.0, 0.0, 1);
        let var = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        // S = 4/8 = 0.5; at 0 dB N = 0.5.
        assert!((var - 0.5).abs() < 0.05, "variance {var}");
    }
}
