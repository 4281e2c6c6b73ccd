//! What every vault byte format shares: the version gate in front of the
//! shared decoder ([`aorta_base::codec`]).

use crate::VaultError;

/// A `magic ‖ version ‖ …` object whose magic is ours but whose version is
/// not is reported as [`VaultError::UnknownVersion`] ("upgrade aorta")
/// rather than as malformed; everything else is left to the decoder.
pub(crate) fn check_version(
    d: &[u8],
    magic: &[u8; 4],
    version: u8,
    what: &'static str,
) -> Result<(), VaultError> {
    match (d.get(..4), d.get(4)) {
        (Some(m), Some(&v)) if m == magic && v != version => Err(VaultError::UnknownVersion {
            what,
            version: v,
            supported: version,
        }),
        _ => Ok(()),
    }
}
