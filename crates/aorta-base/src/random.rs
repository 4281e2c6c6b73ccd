//! Bytes from the operating system's CSPRNG (`getrandom`).

use zeroize::Zeroizing;

/// The operating system's random source failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct RandomError(String);

/// Fills `buf` with random bytes.
pub fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|e| RandomError(e.to_string()))
}

/// `N` random bytes (a nonce, an identifier).
pub fn array<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut a = [0u8; N];
    fill(&mut a)?;
    Ok(a)
}

/// `N` random bytes for a secret, wiped when dropped.
pub fn secret<const N: usize>() -> Result<Zeroizing<[u8; N]>, RandomError> {
    let mut a = Zeroizing::new([0u8; N]);
    fill(a.as_mut())?;
    Ok(a)
}

/// `len` random bytes.
pub fn vec(len: usize) -> Result<Vec<u8>, RandomError> {
    let mut v = vec![0u8; len];
    fill(&mut v)?;
    Ok(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    #[test]
    fn draws_differ() {
        let a = super::array::<32>().unwrap();
        let b = super::secret::<32>().unwrap();
        assert_ne!(a, *b);
        assert_eq!(super::vec(7).unwrap().len(), 7);
    }
}
