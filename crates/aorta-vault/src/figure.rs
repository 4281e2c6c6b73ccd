//! The paper's Fig. 4 (c): the byte-value distributions of an input file and
//! of its public fragment, each with its Shannon entropy, drawn as a PNG.
//!
//! Two panels, one above the other: 256 bars (one per byte value, height
//! proportional to the count, the tallest bar filling the panel) under a
//! title naming the data, its size and its entropy in bits per byte. Text
//! uses the embedded 8×8 bitmap font of `font8x8`, so no system font is
//! needed; the PNG is written by the `png` crate. It lives here, next to
//! [`crate::inputs::entropy_report`] whose numbers it draws, so any front-end
//! gets the same figure and the CLI stays thin.

use aorta_crypto::selective::entropy::shannon_bits_per_byte;

use crate::error::VaultError;

/// Image width in pixels.
pub const WIDTH: u32 = 800;
/// Image height in pixels (two panels of [`PANEL_HEIGHT`]).
pub const HEIGHT: u32 = 2 * PANEL_HEIGHT;
/// One panel's height in pixels.
pub const PANEL_HEIGHT: u32 = 300;
/// Left edge of the bars.
const LEFT: u32 = 16;
/// Width of one bar (256 × 3 = 768 pixels).
const BAR: u32 = 3;
/// Top of the bar area within a panel (below the title).
const PLOT_TOP: u32 = 46;
/// Bottom of the bar area within a panel (above the axis labels).
const PLOT_BOTTOM: u32 = PANEL_HEIGHT - 24;

const WHITE: [u8; 3] = [255, 255, 255];
const BLACK: [u8; 3] = [0, 0, 0];
const GREY: [u8; 3] = [200, 200, 200];
const INPUT_COLOUR: [u8; 3] = [31, 119, 180];
const PUBLIC_COLOUR: [u8; 3] = [214, 39, 40];

/// One panel: a byte histogram and the entropy computed from the same bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// What the bytes are (`input`, `public fragment`).
    pub label: String,
    /// Count of each byte value.
    pub counts: [u64; 256],
    /// Number of bytes.
    pub total: u64,
    /// Shannon entropy, bits per byte.
    pub entropy: f64,
}

impl Histogram {
    /// Counts the bytes of `data` and computes their entropy.
    pub fn of(label: &str, data: &[u8]) -> Self {
        let mut counts = [0u64; 256];
        for &b in data {
            if let Some(c) = counts.get_mut(usize::from(b)) {
                *c += 1;
            }
        }
        Self {
            label: label.to_owned(),
            counts,
            total: data.len() as u64,
            entropy: shannon_bits_per_byte(data),
        }
    }

    /// The panel title: label, size and entropy.
    pub fn title(&self) -> String {
        format!("{}\n{}", self.label, self.subtitle())
    }

    /// The title's second line: entropy and size.
    fn subtitle(&self) -> String {
        format!(
            "entropy {:.4} bits/byte, {} bytes",
            self.entropy, self.total
        )
    }

    /// Height in pixels of the bar of byte value `b` (0 for an empty input).
    pub fn bar_height(&self, b: usize) -> u32 {
        let max = self.counts.iter().copied().max().unwrap_or(0);
        let c = self.counts.get(b).copied().unwrap_or(0);
        if max == 0 {
            return 0;
        }
        let full = u64::from(PLOT_BOTTOM - PLOT_TOP);
        // c ≤ max, so the height is at most `full`.
        u32::try_from(c * full / max).unwrap_or(0)
    }
}

/// Fig. 4: the input's and the public fragment's histograms.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The input file's bytes (top panel).
    pub input: Histogram,
    /// The public fragment's body (bottom panel).
    pub public: Histogram,
}

impl Figure {
    /// The figure for `input` and the body of its public fragment.
    pub fn new(name: &str, input: &[u8], public_body: &[u8]) -> Self {
        Self {
            input: Histogram::of(&format!("input {name}"), input),
            public: Histogram::of("public fragment", public_body),
        }
    }

    /// The RGB pixels, row by row, [`WIDTH`] × [`HEIGHT`].
    pub fn pixels(&self) -> Vec<u8> {
        let mut img = Canvas::new(WIDTH, HEIGHT);
        for (panel, (h, colour)) in [(&self.input, INPUT_COLOUR), (&self.public, PUBLIC_COLOUR)]
            .into_iter()
            .enumerate()
        {
            let top = panel as u32 * PANEL_HEIGHT;
            img.text(LEFT, top + 6, &h.label, 2, BLACK);
            img.text(LEFT, top + 24, &h.subtitle(), 2, BLACK);
            // Axis and the 0/128/255 ticks.
            img.fill(LEFT, top + PLOT_BOTTOM, 256 * BAR, 1, BLACK);
            for (v, label) in [(0u32, "0"), (128, "128"), (255, "255")] {
                img.fill(LEFT + v * BAR, top + PLOT_BOTTOM, 1, 4, BLACK);
                // Labels start at their tick; 255's ends at it.
                let x = LEFT + v * BAR - if v == 255 { 8 * 3 } else { 0 };
                img.text(x, top + PLOT_BOTTOM + 8, label, 1, BLACK);
            }
            img.text(
                LEFT + 180 * BAR,
                top + PLOT_BOTTOM + 8,
                "byte value",
                1,
                BLACK,
            );
            // A light line at the uniform level (each value 1/256 of the bytes).
            let max = h.counts.iter().copied().max().unwrap_or(0);
            if max > 0 && h.total > 0 {
                let full = u64::from(PLOT_BOTTOM - PLOT_TOP);
                let uniform = (h.total * full / 256 / max).min(full);
                let y = top + PLOT_BOTTOM - u32::try_from(uniform).unwrap_or(0);
                img.fill(LEFT, y, 256 * BAR, 1, GREY);
            }
            for b in 0..256u32 {
                let bh = h.bar_height(b as usize);
                img.fill(LEFT + b * BAR, top + PLOT_BOTTOM - bh, BAR - 1, bh, colour);
            }
        }
        img.px
    }

    /// The figure as PNG bytes (8-bit RGB).
    pub fn to_png(&self) -> Result<Vec<u8>, VaultError> {
        let mut out = Vec::new();
        let err = |e: png::EncodingError| VaultError::BadInput {
            what: "entropy figure".to_owned(),
            reason: format!("PNG encoding failed: {e}"),
        };
        {
            let mut enc = png::Encoder::new(&mut out, WIDTH, HEIGHT);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().map_err(err)?;
            w.write_image_data(&self.pixels()).map_err(err)?;
            w.finish().map_err(err)?;
        }
        Ok(out)
    }
}

/// An RGB raster with clipped drawing.
struct Canvas {
    w: u32,
    h: u32,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: u32, h: u32) -> Self {
        Self {
            w,
            h,
            px: WHITE.repeat((w * h) as usize),
        }
    }

    fn set(&mut self, x: u32, y: u32, c: [u8; 3]) {
        if x < self.w && y < self.h {
            let i = ((y * self.w + x) * 3) as usize;
            if let Some(p) = self.px.get_mut(i..i + 3) {
                p.copy_from_slice(&c);
            }
        }
    }

    fn fill(&mut self, x: u32, y: u32, w: u32, h: u32, c: [u8; 3]) {
        for yy in y..y.saturating_add(h) {
            for xx in x..x.saturating_add(w) {
                self.set(xx, yy, c);
            }
        }
    }

    /// Draws ASCII `s` at (x, y) with the 8×8 font scaled by `scale`
    /// (characters outside ASCII are drawn as `?`).
    fn text(&mut self, x: u32, y: u32, s: &str, scale: u32, c: [u8; 3]) {
        let font = &font8x8::legacy::BASIC_LEGACY;
        for (n, ch) in s.chars().enumerate() {
            let code = if ch.is_ascii() {
                ch as usize
            } else {
                '?' as usize
            };
            let Some(glyph) = font.get(code) else {
                continue;
            };
            let gx = x + n as u32 * 8 * scale;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8u32 {
                    if bits & (1 << col) != 0 {
                        self.fill(gx + col * scale, y + row as u32 * scale, scale, scale, c);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_and_entropies_are_the_ones_of_the_bytes() {
        let input: Vec<u8> = (0..10_000u32).map(|i| (i % 7) as u8 * 3).collect();
        let public: Vec<u8> = (0..5_000u32).map(|i| (i * 97 % 256) as u8).collect();
        let f = Figure::new("x.bin", &input, &public);
        for b in 0..256usize {
            let want = input.iter().filter(|&&v| usize::from(v) == b).count() as u64;
            assert_eq!(f.input.counts[b], want, "input value {b}");
            let want = public.iter().filter(|&&v| usize::from(v) == b).count() as u64;
            assert_eq!(f.public.counts[b], want, "public value {b}");
        }
        assert_eq!(f.input.entropy, shannon_bits_per_byte(&input));
        assert!((f.input.entropy - 7f64.log2()).abs() < 1e-3);
        assert_eq!(f.public.entropy, shannon_bits_per_byte(&public));
        assert!(f.input.title().contains(&format!("{:.4}", f.input.entropy)));
    }

    #[test]
    fn bars_drawn_are_the_histogram() {
        // Input: only values 0 and 200, 3:1; the drawn column of each
        // value has the bar colour exactly up to its computed height.
        let mut input = vec![0u8; 300];
        input.extend(std::iter::repeat_n(200u8, 100));
        let f = Figure::new("t", &input, &[1, 2, 3]);
        let px = f.pixels();
        assert_eq!(px.len(), (WIDTH * HEIGHT * 3) as usize);
        let at = |x: u32, y: u32| {
            let i = ((y * WIDTH + x) * 3) as usize;
            [px[i], px[i + 1], px[i + 2]]
        };
        let full = PLOT_BOTTOM - PLOT_TOP;
        assert_eq!(f.input.bar_height(0), full);
        assert_eq!(f.input.bar_height(200), full / 3);
        assert_eq!(f.input.bar_height(100), 0);
        for (b, h) in [(0u32, full), (200, full / 3)] {
            let x = LEFT + b * BAR;
            assert_eq!(at(x, PLOT_BOTTOM - h), INPUT_COLOUR, "top of bar {b}");
            assert_ne!(at(x, PLOT_BOTTOM - h - 1), INPUT_COLOUR, "above bar {b}");
        }
        // Public panel: values 1, 2, 3 once each, equal full bars.
        for b in 1..4u32 {
            let y = PANEL_HEIGHT + PLOT_BOTTOM - full;
            assert_eq!(at(LEFT + b * BAR, y), PUBLIC_COLOUR);
        }
        assert_ne!(
            at(LEFT + 4 * BAR, PANEL_HEIGHT + PLOT_BOTTOM - 1),
            PUBLIC_COLOUR
        );
    }

    #[test]
    fn png_decodes_to_the_pixels() {
        let f = Figure::new("t", b"hello world", b"\x01\x02");
        let png_bytes = f.to_png().unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0u8; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        assert_eq!(&buf[..info.buffer_size()], &f.pixels()[..]);
    }

    #[test]
    fn empty_input_draws_no_bars() {
        let f = Figure::new("empty", b"", b"");
        assert_eq!(f.input.entropy, 0.0);
        assert_eq!(f.input.bar_height(0), 0);
        assert!(f.to_png().is_ok());
    }
}
