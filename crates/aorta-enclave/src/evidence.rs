//! The attestation evidence format, version 1 (spec: `docs/attestation.md`).
//!
//! ```text
//! magic "AOEV" | version u16 | backend u8 | reserved u8 (0)
//! nonce [32] | worker X25519 public key [32] | app measurement [32] | issued_at u64
//! body (backend-specific, see `EvidenceBody`)
//! ```
//! All integers are big-endian. The header fields are bound into the 64-byte
//! report data ([`EvidenceClaims::report_data`]) that the TEE signs, so the
//! host cannot change any of them without the verifier noticing.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256, Sha512};

use aorta_base::codec::{self, Decode, DecodeError, Encode, Reader};
use aorta_base::random::RandomError;

/// Evidence magic bytes.
pub const EVIDENCE_MAGIC: [u8; 4] = *b"AOEV";
/// The evidence format version this crate writes and reads.
pub const EVIDENCE_VERSION: u16 = 1;
/// Largest encoded evidence accepted (quotes plus collateral are ~30 KiB).
pub const MAX_EVIDENCE_LEN: usize = 256 * 1024;
/// Largest single blob (quote, collateral, report, certificates) in a body.
pub const MAX_BLOB_LEN: usize = 128 * 1024;
/// Domain separator hashed in front of the report data.
pub const REPORT_DATA_DOMAIN: &[u8] = b"aorta-enclave report-data v1\0";

/// Which evidence backend produced a piece of evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Backend {
    /// Software simulation signed by a local Ed25519 platform key. NOT hardware-protected.
    Sim,
    /// Intel TDX (a confidential VM), via Linux configfs-tsm.
    Tdx,
    /// AMD SEV-SNP (a confidential VM), via Linux configfs-tsm.
    SevSnp,
    /// Intel SGX enclave under Gramine, via `/dev/attestation`.
    SgxGramine,
}

impl Backend {
    /// All backends, in code order.
    pub const ALL: [Backend; 4] = [
        Backend::Sim,
        Backend::Tdx,
        Backend::SevSnp,
        Backend::SgxGramine,
    ];

    /// Wire code of the backend.
    pub fn code(self) -> u8 {
        match self {
            Backend::Sim => 1,
            Backend::Tdx => 2,
            Backend::SevSnp => 3,
            Backend::SgxGramine => 4,
        }
    }

    /// Backend for a wire code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.code() == code)
    }

    /// The name used in policy files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sim => "sim",
            Backend::Tdx => "tdx",
            Backend::SevSnp => "sev-snp",
            Backend::SgxGramine => "sgx-gramine",
        }
    }

    /// Whether the backend is backed by TEE hardware (everything but `sim`).
    pub fn is_hardware(self) -> bool {
        !matches!(self, Backend::Sim)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown backend name.
#[derive(Debug, thiserror::Error)]
#[error("unknown evidence backend {name:?} (expected one of: sim, tdx, sev-snp, sgx-gramine)")]
pub struct UnknownBackend {
    /// The name given.
    pub name: String,
}

impl FromStr for Backend {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| UnknownBackend { name: s.to_owned() })
    }
}

/// A 32-byte verifier-chosen challenge. Not secret, but single-use.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; 32]);

impl Nonce {
    /// A fresh nonce from the operating system's CSPRNG.
    pub fn random() -> Result<Self, RandomError> {
        aorta_base::random::array().map(Self)
    }

    /// The nonce as lowercase hex.
    pub fn to_hex(&self) -> String {
        aorta_base::hex::encode(&self.0)
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", self.to_hex())
    }
}

/// SHA-256 measurement of the worker: its binary and its configuration.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Measurement(pub [u8; 32]);

impl Measurement {
    /// `SHA-256("aorta-worker-measurement v1\0" ‖ SHA-256(binary) ‖ SHA-256(config))`.
    pub fn of_worker(binary: &[u8], config: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"aorta-worker-measurement v1\0");
        h.update(Sha256::digest(binary));
        h.update(Sha256::digest(config));
        Self(h.finalize().into())
    }

    /// Measures the running executable (`std::env::current_exe`) with `config`.
    pub fn of_current_exe(config: &[u8]) -> std::io::Result<Self> {
        let exe = std::env::current_exe()?;
        let bin = std::fs::read(exe)?;
        Ok(Self::of_worker(&bin, config))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        aorta_base::hex::encode(&self.0)
    }
}

impl fmt::Debug for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Measurement({})", self.to_hex())
    }
}

/// The header of a piece of evidence: everything bound into the report data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvidenceClaims {
    /// The backend that produced (or claims to have produced) the evidence.
    pub backend: Backend,
    /// The verifier's challenge.
    pub nonce: Nonce,
    /// The worker's fresh X25519 public key (the HPKE recipient key).
    pub worker_public_key: [u8; 32],
    /// The worker's self-measurement (binary + configuration).
    pub app_measurement: Measurement,
    /// Unix seconds at which the worker produced the evidence.
    pub issued_at: u64,
}

impl EvidenceClaims {
    /// The 64-byte report data the TEE signs:
    /// `SHA-512(domain ‖ version ‖ backend ‖ nonce ‖ worker_pk ‖ app_measurement ‖ issued_at)`.
    pub fn report_data(&self) -> [u8; 64] {
        let mut h = Sha512::new();
        h.update(REPORT_DATA_DOMAIN);
        h.update(EVIDENCE_VERSION.to_be_bytes());
        h.update([self.backend.code()]);
        h.update(self.nonce.0);
        h.update(self.worker_public_key);
        h.update(self.app_measurement.0);
        h.update(self.issued_at.to_be_bytes());
        h.finalize().into()
    }
}

/// The backend-specific part of the evidence.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvidenceBody {
    /// `sim`: `platform_key [32] | debug u8 | signature [64]`; the Ed25519
    /// signature covers `"aorta-sim-evidence v1\0" ‖ report_data ‖ debug`.
    Sim {
        /// The simulated platform's Ed25519 public key.
        platform_key: [u8; 32],
        /// Whether the simulated TEE runs in debug mode (always refused).
        debug: bool,
        /// Ed25519 signature.
        signature: [u8; 64],
    },
    /// TDX: `quote (u32-len) | collateral JSON (u32-len, may be empty)`.
    Tdx {
        /// The DCAP quote (the configfs-tsm `outblob`).
        quote: Vec<u8>,
        /// Intel collateral (dcap-qvl `QuoteCollateralV3` JSON), fetched by the host from a PCCS.
        collateral: Vec<u8>,
    },
    /// SEV-SNP: `report (u32-len) | certificate table (u32-len, may be empty)`.
    SevSnp {
        /// The attestation report (the configfs-tsm `outblob`).
        report: Vec<u8>,
        /// The certificate blob (`auxblob`), possibly empty.
        certs: Vec<u8>,
    },
    /// SGX under Gramine: `quote (u32-len) | collateral JSON (u32-len, may be empty)`.
    SgxGramine {
        /// The DCAP quote read from `/dev/attestation/quote`.
        quote: Vec<u8>,
        /// Intel collateral (dcap-qvl `QuoteCollateralV3` JSON).
        collateral: Vec<u8>,
    },
}

impl fmt::Debug for EvidenceBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvidenceBody::Sim { debug, .. } => write!(f, "Sim {{ debug: {debug} }}"),
            EvidenceBody::Tdx { quote, collateral } => {
                write!(
                    f,
                    "Tdx {{ quote: {} B, collateral: {} B }}",
                    quote.len(),
                    collateral.len()
                )
            }
            EvidenceBody::SevSnp { report, certs } => {
                write!(
                    f,
                    "SevSnp {{ report: {} B, certs: {} B }}",
                    report.len(),
                    certs.len()
                )
            }
            EvidenceBody::SgxGramine { quote, collateral } => write!(
                f,
                "SgxGramine {{ quote: {} B, collateral: {} B }}",
                quote.len(),
                collateral.len()
            ),
        }
    }
}

/// A complete piece of evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The header, bound into the report data.
    pub claims: EvidenceClaims,
    /// The backend-specific proof.
    pub body: EvidenceBody,
}

/// Why evidence bytes could not be decoded (malformed input: the peer's fault).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvidenceError {
    /// Not evidence at all.
    #[error("not aorta evidence: bad magic {found:02x?}")]
    BadMagic {
        /// The first bytes found.
        found: Vec<u8>,
    },
    /// A version this build does not know.
    #[error(
        "unknown evidence version {version} (this build reads version {EVIDENCE_VERSION}); upgrade the verifier or run a matching worker"
    )]
    UnknownVersion {
        /// The version found.
        version: u16,
    },
    /// Unknown backend code.
    #[error("unknown evidence backend code {code}")]
    UnknownBackend {
        /// The code found.
        code: u8,
    },
    /// A reserved field was not zero or a flag byte was not 0/1.
    #[error("invalid value {value} in field {field}")]
    BadField {
        /// Field name.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// The input ended early.
    #[error("evidence truncated at offset {offset} while reading {field}")]
    Truncated {
        /// Byte offset.
        offset: usize,
        /// Field being read.
        field: &'static str,
    },
    /// A length is larger than allowed.
    #[error("{field} is {len} bytes, more than the limit {max}")]
    TooLarge {
        /// Field name.
        field: &'static str,
        /// Length declared or found.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Bytes after the end of the evidence.
    #[error("{extra} trailing bytes after the evidence")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
}

impl Evidence {
    /// Encodes the evidence.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&EVIDENCE_MAGIC);
        out.extend_from_slice(&EVIDENCE_VERSION.to_be_bytes());
        out.push(self.claims.backend.code());
        out.push(0);
        out.extend_from_slice(&self.claims.nonce.0);
        out.extend_from_slice(&self.claims.worker_public_key);
        out.extend_from_slice(&self.claims.app_measurement.0);
        out.extend_from_slice(&self.claims.issued_at.to_be_bytes());
        match &self.body {
            EvidenceBody::Sim {
                platform_key,
                debug,
                signature,
            } => {
                out.extend_from_slice(platform_key);
                out.push(u8::from(*debug));
                out.extend_from_slice(signature);
            }
            EvidenceBody::Tdx { quote, collateral }
            | EvidenceBody::SgxGramine { quote, collateral } => {
                put_blob(&mut out, quote);
                put_blob(&mut out, collateral);
            }
            EvidenceBody::SevSnp { report, certs } => {
                put_blob(&mut out, report);
                put_blob(&mut out, certs);
            }
        }
        out
    }

    /// Decodes evidence, refusing anything malformed, oversized or trailing.
    pub fn decode(buf: &[u8]) -> Result<Self, EvidenceError> {
        if buf.len() > MAX_EVIDENCE_LEN {
            return Err(EvidenceError::TooLarge {
                field: "evidence",
                len: buf.len(),
                max: MAX_EVIDENCE_LEN,
            });
        }
        let mut r = Reader::new(buf);
        macro_rules! get {
            ($e:expr, $field:literal) => {{
                let off = r.position();
                match $e {
                    Ok(v) => v,
                    Err(_) => {
                        return Err(EvidenceError::Truncated {
                            offset: off,
                            field: $field,
                        });
                    }
                }
            }};
        }
        let magic: [u8; 4] = get!(r.array("magic"), "magic");
        if magic != EVIDENCE_MAGIC {
            return Err(EvidenceError::BadMagic {
                found: magic.to_vec(),
            });
        }
        let version = get!(r.u16("version"), "version");
        if version != EVIDENCE_VERSION {
            return Err(EvidenceError::UnknownVersion { version });
        }
        let code = get!(r.u8("backend"), "backend");
        let backend = Backend::from_code(code).ok_or(EvidenceError::UnknownBackend { code })?;
        let reserved = get!(r.u8("reserved"), "reserved");
        if reserved != 0 {
            return Err(EvidenceError::BadField {
                field: "reserved",
                value: u64::from(reserved),
            });
        }
        let nonce = Nonce(get!(r.array("nonce"), "nonce"));
        let worker_public_key = get!(r.array("worker_public_key"), "worker_public_key");
        let app_measurement = Measurement(get!(r.array("app_measurement"), "app_measurement"));
        let issued_at = get!(r.u64("issued_at"), "issued_at");
        let claims = EvidenceClaims {
            backend,
            nonce,
            worker_public_key,
            app_measurement,
            issued_at,
        };
        let blob = |r: &mut Reader<'_>, field: &'static str| -> Result<Vec<u8>, EvidenceError> {
            let off = r.position();
            let truncated = |_| EvidenceError::Truncated { offset: off, field };
            let len = usize::try_from(r.u32(field).map_err(truncated)?).unwrap_or(usize::MAX);
            if len > MAX_BLOB_LEN {
                return Err(EvidenceError::TooLarge {
                    field,
                    len,
                    max: MAX_BLOB_LEN,
                });
            }
            r.take(len, field).map(<[u8]>::to_vec).map_err(truncated)
        };
        let body = match backend {
            Backend::Sim => {
                let platform_key = get!(r.array("platform_key"), "platform_key");
                let debug = match get!(r.u8("debug"), "debug") {
                    0 => false,
                    1 => true,
                    v => {
                        return Err(EvidenceError::BadField {
                            field: "debug",
                            value: u64::from(v),
                        });
                    }
                };
                let signature = get!(r.array("signature"), "signature");
                EvidenceBody::Sim {
                    platform_key,
                    debug,
                    signature,
                }
            }
            Backend::Tdx => EvidenceBody::Tdx {
                quote: blob(&mut r, "quote")?,
                collateral: blob(&mut r, "collateral")?,
            },
            Backend::SgxGramine => EvidenceBody::SgxGramine {
                quote: blob(&mut r, "quote")?,
                collateral: blob(&mut r, "collateral")?,
            },
            Backend::SevSnp => EvidenceBody::SevSnp {
                report: blob(&mut r, "report")?,
                certs: blob(&mut r, "certs")?,
            },
        };
        if r.remaining() != 0 {
            return Err(EvidenceError::TrailingBytes {
                extra: r.remaining(),
            });
        }
        Ok(Evidence { claims, body })
    }
}

/// Appends a `u32`-length-prefixed blob. Evidence blobs are far below
/// 4 GiB (decoding refuses any over [`MAX_BLOB_LEN`]), so the prefix fits.
fn put_blob(out: &mut Vec<u8>, b: &[u8]) {
    let _ = codec::put_bytes_u32(out, "blob", b);
}

impl Encode for Evidence {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&Evidence::encode(self));
    }
}

/// All the remaining bytes as one piece of evidence; its [`EvidenceError`]
/// becomes [`DecodeError::Invalid`] (use [`Evidence::decode`] for the typed
/// error).
impl<'a> Decode<'a> for Evidence {
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let at = r.position();
        Evidence::decode(r.rest()).map_err(|e| DecodeError::Invalid {
            field: "evidence",
            offset: at,
            reason: match e {
                EvidenceError::Truncated { .. } => "truncated",
                EvidenceError::TrailingBytes { .. } => "trailing bytes",
                EvidenceError::TooLarge { .. } => "too large",
                EvidenceError::BadMagic { .. } => "bad magic",
                EvidenceError::UnknownVersion { .. } => "unknown version",
                _ => "invalid field",
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Evidence {
        Evidence {
            claims: EvidenceClaims {
                backend: Backend::Tdx,
                nonce: Nonce([1; 32]),
                worker_public_key: [2; 32],
                app_measurement: Measurement([3; 32]),
                issued_at: 42,
            },
            body: EvidenceBody::Tdx {
                quote: vec![9; 100],
                collateral: vec![],
            },
        }
    }

    #[test]
    fn round_trip_each_backend() {
        let mut e = sample();
        assert_eq!(Evidence::decode(&e.encode()).unwrap(), e);
        e.claims.backend = Backend::Sim;
        e.body = EvidenceBody::Sim {
            platform_key: [5; 32],
            debug: true,
            signature: [6; 64],
        };
        assert_eq!(Evidence::decode(&e.encode()).unwrap(), e);
        e.claims.backend = Backend::SevSnp;
        e.body = EvidenceBody::SevSnp {
            report: vec![1; 1184],
            certs: vec![2; 3],
        };
        assert_eq!(Evidence::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn rejects_bad_header() {
        let enc = sample().encode();
        let mut b = enc.clone();
        b[0] = b'X';
        assert!(matches!(
            Evidence::decode(&b),
            Err(EvidenceError::BadMagic { .. })
        ));
        let mut b = enc.clone();
        b[5] = 2;
        assert_eq!(
            Evidence::decode(&b),
            Err(EvidenceError::UnknownVersion { version: 2 })
        );
        let mut b = enc.clone();
        b[6] = 77;
        assert_eq!(
            Evidence::decode(&b),
            Err(EvidenceError::UnknownBackend { code: 77 })
        );
        let mut b = enc.clone();
        b[7] = 1;
        assert!(matches!(
            Evidence::decode(&b),
            Err(EvidenceError::BadField { .. })
        ));
        let mut b = enc.clone();
        b.push(0);
        assert_eq!(
            Evidence::decode(&b),
            Err(EvidenceError::TrailingBytes { extra: 1 })
        );
        // A declared quote length beyond the limit.
        let mut b = enc[..112].to_vec();
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Evidence::decode(&b),
            Err(EvidenceError::TooLarge { .. })
        ));
    }

    #[test]
    fn every_truncation_is_refused() {
        let enc = sample().encode();
        for n in 0..enc.len() {
            assert!(
                matches!(
                    Evidence::decode(&enc[..n]),
                    Err(EvidenceError::Truncated { .. })
                ),
                "prefix {n}"
            );
        }
    }

    #[test]
    fn report_data_binds_every_claim() {
        let c = sample().claims;
        let base = c.report_data();
        let mut d = c;
        d.nonce.0[0] ^= 1;
        assert_ne!(d.report_data(), base);
        let mut d = c;
        d.worker_public_key[31] ^= 1;
        assert_ne!(d.report_data(), base);
        let mut d = c;
        d.app_measurement.0[0] ^= 1;
        assert_ne!(d.report_data(), base);
        let mut d = c;
        d.issued_at += 1;
        assert_ne!(d.report_data(), base);
        let mut d = c;
        d.backend = Backend::SgxGramine;
        assert_ne!(d.report_data(), base);
    }

    #[test]
    fn backend_names_round_trip() {
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
            assert_eq!(Backend::from_code(b.code()), Some(b));
        }
        assert!("sgx".parse::<Backend>().is_err());
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Evidence::decode(&b);
        }

        #[test]
        fn mutated_evidence_never_panics(pos in 0usize..300, val in any::<u8>()) {
            let mut enc = sample().encode();
            let i = pos % enc.len();
            enc[i] = val;
            if let Ok(e) = Evidence::decode(&enc) {
                prop_assert_eq!(e.encode(), enc);
            }
        }
    }
}
