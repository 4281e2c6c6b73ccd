//! What a front-end reads from the patient's and the recipients' files and
//! arguments, read the same way by every front-end: a passphrase file (one
//! trailing newline ignored, never empty), identity files (created owner-only,
//! never overwritten), a recipient key given inline or in a file, a grant
//! validity (`30m`, `12h`, `7d`, `2w`), and the entropy statistics of
//! `aorta ehr entropy` (the paper's Table 2).

use std::path::Path;

use aorta_crypto::selective::container::{parse_public, protect_with_key};
use aorta_crypto::selective::entropy::shannon_bits_per_byte;
use aorta_crypto::selective::{MasterKey, ProtectOptions, Randomness};
use zeroize::Zeroizing;

use crate::VaultError;
use crate::grant::{Identity, OLD_PK_PREFIX, PK_PREFIX, RecipientKey};

fn bad(what: impl Into<String>, reason: impl Into<String>) -> VaultError {
    VaultError::BadInput {
        what: what.into(),
        reason: reason.into(),
    }
}

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>, VaultError> {
    std::fs::read(path).map_err(|source| VaultError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn read_text(path: &Path, what: &str) -> Result<Zeroizing<String>, VaultError> {
    String::from_utf8(read(path)?)
        .map(Zeroizing::new)
        .map_err(|_| {
            bad(
                path.display().to_string(),
                format!("not a {what} (not text)"),
            )
        })
}

/// Reads a passphrase file: its bytes without one trailing `\n` (or
/// `\r\n`); an empty passphrase is refused.
pub fn read_passphrase(path: &Path) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let mut p = Zeroizing::new(read(path)?);
    if p.ends_with(b"\n") {
        p.pop();
        if p.ends_with(b"\r") {
            p.pop();
        }
    }
    if p.is_empty() {
        return Err(bad(path.display().to_string(), "the passphrase is empty"));
    }
    Ok(p)
}

/// Reads a recipient's identity file.
pub fn read_identity(path: &Path) -> Result<Identity, VaultError> {
    Identity::from_text(&read_text(path, "identity file")?)
}

/// Writes a new identity to `path` (mode 0600), refusing to overwrite one.
pub fn write_identity(path: &Path, id: &Identity) -> Result<(), VaultError> {
    if path.exists() {
        return Err(bad(
            path.display().to_string(),
            "exists; refusing to overwrite an identity",
        ));
    }
    Ok(aorta_base::fs::write_private_new(
        path,
        id.to_text().as_bytes(),
    )?)
}

/// A recipient public key given as its text (`aorta-clinician-1…`, or the
/// older `aorta-ehr-pk1:…`) or as the path of a file holding it.
pub fn recipient_key(arg: &str) -> Result<RecipientKey, VaultError> {
    let t = arg.trim_start();
    if t.starts_with(PK_PREFIX) || t.starts_with(OLD_PK_PREFIX) {
        return RecipientKey::from_text(arg);
    }
    let path = Path::new(arg);
    if !path.exists() {
        return Err(bad(
            format!("recipient {arg:?}"),
            "neither a public key (aorta-clinician-1 followed by 64 hex digits) nor an existing file",
        ));
    }
    RecipientKey::from_text(&read_text(path, "public key file")?)
}

/// Parses a grant validity: a number greater than 0 followed by `s`, `m`,
/// `h`, `d` (the default unit) or `w`, into seconds.
pub fn parse_validity(s: &str) -> Result<u64, VaultError> {
    let s = s.trim();
    let what = || format!("validity {s:?}");
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| bad(what(), "expected a number followed by s, m, h, d or w"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" | "" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(bad(
                what(),
                format!("unknown unit {unit:?} (use s, m, h, d or w)"),
            ));
        }
    };
    if n == 0 {
        return Err(bad(what(), "a grant must be valid for longer than 0"));
    }
    n.checked_mul(mult).ok_or_else(|| bad(what(), "too long"))
}

/// The entropy of a file and of the public fragment protection makes of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EntropyReport {
    /// The file, as given.
    pub file: String,
    /// The mode's name (`strong`, `faithful`).
    pub mode: &'static str,
    /// Bytes of input.
    pub input_bytes: usize,
    /// Bytes treated as the file header.
    pub header_bytes: usize,
    /// Bytes of the public fragment's body.
    pub public_bytes: usize,
    /// Shannon entropy of the input, bits per byte.
    pub input_entropy: f64,
    /// Shannon entropy of the public fragment's body, bits per byte.
    pub public_entropy: f64,
}

/// Reads `file`, protects it under a random key (no KDF: the key does not
/// matter for the statistics) and measures both entropies.
pub fn entropy_report(file: &Path, opts: &ProtectOptions) -> Result<EntropyReport, VaultError> {
    Ok(entropy_figure(file, opts)?.0)
}

/// [`entropy_report`] and the paper's Fig. 4 for the same input and public
/// fragment ([`crate::figure::Figure`]: both byte histograms, with the
/// entropies of the report).
pub fn entropy_figure(
    file: &Path,
    opts: &ProtectOptions,
) -> Result<(EntropyReport, crate::figure::Figure), VaultError> {
    let data = &read(file)?;
    let k = aorta_base::random::array::<32>()?;
    let p = protect_with_key(data, &MasterKey::from_bytes(k), opts, &Randomness::fresh()?)?;
    let (_, body, _) = parse_public(&p.public)?;
    let name = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let figure = crate::figure::Figure::new(&name, data, body);
    let report = EntropyReport {
        file: file.display().to_string(),
        mode: opts.mode.name(),
        input_bytes: data.len(),
        header_bytes: p.split.head_len,
        public_bytes: body.len(),
        input_entropy: shannon_bits_per_byte(data),
        public_entropy: shannon_bits_per_byte(body),
    };
    Ok((report, figure))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_figure_draws_the_reported_bytes_and_entropies() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("rec.txt");
        let text = "Patient stable, ECG sinus rhythm 72 bpm.\n".repeat(500);
        std::fs::write(&f, &text).unwrap();
        let opts = ProtectOptions {
            kdf: aorta_crypto::selective::KdfParams::INSECURE_TEST,
            ..Default::default()
        };
        let (r, fig) = entropy_figure(&f, &opts).unwrap();
        assert_eq!(
            fig.input,
            crate::figure::Histogram::of("input rec.txt", text.as_bytes())
        );
        assert_eq!(fig.input.entropy, r.input_entropy);
        assert_eq!(fig.public.entropy, r.public_entropy);
        assert_eq!(fig.public.total, r.public_bytes as u64);
        assert!(r.public_entropy > 7.9 && r.input_entropy < 5.0, "{r:?}");
    }

    #[test]
    fn validities() {
        assert_eq!(parse_validity("30s").unwrap(), 30);
        assert_eq!(parse_validity("15m").unwrap(), 900);
        assert_eq!(parse_validity("12h").unwrap(), 43_200);
        assert_eq!(parse_validity("7").unwrap(), 7 * 86_400);
        assert_eq!(parse_validity(" 2w ").unwrap(), 14 * 86_400);
        for bad in [
            "",
            "0d",
            "0",
            "0s",
            "d",
            "3y",
            "-1d",
            "99999999999999999999d",
            "18446744073709551615w",
        ] {
            let e = parse_validity(bad).unwrap_err();
            assert_eq!(e.blame(), crate::Blame::Input, "{bad}: {e}");
        }
    }

    #[test]
    fn passphrase_file_rules() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pass");
        std::fs::write(&p, b"secret\r\n").unwrap();
        assert_eq!(read_passphrase(&p).unwrap().as_slice(), b"secret");
        std::fs::write(&p, b"secret\n\n").unwrap();
        assert_eq!(read_passphrase(&p).unwrap().as_slice(), b"secret\n");
        std::fs::write(&p, b"\n").unwrap();
        assert!(
            read_passphrase(&p)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let missing = read_passphrase(&d.path().join("none")).unwrap_err();
        assert_eq!(missing.blame(), crate::Blame::Environment);
    }

    #[test]
    fn identities_are_never_overwritten_and_keys_read_inline_or_from_a_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("id");
        let id = Identity::generate().unwrap();
        write_identity(&p, &id).unwrap();
        let again = write_identity(&p, &Identity::generate().unwrap()).unwrap_err();
        assert!(
            again.to_string().contains("refusing to overwrite"),
            "{again}"
        );
        let read_back = read_identity(&p).unwrap();
        let text = read_back.public().to_text();
        assert_eq!(text, id.public().to_text());
        let kf = d.path().join("pk");
        std::fs::write(&kf, &text).unwrap();
        assert_eq!(recipient_key(&text).unwrap().to_text(), text);
        assert_eq!(recipient_key(kf.to_str().unwrap()).unwrap().to_text(), text);
        std::fs::write(&kf, [0xff, 0xfe]).unwrap();
        assert_eq!(
            recipient_key(kf.to_str().unwrap()).unwrap_err().blame(),
            crate::Blame::Input
        );
    }
}
