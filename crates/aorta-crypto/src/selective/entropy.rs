//! Shannon entropy of a byte string in bits per byte (the paper's Table 2).

/// H = −Σ p(b) log2 p(b) over the 256 byte values; 0 for empty input.
pub fn shannon_bits_per_byte(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u64; 256];
    for &b in data {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c += 1;
        }
    }
    let n = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(shannon_bits_per_byte(b""), 0.0);
        assert_eq!(shannon_bits_per_byte(b"aaaa"), 0.0);
        assert!((shannon_bits_per_byte(b"abab") - 1.0).abs() < 1e-12);
        let all: Vec<u8> = (0..=255u8).collect();
        assert!((shannon_bits_per_byte(&all) - 8.0).abs() < 1e-12);
    }
}
