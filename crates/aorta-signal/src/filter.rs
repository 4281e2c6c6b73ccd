//! Small causal IIR building blocks used by the detector: second-order
//! sections designed by the bilinear transform for any sampling rate
//! (coefficients after R. Bristow-Johnson's "Audio EQ Cookbook").

use std::f64::consts::PI;

/// A second-order IIR section (direct form II transposed), state included.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Biquad {
    b0: f64,
    b1: f64,
    b2: f64,
    a1: f64,
    a2: f64,
    z1: f64,
    z2: f64,
}

impl Biquad {
    fn from_raw(b: [f64; 3], a: [f64; 3]) -> Biquad {
        let [b0, b1, b2] = b;
        let [a0, a1, a2] = a;
        Biquad {
            b0: b0 / a0,
            b1: b1 / a0,
            b2: b2 / a0,
            a1: a1 / a0,
            a2: a2 / a0,
            z1: 0.0,
            z2: 0.0,
        }
    }

    /// Butterworth-type (Q = 1/√2) low-pass at `fc` Hz for sampling rate `fs`.
    pub fn lowpass(fs: f64, fc: f64) -> Biquad {
        let w0 = 2.0 * PI * fc / fs;
        let (s, c) = w0.sin_cos();
        let alpha = s / (2.0 * std::f64::consts::FRAC_1_SQRT_2);
        Biquad::from_raw(
            [(1.0 - c) / 2.0, 1.0 - c, (1.0 - c) / 2.0],
            [1.0 + alpha, -2.0 * c, 1.0 - alpha],
        )
    }

    /// Butterworth-type (Q = 1/√2) high-pass at `fc` Hz for sampling rate `fs`.
    pub fn highpass(fs: f64, fc: f64) -> Biquad {
        let w0 = 2.0 * PI * fc / fs;
        let (s, c) = w0.sin_cos();
        let alpha = s / (2.0 * std::f64::consts::FRAC_1_SQRT_2);
        Biquad::from_raw(
            [(1.0 + c) / 2.0, -(1.0 + c), (1.0 + c) / 2.0],
            [1.0 + alpha, -2.0 * c, 1.0 - alpha],
        )
    }

    /// Filters one sample.
    #[inline(always)]
    pub fn step(&mut self, x: f64) -> f64 {
        let y = self.b0 * x + self.z1;
        self.z1 = self.b1 * x - self.a1 * y + self.z2;
        self.z2 = self.b2 * x - self.a2 * y;
        y
    }

    /// Complex frequency response at `f` Hz as (re, im).
    fn response(&self, fs: f64, f: f64) -> (f64, f64) {
        let w = 2.0 * PI * f / fs;
        // H = (b0 + b1 z^-1 + b2 z^-2) / (1 + a1 z^-1 + a2 z^-2), z^-k = e^{-jkw}
        let num = (
            self.b0 + self.b1 * w.cos() + self.b2 * (2.0 * w).cos(),
            -(self.b1 * w.sin() + self.b2 * (2.0 * w).sin()),
        );
        let den = (
            1.0 + self.a1 * w.cos() + self.a2 * (2.0 * w).cos(),
            -(self.a1 * w.sin() + self.a2 * (2.0 * w).sin()),
        );
        let d = den.0 * den.0 + den.1 * den.1;
        (
            (num.0 * den.0 + num.1 * den.1) / d,
            (num.1 * den.0 - num.0 * den.1) / d,
        )
    }
}

/// Group delay in samples of a cascade at `f` Hz (numerical phase derivative).
pub fn group_delay(sections: &[Biquad], fs: f64, f: f64) -> f64 {
    let phase = |f: f64| -> f64 {
        sections
            .iter()
            .map(|s| {
                let (re, im) = s.response(fs, f);
                im.atan2(re)
            })
            .sum()
    };
    let df = 0.01;
    let mut dphi = phase(f + df) - phase(f - df);
    while dphi > PI {
        dphi -= 2.0 * PI;
    }
    while dphi < -PI {
        dphi += 2.0 * PI;
    }
    let dw = 2.0 * PI * (2.0 * df) / fs;
    -dphi / dw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gains_at_dc_and_nyquist() {
        let lp = Biquad::lowpass(360.0, 15.0);
        let hp = Biquad::highpass(360.0, 5.0);
        let g = |b: &Biquad, f: f64| {
            let (re, im) = b.response(360.0, f);
            (re * re + im * im).sqrt()
        };
        assert!((g(&lp, 0.001) - 1.0).abs() < 1e-6);
        assert!((g(&lp, 15.0) - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-3);
        assert!(g(&hp, 0.001) < 1e-6);
        assert!((g(&hp, 5.0) - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-3);
        let gd = group_delay(&[hp, lp], 360.0, 10.0);
        assert!(gd > 0.0 && gd < 36.0, "{gd}");
    }
}
